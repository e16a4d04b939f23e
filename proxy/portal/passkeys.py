"""Passkeys (WebAuthn) as a contact's optional second factor: py_webauthn's ceremonies, total.

Rules this module keeps:
1. The relying party is the portal's `public_url`: its host is the RP id, and its
   scheme://host[:port] is the one origin accepted (`relying_party`). Browsers refuse an
   IP address as an RP id: passkeys need a public_url with a name (or `localhost`).
2. Passkeys are discoverable (resident key required); user verification is preferred, not
   required. Login options carry no `allowCredentials`, so asking for them says nothing
   about which accounts exist or have passkeys; the passkey that answers must be one of
   the account's, and the user handle it returns (if any) the account's.
3. A response is attacker input: one over `MAX_RESPONSE` characters, not a JSON object, or
   anything py_webauthn refuses or raises on, is None (`registered`, `asserted`), never an
   exception. A missing challenge (never issued, expired, used) is None too.
4. The sign counter must grow unless the stored and the new one are both 0 (WebAuthn
   §6.1.1, step 21 of §7.2: a counter that does not grow may mean a cloned
   authenticator); such an assertion is refused and the stored counter is kept.
5. A passkey record holds the credential id and COSE public key (base64url), the sign
   counter, the contact's name for it (`clean_name`: one line, at most `NAME_CHARS`) and
   when it was added; `listed` reads them from an account record, skipping damaged ones.
6. Pure: challenges and `now` are arguments; nothing here reads the clock, the disk or
   logs. Randomness only in `new_user_handle`.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import webauthn
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

MAX_RESPONSE = 16 * 1024  # characters: a real response is well under 2,000
MOST = 10  # passkeys per account, so a record stays small
NAME_CHARS = 64
TIMEOUT_MS = 60_000  # what the browser is asked to wait for the contact's touch
RP_NAME = "nocontact portal"


@dataclass(frozen=True, slots=True, kw_only=True)
class RelyingParty:
    """Who the passkeys are for: the portal, as contacts reach it (rule 1)."""

    id: str
    origin: str
    name: str = RP_NAME


@dataclass(frozen=True, slots=True, kw_only=True)
class Passkey:
    """One registered passkey of a contact (rule 5)."""

    credential_id: str  # base64url, as the browser names it
    public_key: str = field(repr=False)  # base64url COSE key
    sign_count: int
    name: str
    created: datetime

    def to_json(self) -> dict[str, Any]:
        return {"credential_id": self.credential_id, "public_key": self.public_key,
                "sign_count": self.sign_count, "name": self.name,
                "created": self.created.isoformat()}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> Passkey | None:
        try:
            found = cls(credential_id=str(data["credential_id"]),
                        public_key=str(data["public_key"]), sign_count=int(data["sign_count"]),
                        name=str(data["name"]),
                        created=datetime.fromisoformat(data["created"]))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Assertion:
    """A login's passkey answer and the challenge issued for that login attempt (None if
    none is live: never issued, expired or already used)."""

    response: str = field(repr=False)
    challenge: bytes | None = field(repr=False)


def relying_party(public_url: str) -> RelyingParty:
    """The RP id and origin of the portal at `public_url` (rule 1)."""
    parts = urllib.parse.urlsplit(public_url)
    host = (parts.hostname or "").rstrip(".")
    port = parts.port
    default = {"https": 443, "http": 80}.get(parts.scheme)
    shown = f"[{host}]" if ":" in host else host
    origin = f"{parts.scheme}://{shown}" + (f":{port}" if port not in (None, default) else "")
    return RelyingParty(id=host, origin=origin)


def new_user_handle() -> str:
    """A random WebAuthn user handle for an account (base64url): nothing about the contact."""
    return bytes_to_base64url(secrets.token_bytes(32))


def clean_name(text: str) -> str:
    """A contact's name for a passkey as one line of printable text, cut to NAME_CHARS."""
    line = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(line.split())[:NAME_CHARS].strip()


def listed(record: dict[str, Any]) -> list[Passkey]:
    """The passkeys an account record holds, oldest first (rule 5)."""
    found = record.get("passkeys")
    parsed = [Passkey.from_json(item) for item in found] if isinstance(found, list) else []
    return [passkey for passkey in parsed if passkey is not None]


def stored(passkeys: Sequence[Passkey], used: Passkey) -> list[dict[str, Any]]:
    """The account record's passkeys after `used` (with its new counter) replaces its old self."""
    return [(used if p.credential_id == used.credential_id else p).to_json() for p in passkeys]


def registration_options(
    party: RelyingParty, *, user_handle: str, login: str, existing: Sequence[Passkey],
    challenge: bytes,
) -> str:  # fmt: skip
    """The options for navigator.credentials.create(), as JSON for the browser (rule 2)."""
    options = webauthn.generate_registration_options(
        rp_id=party.id, rp_name=party.name, user_name=login, user_id=_bytes(user_handle),
        challenge=challenge, timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=_bytes(p.credential_id))
                             for p in existing],
    )  # fmt: skip
    return webauthn.options_to_json(options)


def authentication_options(party: RelyingParty, *, challenge: bytes) -> str:
    """The options for navigator.credentials.get(), as JSON: no allowCredentials (rule 2)."""
    options = webauthn.generate_authentication_options(
        rp_id=party.id, challenge=challenge, timeout=TIMEOUT_MS,
        user_verification=UserVerificationRequirement.PREFERRED,
    )  # fmt: skip
    return webauthn.options_to_json(options)


def registered(
    party: RelyingParty, response: str, *, challenge: bytes | None, name: str, now: datetime
) -> Passkey | None:
    """The passkey a navigator.credentials.create() response registers, if it answers
    `challenge` from the portal's origin; else None (rule 3)."""
    data = _parsed(response)
    if data is None or challenge is None:
        return None
    try:  # py_webauthn parses attacker input: whatever it raises is a refusal (rule 3)
        verified = webauthn.verify_registration_response(
            credential=data, expected_challenge=challenge, expected_rp_id=party.id,
            expected_origin=party.origin, require_user_verification=False,
        )  # fmt: skip
    except Exception:
        return None
    return Passkey(credential_id=bytes_to_base64url(verified.credential_id),
                   public_key=bytes_to_base64url(verified.credential_public_key),
                   sign_count=verified.sign_count, name=name, created=now)  # fmt: skip


def asserted(
    party: RelyingParty, assertion: Assertion, *, passkeys: Sequence[Passkey], user_handle: str
) -> Passkey | None:
    """The account's passkey that signed the assertion's challenge from the portal's
    origin, with its new counter; None for anything else (rules 2 to 4)."""
    data = _parsed(assertion.response)
    if data is None or assertion.challenge is None:
        return None
    named = _canonical(data.get("rawId"))
    found = [passkey for passkey in passkeys if passkey.credential_id == named]
    inner = data.get("response")
    handle = inner.get("userHandle") if isinstance(inner, dict) else None
    if not found or (handle is not None and _canonical(handle) != user_handle):
        return None
    passkey = found[0]
    try:  # rule 3, as above; py_webauthn refuses a counter that did not grow (rule 4)
        verified = webauthn.verify_authentication_response(
            credential=data, expected_challenge=assertion.challenge, expected_rp_id=party.id,
            expected_origin=party.origin, credential_public_key=_bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count, require_user_verification=False,
        )  # fmt: skip
    except Exception:
        return None
    return replace(passkey, sign_count=verified.new_sign_count)


def _parsed(response: str) -> dict[str, Any] | None:
    if not response or len(response) > MAX_RESPONSE:
        return None
    try:
        data = json.loads(response)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _canonical(text: Any) -> str | None:
    """base64url text re-encoded the one way the portal stores it (no padding); None if it
    is not base64url."""
    if not isinstance(text, str) or len(text) > MAX_RESPONSE:
        return None
    try:
        return bytes_to_base64url(base64url_to_bytes(text))
    except ValueError:  # binascii.Error is a ValueError
        return None


def _bytes(text: str) -> bytes:
    return base64url_to_bytes(text)
