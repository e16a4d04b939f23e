"""Canonical forms of the handles people write with: addresses, domains, phone numbers.

Rules this module keeps:
1. Pure functions of their arguments; no IO, no clock, no globals that change.
2. The same function canonicalizes the config and the message, so a blocklist entry and a
   sender match exactly when they name the same mailbox or line.
3. Canonical forms err towards matching: two spellings that one mailbox receives (case,
   +tags, Gmail's dots) have one form. A miss would show the survivor his message.
4. Bad input returns None, never raises: a forged header must not crash the rules.
"""

from __future__ import annotations

import functools

import phonenumbers

# Providers that deliver `first.last@` and `firstlast@` to the same mailbox.
_DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
_PLUS_SEPARATORS = ("+",)


def canonical_domain(domain: str) -> str | None:
    """Lowercase, IDNA-encoded, without a trailing dot; None if it is not a domain."""
    text = domain.strip().rstrip(".").lower()
    if not text or " " in text or "@" in text:
        return None
    try:
        ascii_form = text.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None
    return ascii_form or None


def canonical_email(address: str) -> str | None:
    """The mailbox an address reaches: local part without +tag, Gmail dots dropped.

    >>> canonical_email("Mark.Smith+news@GoogleMail.com")
    'marksmith@gmail.com'
    """
    text = address.strip().strip("<>").strip()
    local, at, domain_part = text.rpartition("@")
    if not at or not local or not domain_part:
        return None
    domain = canonical_domain(domain_part)
    if domain is None:
        return None
    domain = _DOMAIN_ALIASES.get(domain, domain)
    local = local.lower()
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        local = local[1:-1]
    for separator in _PLUS_SEPARATORS:
        local = local.split(separator, 1)[0]
    if domain in _DOTLESS_DOMAINS:
        local = local.replace(".", "")
    if not local:
        return None
    return f"{local}@{domain}"


def domain_suffixes(domain: str) -> list[str]:
    """Every parent of a domain, itself first: a.b.example.com -> [..., example.com, com]."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


@functools.lru_cache(maxsize=4096)  # the same few numbers call and text again and again
def e164(number: str, region: str | None) -> str | None:
    """A phone number in E.164 (+15550100199), or None if it cannot be read as one.

    `region` (ISO 3166 alpha-2) is used for numbers written without a +country code.
    """
    text = number.strip()
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
