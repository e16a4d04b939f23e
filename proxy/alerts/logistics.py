"""Child logistics under a court order, read from a held item of his: offline, linear.

Rules this module keeps:
1. `compile_order` turns one person's `court_order` (the children's names and nicknames,
   extra emergency terms, the allowed topics and channels) and the shipped word lists
   (`proxy/alerts/lexicons/logistics.yaml`: en, es, fr, de, pt, read at once) into an
   `OrderProfile`, once per config; `read_order` then reads any number of items with it.
   Pure: no IO, no clock; the received time and the time zone are arguments.
2. A child is mentioned when a child's name or nickname from the order, or a word that
   names the children ("the kids", "notre fils", "die Kinder"), stands whole in the text.
   The topic is `children` when one is and the order allows that topic, `unknown` when
   there was no text to read (a voicemail), else `off_topic`.
3. Child logistics: a child mentioned, and a logistics cue: a word of arranging their
   lives (school, doctor, pickup, travel ...; and, for each child, "pick Lily up" and
   "drop Lily off" with the name between, as English puts it, labelled as "pick up" and
   "drop off" are), a day (a weekday, a month, "tomorrow", "today", a date written 12/03
   or 2026-03-12) or a clock time (17:30, 5pm, 17h, 17 Uhr).
   Elevated: `elevated:child_logistics`.
4. Urgent (`proxy.alerts.order_mark`): a child mentioned with an emergency term
   (`urgent:child_emergency`), or child logistics for the same day
   (`urgent:same_day_logistics`): a same-day word ("today", "ce soir", "in an hour", "in
   20 minutes"), today's date or weekday, or a clock time from an hour before the item's
   received time to midnight, in the alerts' time zone, when nothing puts it on another
   day ("tomorrow", another date or weekday). "This morning" is not "tomorrow": a word
   inside a same-day phrase ("heute morgen", "esta mañana") is read as the phrase.
5. Reasons are fixed codes, never the words found (tiers.py rule 2); the mark carries
   none either (order_mark.py rule 1).
6. Cost is linear in the text: one Aho-Corasick pass over the folded text (the item's
   search text, folded as the rules fold it) for every word list at once, and one pass of
   a few regular expressions over its NFKC, case-folded text for dates and times (folding
   reads look-alikes, so "10" folds to "lo": digits are read before it). Nothing here
   raises on any text.
7. An urgent item (rule 4) also gets a `Card` (card.py) for the automatic card, made of
   nothing he wrote: the children found, by their names as the order writes them (or
   "the children" for a word that names them); the date, "today"'s date when it is urgent
   for the same day, else the dates written, weekdays and "tomorrow" read against the
   day it arrived, written out ("Thursday 12 March"); the clock times written, as 17:30;
   the place and topic labels (`card:` in the lexicon) of the words found, "emergency"
   for an emergency term. At most three values a field, in a fixed order.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import ahocorasick_rs
import yaml

from proxy.alerts.card import Card
from proxy.alerts.lexicon import LANGUAGES, LexiconError, matching_form, spaced
from proxy.alerts.order_mark import (
    CHILD_EMERGENCY,
    CHILD_LOGISTICS,
    SAME_DAY_LOGISTICS,
    URGENT_LOGISTICS,
    OrderMark,
    Topic,
)
from proxy.alerts.tiers import Reason
from proxy.config.model import CourtOrder

_ENDINGS = frozenset(["", "s", "es", "'"])  # may follow a listed word in its word ("Lily's")
_ROLES = ("children", "logistics", "days", "other_day", "same_day", "emergency")
_EARLY = timedelta(hours=1)  # a time this long before the item still reads as today's

# Dates and times, on NFKC case-folded text (rule 6).
_TIME = re.compile(
    r"(?<![\w:./-])([01]?\d|2[0-3])(?:([:h.])([0-5]\d))?\s?(a\.?m\.?|p\.?m\.?|uhr|h)?(?![\w:])"
)
_ISO_DATE = re.compile(r"(?<![\w./-])(\d{4})-(\d{1,2})-(\d{1,2})(?![\w/-])")
_DATE = re.compile(r"(?<![\w./:-])(\d{1,2})([./-])(\d{1,2})(?:\2(\d{4}|\d{2}))?(?![\w/]|[.:-]\d)")
_IN_TIME = re.compile(
    r"\b(?:in|within|en|dans|em|daqui a)\s+(\d{1,3})\s?(min|mins|minutes?|minutos?|minuten|"
    r"hours?|hrs?|horas?|heures?|stunden?|h)\b"
)
_MINUTE_UNITS = ("min", "mins", "minute", "minutes", "minuto", "minutos", "minuten")
_CARD_FIELDS = ("place", "topic")
_CARD_MOST = 3  # values a card field lists at most (rule 7)
THE_CHILDREN = "the children"  # the card's child when only a word naming them was found
EMERGENCY = "emergency"  # the card's topic for an emergency term
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderProfile:
    """One person's order, compiled (rule 1)."""

    person: str
    automaton: ahocorasick_rs.AhoCorasick
    roles: tuple[frozenset[str], ...]  # by pattern index: the roles a pattern plays
    weekdays: tuple[int | None, ...]  # by pattern index: the weekday it names, if any
    children: tuple[str, ...]  # the order's children, as it writes them
    names: tuple[tuple[str, ...], ...]  # by pattern index: the children it names (config)
    labels: tuple[tuple[tuple[str, str], ...], ...]  # by pattern index: (card field, label)
    tomorrow: tuple[bool, ...]  # by pattern index: whether it names tomorrow
    topics: frozenset[Topic]
    channels: frozenset[str]
    zone: tzinfo

    def __repr__(self) -> str:
        return f"OrderProfile(person={self.person!r})"  # the children's names stay unsaid


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReading:
    """What an order makes of one item: its mark and its logistics reasons."""

    mark: OrderMark
    reasons: tuple[Reason, ...]
    card: Card | None = None  # urgent logistics only (rule 7)


@functools.cache
def _word_lists() -> tuple[tuple[str, str, int | None], ...]:
    """Every shipped (matching form, role, weekday) of every language, read once."""
    source = importlib.resources.files("proxy.alerts") / "lexicons" / "logistics.yaml"
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise LexiconError(f"the logistics lexicon cannot be read: {error}") from None
    found: list[tuple[str, str, int | None]] = []
    for language in LANGUAGES:
        section = data.get(language) if isinstance(data, dict) else None
        if not isinstance(section, dict):
            raise LexiconError(f"the logistics lexicon has no section {language}")
        for role in (*_ROLES, "weekdays"):
            entries = section.get(role, [])
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise LexiconError(f"logistics lexicon {language}: {role} is not a list of words")
            if role == "weekdays" and len(entries) != 7:
                raise LexiconError(f"logistics lexicon {language}: weekdays needs seven days")
            for place, entry in enumerate(entries):
                for form in entry.split("|") if role == "weekdays" else [entry]:
                    weekday = place if role == "weekdays" else None
                    found.append((matching_form(form), role, weekday))
    return tuple((form, role, day) for form, role, day in found if form)


@functools.cache
def card_labels() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """(matching form, its (card field, label) pairs) of the lexicon's `card:` section,
    and the labels in their fixed order (rule 7)."""
    source = importlib.resources.files("proxy.alerts") / "lexicons" / "logistics.yaml"
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise LexiconError(f"the logistics lexicon cannot be read: {error}") from None
    section = data.get("card") if isinstance(data, dict) else None
    found: dict[str, list[tuple[str, str]]] = {}
    for field in _CARD_FIELDS:
        labels = section.get(field) if isinstance(section, dict) else None
        if not isinstance(labels, dict):
            raise LexiconError(f"the logistics lexicon's card has no {field} labels")
        for label, words in labels.items():
            if not isinstance(label, str) or not isinstance(words, list):
                raise LexiconError(f"logistics lexicon card {field}: {label} is not a list")
            for word in words:
                form = matching_form(str(word))
                if form:
                    found.setdefault(form, []).append((field, label))
    tomorrow = section.get("tomorrow") if isinstance(section, dict) else None
    if not isinstance(tomorrow, list):
        raise LexiconError("the logistics lexicon's card has no tomorrow words")
    for word in tomorrow:
        if form := matching_form(str(word)):
            found.setdefault(form, []).append(("date", "tomorrow"))
    return tuple((form, tuple(pairs)) for form, pairs in found.items())


@functools.cache
def label_order() -> dict[str, int]:
    """Each card label's place in the lexicon, for a fixed order on the card."""
    order: dict[str, int] = {EMERGENCY: -1}
    for _, pairs in card_labels():
        for _, label in pairs:
            order.setdefault(label, len(order))
    return order


def compile_order(person: str, order: CourtOrder, zone: tzinfo = UTC) -> OrderProfile:
    """The profile of `person`'s order, dates read in `zone` (the alerts' time zone)."""
    between = [(form, plain) for child in order.children for form, plain in _between(child)]
    entries = [
        *_word_lists(),
        *((matching_form(child), "children", None) for child in order.children),
        *((matching_form(term), "emergency", None) for term in order.emergency_terms),
        *((form, "logistics", None) for form, _ in between),
    ]
    roles: dict[str, set[str]] = {}
    weekdays: dict[str, int | None] = {}
    for form, role, weekday in entries:
        if not form or "|" in form:  # "|" is a sentence's end in matching form
            continue
        pattern = f" {form}"
        roles.setdefault(pattern, set()).add("days" if role == "weekdays" else role)
        if weekday is not None:
            weekdays[pattern] = weekday
    names: dict[str, list[str]] = {}
    for child in order.children:
        names.setdefault(f" {matching_form(child)}", []).append(child)
    labels = {f" {form}": pairs for form, pairs in card_labels()}
    for form, plain in between:  # "pick lily up" is labelled as "pick up" is
        labels.setdefault(f" {form}", labels.get(f" {matching_form(plain)}", ()))
    patterns = list(roles)
    return OrderProfile(
        person=person, automaton=ahocorasick_rs.AhoCorasick(patterns),
        roles=tuple(frozenset(roles[p]) for p in patterns),
        weekdays=tuple(weekdays.get(p) for p in patterns),
        children=tuple(order.children), names=tuple(tuple(names.get(p, ())) for p in patterns),
        labels=tuple(tuple(x for x in labels.get(p, ()) if x[0] != "date") for p in patterns),
        tomorrow=tuple(("date", "tomorrow") in labels.get(p, ()) for p in patterns),
        topics=frozenset(Topic(t) for t in order.topics), channels=frozenset(order.channels),
        zone=zone,
    )  # fmt: skip


_BETWEEN = (  # English puts the child between verb and particle: "pick Lily up"
    (("pick", "picked", "picking"), "up", "pick up"),
    (("drop", "dropped", "dropping"), "off", "drop off"),
)


def _between(child: str) -> list[tuple[str, str]]:
    """(matching form, the plain phrase it stands for) of rule 3's phrases for `child`."""
    return [
        (matching_form(f"{verb} {child} {particle}"), plain)
        for verbs, particle, plain in _BETWEEN
        for verb in verbs
    ]


@dataclass(slots=True)
class _Found:
    """What one pass over the text found."""

    roles: set[str]
    weekdays: set[int]
    same_day_spans: list[tuple[int, int]]
    other_day_starts: list[int]
    names: set[str]  # the children named, as the order writes them
    labels: set[tuple[str, str]]  # (card field, label)
    tomorrow: list[int]  # where a word for tomorrow starts


def _words(folded: str, profile: OrderProfile) -> _Found:
    text = spaced(folded)
    found = _Found(roles=set(), weekdays=set(), same_day_spans=[], other_day_starts=[],
                   names=set(), labels=set(), tomorrow=[])  # fmt: skip
    for index, start, end in profile.automaton.find_matches_as_indexes(text, overlapping=True):
        stop = text.find(" ", end)
        if text[end:stop] not in _ENDINGS:
            continue  # another word that starts the same ("schooling" is fine, "kidney" not)
        roles = profile.roles[index]
        found.roles |= roles
        weekday = profile.weekdays[index]
        if weekday is not None:
            found.weekdays.add(weekday)
        if "same_day" in roles:
            found.same_day_spans.append((start, stop))
        if "other_day" in roles:
            found.other_day_starts.append(start)
        found.names.update(profile.names[index])
        found.labels.update(profile.labels[index])
        if profile.tomorrow[index]:
            found.tomorrow.append(start)
    return found


def read_order(
    folded: str, plain: str, profile: OrderProfile, *, channel: str, received_at: datetime
) -> OrderReading:
    """What `profile`'s order makes of one item of his (rules 2-5): `folded` is its search
    text (folded by normalize), `plain` its subject and text as read, `received_at` when
    it arrived."""
    found = _words(folded, profile)
    child = "children" in found.roles
    if not folded.strip():
        topic = Topic.UNKNOWN
    else:
        topic = Topic.CHILDREN if child and Topic.CHILDREN in profile.topics else Topic.OFF_TOPIC
    now = _local(received_at, profile.zone)
    clock = _Clock.read(plain, now)
    inside = [s for s in found.other_day_starts
              if not any(a <= s < b for a, b in found.same_day_spans)]  # fmt: skip
    other_day = bool(inside) or clock.other_date or bool(found.weekdays - {now.weekday()})
    same_day = (
        bool(found.same_day_spans) or clock.relative or clock.today_date
        or now.weekday() in found.weekdays or (clock.later_today and not other_day)
    )  # fmt: skip
    cue = bool(found.roles & {"logistics", "days", "same_day", "other_day"}) or clock.any
    logistics = child and cue
    reasons: list[Reason] = []
    if child and "emergency" in found.roles:
        reasons.append(CHILD_EMERGENCY)
    if logistics:
        reasons.append(CHILD_LOGISTICS)
        if same_day:
            reasons.append(SAME_DAY_LOGISTICS)
    mark = OrderMark(person=profile.person, topic=topic, logistics=logistics,
                     channel_allowed=channel in profile.channels)  # fmt: skip
    card = None
    if URGENT_LOGISTICS.intersection(reasons):
        tomorrow = any(not any(a <= s < b for a, b in found.same_day_spans)
                       for s in found.tomorrow)  # fmt: skip
        card = _card(found, clock, profile.children, now.date(),
                     same_day=SAME_DAY_LOGISTICS in reasons, tomorrow=tomorrow)  # fmt: skip
    return OrderReading(mark=mark, reasons=tuple(reasons), card=card)


def _card(found: _Found, clock: _Clock, children_in_order: tuple[str, ...], today: date, *,
          same_day: bool, tomorrow: bool) -> Card:  # fmt: skip
    """The card of an urgent item (rule 7): nothing in it is a word of his."""
    children = [name for name in children_in_order if name in found.names]
    child = ", ".join(children[:_CARD_MOST]) or THE_CHILDREN
    days: set[date] = set()
    if same_day:
        days.add(today)
    else:
        days.update(d for d in (_nearest(c, today) for c in clock.dates) if d is not None)
        days.update(today + timedelta(days=(w - today.weekday()) % 7) for w in found.weekdays)
        if tomorrow:
            days.add(today + timedelta(days=1))
    times = list(dict.fromkeys(f"{t.hour:02d}:{t.minute:02d}" for t in clock.times))
    order = label_order()
    labelled = dict.fromkeys(_CARD_FIELDS, "")
    for field in _CARD_FIELDS:
        chosen = {label for f, label in found.labels if f == field}
        if field == "topic" and "emergency" in found.roles:
            chosen.add(EMERGENCY)
        ranked = sorted(chosen, key=lambda label: order.get(label, len(order)))
        labelled[field] = ", ".join(ranked[:_CARD_MOST])
    return Card(child=child,
                date=", ".join(_written_out(d, today) for d in sorted(days)[:_CARD_MOST]),
                time=", ".join(times[:_CARD_MOST]), place=labelled["place"],
                topic=labelled["topic"])  # fmt: skip


def _nearest(days: frozenset[date], today: date) -> date | None:
    """Of the days a written date can mean, today, or else the first one to come."""
    if today in days:
        return today
    coming = sorted(d for d in days if d > today)
    return coming[0] if coming else None


def _written_out(day: date, today: date) -> str:
    """'Thursday 12 March' (with the year when it is not this year's)."""
    text = f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"
    return text if day.year == today.year else f"{text} {day.year}"


def _local(moment: datetime, zone: tzinfo) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return aware.astimezone(zone)
    except OverflowError:  # the first or last representable day, shifted past the edge
        return aware


@dataclass(frozen=True, slots=True, kw_only=True)
class _Clock:
    """The dates and times written in an item, against the day it arrived (rule 4)."""

    any: bool = False  # a date, a time or a time from now ("in 20 minutes") is written
    later_today: bool = False  # a time from an hour before arrival to midnight
    today_date: bool = False  # the day it arrived, as a date
    other_date: bool = False  # another day, as a date
    relative: bool = False  # "in 20 minutes", "dans 2 heures"
    dates: tuple[frozenset[date], ...] = ()  # the days each written date can mean
    times: tuple[time, ...] = ()  # the clock times written, in order

    @classmethod
    def read(cls, plain: str, now: datetime) -> _Clock:
        text = unicodedata.normalize("NFKC", plain).casefold()
        today = now.date()
        dates = [_iso(m) for m in _ISO_DATE.finditer(text)]
        for match in _DATE.finditer(text):
            dates.append(_written_date(match, today))
        dates_found = [d for d in dates if d is not None]
        times = [t for t in map(_time_of, _TIME.finditer(text)) if t is not None]
        relative = any(_soon(m) for m in _IN_TIME.finditer(text))
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        earliest = (now - _EARLY).time() if now - _EARLY >= midnight else time(0, 0)
        return cls(
            any=bool(dates_found or times) or relative, relative=relative,
            later_today=any(t >= earliest for t in times),
            today_date=any(today in days for days in dates_found),
            other_date=any(today not in days for days in dates_found),
            dates=tuple(dates_found), times=tuple(times),
        )  # fmt: skip


def _iso(match: re.Match[str]) -> frozenset[date] | None:
    try:
        return frozenset([date(int(match[1]), int(match[2]), int(match[3]))])
    except ValueError:
        return None


def _written_date(match: re.Match[str], today: date) -> frozenset[date] | None:
    """The days a written date can mean (12/03: 12 March or December 3), or None if it
    reads as no date at all (17.30, 30/17)."""
    first, second, year_text = int(match[1]), int(match[3]), match[4]
    if year_text is None and match[2] != "/":
        return None  # "17.30", "3-4" without a year: as often a time, a price or a range
    year = today.year if year_text is None else int(year_text)
    if year < 100:
        year += 2000
    days = set()
    for day, month in ((first, second), (second, first)):
        try:
            days.add(date(year, month, day))
        except ValueError:
            continue
    return frozenset(days) or None


def _time_of(match: re.Match[str]) -> time | None:
    """A clock time written as 17:30, 17h30, 17h, 5pm, 5:30 p.m., 17 Uhr, 17.30 Uhr; a
    bare number is none, nor "17.30" without Uhr (rule 4)."""
    hour, separator, minutes, suffix = int(match[1]), match[2], match[3], match[4]
    if suffix is None and separator not in (":", "h"):
        return None
    if suffix == "h" and " " in match[0]:
        return None  # "2 h": two hours, not two o'clock
    if separator == "." and suffix != "uhr" and not (suffix or "").startswith(("a", "p")):
        return None
    if suffix and suffix[0] in "ap":
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if suffix[0] == "p" else 0)
    return time(hour, int(minutes or 0))


def _soon(match: re.Match[str]) -> bool:
    """'in 20 minutes', 'dans 2 heures': within twelve hours."""
    amount = int(match[1])
    return amount <= (12 * 60 if match[2] in _MINUTE_UNITS else 12)
