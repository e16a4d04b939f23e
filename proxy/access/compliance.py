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
4. Answers to his items are read from the custody log (`read_answers`): a *relay* (a
   summary sent to her, relaying.py rule 5: action "relay", reason "relay of leaf <hex>",
   a newline, the text) and a *reply* (sent to him: action "reply", reason "reply to leaf
   <hex>", a newline, the text). A record of any other action or form, or with no time,
   is not an answer. An answer counts for the item whose leaf hash it names, if that item
   is one of his under the order in this report; any other is ignored.
5. An answer is sent unless the same contact's next record of its kind for the same
   item is its failure ("relay-failed", "reply-failed": handover.py rule 2, recorded
   right after a delivery that failed). The record comes before the delivery (custody
   first), so an answer whose delivery was cut short by a crash counts as sent.
6. An item's delay is from its received time to its first sent answer of a kind; one
   stamped before the item (a clock set back) counts as no delay. Each kind gives its
   count sent and failed, the items answered, and the median and longest delay. Every
   urgent logistics item is listed with its first relay's delay, or as not relayed.
7. Pure: values in, values out; no clock, no IO.
"""

from __future__ import annotations

import enum
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from proxy.access.relaying import RELAY, RELAY_FAILED, read_relay
from proxy.alerts.order_mark import OrderMark, Topic
from proxy.archive.metadata import SealedCustody

EVENING = 17  # "after 17:00" (rule 3)
ABUSIVE, ON_TOPIC, OFF_TOPIC, NOT_READ = "abusive", "on topic", "off topic", "not read"
KINDS = (ON_TOPIC, OFF_TOPIC, ABUSIVE, NOT_READ)
REPLY, REPLY_FAILED = "reply", "reply-failed"
_REPLY = re.compile(r"reply to leaf ([0-9a-f]{64})\n")  # rule 4 (the replies' fixed form)
_NO_DELAY = timedelta(0)


class Way(enum.StrEnum):
    """Which way an answer went (rule 4)."""

    RELAY = RELAY  # a summary sent to her
    REPLY = REPLY  # a reply sent to him


_FAILED = {RELAY_FAILED: Way.RELAY, REPLY_FAILED: Way.REPLY}


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A relay or a reply, as the custody log holds it (rules 4 and 5)."""

    way: Way
    leaf_hash: str  # hex: the original's
    text: str  # the contact's words, exactly as sent
    at: datetime  # when the record was stored (the writer's time)
    contact: str  # the contact key's fingerprint
    sent: bool = True  # False: its delivery failed (rule 5)


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
    @property
    def bates(self) -> str: ...
    @property
    def leaf_hash(self) -> str: ...
    @property
    def urgent_logistics(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """One way of answering his items under the order (rule 6)."""

    sent: int  # records that reached their reader
    failed: int  # records whose delivery failed
    items: int  # his items with at least one sent
    delays: tuple[timedelta, ...]  # per such item, to its first sent answer, in item order

    @property
    def median(self) -> timedelta | None:
        if not self.delays:
            return None
        ordered, half = sorted(self.delays), len(self.delays) // 2
        return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2

    @property
    def longest(self) -> timedelta | None:
        return max(self.delays, default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Urgent:
    """An urgent logistics item and how long it waited for a summary (rule 6)."""

    bates: str
    received_at: datetime
    relayed_after: timedelta | None  # None: not relayed


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
    relays: Answered  # summaries sent to her (rules 4-6)
    replies: Answered  # replies sent to him
    urgent: tuple[Urgent, ...]  # every urgent logistics item, in item order

    def share(self, kind: str) -> str:
        """'42%' of his items under the order."""
        return f"{round(100 * self.kinds.get(kind, 0) / self.count)}%" if self.count else "0%"


def kind_of(mark: OrderMark, abusive: bool) -> str:
    """Rule 2."""
    if abusive:
        return ABUSIVE
    return {Topic.CHILDREN: ON_TOPIC, Topic.OFF_TOPIC: OFF_TOPIC}.get(mark.topic, NOT_READ)


def read_answers(records: Iterable[SealedCustody]) -> tuple[Answer, ...]:
    """The relays and replies among custody records (in log order), each marked sent or
    not (rules 4 and 5); every other record is passed over."""
    found: list[Answer] = []
    unsettled: dict[tuple[Way, str, tuple[int, ...]], int] = {}  # -> its place in `found`
    for record in records:
        failed = _FAILED.get(record.action)
        if failed is not None:
            place = unsettled.pop((failed, record.contact, record.items), None)
            if place is not None:
                found[place] = replace(found[place], sent=False)
            continue
        answer = _answer(record)
        if answer is not None:
            unsettled[(answer.way, record.contact, record.items)] = len(found)
            found.append(answer)
    return tuple(found)


def _answer(record: SealedCustody) -> Answer | None:
    if record.at is None:
        return None
    if record.action == RELAY:
        relay = read_relay(record)
        if relay is None:
            return None
        way, leaf, text = Way.RELAY, relay.leaf_hash, relay.text
    elif record.action == REPLY and (found := _REPLY.match(record.reason)) is not None:
        way, leaf, text = Way.REPLY, found[1], record.reason[found.end() :]
    else:
        return None
    return Answer(way=way, leaf_hash=leaf, text=text, at=record.at, contact=record.contact)


def answers_to(answers: Iterable[Answer]) -> dict[str, tuple[Answer, ...]]:
    """The answers by the leaf hash they name, each item's in log order."""
    by_leaf: defaultdict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        by_leaf[answer.leaf_hash].append(answer)
    return {leaf: tuple(found) for leaf, found in by_leaf.items()}


def compliance(
    items: Iterable[OrderedItem], tz: tzinfo, answers: Sequence[Answer] = ()
) -> tuple[Compliance, ...]:
    """Each person's compliance, by person id; `answers` from `read_answers`."""
    by_person: defaultdict[str, list[tuple[OrderedItem, OrderMark]]] = defaultdict(list)
    for item in items:
        if item.order is not None:
            by_person[item.order.person].append((item, item.order))
    by_leaf = answers_to(answers)
    return tuple(_one(person, by_person[person], tz, by_leaf) for person in sorted(by_person))


def _one(
    person: str, marked: list[tuple[OrderedItem, OrderMark]], tz: tzinfo,
    by_leaf: dict[str, tuple[Answer, ...]],
) -> Compliance:  # fmt: skip
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
        relays=_answered(Way.RELAY, [item for item, _ in marked], by_leaf),
        replies=_answered(Way.REPLY, [item for item, _ in marked], by_leaf),
        urgent=tuple(
            Urgent(bates=item.bates, received_at=item.received_at,
                   relayed_after=_first(Way.RELAY, item, by_leaf.get(item.leaf_hash, ())))
            for item, _ in marked if item.urgent_logistics
        ),
    )  # fmt: skip


def _answered(
    way: Way, items: list[OrderedItem], by_leaf: dict[str, tuple[Answer, ...]]
) -> Answered:
    """Rule 6, for one way."""
    sent = failed = 0
    delays = []
    for item in items:
        answers = [a for a in by_leaf.get(item.leaf_hash, ()) if a.way is way]
        sent += sum(a.sent for a in answers)
        failed += sum(not a.sent for a in answers)
        delay = _first(way, item, answers)
        if delay is not None:
            delays.append(delay)
    return Answered(sent=sent, failed=failed, items=len(delays), delays=tuple(delays))


def _first(way: Way, item: OrderedItem, answers: Iterable[Answer]) -> timedelta | None:
    """From the item's arrival to its first sent answer of `way` (rule 6), or None."""
    times = [a.at for a in answers if a.way is way and a.sent]
    if not times:
        return None
    return max(_aware(min(times, key=_aware)) - _aware(item.received_at), _NO_DELAY)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _local(moment: datetime, tz: tzinfo) -> datetime:
    aware = _aware(moment)
    try:
        return aware.astimezone(tz)
    except OverflowError:  # the first or last representable day, shifted past the edge
        return aware.astimezone(UTC)
