"""The standard library's MIME parser, made safe to hand a crafted message.

Rules this module keeps:
1. compat32, with one change (`_ReadingPolicy`): the stdlib reads a Content-Type or
   Content-Disposition value by re-counting the quotes before every ';' (length x count of
   ';': 60,000 of them in a 60 KB value cost 4-9 s, inside the parser itself). A value
   over `parameter_cost` is read only as far as is quick, and the parameters that change
   how a part reads (charset, boundary, name, filename) are taken from the rest, by one
   bounded regex search, and kept.
2. A single-part message (most mail) has its body attached as the parser itself would
   attach it, without the parser's line-by-line loop: half the cost of reading a letter.
3. `ambiguous` says when a part was read in part, or one way of several (a type or a
   parameter given twice, which readers settle differently): the rules then scan every
   byte (`proxy.rules.scan`).
4. `PARSE_FAULTS` are the ways the stdlib fails on hostile input; callers catch them at
   the smallest scope that still lets them read the rest.
"""

from __future__ import annotations

import re
from email.errors import MessageError
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from typing import Any

from proxy.normalize.limits import LIMITS

_PARAMETER_HEADERS = frozenset({"content-type", "content-disposition"})
_KEPT_PARAMETER = re.compile(
    r'(?i)\b(charset|boundary|name|filename)\*?=(?:"[^"\r\n]{0,256}"|[^;"\s]{1,256})'
)


class _ReadingPolicy(Compat32):
    """compat32, with an overlong MIME parameter header read in part (rule 1):
    `email.message._parseparam` re-counts the quotes before every ';', so a value opening
    a quote and followed by 60,000 ';' cost it seconds, inside the parser itself."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if _overlong(name, value):
            value = _readable_part(value)
        return super().header_fetch_parse(name, value)


def _overlong(name: str, value: str) -> bool:
    """Whether the stdlib would take too long over a header's parameters (C-level count)."""
    return (
        len(value) * value.count(";") > LIMITS.parameter_cost and name.lower() in _PARAMETER_HEADERS
    )


def _readable_part(value: str) -> str:
    """As much of `value` as the stdlib reads quickly, then the parameters that change how
    the part reads, taken from the rest by one linear search (each attempt bounded)."""
    keep = max(1, LIMITS.parameter_cost // len(value))  # the ';' a quick read may hold
    at = -1
    for _ in range(keep):
        at = value.find(";", at + 1)
    head, rest = value[:at], value[at:]
    kept: dict[str, str] = {}
    for match in _KEPT_PARAMETER.finditer(rest):
        kept.setdefault(match.group(1).lower(), match.group(0))
    return head + "".join(f"; {parameter}" for parameter in kept.values())


_PARSER = BytesParser(policy=_ReadingPolicy())

# Parsing hostile input can fail in many ways inside the stdlib; each is caught at the
# smallest scope that still lets us read the rest.
PARSE_FAULTS = (
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


def parse_head(source: bytes, header_end: int) -> Message:
    """The standard library's parse of the header block of `source` (ending at
    `header_end`), without its body: enough to read the senders."""
    return _PARSER.parsebytes(source[:header_end], headersonly=True)


def with_body(head: Message, source: bytes, header_end: int) -> Message:
    """The whole message, given its header block `head` as `parse_head` read it.

    A single-part message (most mail) has its body attached to `head` as the parser itself
    would (ASCII with surrogate escapes, as one string) without the parser's line-by-line
    loop, which was half the cost of reading a 10 KB letter; anything else, or a header
    block the parser finds fault with, is parsed whole.
    """
    if head.defects or head.get_content_maintype() in ("multipart", "message"):
        return _PARSER.parsebytes(source)
    head.set_payload(source[header_end:].decode("ascii", errors="surrogateescape"))
    return head


def ambiguous(part: Message) -> bool:
    """Whether the part was read in part (an overlong parameter header, _ReadingPolicy) or
    one way of several: a Content-Type given twice, or a parameter of it (a boundary) named
    twice, which readers settle differently. The linear scan then reads every byte."""
    types = 0
    for name, value in part.raw_items():
        if _overlong(name, value):
            return True
        types += name.lower() == "content-type"
    if types > 1:
        return True
    try:
        names = [name.lower() for name, _ in part.get_params(failobj=[])[1:]]
    except PARSE_FAULTS:
        return True
    return len(names) != len(set(names))
