"""Checks for single config values: each takes the value as written and returns it, ready to use.

Rules this module keeps:
1. A bad value raises ValueError whose text says what is wrong AND what is expected; the
   loader places it at the value's line and column.
2. Returned values are in the form the rules use (phones in E.164, domains lowercase), so
   nothing downstream parses them again.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from email.errors import HeaderParseError
from email.headerregistry import Address

import phonenumbers
import pyrage
from pydantic import ValidationInfo

from proxy.archive.custody_keys import parse_key
from proxy.channels.sms.ringback import CADENCES, TWILIO_RING_TONES
from proxy.identity import canonical_domain, e164

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")


def domain(value: str) -> str:
    """A domain such as smith.example; subdomains are matched too, so no wildcard."""
    text = value.strip()
    if text.startswith(("*.", "@", ".")):
        bare = text.lstrip("*.@")
        raise ValueError(f"write the bare domain, e.g. '{bare}' (subdomains are included)")
    canonical = canonical_domain(text)
    if canonical is None or "." not in canonical:
        raise ValueError(f"'{value}' is not a domain name (expected e.g. 'smith.example')")
    if not all(_LABEL.match(label) for label in canonical.split(".")):
        raise ValueError(f"'{value}' is not a domain name (letters, digits and '-' only)")
    return canonical


def email_address(value: str) -> str:
    """An addr-spec, name@domain, as RFC 5322 reads it."""
    text = value.strip()
    try:
        parsed = Address(addr_spec=text)
    except (HeaderParseError, ValueError, IndexError) as error:
        raise ValueError(f"'{value}' is not an email address (expected name@domain)") from error
    if not parsed.username or not parsed.domain:
        raise ValueError(f"'{value}' is not an email address (expected name@domain)")
    try:
        checked_domain = domain(parsed.domain)
    except ValueError as error:
        raise ValueError(
            f"'{value}' is not an email address: its domain is not valid (expected name@domain)"
        ) from error
    return f"{parsed.username}@{checked_domain}"


def phone_number(value: str, info: ValidationInfo) -> str:
    """Any written form of a number; read with default_region when it lacks +country."""
    region = _region_from(info)
    number = e164(value, region)
    if number is None:
        if region is None and not value.strip().startswith("+"):
            raise ValueError(
                f"cannot read '{value}' as a phone number: write it with its +country code, "
                "or set default_region"
            )
        raise ValueError(
            f"cannot read '{value}' as a phone number (expected e.g. +44 20 7946 0958)"
        )
    return number


def region(value: str) -> str:
    """An ISO 3166 two-letter region that phonenumbers knows."""
    code = value.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"'{value}' is not a country code phonenumbers knows (expected e.g. US, GB)"
        )
    return code


def identifier(value: str) -> str:
    """A short id used inside rule ids."""
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"'{value}' is not a valid id (lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit)"
        )
    return value


def name(value: str) -> str:
    """A person's name or nickname: something a mention search can find."""
    if not value.strip():
        raise ValueError("must not be blank")
    if not any(char.isalnum() for char in value):
        raise ValueError(f"'{value}' has no letters or digits to look for")
    return " ".join(value.split())


def age_recipient(value: str) -> str:
    """An age X25519 recipient string (age1...)."""
    text = value.strip()
    try:
        pyrage.x25519.Recipient.from_str(text)
    except Exception as error:  # pyrage's RecipientError is not importable by a stable name
        raise ValueError(
            "not an age X25519 recipient (expected 'age1...', as printed by "
            "'nocontact contact keygen' or 'age-keygen -y')"
        ) from error
    return text


def custody_key(value: str) -> str:
    """A contact's custody public key (ed25519:<base64>), as `contact keygen` prints it."""
    text = value.strip()
    try:
        parse_key(text)
    except ValueError as error:
        raise ValueError(
            f"{error}; 'nocontact contact keygen' and 'nocontact contact pubkey' print it"
        ) from None
    return text


def web_url(value: str) -> str:
    """An http(s) URL with a host and no query or fragment; returned without a final '/'."""
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"'{value}' is not a web address (expected https://host/path)")
    try:
        parts.port  # noqa: B018 - reading it checks it; twilio's validator reads it per request
    except ValueError:
        raise ValueError(f"'{value}' has a port that is not a number from 0 to 65535") from None
    if parts.query or parts.fragment:
        raise ValueError(f"'{value}' has a query or fragment (expected https://host/path)")
    return urllib.parse.urlunsplit(parts).rstrip("/")


def portal_url(value: str) -> str:
    """A web_url whose path, the prefix the portal serves under, is plain segments: letters,
    digits, '-', '.', '_' and '~', none of them '.' or '..' (links are built from it)."""
    url = web_url(value)
    path = urllib.parse.urlsplit(url).path
    segments = path.split("/")[1:] if path else []
    if not all(_SEGMENT.match(s) and s not in (".", "..") for s in segments):
        raise ValueError(
            f"'{value}' has a path the portal cannot serve under (expected segments of "
            "letters, digits, '-', '.', '_' and '~', e.g. https://home.example/portal)"
        )
    return url


def network(value: str) -> str:
    """An IP address or network (CIDR), as ipaddress writes it; host bits must be zero."""
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as error:
        hint = " (host bits set: write the network's first address)" if _loose(value) else ""
        raise ValueError(
            f"'{value}' is not an IP address or network{hint} (expected e.g. 127.0.0.1, "
            "::1 or 10.0.0.0/8)"
        ) from error


def _loose(value: str) -> bool:
    """Whether `value` is a network written with host bits set (10.0.0.1/8)."""
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return False
    return True


def account_sid(value: str) -> str:
    """A Twilio account SID: AC and 32 hex digits."""
    if not _ACCOUNT_SID.match(value):
        raise ValueError("not a Twilio account SID (expected AC and 32 lowercase hex digits)")
    return value


def ring_tone(value: str) -> str:
    """A country code from Twilio's ringTone list whose ringing nocontact can play itself:
    held callers hear that same tone, so no other can be promised."""
    playable = ", ".join(sorted(CADENCES))
    if value not in TWILIO_RING_TONES:
        raise ValueError(f"{value!r} is not one of Twilio's ring tones (expected one of: "
                         f"{playable})")  # fmt: skip
    if value not in CADENCES:
        raise ValueError(
            f"nocontact cannot play Twilio's {value!r} ring tone to held callers, so they would "
            f"hear a different ringing from allowed ones (expected one of: {playable})"
        )
    return value


def _region_from(info: ValidationInfo) -> str | None:
    context = info.context if isinstance(info.context, dict) else {}
    found = context.get("default_region")
    return found if isinstance(found, str) else None


def loopback_host(host: str) -> bool:
    """Whether `host` names this machine by a loopback address or as localhost (no DNS
    lookup: a name that resolves to loopback today may not tomorrow)."""
    if host.strip("[]").lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*/?$")


def bucket_name(value: str) -> str:
    """An S3 bucket name: 3 to 63 lowercase letters, digits, '.' and '-', starting and
    ending with a letter or digit, no '..' and not an IP address."""
    if not _BUCKET.match(value) or ".." in value or _looks_like_ip(value):
        raise ValueError(
            f"'{value[:80]}' is not an S3 bucket name (3 to 63 lowercase letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    return value


def _looks_like_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def key_prefix(value: str) -> str:
    """A prefix for S3 keys, as path segments of safe characters; returned ending in '/'
    (or empty), so `prefix + key` is always a path below it."""
    if value == "":
        return value
    segments = value.rstrip("/").split("/")
    if not _KEY_PREFIX.match(value) or any(s in (".", "..") for s in segments):
        raise ValueError(
            f"'{value[:80]}' is not a key prefix (path segments of letters, digits and "
            "!_.*'()-, no leading '/', e.g. nocontact/)"
        )
    return value.rstrip("/") + "/"


def witness_key(value: str) -> str:
    """A witness's cosignature verifier key (name+keyid+base64, type 0x04), as
    `nocontact witness keygen` prints it."""
    from proxy.witness.cosignature import CosignatureError, WitnessKey  # noqa: PLC0415

    try:
        return WitnessKey.decode(value).encode()
    except CosignatureError as error:
        raise ValueError(f"{error}; 'nocontact witness keygen' prints it") from None
