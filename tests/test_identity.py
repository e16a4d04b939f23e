"""Canonical forms: one mailbox, one line, however the address or number is written."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.identity import canonical_domain, canonical_email, domain_suffixes, e164

EMAILS = [
    ("mark.smith@gmail.com", "marksmith@gmail.com"),
    ("Mark.Smith@GMAIL.com", "marksmith@gmail.com"),
    ("m.a.r.k.smith+court@googlemail.com", "marksmith@gmail.com"),
    ("<mark@Smith-Family.example>", "mark@smith-family.example"),
    ("mark.smith+x@smith-family.example", "mark.smith@smith-family.example"),
    ("mark@münchen.example", "mark@xn--mnchen-3ya.example"),
    ("mark@example.com.", "mark@example.com"),
]


@pytest.mark.parametrize(("written", "canonical"), EMAILS)
def test_canonical_email(written: str, canonical: str) -> None:
    """Case, +tags, Gmail dots and googlemail all reach one canonical mailbox."""
    assert canonical_email(written) == canonical


@pytest.mark.parametrize("junk", ["", "@", "mark@", "@example.com", "no at sign", "+@gmail.com"])
def test_not_an_address(junk: str) -> None:
    """Text that names no mailbox has no canonical form."""
    assert canonical_email(junk) is None


def _gmail_variants() -> st.SearchStrategy[str]:
    local = "marksmith"

    @st.composite
    def variant(draw: st.DrawFn) -> str:
        chars = []
        for char in local:
            chars.append(char.upper() if draw(st.booleans()) else char)
            if draw(st.booleans()):
                chars.append(".")
        tag = draw(st.one_of(st.just(""), st.text("abcxyz0123-_.", min_size=0, max_size=8)))
        domain = draw(st.sampled_from(["gmail.com", "GMail.COM", "googlemail.com"]))
        plus = f"+{tag}" if draw(st.booleans()) else ""
        return "".join(chars) + plus + "@" + domain

    return variant()


@given(_gmail_variants())
def test_every_gmail_variant_is_one_mailbox(address: str) -> None:
    """Every case, plus-tag and dot variant of a Gmail address has the same canonical form."""
    assert canonical_email(address) == "marksmith@gmail.com"


NUMBERS = ["(555) 010-0199", "555.010.0199", "555 010 0199", "+1 555 010 0199", "+15550100199",
           "1-555-010-0199", "tel:+1-555-010-0199"]  # fmt: skip


@pytest.mark.parametrize("written", NUMBERS)
def test_written_numbers_are_one_line(written: str) -> None:
    """A US number in any written form reads as one E.164 number."""
    assert e164(written, "US") == "+15550100199"


def test_region_only_fills_a_missing_country_code() -> None:
    """A number with +country ignores the default region; one without needs it."""
    assert e164("+44 20 7946 0958", "US") == "+442079460958"
    assert e164("020 7946 0958", "GB") == "+442079460958"
    assert e164("020 7946 0958", None) is None


@pytest.mark.parametrize("junk", ["", "abc", "12", "+"])
def test_not_a_number(junk: str) -> None:
    """Text that is not a phone number has no E.164 form."""
    assert e164(junk, "US") is None


def test_domain_suffixes_and_idna() -> None:
    """A domain lists itself and every parent; unicode domains are IDNA-encoded."""
    assert domain_suffixes("a.b.example") == ["a.b.example", "b.example", "example"]
    assert canonical_domain("MÜNCHEN.example.") == "xn--mnchen-3ya.example"
    assert canonical_domain("two words.example") is None


@given(st.text())
def test_canonical_forms_never_raise(text: str) -> None:
    """Arbitrary text never makes the canonicalizers raise."""
    canonical_email(text)
    canonical_domain(text)
    e164(text, "US")
