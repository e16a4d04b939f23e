"""One-time enrollment links: `<public_url>/enroll/<token>`.

Rules this module keeps:
1. A token is 256 random bits (`secrets.token_urlsafe(32)`); only its SHA-256 is stored, so
   a copy of the state directory enrolls no one.
2. An invitation lasts `LIFETIME` (24 hours) and is used once; a new one for the same
   contact replaces the old (one live link per contact).
3. `match` compares digests in constant time and says only "this contact" or nothing:
   unknown, used and expired tokens look the same.
4. Pure: values and `now` in, values out; the store is the caller's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

LIFETIME = timedelta(hours=24)
TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class Invitation:
    """A live invitation as stored: whose, the token's digest, and when it expires."""

    contact: str
    digest: str
    expires: datetime

    def to_json(self) -> dict[str, Any]:
        return {"contact": self.contact, "sha256": self.digest, "expires": self.expires.isoformat()}

    @classmethod
    def from_json(cls, data: Any) -> Invitation | None:
        try:
            expires = datetime.fromisoformat(data["expires"])
            return cls(contact=str(data["contact"]), digest=str(data["sha256"]), expires=expires)
        except (KeyError, TypeError, ValueError):
            return None


def new_token() -> str:
    """A fresh token for a link (rule 1)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def invitation(contact: str, token: str, now: datetime) -> Invitation:
    return Invitation(contact=contact, digest=digest(token), expires=now + LIFETIME)


def link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/enroll/{token}"


def match(invitations: Mapping[str, Invitation], token: str, now: datetime) -> str | None:
    """The key of the live invitation `token` belongs to, or None (rule 3)."""
    wanted = digest(token)
    found = None
    for key, live in invitations.items():
        if hmac.compare_digest(live.digest, wanted) and now < live.expires:
            found = key
    return found
