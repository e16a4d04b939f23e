"""A part's body as a reader reads it: in each transfer encoding and charset it names.

Rules this module keeps:
1. The standard library's reading comes first. Where a part names several charsets, or
   writes its transfer encoding with a space, a tab or a comment ("base64 (as sent)"),
   or names it twice, readers differ, and each reading a reader could make is returned:
   the rules search them all.
2. Decoding is the standard library's (binascii, codecs); anything it cannot decode is
   read as UTF-8 with replacement, and noted as a defect. Every text is valid text.
3. A charset's RFC 2045 comment ("utf-16 (the charset)") is dropped, as a reader drops it.
   At most `_MAX_CHARSETS` distinct charsets are tried.
"""

from __future__ import annotations

import binascii
from email.message import Message
from email.utils import collapse_rfc2231_value

from proxy.normalize.parsing import PARSE_FAULTS
from proxy.normalize.valid import valid_text

_MAX_CHARSETS = 3


def decoded_payload(part: Message, defects: list[str]) -> str:
    """The part's text: in each transfer encoding and each charset it names, where it names
    several or writes one oddly (readers differ on which one wins, and a mail client reads
    "base64 (as sent)" as base64), so every reading a reader could make is searched."""
    readings = []
    for data in _payloads(part):
        readings += [_in_charset(data, charset, defects) for charset in _charsets(part)]
    return "\n".join(readings)


def _payloads(part: Message) -> list[bytes | str]:
    """The part's body in each transfer encoding it names: the standard library's reading,
    and, where a header is written in a way it does not read, the lenient one too."""
    try:
        data = part.get_payload(decode=True)
    except PARSE_FAULTS:
        data = None
    if not isinstance(data, bytes):
        return [_stored(part).decode("utf-8", errors="replace")]
    written = [
        value for name, value in part.raw_items()
        if name.lower() == "content-transfer-encoding" and isinstance(value, str)
    ]  # fmt: skip
    if len(written) <= 1 and all(value.lower() == _bare(value) for value in written):
        return [data]  # one encoding, written plainly: the standard library read it
    readings: list[bytes | str] = [data]
    body = _stored(part)
    for encoding in sorted({_bare(value) for value in written}):
        readings.append(_transfer_decoded(body, encoding))
    return readings


def _stored(part: Message) -> bytes:
    """The part's body as it arrived. The parser keeps it as ASCII text with surrogate
    escapes; `get_payload()` would decode it with the part's charset, and raises when the
    charset is written the RFC 2231 way (charset*=us-ascii'en'utf-8: a tuple)."""
    payload = getattr(part, "_payload", None)  # the stored form, read only
    if not isinstance(payload, str):
        return b""
    return payload.encode("ascii", errors="surrogateescape")


def _bare(value: str) -> str:
    """A header value without its RFC 2045 comment and whitespace, in lower case."""
    return value.split("(", 1)[0].strip().lower()


def _transfer_decoded(body: bytes, encoding: str) -> bytes:
    """`body` undone from a transfer encoding, by the standard library's decoders."""
    try:
        if encoding == "base64":
            return binascii.a2b_base64(body + b"=" * (-len(body.strip()) % 4))
        if encoding == "quoted-printable":
            return binascii.a2b_qp(body)
    except (binascii.Error, ValueError):
        pass
    return body


def _in_charset(data: bytes | str, charset: str, defects: list[str]) -> str:
    if isinstance(data, str):  # a payload the parser kept as text
        return valid_text(data)
    try:
        return valid_text(data.decode(charset, errors="replace"))
    except PARSE_FAULTS:  # an unknown charset, or a codec that cannot replace (idna)
        defects.append("unknown charset")
        return data.decode("utf-8", errors="replace")


def _charsets(part: Message) -> list[str]:
    """The part's charsets (at most `_MAX_CHARSETS` distinct), each without an RFC 2045
    comment ("utf-16 (the charset)"): compat32 keeps the comment in the value, and a mail
    client reads past it. UTF-8 when none is named."""
    try:
        params = part.get_params(failobj=[])
        values = [collapse_rfc2231_value(v) for k, v in params if k.lower() == "charset"]
    except PARSE_FAULTS:
        values = []
    charsets = []
    for value in values:
        charset = value.split("(", 1)[0].strip().strip('"').lower()
        if charset and charset not in charsets:
            charsets.append(charset)
    return charsets[:_MAX_CHARSETS] or ["utf-8"]
