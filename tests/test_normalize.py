"""Normalize: every sender identity and every readable word of a message reaches the rules."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.message import Channel, IdentityKind, InboundMessage
from proxy.normalize import normalize_email, normalize_sms
from tests.factories import RECEIVED_AT


def _normalize(raw: bytes, envelope_sender: str = "") -> InboundMessage:
    return normalize_email(
        raw, envelope_sender=envelope_sender, received_at=RECEIVED_AT, default_region="US"
    )


def _identities(message: InboundMessage) -> set[tuple[str, str, str]]:
    return {(i.kind.value, i.source, i.value) for i in message.senders}


def test_every_sender_header_is_an_identity() -> None:
    """From, Sender, Reply-To, Return-Path, Resent-From, Resent-Sender and MAIL FROM count."""
    raw = (
        b"Return-Path: <rp@one.example>\n"
        b"From: Alpha <a@one.example>, b@two.example\n"
        b"Sender: s@three.example\n"
        b"Reply-To: Reply Person <r@four.example>\n"
        b"Resent-From: rf@five.example\n"
        b"Resent-Sender: rs@six.example\n"
        b"Subject: hello\n\nbody\n"
    )
    found = _identities(_normalize(raw, envelope_sender="env@seven.example"))
    assert {
        ("email", "return-path", "rp@one.example"),
        ("email", "from", "a@one.example"),
        ("display_name", "from", "Alpha"),
        ("email", "from", "b@two.example"),
        ("email", "sender", "s@three.example"),
        ("email", "reply-to", "r@four.example"),
        ("display_name", "reply-to", "Reply Person"),
        ("email", "resent-from", "rf@five.example"),
        ("email", "resent-sender", "rs@six.example"),
        ("email", "envelope", "env@seven.example"),
    } <= found


def test_rfc2047_and_raw_utf8_display_names_are_decoded() -> None:
    """Encoded-word and SMTPUTF8 display names reach the rules as readable text."""
    encoded = _normalize(b"From: =?utf-8?q?M=C3=A1rk?= <m@x.example>\n\nhi\n")
    raw_utf8 = _normalize("From: Márk <m@x.example>\n\nhi\n".encode())
    for message in (encoded, raw_utf8):
        names = [i.value for i in message.senders if i.kind is IdentityKind.DISPLAY_NAME]
        assert names == ["Márk"]


def test_html_parts_are_read_as_text() -> None:
    """HTML is rendered to text: tags and scripts vanish, entities decode, blocks separate."""
    message = EmailMessage()
    message["From"] = "x@example.org"
    message.set_content("plain part")
    message.add_alternative(
        "<html><head><style>p{}</style></head><body><p>Hi <b>Ma</b>rk&nbsp;Smith</p>"
        "<script>var hidden='zzz';</script><img alt='photo of Carol'></body></html>",
        subtype="html",
    )
    normalized = _normalize(message.as_bytes())
    assert "plain part" in normalized.text
    assert "Mark\xa0Smith" in normalized.text
    assert "photo of Carol" in normalized.text
    assert "zzz" not in normalized.text
    assert "<b>" not in normalized.text
    assert "mark smlth" in normalized.search_text


def test_forwarded_message_headers_and_body_are_read() -> None:
    """A forwarded message/rfc822 part contributes its From, Subject and text."""
    inner = EmailMessage()
    inner["From"] = "Mark Smith <mark@smith-family.example>"
    inner["Subject"] = "please tell her"
    inner.set_content("inner words")
    outer = EmailMessage()
    outer["From"] = "friend@example.org"
    outer.set_content("see below")
    outer.add_attachment(inner)
    normalized = _normalize(outer.as_bytes())
    assert "Mark Smith" in normalized.text
    assert "inner words" in normalized.text
    assert "please tell her" in normalized.text
    assert ("email", "text", "mark@smith-family.example") in {
        (i.kind.value, i.source, i.value) for i in normalized.mentions
    }


def test_quote_markers_do_not_split_a_name() -> None:
    """A name broken over two quoted lines still reads as one name."""
    normalized = _normalize(b"From: x@example.org\n\n> > I saw Mark\n> > Smith today\n")
    assert "mark smlth" in normalized.search_text


def test_numbers_and_addresses_in_text_are_mentions() -> None:
    """Phone numbers and addresses written in the body become mention identities."""
    normalized = _normalize(b"From: x@example.org\n\ncall (555) 010-0199 or Mark@Example.com\n")
    assert {(i.kind.value, i.value) for i in normalized.mentions} >= {
        ("phone", "+15550100199"),
        ("email", "mark@example.com"),
    }


def test_attachment_names_are_text() -> None:
    """An attachment's file name is something a reader sees, so it is text too."""
    message = EmailMessage()
    message["From"] = "x@example.org"
    message.set_content("see attached")
    message.add_attachment(b"\x89PNG", maintype="image", subtype="png", filename="mark-smith.png")
    assert "mark-smith.png" in _normalize(message.as_bytes()).text


def test_unknown_charset_and_broken_base64_still_read() -> None:
    """A bogus charset or broken transfer encoding yields text, never an exception."""
    raw = (
        b"From: x@example.org\nContent-Type: text/plain; charset=x-no-such-charset\n"
        b"Content-Transfer-Encoding: base64\n\nTWFyayBTbWl0aA=!!\n"
    )
    normalized = _normalize(raw)
    assert normalized.channel is Channel.EMAIL


def test_header_only_garbage_is_still_searched() -> None:
    """Bytes that are no email at all are kept and searched as raw text."""
    normalized = _normalize(b"\xff\xfe\x00Mark Smith\x00\x00")
    assert "mark smlth" in normalized.search_text
    assert normalized.raw == b"\xff\xfe\x00Mark Smith\x00\x00"


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_random_bytes_never_raise(raw: bytes) -> None:
    """Any bytes at all normalize to a message that keeps those exact bytes."""
    assert _normalize(raw).raw == raw


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(
            [b"From: ", b"Content-Type: multipart/mixed; boundary=x\n", b"--x\n", b"--x--\n",
             b"=?utf-8?b?", b"?=", b"Content-Transfer-Encoding: base64\n", b"\n", b"<a@b>",
             b"message/rfc822", b"Content-Type: ", b"text/html\n", b"<p>", b"\xc3", b";"]
        ),
        max_size=60,
    )
)  # fmt: skip
def test_mime_shaped_junk_never_raises(pieces: list[bytes]) -> None:
    """Junk made of MIME syntax never makes normalize raise."""
    _normalize(b"".join(pieces))


def test_sms_sender_is_e164() -> None:
    """A text's sender number is read into E.164 with the default region."""
    message = normalize_sms(
        sender="(555) 010-0199",
        recipient="+15550100111",
        text="hello",
        raw=b"{}",
        received_at=RECEIVED_AT,
        default_region="US",
        provider_id="SM123",
    )
    assert [(i.kind.value, i.value) for i in message.senders] == [("phone", "+15550100199")]
    assert message.provider_id == "SM123"


def test_authentication_results_are_kept_for_the_seal() -> None:
    """The receiving servers' SPF/DKIM/DMARC verdicts are carried with the message."""
    raw = (
        b"Authentication-Results: mx.example; spf=pass smtp.mailfrom=x.example\n"
        b"Authentication-Results: mx.example; dkim=fail\n"
        b"From: x@x.example\n\nhi\n"
    )
    assert _normalize(raw).authentication_results == (
        "mx.example; spf=pass smtp.mailfrom=x.example",
        "mx.example; dkim=fail",
    )


def test_headers_only_reads_senders_but_not_the_body() -> None:
    """Reading only the header block finds every sender and keeps the whole raw message."""
    raw = b"From: Mark <mark@x.example>\r\nTo: sam@home.example\r\n\r\nMarky call 555 010 0199\r\n"
    message = normalize_email(
        raw, envelope_sender="", received_at=RECEIVED_AT, default_region="US", headers_only=True
    )
    assert [(i.source, i.value) for i in message.senders][:1] == [("from", "mark@x.example")]
    assert "marky" not in message.search_text
    assert message.raw == raw
