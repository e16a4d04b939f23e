"""What `contact list` and `contact show` print of a held item: nothing a terminal acts on."""

from __future__ import annotations

from proxy.access.reading import HeldItem
from proxy.access.render import render, summary, urgency
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.archive.metadata import SealedItem
from proxy.message import Channel

_EMAIL = SealedItem(channel=Channel.EMAIL)


def test_a_subject_shows_its_controls_escaped_bidi_and_c1_included() -> None:
    """C0, DEL, C1 (0x9b begins an escape sequence on some terminals) and bidirectional
    controls (U+202E turns "exe.txt" around) are shown as escapes, never sent."""
    subject = "invoice\u202etxt.exe \x9b31m \x1b[2J \u2066x\u2069 \x7f"
    shown = summary(SealedItem(channel=Channel.EMAIL, subject=subject), b"")
    assert shown == "invoice\\u202etxt.exe \\x9b31m \\x1b[2J \\u2066x\\u2069 \\x7f"


def test_no_carriage_return_reaches_the_terminal() -> None:
    """CRLF line ends read as lines; a lone CR (which would let the rest of a line overwrite
    its start on the terminal) never reaches it: a line break in a body, \\x0d elsewhere."""
    payload = b"From: a@b.example\r\nSubject: s\r\n\r\nfirst line\r\nMark\rFriend\r\n"
    shown = render(_EMAIL, payload)
    assert "first line\nMark\nFriend\n" in shown
    assert "\r" not in shown
    assert summary(SealedItem(channel=Channel.SMS, subject="Mark\rFriend"), b"") == "Mark Friend"


def test_an_item_is_named_by_one_reading_of_its_senders() -> None:
    """The listing, the report and the manifest name an item by `main_sender`: an address
    or number from From, the caller or the envelope, never a display name (the kind is
    written "display_name"; the listing skipped only a kind "name", which never exists)."""
    metadata = SealedItem.from_json({"senders": [
        {"kind": "display_name", "value": "Mark", "source": "from"},
        {"kind": "email", "value": "reply@elsewhere.example", "source": "reply-to"},
        {"kind": "email", "value": "mark@example.org", "source": "envelope"},
    ]})  # fmt: skip
    assert metadata.main_sender == "mark@example.org"
    item = HeldItem(sequence=1, sealed=b"", leaf_hash=b"", metadata=metadata, payload=b"")
    assert item.sender == "mark@example.org"
    names_only = [{"kind": "display_name", "value": "Mark", "source": "from"}]
    assert SealedItem.from_json({"senders": names_only}).main_sender == "Mark"  # still shown
    assert SealedItem.from_json({}).main_sender == ""


def test_the_rendering_says_how_urgent_the_item_was_found() -> None:
    """One line of the rendering's head gives the tier and the reason codes, urgent ones
    first; an item with no reason (or sealed before assessments) reads `digest`."""
    found = Assessment.of([
        Reason(tier=Tier.ELEVATED, code="children"), Reason(tier=Tier.URGENT, code="weapon"),
        Reason(tier=Tier.URGENT, code="threat"),
    ])  # fmt: skip
    text = render(SealedItem(channel=Channel.EMAIL, assessment=found), b"Subject: hi\n\nhi\n")
    assert "Urgency:  urgent (threat, weapon; elevated: children)" in text.splitlines()
    assert urgency(Assessment()) == "digest"
    plain = render(SealedItem(channel=Channel.EMAIL), b"Subject: hi\n\nhi\n")
    assert "Urgency:  digest" in plain.splitlines()
