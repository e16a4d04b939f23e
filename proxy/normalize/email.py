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
from typing import NamedTuple

from proxy.fold import fold
from proxy.identity import canonical_email
from proxy.message import Channel, Envelope, Identity, IdentityKind, InboundMessage
from proxy.normalize.bodies import decoded_payload
from proxy.normalize.html import html_to_text
from proxy.normalize.limits import LIMITS, analysed_prefix
from proxy.normalize.mentions import mentions_in
from proxy.normalize.parsing import PARSE_FAULTS, ambiguous, parse_head, with_body
from proxy.normalize.valid import valid_text
from proxy.normalize.words import decode_words

_SENDER_HEADERS = ("from", "sender", "reply-to", "return-path", "resent-from", "resent-sender")
_VISIBLE_HEADERS = ("from", "to", "cc")
_FORWARDED_HEADERS = ("from", "sender", "reply-to", "to", "cc", "subject")
_READ_HEADERS = frozenset(
    {*_SENDER_HEADERS, *_VISIBLE_HEADERS, "subject", "authentication-results"}
)
# After a line break (the text is read with one put before it): a literal first character
# lets the regex engine skip to line starts, where "(?m)^" tries every position (8x).
_QUOTE_MARKERS = re.compile(r"\n[ \t]*(?:>[ \t]?)+")
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

    def copy(self) -> _Reading:
        """The budget as it stands, to go on reading from without changing this one."""
        other = _Reading(self.complete)
        other.text_left, other.defects, other.also = self.text_left, [*self.defects], [*self.also]
        return other

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
    reading = EmailReading(
        raw, envelope_sender=envelope_sender, recipients=recipients,
        received_at=received_at, default_region=default_region,
    )  # fmt: skip
    return reading.headers() if headers_only else reading.whole()


class EmailReading:
    """One email read in two steps, its header block read once: `headers()` (enough for
    the direct rules: his body is never parsed), then, only if needed, `whole()`."""

    def __init__(
        self, raw: bytes, *, envelope_sender: str, recipients: tuple[str, ...] = (),
        received_at: datetime, default_region: str | None = None,
    ) -> None:  # fmt: skip
        self.raw, self.received_at, self.default_region = raw, received_at, default_region
        self.prefix = prefix = analysed_prefix(raw)
        self.envelope_sender = valid_text(envelope_sender)  # SMTPUTF8 arrives escaped
        self.recipients = tuple(valid_text(recipient) for recipient in recipients)
        address = canonical_email(self.envelope_sender) if self.envelope_sender else None
        self.envelope = (
            [Identity(kind=IdentityKind.EMAIL, value=address, source="envelope")]
            if address is not None else []
        )  # fmt: skip
        self.reading = reading = _Reading(complete=True)
        self.head: Message | None = None
        self.said = _Said([], "", ())
        try:
            head = parse_head(prefix.data, prefix.header_end)
            fields = _fields(head, _READ_HEADERS)
            senders = list(_senders_of(fields, reading))
            authentication = tuple(valid_text(v) for v in fields.get("authentication-results", ()))
            subject = reading.take(_header_text(fields, "subject", reading))
            self.lines = list(_visible_headers(fields, reading))
        except PARSE_FAULTS as fault:
            self.lines = _unparseable(reading, fault, prefix.data[: prefix.header_end])
        else:
            self.head, self.said = head, _Said(senders, subject, authentication)

    def headers(self) -> InboundMessage:
        """The header block alone, read."""
        headers_read = self.prefix.headers_complete and self.head is not None
        # A copy: what this takes of the text budget must not count again in whole().
        return self._message(self.reading.copy(), self.lines, self.said,
                             headers_read=headers_read,
                             complete=self.prefix.headers_complete)  # fmt: skip

    def whole(self) -> InboundMessage:
        """The whole message, read within the caps (its header block is not read again)."""
        if self.head is None:
            return self.headers()
        reading, lines = self.reading.copy(), list(self.lines)
        try:
            message = with_body(self.head, self.prefix.data, self.prefix.header_end)
            lines.extend(_body_text(message, reading))
        except PARSE_FAULTS as fault:
            lines = _unparseable(reading, fault, self.prefix.data)
            return self._message(reading, lines, _Said([], "", ()), headers_read=False,
                                 complete=False)  # fmt: skip
        return self._message(reading, lines, self.said, headers_read=self.prefix.headers_complete,
                             complete=self.prefix.complete)  # fmt: skip

    def _message(
        self, reading: _Reading, lines: list[str], said: _Said, *, headers_read: bool,
        complete: bool,
    ) -> InboundMessage:  # fmt: skip
        text = "\n".join(lines)
        if reading.also:
            text += "\n" + reading.take("\n".join(reading.also))
        if ">" in text:  # a C-level look first: most lines hold no quote marker
            text = _QUOTE_MARKERS.sub("\n", "\n" + text)[1:]
        mentions, all_mentions = mentions_in(text, self.default_region, limit=LIMITS.mentions)
        return InboundMessage(
            channel=Channel.EMAIL,
            raw=self.raw,
            envelope=Envelope(sender=self.envelope_sender, recipients=self.recipients),
            senders=tuple(dict.fromkeys([*said.senders, *self.envelope])),
            mentions=mentions,
            subject=said.subject,
            text=text,
            search_text=fold(f"{said.subject}\n{text}"),
            received_at=self.received_at,
            authentication_results=said.authentication,
            defects=tuple(reading.defects),
            complete=complete and reading.complete and all_mentions,
            headers_complete=headers_read,
        )


class _Said(NamedTuple):
    """What the header block says of who sent it and what about."""

    senders: list[Identity]
    subject: str
    authentication: tuple[str, ...]


def _unparseable(reading: _Reading, fault: Exception, source: bytes) -> list[str]:
    """The text of a message the parser rejects as a whole: its raw bytes, searched as
    text (module rule 4); the rules then scan it, its header block as direct."""
    reading.defects.append(f"unparseable message: {type(fault).__name__}")
    reading.complete = False
    reading.also.clear()  # other readings of headers the parser gave up on
    return [reading.take(source.decode("utf-8", errors="replace"), LIMITS.message_text)]


def _senders_of(fields: _Fields, reading: _Reading) -> Iterator[Identity]:
    for header in _SENDER_HEADERS:
        for display_name, address in _addresses(fields, header, reading):
            canonical = canonical_email(address) if address else None
            if canonical is not None:
                yield Identity(kind=IdentityKind.EMAIL, value=canonical, source=header)
            if display_name.strip():
                yield Identity(
                    kind=IdentityKind.DISPLAY_NAME, value=display_name.strip(), source=header
                )


def _addresses(fields: _Fields, header: str, reading: _Reading) -> list[tuple[str, str]]:
    """(display name, address) pairs of every instance of `header`, however broken."""
    values = fields.get(header)
    if not values:
        return []
    try:
        pairs = getaddresses(values)
    except PARSE_FAULTS:
        reading.defects.append(f"unreadable {header} header")
        return []
    return [(_decoded(name, reading), valid_text(_unescape(address))) for name, address in pairs]


_Fields = dict[str, list[str]]


def _fields(message: Message, wanted: frozenset[str]) -> _Fields:
    """Every instance of each `wanted` header, by lowercased name, as its raw text,
    unfolded: one pass over the header block.

    Raw items, not `get_all`: compat32 turns 8-bit (SMTPUTF8) headers into `Header`
    objects whose text has lost the bytes; the raw text keeps them for `_unescape`.
    """
    fields: _Fields = {}
    for name, value in message.raw_items():
        key = name.lower()
        if key in wanted and isinstance(value, str):
            fields.setdefault(key, []).append(_FOLDING.sub("", value) if "\n" in value else value)
    return fields


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


def _header_text(fields: _Fields, header: str, reading: _Reading) -> str:
    return " ".join(_decoded(v, reading) for v in fields.get(header, ()))


def _visible_headers(fields: _Fields, reading: _Reading) -> Iterator[str]:
    for header in _VISIBLE_HEADERS:
        value = reading.take(_header_text(fields, header, reading))
        if value:
            yield f"{header.title()}: {value}"


def _body_text(message: Message, reading: _Reading) -> Iterator[str]:
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
    fields = _fields(inner, frozenset(_FORWARDED_HEADERS))
    for header in _FORWARDED_HEADERS:
        value = reading.take(_header_text(fields, header, reading))
        if value:
            yield f"{header.title()}: {value}"
