"""An RFC 5322 message, as bytes, to an `InboundMessage`.

Rules this module keeps:
1. Parsing is the standard library's: `email.parser` for the MIME structure (made safe for
   crafted input in `proxy.normalize.parsing`), `email.utils.getaddresses` for address
   lists, `email.header` for RFC 2047 encoded words (and each word on its own where it
   gives up, `proxy.normalize.words`). A part's body is read in every transfer encoding
   and charset a reader could use (`proxy.normalize.bodies`). We write no MIME or address
   parser of our own.
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
   if it is his. Every string it yields is valid text (`proxy.normalize.valid`).
5. Bounded: only the prefix `proxy.normalize.limits` allows is parsed, text is capped per
   part and per message, and so are the encoded words decoded per header and the
   addresses and numbers read out. Past any cap the message is marked incomplete
   (`InboundMessage.complete`), and the rules scan all of its bytes linearly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from proxy.fold import fold
from proxy.identity import canonical_email
from proxy.message import Channel, Envelope, Identity, IdentityKind, InboundMessage
from proxy.normalize.bodies import decoded_payload
from proxy.normalize.html import html_to_text
from proxy.normalize.limits import LIMITS, analysed_prefix
from proxy.normalize.mentions import mentions_in
from proxy.normalize.parsing import PARSE_FAULTS, ambiguous, parse
from proxy.normalize.valid import valid_text
from proxy.normalize.words import decode_words

_SENDER_HEADERS = ("from", "sender", "reply-to", "return-path", "resent-from", "resent-sender")
_VISIBLE_HEADERS = ("from", "to", "cc")
_FORWARDED_HEADERS = ("from", "sender", "reply-to", "to", "cc", "subject")
_QUOTE_MARKERS = re.compile(r"(?m)^[ \t]*(?:>[ \t]?)+")
_FOLDING = re.compile(r"\r?\n(?=[ \t])")


class _Reading:
    """What is left of one message's reading budget (module rule 5), and whether the
    close reading covered everything."""

    __slots__ = ("also", "complete", "defects", "text_left")

    def __init__(self, complete: bool) -> None:
        self.complete = complete
        self.text_left = LIMITS.message_text
        self.defects: list[str] = []
        self.also: list[str] = []  # other ways a reader could read a header: searched too

    def take(self, text: str, cap: int = LIMITS.part_text) -> str:
        """`text`, cut to the part cap and to what is left of the message's."""
        allowed = min(cap, self.text_left)
        if len(text) > allowed:
            text, self.complete = text[:allowed], False
        self.text_left -= len(text)
        return text


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
    prefix = analysed_prefix(raw)
    source = prefix.data[: prefix.header_end] if headers_only else prefix.data
    reading = _Reading(prefix.headers_complete if headers_only else prefix.complete)
    defects = reading.defects
    headers_read = prefix.headers_complete
    try:
        message = parse(source, prefix.header_end)
        senders = list(_senders_of(message, reading))
        authentication = tuple(
            valid_text(v) for v in _all_values(message, "authentication-results", defects)
        )
        subject = reading.take(_header_text(message, "subject", reading))
        text = "\n".join(_visible_text(message, reading, headers_only=headers_only))
        if reading.also:
            text += "\n" + reading.take("\n".join(reading.also))
    except PARSE_FAULTS as fault:
        defects.append(f"unparseable message: {type(fault).__name__}")
        senders, subject, authentication = [], "", ()
        text = reading.take(source.decode("utf-8", errors="replace"), LIMITS.message_text)
        reading.complete = headers_read = False  # the rules scan it, headers as direct
    envelope_sender = valid_text(envelope_sender)  # SMTPUTF8 arguments arrive surrogate-escaped
    recipients = tuple(valid_text(recipient) for recipient in recipients)
    envelope_address = canonical_email(envelope_sender) if envelope_sender else None
    if envelope_address is not None:
        senders.append(Identity(kind=IdentityKind.EMAIL, value=envelope_address, source="envelope"))
    if ">" in text:  # a C-level look first: the multi-line regex tries every line
        text = _QUOTE_MARKERS.sub("", text)
    mentions, all_mentions = mentions_in(text, default_region, limit=LIMITS.mentions)
    return InboundMessage(
        channel=Channel.EMAIL,
        raw=raw,
        envelope=Envelope(sender=envelope_sender, recipients=recipients),
        senders=tuple(dict.fromkeys(senders)),
        mentions=mentions,
        subject=subject,
        text=text,
        search_text=fold(f"{subject}\n{text}"),
        received_at=received_at,
        authentication_results=authentication,
        defects=tuple(defects),
        complete=reading.complete and all_mentions,
        headers_complete=headers_read,
    )


def _senders_of(message: Message, reading: _Reading) -> Iterator[Identity]:
    for header in _SENDER_HEADERS:
        for display_name, address in _addresses(message, header, reading):
            canonical = canonical_email(address) if address else None
            if canonical is not None:
                yield Identity(kind=IdentityKind.EMAIL, value=canonical, source=header)
            if display_name.strip():
                yield Identity(
                    kind=IdentityKind.DISPLAY_NAME, value=display_name.strip(), source=header
                )


def _addresses(message: Message, header: str, reading: _Reading) -> list[tuple[str, str]]:
    """(display name, address) pairs of every instance of `header`, however broken."""
    values = _all_values(message, header, reading.defects)
    if not values:
        return []
    try:
        pairs = getaddresses(values)
    except PARSE_FAULTS:
        reading.defects.append(f"unreadable {header} header")
        return []
    return [(_decoded(name, reading), valid_text(_unescape(address))) for name, address in pairs]


def _all_values(message: Message, header: str, defects: list[str]) -> list[str]:
    """Every instance of `header`, as its raw text, unfolded.

    Raw items, not `get_all`: compat32 turns 8-bit (SMTPUTF8) headers into `Header`
    objects whose text has lost the bytes; the raw text keeps them for `_unescape`.
    """
    try:
        return [
            _FOLDING.sub("", value) if "\n" in value else value
            for name, value in message.raw_items()
            if name.lower() == header and isinstance(value, str)
        ]
    except PARSE_FAULTS:
        defects.append(f"unreadable {header} header")
        return []


def _unescape(text: str) -> str:
    """Undo the parser's surrogate escapes: raw UTF-8 in headers is legal (SMTPUTF8)."""
    try:
        return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeError:
        return text


def _decoded(text: str, reading: _Reading) -> str:
    """A header's text with RFC 2047 encoded words decoded and raw UTF-8 read as UTF-8.

    At most `encoded_words` words are decoded (module rule 5); the rest is kept as written.
    Where the standard library gives up on the header, or leaves words it could not read
    (an unknown charset, a language tag), each word is also decoded on its own, as a
    lenient mail client would (`proxy.normalize.words`).
    """
    if "=?" in text:
        head, tail = text, ""
        cut = _nth_word(text, LIMITS.encoded_words)
        if cut is not None:
            head, tail, reading.complete = text[:cut], text[cut:], False
        try:
            decoded = _unescape(str(make_header(decode_header(head))))
        except PARSE_FAULTS:
            decoded = _unescape(" ".join(head.split()))
        for lenient in (decode_words(head), decode_words(head, joined=False)):
            if lenient.split() != decoded.split():  # a reader could show it so: search it
                reading.also.append(valid_text(lenient))
        return valid_text(decoded + tail)
    return valid_text(_unescape(" ".join(text.split())))


def _nth_word(text: str, n: int) -> int | None:
    """Where the `n`th encoded word after the first begins, if there are that many."""
    at = text.find("=?")
    for _ in range(n):
        if at == -1:
            return None
        at = text.find("=?", at + 2)
    return None if at == -1 else at


def _header_text(message: Message, header: str, reading: _Reading) -> str:
    values = _all_values(message, header, reading.defects)
    return " ".join(_decoded(v, reading) for v in values)


def _visible_text(
    message: Message, reading: _Reading, *, headers_only: bool = False
) -> Iterator[str]:
    for header in _VISIBLE_HEADERS:
        value = reading.take(_header_text(message, header, reading))
        if value:
            yield f"{header.title()}: {value}"
    if headers_only:
        return
    for count, part in enumerate(message.walk()):
        if count >= LIMITS.parts or reading.text_left <= 0:
            reading.complete = False
            return
        if ambiguous(part):
            reading.complete = False  # read only in part, or one way of several
        yield from _part_text(part, reading)


def _part_text(part: Message, reading: _Reading) -> Iterator[str]:
    try:
        content_type = part.get_content_type()
        filename = part.get_filename()
    except PARSE_FAULTS:
        reading.defects.append("unreadable part headers")
        content_type, filename = "application/octet-stream", None
    if filename:
        yield reading.take(f"[attachment: {_decoded(filename, reading)}]")
    if content_type in ("message/rfc822", "message/global"):
        yield from _forwarded_headers(part, reading)
    elif content_type == "text/rfc822-headers" or content_type.startswith("text/"):
        try:
            body = decoded_payload(part, reading.defects)
        except PARSE_FAULTS:  # one part the stdlib chokes on: the scan reads it (rule 4)
            reading.defects.append("unreadable part body")
            reading.complete, body = False, ""
        if content_type == "text/html":
            if len(body) > LIMITS.html_markup:
                body, reading.complete = body[: LIMITS.html_markup], False
            rendered = html_to_text(
                body, min(LIMITS.part_text, reading.text_left), LIMITS.html_nodes
            )
            reading.complete = reading.complete and rendered.complete
            body = rendered.text
        yield reading.take(body)


def _forwarded_headers(part: Message, reading: _Reading) -> Iterator[str]:
    try:
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
    except PARSE_FAULTS:
        inner = None
    if not isinstance(inner, Message):
        return
    for header in _FORWARDED_HEADERS:
        value = reading.take(_header_text(inner, header, reading))
        if value:
            yield f"{header.title()}: {value}"
