"""Fuzz target: what a browser sends the contacts' portal, through the pure parts that read it.

The input is split at its first two newlines: a query string (as the held-items list and
the report read theirs), a form body (as the export form's), and the rest, which serves
as a file name and bytes a sender chose (an attachment) and as a passkey's JSON answer.
All are read as aiohttp reads them (UTF-8 with surrogate escapes for the query, the form
parsed with urllib). For each input this checks that:
1. the list's query (`filters.parse_query`) gives a `ListQuery` or `FilterProblem` (a
   400 with the reason) and nothing else, and a query it accepts links to its pages;
2. the export and report forms' filters (`evidence._filters`) give a selection or
   `ValueError` (a 400) and nothing else;
3. a part's name becomes a safe file name (`evidence.part_name`): no path separator, no
   control, format or separator character but the space, never empty, at most
   `MAX_NAME` characters; its `Content-Disposition` is printable ASCII with the name in
   full as RFC 5987 percent-encoding;
4. a part is shown inline (`media.inline_type`) only as a type from the portal's table
   whose magic bytes it begins with;
5. a passkey answer (`passkeys.asserted`, `passkeys.registered`) is refused with None and
   never raises, whatever its JSON;
6. every string produced encodes as UTF-8, and all of it takes under
   `fuzz.invariants.LIMIT_SECONDS`.

Run with `scripts/fuzz portal [SECONDS]`.
"""

from __future__ import annotations

import contextlib
import string
import unicodedata
import urllib.parse
from datetime import UTC, datetime

from multidict import MultiDict

from fuzz.invariants import InvariantBroken, assert_utf8, guarded, timed
from proxy.portal import evidence, media, passkeys
from proxy.portal.filters import MAX_PAGE, FilterProblem, parse_query

PEOPLE = ("mark", "jen")
PARTY = passkeys.relying_party("https://portal.home.example")
_STORED = passkeys.Passkey(credential_id="AAAA", public_key="pQECAyYgASFYIA", sign_count=1,
                           name="phone", created=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one input."""
    query_bytes, _, rest = data.partition(b"\n")
    form_bytes, _, chosen = rest.partition(b"\n")
    query = MultiDict(urllib.parse.parse_qsl(query_bytes.decode("utf-8", "surrogateescape"),
                                             keep_blank_values=True))  # fmt: skip
    form = MultiDict(urllib.parse.parse_qsl(form_bytes.decode("utf-8", "replace"),
                                            keep_blank_values=True))  # fmt: skip
    text = chosen.decode("utf-8", "replace")
    with timed(len(data)):
        _list_query(query)
        with contextlib.suppress(ValueError):  # a 400 with the form again
            evidence._filters(form)
        _part_name(text, len(data) % 50 + 1, str(form.get("type", "")))
        _inline(str(form.get("type", "")), chosen)
        _passkey(text)


def _list_query(query: MultiDict[str]) -> None:
    try:
        parsed = parse_query(query, people=PEOPLE)
    except FilterProblem as problem:
        assert_utf8(str(problem))
        return
    if parsed.page >= MAX_PAGE:
        return
    link = parsed.link(parsed.page + 1)
    assert_utf8(link)
    again = parse_query(MultiDict(urllib.parse.parse_qsl(link[1:])), people=PEOPLE)
    if again.page != parsed.page + 1:
        raise InvariantBroken("a page link does not lead to its page")


def _part_name(name: str, number: int, content_type: str) -> None:
    safe = evidence.part_name(name, number, content_type)
    if not safe or len(safe) > evidence.MAX_NAME or "/" in safe or "\\" in safe:
        raise InvariantBroken(f"unsafe part name {safe!r}")
    if any(unicodedata.category(c)[0] in "CZ" and c != " " for c in safe) or safe[0] == ".":
        raise InvariantBroken(f"unsafe character in part name {safe!r}")
    header = evidence.disposition(safe)
    if not set(header) <= _PRINTABLE:
        raise InvariantBroken(f"Content-Disposition is not printable ASCII: {header!r}")
    full = header.split("filename*=UTF-8''", 1)[1]
    if urllib.parse.unquote(full) != safe:
        raise InvariantBroken("Content-Disposition does not carry the name in full")


def _inline(claimed: str, data: bytes) -> None:
    shown = media.inline_type(claimed, data)
    if shown is not None and media._sniffed(data) != shown:
        raise InvariantBroken(f"inline as {shown} without its magic bytes")


def _passkey(response: str) -> None:
    answer = passkeys.Assertion(response=response, challenge=b"\x01" * 32)
    if passkeys.asserted(PARTY, answer, passkeys=[_STORED], user_handle="AAAA") is not None:
        raise InvariantBroken("a made-up passkey answer was accepted")
    made = passkeys.registered(PARTY, response, challenge=b"\x01" * 32, name="x",
                               now=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    if made is not None:
        raise InvariantBroken("a made-up passkey registration was accepted")


test_one_input = guarded(check)
