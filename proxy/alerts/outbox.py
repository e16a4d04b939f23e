"""The alerts' durable state as values: what is waiting to be sent, and what is still open.

Rules this module keeps:
1. One `Letter` per message per contact per transport, so each transport retries on its
   own: a failed send comes back `backoff(attempts)` later (30 s doubling, at most an
   hour), forever; a letter is dropped only once its transport took it, or when its
   contact or transport is no longer configured. At least once, never lost: a crash
   after a send and before the save sends it again after the restart.
2. A letter holds what the text is made from (text.py), never text: the checkpoint and
   the portal's address are the ones current when it is sent.
3. An urgent alert stays open until a contact acknowledges its code; `Urgent.reached`
   counts how far down the ladder of urgent contacts (config order, after `Urgent.first`,
   a court order's relay contact, when it names one) it went.
4. The counts since the last digest are by channel and by person's place (text.py rule 2).
5. The whole state round-trips through plain JSON (`dump` / `load`) for the vault;
   `load` takes anything and ignores what it cannot read (a state saved before a field
   existed loads with that field's default).
6. An item urgent for child logistics under a court order `Waiting` for a relay has its
   deadline (`relay_by`: held time + the order's `relay_within`), and, when the order
   takes the automatic card (`auto_card`), the card and the way it goes to her (card.py).
   It is apart from its `Urgent` alert (deadlines.py): acknowledging the alert does not
   stop it, only a relay does. A card that could not be delivered is retried as a letter
   is (rule 1): `relay_by` moves on by `backoff(attempts)`.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from proxy.alerts.card import Card, Way
from proxy.alerts.history import History
from proxy.alerts.tiers import Tier

_RETRY_FIRST = 30.0
_RETRY_MOST = 3600.0
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a phone


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones (rule 1)."""
    return float(min(_RETRY_MOST, _RETRY_FIRST * 2 ** min(attempts - 1, 20)))


def new_code() -> str:
    """A one-time acknowledgement code: 8 characters, about 40 bits."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


@dataclass(slots=True, kw_only=True)
class Letter:
    """One alert or digest to one contact through one transport (rules 1-2)."""

    contact: str
    transport: str
    due: float  # when to (re)try, s since the epoch
    tier: Tier
    sequence: int = -1  # alerts: the item
    reasons: tuple[str, ...] = ()
    code: str = ""
    repeat: int = 0
    since: float = 0.0  # digests: the period
    until: float = 0.0
    by_channel: dict[str, int] = field(default_factory=dict)
    by_person: dict[int, int] = field(default_factory=dict)
    digest: bool = False
    attempts: int = 0

    def dump(self) -> dict[str, Any]:
        return {"contact": self.contact, "transport": self.transport, "due": self.due,
                "tier": int(self.tier), "sequence": self.sequence, "reasons": list(self.reasons),
                "code": self.code, "repeat": self.repeat, "since": self.since,
                "until": self.until, "by_channel": self.by_channel,
                "by_person": {str(k): v for k, v in self.by_person.items()},
                "digest": self.digest, "attempts": self.attempts}  # fmt: skip

    @classmethod
    def load(cls, data: Any) -> Letter:
        return cls(
            contact=str(data["contact"]), transport=str(data["transport"]),
            due=float(data["due"]), tier=Tier(int(data["tier"])),
            sequence=int(data["sequence"]), reasons=tuple(str(r) for r in data["reasons"]),
            code=str(data["code"]), repeat=int(data["repeat"]), since=float(data["since"]),
            until=float(data["until"]),
            by_channel={str(k): int(v) for k, v in data["by_channel"].items()},
            by_person={int(k): int(v) for k, v in data["by_person"].items()},
            digest=bool(data["digest"]), attempts=int(data["attempts"]),
        )  # fmt: skip


@dataclass(slots=True, kw_only=True)
class Urgent:
    """An urgent alert not yet acknowledged (rule 3)."""

    code: str
    sequence: int
    reasons: tuple[str, ...]
    reached: int  # how many urgent contacts (config order) it was sent to
    repeat: int  # how many times it was sent again unacknowledged
    next: float  # when it escalates unless acknowledged
    first: str = ""  # the contact it goes to first (a relay contact), "" for the ladder's

    def dump(self) -> dict[str, Any]:
        return {"code": self.code, "sequence": self.sequence, "reasons": list(self.reasons),
                "reached": self.reached, "repeat": self.repeat, "next": self.next,
                "first": self.first}  # fmt: skip

    @classmethod
    def load(cls, data: Any) -> Urgent:
        return cls(code=str(data["code"]), sequence=int(data["sequence"]),
                   reasons=tuple(str(r) for r in data["reasons"]),
                   reached=int(data["reached"]), repeat=int(data["repeat"]),
                   next=float(data["next"]), first=str(data.get("first", "")))  # fmt: skip


@dataclass(slots=True, kw_only=True)
class Waiting:
    """An urgent logistics item waiting for a relay (rule 6)."""

    sequence: int
    relay_by: float  # when the card goes (or the alert escalates) unless relayed
    first: str  # its alert's first contact (the order's relay contact)
    reasons: tuple[str, ...]
    card: Card | None = None  # the order takes the automatic card
    way: Way | None = None
    attempts: int = 0  # failed deliveries of the card
    recorded: bool = False  # its custody record is stored (deadlines.py rule 3)

    def dump(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "relay_by": self.relay_by, "first": self.first,
                "reasons": list(self.reasons),
                "card": self.card.to_json() if self.card is not None else None,
                "way": self.way.to_json() if self.way is not None else None,
                "attempts": self.attempts, "recorded": self.recorded}  # fmt: skip

    @classmethod
    def load(cls, data: Any) -> Waiting:
        card, way = Card.from_json(data.get("card")), Way.from_json(data.get("way"))
        if card is None or way is None:
            card, way = None, None  # a card that cannot go is no card: the alert escalates
        return cls(sequence=int(data["sequence"]), relay_by=float(data["relay_by"]),
                   first=str(data["first"]), reasons=tuple(str(r) for r in data["reasons"]),
                   card=card, way=way, attempts=int(data.get("attempts", 0)),
                   recorded=data.get("recorded") is True)  # fmt: skip


@dataclass(slots=True, kw_only=True)
class State:
    """Everything the alerts keep between starts (vault.py seals it)."""

    history: History
    letters: list[Letter] = field(default_factory=list)
    urgent: list[Urgent] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)  # for a relay (rule 6)
    by_channel: dict[str, int] = field(default_factory=dict)  # since the last digest
    by_person: dict[int, int] = field(default_factory=dict)
    last_digest: float = 0.0  # when the last digest's period ended (0: never)

    def count(self, channel: str, place: int | None) -> None:
        """One more held item for the next digest (rule 4)."""
        self.by_channel[channel] = self.by_channel.get(channel, 0) + 1
        if place is not None:
            self.by_person[place] = self.by_person.get(place, 0) + 1

    def dump(self) -> dict[str, Any]:
        return {"history": self.history.dump(), "letters": [x.dump() for x in self.letters],
                "urgent": [u.dump() for u in self.urgent],
                "waiting": [w.dump() for w in self.waiting], "by_channel": self.by_channel,
                "by_person": {str(k): v for k, v in self.by_person.items()},
                "last_digest": self.last_digest}  # fmt: skip

    @classmethod
    def load(cls, key: bytes, data: dict[str, Any]) -> State:
        state = cls(history=History.load(key, data.get("history")))
        letters, urgent, waiting = data.get("letters"), data.get("urgent"), data.get("waiting")
        for item in letters if isinstance(letters, list) else ():
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                state.letters.append(Letter.load(item))
        for item in urgent if isinstance(urgent, list) else ():
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                state.urgent.append(Urgent.load(item))
        for item in waiting if isinstance(waiting, list) else ():
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                state.waiting.append(Waiting.load(item))
        try:
            state.by_channel = {str(k): int(v) for k, v in data.get("by_channel", {}).items()}
            state.by_person = {int(k): int(v) for k, v in data.get("by_person", {}).items()}
            state.last_digest = float(data.get("last_digest", 0.0))
        except (TypeError, ValueError, AttributeError):
            state.by_channel, state.by_person, state.last_digest = {}, {}, 0.0
        return state
