"""The linear scan: what a message past the reading caps still cannot hide.

Rules this module keeps:
1. Used when close reading stopped at a cap (`InboundMessage.complete` is False, see
   `proxy.normalize.limits`): every byte of the message is searched, in windows of
   `WINDOW` bytes that overlap by `OVERLAP`, so memory stays bounded and nothing that
   straddles two windows is missed.
2. One Aho-Corasick automaton (`ScanBook`, compiled with the rulebook) holds every blocked
   name, alias and display name, every blocked and intermediary address (as written and
   canonical), every blocked domain (as `@domain`, and `.domain` for its subdomains), all
   folded as messages are (`proxy.fold`). Numbers are matched in a digits-only projection
   of the text, against each blocked number's national digits, alone or after its country
   code or a trunk or international prefix.
3. What it reads, per window: the bytes as UTF-8, the same with quoted-printable undone,
   base64 blocks decoded (as UTF-16 if every other byte is NUL; not at all if they decode
   to a binary, with NULs elsewhere in their first 4 KiB), RFC 2047 encoded words decoded
   one by one (`proxy.normalize.words`), and the text between HTML tags joined up. Cost is linear
   in the message: C-level passes (decode, translate, regex, automaton) and a Python step
   per match, never per character.
4. A match stands only at word boundaries, as in the close reading: "Markus" is not
   "Mark", and a number inside a longer run of digits is not his number.
5. Pure and total: bytes and a `ScanBook` in, the first matching rule out; never raises.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

import ahocorasick_rs

from proxy.fold import fold
from proxy.normalize.words import decode_word, encoded_words

WINDOW = 1 << 20
OVERLAP = 4 << 10
_TAG = re.compile(rb"<[^<>]{0,256}>")
_QUOTED_PRINTABLE = re.compile(rb"=(?:[0-9A-Fa-f]{2}|\r?\n)")  # an escape or a soft break
# Lines of base64 as MIME writes them (76 columns; 1,000 allows any encoder), found from
# the line feed before them: a literal start lets the regex engine skip ahead in C.
_BASE64_BLOCK = re.compile(rb"\n((?:[A-Za-z0-9+/]{16,1000}={0,2}\r?\n)+)")
_SNIFF = 4096  # bytes looked at to tell decoded text from a binary attachment
_PHONE_SEPARATORS = b" ().-/\t"  # dropped from the digits projection
_DIGITS = bytes(c if 0x30 <= c <= 0x39 else 0x7C for c in range(256))  # else '|'

_MAX_PREFIX = 5  # "011" + a country code of up to 3 digits is the longest lead before a number


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What one pattern stands for: the rule it belongs to, and how it is bounded."""

    rule_id: str
    what: str
    intermediary: bool = False
    phone_leads: frozenset[str] = frozenset()  # digits that may stand before a number


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanBook:
    """The automata of the linear scan: folded words, and national phone digits."""

    words: ahocorasick_rs.AhoCorasick | None
    word_targets: tuple[Target, ...]
    phones: ahocorasick_rs.AhoCorasick | None
    phone_targets: tuple[Target, ...]


def compile_scan(words: dict[str, Target], phones: dict[str, Target]) -> ScanBook:
    """A `ScanBook` from folded words and national phone digits, each with its target."""
    words = {word: target for word, target in words.items() if word}
    return ScanBook(
        words=ahocorasick_rs.AhoCorasick(list(words)) if words else None,
        word_targets=tuple(words.values()),
        phones=ahocorasick_rs.AhoCorasick(list(phones)) if phones else None,
        phone_targets=tuple(phones.values()),
    )


def scan(raw: bytes, book: ScanBook, start: int = 0, end: int | None = None) -> Target | None:
    """The first target named anywhere in raw[start:end] (module rules), or None."""
    if book.words is None and book.phones is None:
        return None
    for window in _windows(raw, start, len(raw) if end is None else end):
        for text in _readings(window):
            found = _find(text, book)
            if found is not None:
                return found
    return None


def _windows(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    while True:
        yield raw[start : min(end, start + WINDOW + OVERLAP)]
        start += WINDOW
        if start >= end:
            return


def _readings(window: bytes) -> Iterator[bytes]:
    """What a reader could see in `window`, as UTF-8 bytes (module rule 3)."""
    yield window
    if _QUOTED_PRINTABLE.search(window):
        yield binascii.a2b_qp(window)  # junk decodes to junk: it never raises
    for block in _BASE64_BLOCK.finditer(window):
        try:
            decoded = binascii.a2b_base64(block.group(1))
        except (binascii.Error, ValueError):
            continue
        text = _text_of(decoded)
        if text is not None:
            yield text
    words = encoded_words(window)  # a flood of one word is decoded once
    if words:
        yield " ".join(decode_word(word) for word in words).encode("utf-8", "replace")
    if b"<" in window:  # markup: the text between the tags, as a browser joins it
        yield b"".join(_TAG.split(window))  # twice as fast as sub on 250,000 tags


def _text_of(decoded: bytes) -> bytes | None:
    """Decoded base64 as UTF-8 text: itself, or from UTF-16; None for a binary (rule 3)."""
    head = decoded[:_SNIFF]
    if b"\x00" not in head:
        return decoded
    for parity, codec in ((1, "utf-16-le"), (0, "utf-16-be")):
        if head[parity::2].count(0) * 10 >= len(head) * 4:  # most of every other byte
            return decoded.decode(codec, errors="replace").encode("utf-8", errors="replace")
    return None


def _find(data: bytes, book: ScanBook) -> Target | None:
    if book.words is not None:
        folded = fold(data.decode("utf-8", errors="replace"))
        last = len(folded) - 1
        for index, start, end in book.words.find_matches_as_indexes(folded, overlapping=True):
            if start > 0 and folded[start - 1].isalnum() and folded[start] not in "@.":
                continue
            if end <= last and (
                folded[end].isalnum() or folded[end] == "-"
                or (folded[end] == "." and end < last and folded[end + 1].isalnum())
            ):  # fmt: skip
                continue
            return book.word_targets[index]
    if book.phones is not None:
        digits = data.translate(_DIGITS, _PHONE_SEPARATORS).decode("ascii")
        for index, start, end in book.phones.find_matches_as_indexes(digits, overlapping=True):
            if end < len(digits) and digits[end].isdigit():
                continue
            target = book.phone_targets[index]
            lead = _lead(digits, start)
            if lead == "" or lead in target.phone_leads:
                return target
    return None


def _lead(digits: str, start: int) -> str | None:
    """The digits just before `start` (None if more than any prefix could be)."""
    first = start
    while first > 0 and digits[first - 1].isdigit():
        first -= 1
        if start - first > _MAX_PREFIX:
            return None
    return digits[first:start]
