"""Slowing, then locking, repeated failed logins: per account and per client address.

Rules this module keeps:
1. The numbers: the first `SLOW_AFTER - 1` (2) failures cost nothing; from the 3rd, the
   next attempt must wait 5 s, then 10 s; at the 5th (`LOCK_AFTER`) the account or address
   is locked for 15 minutes (`LOCK`). Failures older than `FORGET` (15 minutes since the
   last) are forgotten. A success clears the account's failures (not the address's: one
   good login must not wipe out someone else's guessing from the same address).
2. Per account AND per address: guessing one account from many addresses, or many
   accounts from one address, both run into a lock. 5 guesses per 15 minutes is about
   500 a day per account: nothing against a zxcvbn-3 passphrase and a TOTP code together.
   Behind a reverse proxy the address is the client's as the trusted proxy names it
   (forwarded.py), not the proxy's own.
3. An attempt while locked is refused without being checked, and is not counted: a lock
   ends on time even if someone keeps knocking.
4. Pure: `now` is an argument; `Failures` values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SLOW_AFTER = 3
SLOW_FIRST = timedelta(seconds=5)
LOCK_AFTER = 5
LOCK = timedelta(minutes=15)
FORGET = timedelta(minutes=15)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failures:
    """Failed attempts in a row, and when the last one was."""

    count: int
    last: datetime

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "last": self.last.isoformat()}

    @classmethod
    def from_json(cls, data: Any) -> Failures | None:
        try:
            return cls(count=int(data["count"]), last=datetime.fromisoformat(data["last"]))
        except (KeyError, TypeError, ValueError):
            return None


def wait(failures: Failures | None, now: datetime) -> timedelta:
    """How long until the next attempt may be checked; zero if it may now (rule 1)."""
    if failures is None or now - failures.last >= FORGET:
        return timedelta(0)
    if failures.count >= LOCK_AFTER:
        until = failures.last + LOCK
    elif failures.count >= SLOW_AFTER:
        until = failures.last + SLOW_FIRST * 2 ** (failures.count - SLOW_AFTER)
    else:
        return timedelta(0)
    return max(until - now, timedelta(0))


def failed(failures: Failures | None, now: datetime) -> Failures:
    """The failures after one more at `now`."""
    if failures is None or now - failures.last >= FORGET:
        return Failures(count=1, last=now)
    return Failures(count=failures.count + 1, last=now)


def forgotten(failures: Failures | None, now: datetime) -> bool:
    """Whether these failures no longer count (and need not be kept)."""
    return failures is None or now - failures.last >= FORGET
