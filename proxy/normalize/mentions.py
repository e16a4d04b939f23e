"""Finding addresses and phone numbers written inside a message's text.

Rules this module keeps:
1. A message that quotes his address or number ("From: mark@...", "call him on 555 ...")
   is about him; these finders turn such text into identities for the passive rules.
2. Cost is linear in the text: a cheap scan for candidates ('@', runs of digits), then the
   real parsers (canonical_email, phonenumbers) only on the few candidates.
3. Never raises on any text.
4. Bounded: at most `limit` of each kind are parsed; the caller learns if there were more
   (the rules then scan the whole message linearly, `proxy.rules.scan`).
5. Found as a reader reads them: digits of any script (full-width, Arabic-Indic), any
   dash, a full-width at sign, ideographic full stops and invisible format characters (a
   zero-width space inside an address) are made plain first, in one C-level translate.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from itertools import islice

from proxy.identity import canonical_email, e164
from proxy.message import Identity, IdentityKind

# The end of a local part just before an '@', and a domain just after it. Searching only
# around each '@' keeps the scan linear (a pattern that starts with the local part would
# retry every word of the text).
_LOCAL_TAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]{1,64}\Z")
_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_LOCAL_MAX = 64
# A phone number as people write it: digits with spaces, dots, dashes, slashes or brackets
# between them; the '+' or '(' before it and the 7-digit minimum are checked after. In
# ASCII text (most mail) it is found in a copy with every digit written as 0 (same length,
# same places): a pattern that starts with one literal character is searched for in a
# tight C loop, while a class of ten is tried at every position (28 -> 11 us for 10 KB).
# Other text keeps the class: translating it costs more than the search saves.
_PHONE = re.compile(r"[0-9][0-9 ().\-/]{5,22}[0-9]")
_PHONE_ZEROED = re.compile(r"0[0 ().\-/]{5,22}0")
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
_MIN_PHONE_DIGITS = 7


def addresses_in(text: str, source: str) -> Iterator[Identity]:
    """Every email address written in `text`, canonicalized."""
    at = text.find("@")
    while at != -1:
        local = _LOCAL_TAIL.search(text, max(0, at - _LOCAL_MAX), at)
        domain = _DOMAIN.match(text, at + 1)
        if local is not None and domain is not None:
            canonical = canonical_email(f"{local.group()}@{domain.group()}")
            if canonical is not None:
                yield Identity(kind=IdentityKind.EMAIL, value=canonical, source=source)
        at = text.find("@", at + 1)


def phones_in(text: str, region: str | None, source: str) -> Iterator[Identity]:
    """Every phone number written in `text`, in E.164."""
    if text.isascii():
        matches = _PHONE_ZEROED.finditer(text.translate(_DIGITS_AS_ZERO))
    else:
        matches = _PHONE.finditer(text)
    for match in matches:
        start, end = match.span()
        if (start > 0 and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
            continue  # digits inside a longer token (an order id, a hash): not a number
        candidate = text[start:end]
        if sum(c.isdigit() for c in candidate) < _MIN_PHONE_DIGITS:
            continue
        if start > 0 and text[start - 1] in "+(":
            candidate = text[start - 1] + candidate
        number = e164(candidate, region)
        if number is not None:
            yield Identity(kind=IdentityKind.PHONE, value=number, source=source)


class _PlainTable(dict[int, str]):
    """A translate table to the plain form addresses and numbers are found in (rule 5),
    each character worked out the first time it is seen."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        category = unicodedata.category(char)
        if category == "Cf":
            plain = ""  # zero-width and other invisible format characters
        elif category == "Nd":
            plain = str(unicodedata.digit(char))
        elif category == "Pd":
            plain = "-"
        elif char in _FULL_STOPS:
            plain = "."
        else:
            nfkc = unicodedata.normalize("NFKC", char)
            plain = nfkc if len(nfkc) == 1 and nfkc.isascii() else char
        self[codepoint] = plain
        return plain


_FULL_STOPS = frozenset("\u3002\uff61\uff0e\ufe52")
_PLAIN = _PlainTable({c: chr(c) for c in range(128)})


def mentions_in(
    text: str, region: str | None, source: str = "text", *, limit: int = 1_000
) -> tuple[tuple[Identity, ...], bool]:
    """Addresses and numbers written in `text`, each once, at most `limit` of each kind
    read (a precise parse costs microseconds each); and whether that was all of them."""
    text = text.translate(_PLAIN)
    addresses = list(islice(addresses_in(text, source), limit + 1))
    phones = list(islice(phones_in(text, region, source), limit + 1))
    complete = len(addresses) <= limit and len(phones) <= limit
    return tuple(dict.fromkeys([*addresses[:limit], *phones[:limit]])), complete
