"""How urgent a held item is: the tier an alert goes out at, and why.

Rules this module keeps:
1. Three tiers, ordered: digest < elevated < urgent. An item's tier is the highest any of
   its reasons calls for; an item with no reason is in the digest only.
2. A reason is a short fixed code (`urgent:threat`, `elevated:children`, ...) naming what
   was found, never the words that matched: reasons are sealed with the item and shown to
   contacts in the pattern report, and they may travel in an alert's tier line.
3. Values only: frozen, no IO.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Tier(enum.IntEnum):
    """How soon a contact should hear of an item (rule 1)."""

    DIGEST = 0
    ELEVATED = 1
    URGENT = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Reason:
    """One thing found in an item: its tier and a fixed code (rule 2), e.g. URGENT and
    "threat" (written `urgent:threat`)."""

    tier: Tier
    code: str

    def __str__(self) -> str:
        return f"{self.tier.label}:{self.code}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Assessment:
    """An item's tier and every reason for it, most urgent first."""

    tier: Tier = Tier.DIGEST
    reasons: tuple[Reason, ...] = ()

    @classmethod
    def of(cls, reasons: Iterable[Reason]) -> Assessment:
        found = sorted(set(reasons), key=lambda r: (-r.tier, r.code))
        return cls(tier=found[0].tier if found else Tier.DIGEST, reasons=tuple(found))

    def __str__(self) -> str:
        """`urgent:threat,urgent:weapon`, or `digest` with no reason (test-rules' field)."""
        return ",".join(str(r) for r in self.reasons) if self.reasons else self.tier.label


NOTHING_FOUND = Assessment()  # digest, no reason: an item no reason was found in (yet)
