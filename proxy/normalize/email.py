"""An RFC 5322 message, as bytes, to an `InboundMessage`.

Rules this module keeps:
1. Parsing is the standard library's: `email.parser` for the MIME structure,
   `email.utils.getaddresses` for address lists, `email.header` for RFC 2047 encoded words.
   We write no MIME or address parser of our own.
   Why not `policy.default`'s header objects: measured here they cost ~85 us per header
   and 4x the parse time of `compat32` (208 us vs 52 us for 10 KB), which would make
   parsing most of the SMTP channel's budget; the decoders above give the same identities.
2. Every sender identity is collected: From, Sender, Reply-To, Return-Path, Resent-From,
   Resent-Sender and the envelope MAIL FROM, each as an address and a display name.
   Raw UTF-8 headers (SMTPUTF8) are decoded as UTF-8.
3. Everything a reader could read is collected as text: every text/* part (HTML rendered
   by `proxy.normalize.html`), the From, To and Cc lines, attachment file names, the
   headers of forwarded message/rfc822 parts; quote markers ("> ") are removed so a name
   split over quoted lines still reads as one.
4. Never raises. A header or part that cannot be read is read again as raw text, and a
   message the parser rejects as a whole is searched as raw text: broken MIME is still held
   if it is his.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from email import policy
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

from proxy.fold import fold
from proxy.identity import canonical_email
from proxy.message import Channel, Envelope, Identity, IdentityKind, InboundMessage
from proxy.normalize.html import html_to_text
from proxy.normalize.mentions import mentions_in

_SENDER_HEADERS = ("from", "sender", "reply-to", "return-path", "resent-from", "resent-sender")
_VISIBLE_HEADERS = ("from", "to", "cc")
_FORWARDED_HEADERS = ("from", "sender", "reply-to", "to", "cc", "subject")
_QUOTE_MARKERS = re.compile(r"(?m)^[ \t]*(?:>[ \t]?)+")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_PARSER = BytesParser(policy=policy.compat32)

# Parsing hostile input can fail in many ways inside the stdlib; each is caught at the
# smallest scope that still lets us read the rest.
_PARSE_FAULTS = (
    MessageError,  # e.g. HeaderParseError from a broken base64 encoded word
    LookupError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    UnicodeError,
    AssertionError,
    RecursionError,
)


def normalize_email(
    raw: bytes,
    *,
    envelope_sender: str,
    recipients: tuple[str, ...] = (),
    received_at: datetime,
    default_region: str | None = None,
    headers_only: bool = False,
) -> InboundMessage:
    """Read `raw` (a whole message as received) into the value the rules decide on.

    With `headers_only`, only the header block is read (its senders, subject and visible
    lines): enough for the direct rules, at a fraction of the cost for a large message.
    The result still carries the whole `raw`, which is what gets sealed.
    """
    defects: list[str] = []
    source = _header_block(raw) if headers_only else raw
    try:
        message = _PARSER.parsebytes(source)
        senders = list(_senders_of(message, defects))
        authentication = tuple(_all_values(message, "authentication-results", defects))
        subject = _header_text(message, "subject", defects)
        text = "\n".join(_visible_text(message, defects, headers_only=headers_only))
    except _PARSE_FAULTS as fault:
        defects.append(f"unparseable message: {type(fault).__name__}")
        senders, subject, authentication = [], "", ()
        text = source.decode("utf-8", errors="replace")
    envelope_address = canonical_email(envelope_sender) if envelope_sender else None
    if envelope_address is not None:
        senders.append(Identity(kind=IdentityKind.EMAIL, value=envelope_address, source="envelope"))
    text = _QUOTE_MARKERS.sub("", text)
    return InboundMessage(
        channel=Channel.EMAIL,
        raw=raw,
        envelope=Envelope(sender=envelope_sender, recipients=recipients),
        senders=tuple(dict.fromkeys(senders)),
        mentions=mentions_in(text, default_region),
        subject=subject,
        text=text,
        search_text=fold(f"{subject}\n{text}"),
        received_at=received_at,
        authentication_results=authentication,
        defects=tuple(defects),
    )


def _senders_of(message: Message, defects: list[str]) -> Iterator[Identity]:
    for header in _SENDER_HEADERS:
        for display_name, address in _addresses(message, header, defects):
            canonical = canonical_email(address) if address else None
            if canonical is not None:
                yield Identity(kind=IdentityKind.EMAIL, value=canonical, source=header)
            if display_name.strip():
                yield Identity(
                    kind=IdentityKind.DISPLAY_NAME, value=display_name.strip(), source=header
                )


def _addresses(message: Message, header: str, defects: list[str]) -> list[tuple[str, str]]:
    """(display name, address) pairs of every instance of `header`, however broken."""
    values = _all_values(message, header, defects)
    if not values:
        return []
    try:
        pairs = getaddresses(values)
    except _PARSE_FAULTS:
        defects.append(f"unreadable {header} header")
        return []
    return [(_decoded(name), _unescape(address)) for name, address in pairs]


def _all_values(message: Message, header: str, defects: list[str]) -> list[str]:
    """Every instance of `header`, as its raw text, unfolded.

    Raw items, not `get_all`: compat32 turns 8-bit (SMTPUTF8) headers into `Header`
    objects whose text has lost the bytes; the raw text keeps them for `_unescape`.
    """
    try:
        return [
            _FOLDING.sub("", value)
            for name, value in message.raw_items()
            if name.lower() == header and isinstance(value, str)
        ]
    except _PARSE_FAULTS:
        defects.append(f"unreadable {header} header")
        return []


def _unescape(text: str) -> str:
    """Undo the parser's surrogate escapes: raw UTF-8 in headers is legal (SMTPUTF8)."""
    try:
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeError:
        return text


def _decoded(text: str) -> str:
    """A header's text with RFC 2047 encoded words decoded and raw UTF-8 read as UTF-8."""
    if "=?" in text:
        try:
            return _unescape(str(make_header(decode_header(text))))
        except _PARSE_FAULTS:
            pass
    return _unescape(" ".join(text.split()))


def _header_text(message: Message, header: str, defects: list[str]) -> str:
    values = _all_values(message, header, defects)
    return " ".join(_decoded(v) for v in values)


def _visible_text(
    message: Message, defects: list[str], *, headers_only: bool = False
) -> Iterator[str]:
    for header in _VISIBLE_HEADERS:
        value = _header_text(message, header, defects)
        if value:
            yield f"{header.title()}: {value}"
    if not headers_only:
        for part in message.walk():
            yield from _part_text(part, defects)


def _header_block(raw: bytes) -> bytes:
    """The message up to and including the blank line after its headers."""
    ends = [end for end in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if end >= 0]
    if not ends:
        return raw[: 1 << 20]
    end = min(ends)
    return raw[: end + (4 if raw.startswith(b"\r\n\r\n", end) else 2)]


def _part_text(part: Message, defects: list[str]) -> Iterator[str]:
    try:
        content_type = part.get_content_type()
        filename = part.get_filename()
    except _PARSE_FAULTS:
        defects.append("unreadable part headers")
        content_type, filename = "application/octet-stream", None
    if filename:
        yield f"[attachment: {_decoded(filename)}]"
    if content_type in ("message/rfc822", "message/global"):
        yield from _forwarded_headers(part, defects)
    elif content_type == "text/rfc822-headers" or content_type.startswith("text/"):
        body = _decoded_payload(part, defects)
        yield html_to_text(body) if content_type == "text/html" else body


def _forwarded_headers(part: Message, defects: list[str]) -> Iterator[str]:
    try:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
    except _PARSE_FAULTS:
        inner = None
    if not isinstance(inner, Message):
        return
    for header in _FORWARDED_HEADERS:
        value = _header_text(inner, header, defects)
        if value:
            yield f"{header.title()}: {value}"


def _decoded_payload(part: Message, defects: list[str]) -> str:
    try:
        data = part.get_payload(decode=True)
    except _PARSE_FAULTS:
        data = None
    if not isinstance(data, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = _charset(part)
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        defects.append("unknown charset")
        return data.decode("utf-8", errors="replace")


def _charset(part: Message) -> str:
    try:
        charset = part.get_content_charset()
    except _PARSE_FAULTS:
        charset = None
    return charset or "utf-8"
