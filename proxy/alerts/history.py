"""What the pure assessment of one item cannot know: each person's history of held items.

Rules this module keeps:
1. Per person (the id the matching rule names), the history keeps when his first item was
   held, how many were held before the last day, the times of those of the last day
   (at most `MAX_RECENT`; older ones are folded into the count), and keyed hashes of every
   channel and identity he reached her through. Nothing else: no content, no rule.
2. `observe` records one held item and returns the elevated reasons it raises: `burst`
   (burst.py), `new-channel` (the first item from him on this channel), `new-identity`
   (the first from this address or number of his). An item no person is named for
   (none found in its rule) raises nothing.
3. Identities and channels are kept only as HMACs under a key of the archive's (vault.py
   holds the whole history encrypted besides): even a decrypted history names no address.
4. Values in, values out: `now` is passed; the history round-trips through `dump`/`load`
   (plain JSON for the vault), and `load` takes anything, ignoring what it cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from proxy.alerts.burst import is_burst
from proxy.alerts.tiers import Reason, Tier

MAX_RECENT = 2000
_DAY = 86400.0
BURST = Reason(tier=Tier.ELEVATED, code="burst")
NEW_CHANNEL = Reason(tier=Tier.ELEVATED, code="new-channel")
NEW_IDENTITY = Reason(tier=Tier.ELEVATED, code="new-identity")


@dataclass(slots=True)
class Person:
    first: float  # when his first item was held (s since the epoch)
    before: int = 0  # items held before the `recent` ones
    recent: list[float] = field(default_factory=list)  # times of the last day's items
    seen: set[str] = field(default_factory=set)  # keyed hashes of channels and identities

    def dump(self) -> dict[str, Any]:
        return {"first": self.first, "before": self.before, "recent": self.recent,
                "seen": sorted(self.seen)}  # fmt: skip


class History:
    """Every person's history (rule 1)."""

    def __init__(self, key: bytes, people: dict[str, Person] | None = None) -> None:
        self._key = key
        self.people: dict[str, Person] = people if people is not None else {}

    def _hashed(self, kind: str, value: str) -> str:
        data = f"{kind}\0{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]

    def observe(self, person: str | None, *, channel: str, identity: str, now: float
                ) -> tuple[Reason, ...]:  # fmt: skip
        """Record one held item of `person`'s at `now`; the reasons it raises (rule 2)."""
        if not person:
            return ()
        record = self.people.get(person)
        if record is None:
            record = self.people[person] = Person(first=now)
        recent = [t for t in record.recent if t > now - _DAY]
        record.before += len(record.recent) - len(recent)
        if len(recent) >= MAX_RECENT:
            record.before += len(recent) - MAX_RECENT + 1
            recent = recent[len(recent) - MAX_RECENT + 1 :]
        recent.append(now)
        record.recent = recent
        reasons = []
        if is_burst(first_held=record.first, times=recent, before=record.before, now=now):
            reasons.append(BURST)
        for kind, value, reason in (("channel", channel, NEW_CHANNEL),
                                    ("identity", identity.casefold(), NEW_IDENTITY)):  # fmt: skip
            hashed = self._hashed(kind, value)
            if value and hashed not in record.seen:
                record.seen.add(hashed)
                reasons.append(reason)
        return tuple(reasons)

    def dump(self) -> dict[str, Any]:
        return {person: record.dump() for person, record in self.people.items()}

    @classmethod
    def load(cls, key: bytes, data: object) -> History:
        people: dict[str, Person] = {}
        if isinstance(data, dict):
            for person, record in data.items():
                try:
                    people[str(person)] = Person(
                        first=float(record["first"]), before=int(record["before"]),
                        recent=[float(t) for t in record["recent"]],
                        seen={str(s) for s in record["seen"]},
                    )  # fmt: skip
                except (KeyError, TypeError, ValueError):
                    continue
        return cls(key, people)
