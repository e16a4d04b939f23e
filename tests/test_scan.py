"""The linear scan: what a message past the reading caps still cannot hide."""

from __future__ import annotations

import base64
import quopri

import pytest

from proxy.rules.scan import OVERLAP, WINDOW, scan
from tests.factories import make_rules

BOOK = make_rules().scan


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"saw Mark Smith today", "people.mark.name"),
        (b"saw MARK\r\n SMITH today", "people.mark.name"),
        (b"Marky again", "people.mark.aliases"),
        (b"write to mark.smith@gmail.com.", "people.mark.emails"),
        (b"write to marksmith@gmail.com", "people.mark.emails"),
        (b"a@mail.markscompany.example", "people.mark.domains"),
        (b"a@notmarkscompany.example", None),
        (b"x@markscompany.example wrote", "people.mark.domains"),
        (b"call (555) 010-0199 now", "people.mark.phones"),
        (b"call +1 555 010 0199 now", "people.mark.phones"),
        (b"call 001-555-010-0199 now", "people.mark.phones"),
        (b"ring +44 20 7946 0958", "people.mark.phones"),
        (b"ring 020 7946 0958", "people.mark.phones"),
        (b"carol@example.net says hi", "intermediaries.carol"),
        (b"Mark Smithson is someone else", None),
        (b"order 9555010019955 shipped", None),
        (b"markyard", None),
    ],
)
def test_scan_finds_each_kind_of_identity_at_word_bounds(data: bytes, rule: str | None) -> None:
    """Names, addresses, domains and numbers are found, and only as whole words."""
    found = scan(data, BOOK)
    assert (found.rule_id if found else None) == rule


@pytest.mark.parametrize(
    "wrapped",
    [
        base64.encodebytes(b"hello from Mark Smith, again"),
        base64.encodebytes("hello from Mark Smith, again".encode("utf-16")),
        quopri.encodestring("Caf\u00e9 with Mark=Smith".encode().replace(b"=", b" ") * 3),
        b"Subject: =?utf-8?b?" + base64.b64encode(b"Mark Smith") + b"?=",
        b"Subject: =?iso-8859-1?q?M=E1rk_Smith?=",
    ],
)
def test_scan_reads_through_transfer_encodings(wrapped: bytes) -> None:
    """Base64 blocks, quoted-printable and RFC 2047 words are decoded before searching."""
    found = scan(b"junk\r\n" + wrapped + b"\r\nmore junk", BOOK)
    assert found is not None
    assert found.rule_id == "people.mark.name"


def test_a_name_across_two_windows_is_found() -> None:
    """Windows overlap, so a name straddling a window's end is still read whole."""
    data = b"x" * (WINDOW - 4) + b" Mark Smith " + b"y" * 10
    found = scan(data, BOOK)
    assert found is not None
    assert len(b" Mark Smith ") < OVERLAP


def test_a_name_deep_in_a_large_message_is_found() -> None:
    """Nothing past the first window is skipped."""
    data = b"filler words here\r\n" * (3 * WINDOW // 20) + b"regards, Marky\r\n"
    found = scan(data, BOOK)
    assert found is not None
    assert found.rule_id == "people.mark.aliases"


def test_a_binary_attachment_is_not_read_as_text() -> None:
    """Base64 that decodes to a binary (NULs where text has none) is not searched: a
    picture's bytes are no mention, and folding them would cost the scan dearly."""
    picture = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"Mark Smith" + bytes(range(256)) * 8
    assert scan(b"junk\r\n" + base64.encodebytes(picture) + b"\r\n", BOOK) is None
