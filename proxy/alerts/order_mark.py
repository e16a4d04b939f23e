"""What a court order makes of a held item from him: its topic and logistics, as values.

Rules this module keeps:
1. An `OrderMark` is made only for an item held by a direct rule of a person with a
   `court_order` (his own message). It says whose order (`person`, the config id), the
   item's topic (`Topic`: on an allowed topic, off topic, or unknown: nothing was read, a
   voicemail has no transcript), whether it is about the children's logistics, and
   whether it came on a channel the order allows. It never carries a word of the item.
2. It is not an alert tier: an off-topic item alerts only as its own reasons say. The
   logistics reasons (`urgent:child_emergency`, `urgent:same_day_logistics`,
   `elevated:child_logistics`) are ordinary reasons of the item's assessment (tiers.py).
3. `abusive` is the report's word for an item with an urgent reason that is not a
   logistics one (a threat, a weapon, proximity, ...: issue 23's detection).
4. It round-trips through JSON (`to_json` / `from_json`) for the seal; `from_json` is
   total: anything it cannot read is None, never an error.
5. Values only: frozen, no IO.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.alerts.tiers import Assessment, Reason, Tier


class Topic(enum.StrEnum):
    """What an item from him is about, as the order sees it. New allowed topics are new
    members (and a config value, `court_order.topics`)."""

    CHILDREN = "children"
    OFF_TOPIC = "off_topic"
    UNKNOWN = "unknown"  # no text was read (a voicemail): neither on nor off topic


ALLOWED_TOPICS = (Topic.CHILDREN,)  # the topics an order can allow (config values)
CHILD_EMERGENCY = Reason(tier=Tier.URGENT, code="child_emergency")
SAME_DAY_LOGISTICS = Reason(tier=Tier.URGENT, code="same_day_logistics")
CHILD_LOGISTICS = Reason(tier=Tier.ELEVATED, code="child_logistics")
LOGISTICS_REASONS = frozenset([CHILD_EMERGENCY, SAME_DAY_LOGISTICS, CHILD_LOGISTICS])
URGENT_LOGISTICS = frozenset([CHILD_EMERGENCY, SAME_DAY_LOGISTICS])


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderMark:
    """A held item as the order of its sender sees it (rule 1)."""

    person: str
    topic: Topic
    logistics: bool = False
    channel_allowed: bool = True

    def to_json(self) -> dict[str, object]:
        return {"person": self.person, "topic": self.topic.value, "logistics": self.logistics,
                "channel_allowed": self.channel_allowed}  # fmt: skip

    @classmethod
    def from_json(cls, value: object) -> OrderMark | None:
        """The mark as sealed, or None if there is none this version can read (rule 4)."""
        if not isinstance(value, Mapping):
            return None
        person, topic = value.get("person"), value.get("topic")
        if not isinstance(person, str) or topic not in set(Topic):
            return None
        return cls(person=person, topic=Topic(str(topic)),
                   logistics=value.get("logistics") is True,
                   channel_allowed=value.get("channel_allowed") is not False)  # fmt: skip


def abusive(assessment: Assessment) -> bool:
    """Whether an item has an urgent reason other than a logistics one (rule 3)."""
    return any(r.tier is Tier.URGENT and r not in URGENT_LOGISTICS for r in assessment.reasons)


def urgent_logistics(assessment: Assessment) -> bool:
    """Whether an item is urgent for its logistics (the relay contact is told first)."""
    return any(reason in URGENT_LOGISTICS for reason in assessment.reasons)
