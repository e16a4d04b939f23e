"""Order compliance in numbers: how a person with a court order used the contact it allows.

Rules this module keeps:
1. Only items with an order mark count (`proxy.alerts.order_mark`: his own messages,
   held while his profile had a `court_order`), each under the person its mark names.
2. Each item is one of four, in this order: *abusive* (an urgent reason that is not a
   logistics one: a threat, a weapon, proximity ...), else *on topic* (an allowed topic),
   *off topic*, or *not read* (no text: a voicemail is not transcribed). Shares are of
   all his items under the order. Logistics and a channel the order does not allow are
   counted beside them, not instead.
3. Hours and weekdays are local, in the caller's time zone; `EVENING` is where "after
   hours" begins ("9 messages after 17:00").
4. Pure: values in, values out; no clock, no IO.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from proxy.alerts.order_mark import OrderMark, Topic

EVENING = 17  # "after 17:00" (rule 3)
ABUSIVE, ON_TOPIC, OFF_TOPIC, NOT_READ = "abusive", "on topic", "off topic", "not read"
KINDS = (ON_TOPIC, OFF_TOPIC, ABUSIVE, NOT_READ)


class OrderedItem(Protocol):
    """What compliance reads of a report item."""

    @property
    def received_at(self) -> datetime: ...
    @property
    def channel(self) -> str: ...
    @property
    def order(self) -> OrderMark | None: ...
    @property
    def abusive(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Compliance:
    """One person's use of the contact his order allows (rules 1-3)."""

    person: str
    count: int
    kinds: dict[str, int]  # KINDS -> items
    logistics: int  # about the children's logistics
    off_channel: int  # on a channel the order does not allow
    by_channel: dict[str, dict[str, int]]  # channel -> KINDS -> items
    by_hour: tuple[int, ...]  # 24 local hours
    by_weekday: tuple[int, ...]  # Monday .. Sunday, local
    evening: int  # at or after EVENING:00, local

    def share(self, kind: str) -> str:
        """'42%' of his items under the order."""
        return f"{round(100 * self.kinds.get(kind, 0) / self.count)}%" if self.count else "0%"


def kind_of(mark: OrderMark, abusive: bool) -> str:
    """Rule 2."""
    if abusive:
        return ABUSIVE
    return {Topic.CHILDREN: ON_TOPIC, Topic.OFF_TOPIC: OFF_TOPIC}.get(mark.topic, NOT_READ)


def compliance(items: Iterable[OrderedItem], tz: tzinfo) -> tuple[Compliance, ...]:
    """Each person's compliance, by person id."""
    by_person: defaultdict[str, list[tuple[OrderedItem, OrderMark]]] = defaultdict(list)
    for item in items:
        if item.order is not None:
            by_person[item.order.person].append((item, item.order))
    return tuple(_one(person, by_person[person], tz) for person in sorted(by_person))


def _one(person: str, marked: list[tuple[OrderedItem, OrderMark]], tz: tzinfo) -> Compliance:
    kinds: Counter[str] = Counter()
    by_channel: defaultdict[str, Counter[str]] = defaultdict(Counter)
    hours, weekdays = [0] * 24, [0] * 7
    logistics = off_channel = 0
    for item, mark in marked:
        kind = kind_of(mark, item.abusive)
        kinds[kind] += 1
        by_channel[item.channel][kind] += 1
        logistics += mark.logistics
        off_channel += not mark.channel_allowed
        local = _local(item.received_at, tz)
        hours[local.hour] += 1
        weekdays[local.weekday()] += 1
    return Compliance(
        person=person, count=len(marked), kinds={k: kinds[k] for k in KINDS},
        logistics=logistics, off_channel=off_channel,
        by_channel={c: {k: n[k] for k in KINDS} for c, n in sorted(by_channel.items())},
        by_hour=tuple(hours), by_weekday=tuple(weekdays), evening=sum(hours[EVENING:]),
    )  # fmt: skip


def _local(moment: datetime, tz: tzinfo) -> datetime:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    try:
        return aware.astimezone(tz)
    except OverflowError:  # the first or last representable day, shifted past the edge
        return aware.astimezone(UTC)
