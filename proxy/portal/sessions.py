"""Logged-in sessions of the portal, kept in this process's memory only.

Rules this module keeps:
1. A session's token is 256 bits from `secrets`; the table is keyed by its SHA-256, so
   the tokens themselves are held nowhere but in the contacts' cookies.
2. A session holds the contact's unwrapped identity (`Unlocked`) in memory only. It ends
   after `idle` without use or `lifetime` after login, whichever comes first, at logout,
   and when the same contact ends their other sessions (`close_others`); an ended
   session is dropped from the table with its identity and its list index (the rows of
   the held items its key opens, viewing.py rule 4), which is held nowhere else.
3. Each session has its own CSRF token; `csrf_matches` compares with
   `hmac.compare_digest`. A login form carries a separate one-off token (`login_token`),
   checked against the cookie it was sent with (double submit), since there is no session.
4. No clock of its own: `clock` is given, so tests move time by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from proxy.access.viewing import HeldIndex
from proxy.portal.accounts import Unlocked
from proxy.portal.streaming import Progress


def new_token() -> str:
    """A fresh 256-bit random token, URL-safe."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Whether `given` is the token `expected` (constant time; a missing one never matches)."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@dataclass(slots=True, kw_only=True)
class Session:
    """One logged-in contact (rule 2)."""

    unlocked: Unlocked = field(repr=False)
    csrf: str = field(repr=False)
    started: datetime
    last_used: datetime
    new_totp_secret: str = field(default="", repr=False)  # an authenticator reset under way
    index: HeldIndex = field(default_factory=HeldIndex, repr=False)  # the list's (rule 2)
    exports: dict[str, Progress] = field(default_factory=dict, repr=False)  # by the page's id


class Sessions:
    """The portal's live sessions."""

    def __init__(
        self, *, idle: timedelta, lifetime: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self._idle, self._lifetime, self._clock = idle, lifetime, clock
        self._live: dict[str, Session] = {}

    def open(self, unlocked: Unlocked) -> tuple[str, Session]:
        """A new session for `unlocked`, and its token (for the cookie only)."""
        now = self._clock()
        token = new_token()
        session = Session(unlocked=unlocked, csrf=new_token(), started=now, last_used=now)
        self._live[_key(token)] = session
        return token, session

    def find(self, token: str | None) -> Session | None:
        """The live session of `token`, marked used now; None (and dropped) if it ended."""
        if not token:
            return None
        key = _key(token)
        session = self._live.get(key)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_used >= self._idle or now - session.started >= self._lifetime:
            del self._live[key]
            return None
        session.last_used = now
        return session

    def close(self, token: str | None) -> None:
        """End the session of `token` (logout), dropping its identity."""
        if token:
            self._live.pop(_key(token), None)

    def close_others(self, token: str | None) -> int:
        """End every other session of the contact whose session `token` is ("end my other
        sessions"); how many ended. Their identities are dropped with them."""
        if not token:
            return 0
        mine = self._live.get(_key(token))
        if mine is None:
            return 0
        contact = mine.unlocked.contact
        others = [key for key, session in self._live.items()
                  if session is not mine and session.unlocked.contact == contact]  # fmt: skip
        for key in others:
            del self._live[key]
        return len(others)

    def count_of(self, contact: str) -> int:
        """How many sessions `contact` has open (some may have ended unnoticed)."""
        return sum(1 for session in self._live.values() if session.unlocked.contact == contact)

    def __len__(self) -> int:
        return len(self._live)


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
