"""WebAuthn challenges: random, single use, short-lived, in this process's memory only.

Rules this module keeps:
1. A challenge is 32 random bytes (`secrets`), issued for one binding: a login attempt
   (the login form's one-off token, which its cookie carries too) or a logged-in session
   (its CSRF token), named apart (`for_login`, `for_session`). The table is keyed by the
   binding's SHA-256, as sessions are, so the tokens themselves are held nowhere here.
2. Single use: `take` removes the challenge whatever happens next; a second `take`, one for
   another binding, or one after `LIFETIME` finds nothing. Issuing again for the same
   binding replaces the old challenge.
3. Bounded: at most `CAPACITY` live challenges; past it, expired ones are dropped first,
   then the oldest. Asking for challenges cannot grow the portal's memory without end.
4. Never on disk, never logged. No clock of its own: `clock` is given. Used from the
   event loop only (the web handlers), so it takes no lock.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

LIFETIME = timedelta(minutes=2)  # the browser is asked to wait 60 s for the contact's touch
CAPACITY = 4096
CHALLENGE_BYTES = 32


class Challenges:
    """The live challenges, each for one binding (rule 1)."""

    def __init__(self, *, clock: Callable[[], datetime], capacity: int = CAPACITY) -> None:
        self._clock, self._capacity = clock, capacity
        self._live: dict[str, tuple[bytes, datetime]] = {}

    def issue(self, binding: str) -> bytes:
        """A fresh challenge for `binding`, replacing any it had (rule 2)."""
        now = self._clock()
        key = _key(binding)
        self._live.pop(key, None)
        if len(self._live) >= self._capacity:
            self._live = {k: v for k, v in self._live.items() if v[1] > now}
            while len(self._live) >= self._capacity:  # the oldest first (rule 3)
                del self._live[next(iter(self._live))]
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        self._live[key] = (challenge, now + LIFETIME)
        return challenge

    def take(self, binding: str) -> bytes | None:
        """The live challenge of `binding`, removed; None if none is live (rule 2)."""
        if not binding:
            return None
        found = self._live.pop(_key(binding), None)
        if found is None or found[1] <= self._clock():
            return None
        return found[0]

    def __len__(self) -> int:
        return len(self._live)


def _key(binding: str) -> str:
    return hashlib.sha256(binding.encode("utf-8", "replace")).hexdigest()


def for_login(login_token: str) -> str:
    """The binding of a login attempt: its form's one-off token (rule 1)."""
    return "login:" + login_token if login_token else ""


def for_session(csrf: str) -> str:
    """The binding of a passkey registration: the session's CSRF token (rule 1)."""
    return "session:" + csrf if csrf else ""
