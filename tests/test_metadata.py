"""The sealed metadata's one schema: written as every version wrote it, read from anything."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyrage
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.alerts.order_mark import OrderMark, Topic
from proxy.alerts.tiers import Tier
from proxy.archive import CustodyRecord, Recipients
from proxy.archive.metadata import (
    SealedCustody,
    SealedEnvelope,
    SealedIdentity,
    SealedItem,
    SealedRule,
    from_json,
)
from proxy.archive.seal import open_sealed, parse_sealed, seal_custody, seal_item
from proxy.message import Channel, IdentityKind, Kind
from proxy.rules import decide
from tests.factories import MARK, email, make_rules, sms

IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENTS = Recipients.parse([str(IDENTITY.to_public())])
SEALED_AT = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

# A voicemail's metadata line exactly as the version before this schema sealed it.
OLD_LINE = (
    '{"kind":"item","channel":"voice","received_at":"2026-03-01T12:00:00Z",'
    '"sealed_at":"2026-03-01T10:00:00.123456Z",'
    '"senders":[{"kind":"phone","value":"+15550100199","source":"caller"}],"mentions":[],'
    '"subject":"","envelope":{"sender":"+15550100199","recipients":["+15550100111"]},'
    '"rule":{"id":"people.mark.phones","kind":"direct","reason":"caller number is mark"},'
    '"provider_id":"RE0123","authentication_results":[],"defects":[],'
    '"provider":"twilio","voicemail":true,"payload_bytes":3,'
    '"payload_sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}'
)


def _line(metadata: dict[str, object]) -> str:
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))


def _opened(sealed: bytes) -> tuple[str, SealedItem | SealedCustody]:
    """The seal's metadata line as stored, and as the schema reads it."""
    plaintext = pyrage.decrypt(sealed, [IDENTITY])
    line = plaintext.split(b"\n")[1].decode()
    assert open_sealed(plaintext)[1] == parse_sealed(plaintext)[1]
    return line, open_sealed(plaintext)[0]


def test_an_old_seal_s_metadata_reads_and_writes_back_byte_for_byte() -> None:
    """A line an earlier version sealed reads into the schema and writes back unchanged."""
    metadata = from_json(json.loads(OLD_LINE))
    assert isinstance(metadata, SealedItem)
    assert metadata.channel is Channel.VOICE
    assert metadata.received_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert metadata.senders == (
        SealedIdentity(kind=IdentityKind.PHONE, value="+15550100199", source="caller"),
    )
    assert metadata.rule == SealedRule(
        id="people.mark.phones", kind=Kind.DIRECT, reason="caller number is mark"
    )
    assert metadata.envelope == SealedEnvelope(sender="+15550100199", recipients=("+15550100111",))
    assert metadata.extras == {"provider": "twilio", "voicemail": True}
    assert (metadata.payload_bytes, metadata.main_sender) == (3, "+15550100199")
    assert _line(metadata.to_json()) == OLD_LINE


@pytest.mark.parametrize(
    "extras", [None, {"peer": "192.0.2.1", "helo": "mx"}, {"imap": "home"}], ids=str
)
@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_sealed_item_s_metadata_round_trips(channel: str, extras: dict[str, object]) -> None:
    """What the seal writes reads back equal, and writes back as the very same line."""
    if channel == "email":
        message = email(
            "From: Mark <mark.smith@gmail.com>\nReply-To: x@y.example\nSubject: hello é",
            "call +1 555 010 0199\n", envelope_sender="b@c.example",
        )  # fmt: skip
    else:
        message = sms("+15550100199", "hi ✓")
    sealed = seal_item(message, decide(message, make_rules()), RECIPIENTS, sealed_at=SEALED_AT,
                       extras=extras)  # fmt: skip
    line, metadata = _opened(sealed)
    assert isinstance(metadata, SealedItem)
    assert metadata.received_at == message.received_at
    assert metadata.sealed_at == SEALED_AT
    assert [i.value for i in metadata.senders] == [i.value for i in message.senders]
    assert metadata.extras == (extras or {})
    assert from_json(metadata.to_json()) == metadata
    assert _line(metadata.to_json()) == line


def test_an_urgent_item_s_assessment_is_sealed_and_read_back() -> None:
    """A held item's tier and reasons are sealed with it, after the schema's other keys
    and before a channel's own, and read back equal; never the words that matched."""
    message = sms("+15550100199", "I know where you live. I'll kill you.")
    decision = decide(message, make_rules())
    assert str(decision.assessment) == "urgent:proximity,urgent:threat"
    sealed = seal_item(message, decision, RECIPIENTS, sealed_at=SEALED_AT,
                       extras={"provider": "twilio"})  # fmt: skip
    line, metadata = _opened(sealed)
    assert isinstance(metadata, SealedItem)
    assert metadata.assessment == decision.assessment
    assert (
        '"defects":[],"assessment":{"tier":"urgent","reasons":["urgent:proximity",'
        '"urgent:threat"]},"provider":"twilio"' in line
    )
    assert "kill" not in line.split('"assessment"')[1]
    assert _line(metadata.to_json()) == line


def test_a_digest_item_is_sealed_as_before_and_an_old_one_reads_as_digest() -> None:
    """An item with no reason writes no assessment (as every earlier version wrote it),
    and an item sealed before assessments existed reads as digest with no reason."""
    message = sms("+15550100199", "hi")
    line, metadata = _opened(seal_item(message, decide(message, make_rules()), RECIPIENTS,
                                       sealed_at=SEALED_AT))  # fmt: skip
    assert "assessment" not in line
    assert isinstance(metadata, SealedItem)
    assert metadata.assessment.tier is Tier.DIGEST
    old = from_json(json.loads(OLD_LINE))
    assert isinstance(old, SealedItem)
    assert old.assessment.tier is Tier.DIGEST
    assert old.assessment.reasons == ()


ORDERED = make_rules(people=[{**MARK, "court_order": {
    "children": ["Lily"], "channels": ["email"], "relay": "Dana Reyes"}}])  # fmt: skip


def test_an_order_mark_is_sealed_after_the_assessment_and_read_back() -> None:
    """His item under a court order carries its logistics reasons and its order mark,
    sealed after the assessment and before a channel's keys, and read back equal."""
    message = sms("+15550100199", "Pick up Lily today at 17:00")
    decision = decide(message, ORDERED)
    assert str(decision.assessment) == "urgent:same_day_logistics,elevated:child_logistics"
    sealed = seal_item(message, decision, RECIPIENTS, sealed_at=SEALED_AT,
                       extras={"provider": "twilio"})  # fmt: skip
    line, metadata = _opened(sealed)
    assert isinstance(metadata, SealedItem)
    expected = OrderMark(person="mark", topic=Topic.CHILDREN, logistics=True,
                         channel_allowed=False)  # fmt: skip
    assert metadata.order == decision.order == expected
    assert (
        '"elevated:child_logistics"]},"order":{"person":"mark","topic":"children",'
        '"logistics":true,"channel_allowed":false},"provider":"twilio"' in line
    )
    assert "lily" not in line.split('"assessment"')[1].lower()
    assert _line(metadata.to_json()) == line
    assert "order" not in metadata.extras


def test_only_his_own_items_under_an_order_carry_a_mark() -> None:
    """Someone else's message about him, or his under no order, is sealed as before."""
    theirs = email("From: carol@example.net\nSubject: Lily today at 17:00", "from Mark")
    his = sms("+15550100199", "Pick up Lily today at 17:00")
    for message, rules in ((theirs, ORDERED), (his, make_rules())):
        decision = decide(message, rules)
        assert decision.held
        assert decision.order is None
        line, metadata = _opened(seal_item(message, decision, RECIPIENTS, sealed_at=SEALED_AT))
        assert '"order"' not in line
        assert isinstance(metadata, SealedItem)
        assert metadata.order is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"tier": "urgent", "reasons": ["urgent:threat", "elevated:place"]},
         "urgent:threat,elevated:place"),
        ({"tier": "urgent", "reasons": ["urgent:threat", "dire:threat", "urgent:Kill you"]},
         "urgent:threat"),  # a tier or code this version cannot read is left out
        ({"tier": "urgent", "reasons": "urgent:threat"}, "digest"),
        ({"tier": "urgent"}, "digest"),  # the tier is what the reasons say, nothing else
        ("urgent", "digest"),
        ({"reasons": [1, None, ["urgent:threat"]]}, "digest"),
    ],
)  # fmt: skip
def test_an_odd_assessment_reads_without_raising(value: object, expected: str) -> None:
    """Whatever a seal's `assessment` holds, it reads as the reasons it can make out."""
    metadata = from_json({"kind": "item", "assessment": value})
    assert isinstance(metadata, SealedItem)
    assert str(metadata.assessment) == expected
    assert "assessment" not in metadata.extras


def test_a_custody_record_s_metadata_round_trips() -> None:
    """A custody record reads back as one (its `kind` decides), and writes the same line."""
    record = CustodyRecord(contact="0123456789abcdef", action="export", items=(1, 5),
                           at=SEALED_AT, reason="for the hearing")  # fmt: skip
    line, metadata = _opened(seal_custody(record, RECIPIENTS))
    assert metadata == SealedCustody(
        contact=record.contact, action="export", items=(1, 5), at=SEALED_AT,
        reason="for the hearing", payload_bytes=0, payload_sha256=hashlib.sha256(b"").hexdigest(),
    )  # fmt: skip
    assert _line(metadata.to_json()) == line
    assert "signature" not in line  # written as every earlier version wrote it


def test_a_signed_custody_record_keeps_its_nonce_and_signature() -> None:
    """A signed record's nonce and signature are sealed after its reason and read back."""
    record = CustodyRecord(contact="0123456789abcdef", action="show", items=(2,), at=SEALED_AT,
                           reason="", nonce="ab" * 16, signature="c2ln")  # fmt: skip
    line, metadata = _opened(seal_custody(record, RECIPIENTS))
    assert isinstance(metadata, SealedCustody)
    assert (metadata.nonce, metadata.signature) == ("ab" * 16, "c2ln")
    assert list(json.loads(line))[5:8] == ["reason", "nonce", "signature"]
    assert _line(metadata.to_json()) == line


ODD: list[tuple[str, dict[str, Any], SealedItem | SealedCustody]] = [
    ("empty", {}, SealedItem()),
    ("no kind, a subject", {"subject": "hi"}, SealedItem(subject="hi")),
    ("kind name, not display_name",
     {"senders": [{"kind": "name", "value": "Mark", "source": "from"},
                  {"kind": "display_name", "value": "M", "source": "from"}]},
     SealedItem(senders=(SealedIdentity(kind=None, value="Mark", source="from"),
                         SealedIdentity(kind=IdentityKind.DISPLAY_NAME, value="M",
                                        source="from")))),
    ("senders not a list, mentions of junk",
     {"senders": "mark", "mentions": [1, None, {"value": 7}]},
     SealedItem(mentions=(SealedIdentity(kind=None, value="7"),))),
    ("times unreadable", {"received_at": 5, "sealed_at": "yesterday"}, SealedItem()),
    ("a naive time is UTC", {"received_at": "2024-01-02T03:04:05"},
     SealedItem(received_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))),
    ("unknown channel and rule kind, rule not an object",
     {"channel": "fax", "rule": {"kind": "mild", "id": 3}, "envelope": []},
     SealedItem(rule=SealedRule(id="3"))),
    ("lists of odd values", {"defects": ["a", 2, None, True], "authentication_results": "x"},
     SealedItem(defects=("a", "2"))),
    ("custody with odd items", {"kind": "custody", "items": [1, "2", "x", True, 2.5], "at": 1},
     SealedCustody(items=(1, 2))),
    ("payload described oddly", {"payload_bytes": "12", "payload_sha256": None},
     SealedItem(payload_bytes=12)),
]  # fmt: skip


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in ODD], ids=[c[0] for c in ODD])
def test_an_old_or_odd_metadata_parses_without_raising(
    data: dict[str, Any], expected: SealedItem | SealedCustody
) -> None:
    """Missing keys take defaults, wrong types are coerced or dropped, unknown kinds are None."""
    assert from_json(data) == expected


def test_an_unknown_kind_of_identity_is_still_not_a_display_name() -> None:
    """main_sender skips only display names: an identity of a kind this version does not
    know still names the item, as it did before the schema."""
    item = SealedItem.from_json({"senders": [
        {"kind": "display_name", "value": "Mark", "source": "from"},
        {"kind": "name", "value": "odd", "source": "from"},
    ]})  # fmt: skip
    assert item.main_sender == "odd"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_KEYS = st.sampled_from([
    "kind", "channel", "received_at", "sealed_at", "senders", "mentions", "subject", "envelope",
    "rule", "provider_id", "authentication_results", "defects", "payload_bytes", "items", "at",
    "contact", "action", "reason",
])  # fmt: skip


@given(st.dictionaries(_KEYS | st.text(), _JSON | st.sampled_from(["custody", "item"])))
def test_any_json_object_parses_and_writes_back(data: dict[str, Any]) -> None:
    """The reader is total: whatever a seal's JSON object holds, it parses, and what it
    parses to writes back as JSON (nothing the schema holds is unwritable)."""
    metadata = from_json(data)
    json.dumps(metadata.to_json())
    assert from_json(metadata.to_json()) == metadata
