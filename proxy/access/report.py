"""The pattern report: held items in, one court-ready PDF out.

Rules this module keeps:
1. Pure: values in, a PDF out. It never opens the archive, never decrypts, never reads the
   clock (`generated_at` is an argument); the same items give the same bytes.
2. Every item the caller passes appears twice, in the caller's order: one row in the item
   table (Bates number, time, channel, sender, rule, urgency tier, full SHA-256; the
   summary counts items by tier too) and one rendering block (with the tier's reasons)
   that carries the banner "derived rendering — the original is in originals/". The PDF is
   never the evidence itself; the originals and their proofs in the bundle are.
3. It never raises on odd input: no items, empty fields, control characters, scripts the
   font lacks (written as [U+XXXX]), naive times (read as UTC), renderings of any size
   (cut to MAX_LINES lines of MAX_CHARS characters, with a note saying so).
4. Times are shown in UTC; days (the chart, "since the no-contact date") are counted in the
   caller's time zone, UTC when none is given.
5. Cost grows with the items' text and nothing else: 10,000 items of a few dozen lines
   each take seconds, because text is drawn line by line with measured widths.
6. When any item carries a court order's mark, the summary ends with an order-compliance
   section per person (`proxy.access.compliance`): shares on the allowed topic, off
   topic, abusive and not read; by channel, by local hour and by weekday; the summaries
   relayed to her and the replies sent to him (sent, failed, items answered, median and
   longest delay), and every urgent logistics item with its first relay's delay or "not
   relayed".
7. Each relay or reply the caller passes (`answers`, compliance.py rule 4) is shown
   after the rendering of the item it names, never instead of it: headed as a summary
   sent to her (or a reply sent to him) by the contact at its time, "the contact's
   words, not evidence", and its text, cut and cleaned as a rendering is (rule 3). One
   whose delivery failed says so. An answer naming no item of the report is not shown.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import BinaryIO

from proxy.access.compliance import (
    EVENING,
    KINDS,
    NOT_READ,
    Answer,
    Answered,
    Compliance,
    Way,
    answers_to,
    compliance,
)
from proxy.access.pdf_text import BOLD, MONO, SANS, Cell, Pages
from proxy.access.timeline import timeline_png
from proxy.alerts.order_mark import OrderMark

BANNER = "derived rendering — the original is in originals/"
SHORTENED = "[rendering shortened; the original is complete in originals/]"
CONTINUED = "continued: "  # heads a page where a rendering goes on
NOTE = (
    "This report is a derived rendering. The originals, their SHA-256 hashes and the proofs "
    "are in the bundle; verify.py checks them. Times are UTC. Characters the report's font "
    "cannot show, and invisible or control characters, are written as [U+XXXX]."
)
MAX_CHARS = 20_000
MAX_LINES = 200
TOP_SENDERS = 50
NO_SENDER, NO_PERSON = "(no sender)", "(unknown)"
TIERS = ("urgent", "elevated", "digest")
_SENDER_W = (235, 50, 110, 110)  # the summary's sender table: identity, items, first, last
# The item table, on landscape pages: (x, width, family, heading) per column.
_COLUMNS: tuple[Cell, ...] = (
    (0, 46, SANS, "Bates"),
    (48, 78, SANS, "Received (UTC)"),
    (128, 36, SANS, "Channel"),
    (166, 168, SANS, "Sender"),
    (336, 118, SANS, "Rule"),
    (456, 48, SANS, "Urgency"),
    (506, 256, MONO, "SHA-256 of the original"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportItem:
    """One held item as the report shows it (already decrypted and rendered safe)."""

    bates: str  # "NC-000001"
    received_at: datetime  # aware, UTC
    channel: str  # "email" | "sms" | "voice"
    sender: str  # the main sender identity (address or E.164 number), may be ""
    person: str | None  # the blocked person's id the rule names, None if unknown
    rule: str  # rule id, e.g. "people.mark.emails"
    summary: str  # subject or first line
    sha256: str  # hex SHA-256 of the original
    rendering: str  # the safe text rendering (multi-line, any Unicode)
    tier: str = "digest"  # how urgent it was found when held: urgent, elevated or digest
    urgency: str = "digest"  # the tier and its reasons in one line (access/render.urgency)
    order: OrderMark | None = None  # what his court order made of it (rule 6)
    abusive: bool = False  # an urgent reason other than logistics (order_mark.abusive)
    urgent_logistics: bool = False  # urgent for the children's logistics (rule 6)
    leaf_hash: str = ""  # hex: the one relays and replies name (rule 7)


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """How often one sender identity made contact, and over which span."""

    sender: str
    count: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The pattern of contact in numbers; every sequence is sorted by count, then name."""

    count: int
    first: datetime | None
    last: datetime | None
    by_channel: tuple[tuple[str, int], ...]
    by_tier: tuple[tuple[str, int], ...]  # urgent, elevated, digest: every tier, in order
    by_person: tuple[tuple[str, int], ...]
    by_sender: tuple[Identity, ...]
    since: date | None
    since_count: int
    since_by_channel: tuple[tuple[str, int], ...]
    since_senders: int
    period: str  # "week" or "month"
    new_identities: tuple[tuple[str, tuple[str, ...]], ...]  # period label, new senders
    per_day: dict[str, dict[date, int]]  # channel -> local day -> items


def utc(moment: datetime) -> datetime:
    """The moment in UTC; a naive time is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def local_day(moment: datetime, tz: tzinfo) -> date:
    try:
        return utc(moment).astimezone(tz).date()
    except OverflowError:  # the first or last representable day, shifted past the edge
        return utc(moment).date()


def _ranked(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _period(day: date, period: str) -> str:
    if period == "week":
        return f"week of {day - timedelta(days=day.weekday())}"
    return f"{day:%Y-%m}"


def _by_tier(counts: Counter[str]) -> tuple[tuple[str, int], ...]:
    """Every tier, most urgent first, then any other label an item carried."""
    known = [(tier, counts.pop(tier, 0)) for tier in TIERS]
    return (*known, *_ranked(counts))


def summarize(items: Sequence[ReportItem], *, no_contact_since: date | None, tz: tzinfo) -> Summary:
    """Count the items: totals, spans, contact since the no-contact date, new identities."""
    ordered = sorted(items, key=lambda item: utc(item.received_at))
    senders: dict[str, list[datetime]] = {}  # sender -> [first, last], in order of first contact
    tally: Counter[str] = Counter()
    per_day: defaultdict[str, Counter[date]] = defaultdict(Counter)
    since: list[ReportItem] = []
    for item in ordered:
        at, day = utc(item.received_at), local_day(item.received_at, tz)
        sender = item.sender.strip() or NO_SENDER
        tally[sender] += 1
        senders.setdefault(sender, [at, at])[1] = at
        per_day[item.channel][day] += 1
        if no_contact_since is not None and day >= no_contact_since:
            since.append(item)
    first = utc(ordered[0].received_at) if ordered else None
    last = utc(ordered[-1].received_at) if ordered else None
    period = "week" if first and last and last - first <= timedelta(days=183) else "month"
    new: defaultdict[str, list[str]] = defaultdict(list)
    for sender, (seen, _) in senders.items():
        if sender != NO_SENDER:
            new[_period(local_day(seen, tz), period)].append(sender)
    by_sender = sorted(
        (Identity(sender=s, count=tally[s], first=f, last=la) for s, (f, la) in senders.items()),
        key=lambda identity: (-identity.count, identity.sender),
    )
    return Summary(
        count=len(ordered),
        first=first,
        last=last,
        by_channel=_ranked(Counter(item.channel for item in ordered)),
        by_tier=_by_tier(Counter(item.tier for item in ordered)),
        by_person=_ranked(Counter(item.person or NO_PERSON for item in ordered)),
        by_sender=tuple(by_sender),
        since=no_contact_since,
        since_count=len(since),
        since_by_channel=_ranked(Counter(item.channel for item in since)),
        since_senders=len({item.sender.strip() or NO_SENDER for item in since}),
        period=period,
        new_identities=tuple((label, tuple(names)) for label, names in new.items()),
        per_day={channel: dict(days) for channel, days in per_day.items()},
    )


def when(moment: datetime) -> str:
    """'2024-03-05 14:03:22', in UTC (isoformat, because strftime drops zeros of year 1)."""
    return utc(moment).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def write_report(
    out: BinaryIO,
    *,
    items: Sequence[ReportItem],
    title: str,
    generated_at: datetime,
    no_contact_since: date | None,
    timezone: tzinfo | None = None,
    answers: Sequence[Answer] = (),
) -> None:
    """Write the whole report (summary, chart, item table, renderings) as PDF to `out`;
    `answers`: the relays and replies in the custody log (rules 6 and 7)."""
    tz = timezone or UTC
    summary = summarize(items, no_contact_since=no_contact_since, tz=tz)
    pdf = Pages(footer=f"nocontact report generated {when(generated_at)} UTC")
    pdf.set_title(pdf.faces[SANS].clean(" ".join(title.split())))
    pdf.set_creator("nocontact")
    pdf.set_creation_date(utc(generated_at))
    _summary_pages(pdf, summary, title=title, generated_at=generated_at, tz=tz)
    for person in compliance(items, tz, answers):
        _compliance(pdf, person, tz=tz)
    _chart_page(pdf, summary, tz=tz)
    _table_pages(pdf, items)
    _rendering_pages(pdf, items, answers_to(answers))
    out.write(pdf.output())


def _heading(pdf: Pages, text: str) -> None:
    pdf.y_cursor += 6
    if not pdf.room(40):
        pdf.new_page(pdf.orientation)
    pdf.line_of(BOLD, 11, text)


def _rows(pdf: Pages, rows: Iterable[Sequence[str]], widths: Sequence[float]) -> None:
    """A simple table: each row's cells side by side, starting 10 pt in."""
    for row in rows:
        pdf.advance(9 * 1.3)
        x, cells = 10.0, []
        for text, width in zip(row, widths, strict=False):
            cells.append((x, width - 6, SANS, text))
            x += width
        pdf.row(9, cells)


def _summary_pages(
    pdf: Pages, s: Summary, *, title: str, generated_at: datetime, tz: tzinfo
) -> None:
    pdf.new_page("P")
    pdf.y_cursor += 6
    pdf.lines(BOLD, 16, pdf.faces[BOLD].wrap(" ".join(title.split()) or "Report", 16, 515))
    pdf.line_of(SANS, 9, f"Generated {when(generated_at)} UTC · days counted in {tz}", gray=90)
    pdf.y_cursor += 4
    pdf.paragraph(SANS, 9, NOTE)
    _heading(pdf, "Overview")
    overview = [("Items held", str(s.count))]
    if s.first and s.last:
        overview += [
            ("First contact", f"{when(s.first)} UTC"),
            ("Last contact", f"{when(s.last)} UTC"),
        ]
    if s.since is not None:
        channels = ", ".join(f"{channel} {n}" for channel, n in s.since_by_channel)
        attempts = f"{s.since_count} from {s.since_senders} identities"
        overview += [
            ("No contact since", f"{s.since}"),
            ("Contact attempts since", attempts + (f" ({channels})" if channels else "")),
        ]
    _rows(pdf, overview, (150, 355))
    _heading(pdf, "By channel")
    _rows(pdf, ((channel or "(none)", str(n)) for channel, n in s.by_channel), (150, 80))
    _heading(pdf, "By urgency (found when held, from the text; docs/threats.md)")
    _rows(pdf, ((tier, str(n)) for tier, n in s.by_tier), (150, 80))
    _heading(pdf, "By person")
    _rows(pdf, ((person, str(n)) for person, n in s.by_person), (150, 80))
    _heading(pdf, f"By sender identity (top {TOP_SENDERS})")
    _rows(pdf, [("Identity", "Items", "First contact (UTC)", "Last contact (UTC)")], _SENDER_W)
    top, rest = s.by_sender[:TOP_SENDERS], s.by_sender[TOP_SENDERS:]
    _rows(pdf, ((i.sender, str(i.count), when(i.first), when(i.last)) for i in top), _SENDER_W)
    if rest:
        others = f"others ({len(rest)} identities)"
        _rows(pdf, [(others, str(sum(i.count for i in rest)), "", "")], _SENDER_W)
    _heading(pdf, f"New identities over time (first contact, per {s.period})")
    _rows(
        pdf,
        ((label, str(len(names)), ", ".join(names)) for label, names in s.new_identities),
        (110, 40, 355),
    )


_ANSWER_X = 14  # a relay or reply is set in from the original it follows (rule 7)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _compliance(pdf: Pages, c: Compliance, *, tz: tzinfo) -> None:
    """One person's order-compliance section (rule 6)."""
    _heading(pdf, f"Court order compliance: {c.person} (hours and days in {tz})")
    rows = [("Held from him under the order", str(c.count))]
    rows += [(kind.capitalize(), f"{c.kinds[kind]} ({c.share(kind)})") for kind in KINDS
             if kind != NOT_READ or c.kinds[kind]]  # fmt: skip
    rows += [
        ("About the children's logistics", str(c.logistics)),
        ("On a channel the order does not allow", str(c.off_channel)),
        (f"After {EVENING}:00", f"{c.evening} messages after {EVENING}:00"),
    ]
    _rows(pdf, rows, (200, 305))
    pdf.line_of(SANS, 8, "Abusive: an urgent reason other than logistics (docs/threats.md).",
                gray=90)  # fmt: skip
    widths = (100, *(70,) * (len(KINDS) + 1))
    _rows(pdf, [("Channel", "Items", *(k.capitalize() for k in KINDS))], widths)
    _rows(pdf, ((channel, str(sum(n.values())), *(str(n[k]) for k in KINDS))
                for channel, n in c.by_channel.items()), widths)  # fmt: skip
    for half in (0, 12):
        hours = range(half, half + 12)
        _rows(pdf, [("Hour", *(f"{h:02d}" for h in hours)),
                    ("Items", *(str(c.by_hour[h]) for h in hours))], (45, *(38,) * 12))  # fmt: skip
    _rows(pdf, [("Weekday", *_WEEKDAYS), ("Items", *map(str, c.by_weekday))], (45, *(50,) * 7))
    _rows(pdf, [*_answered("Summaries relayed to her", c.relays),
                *_answered("Replies sent to him", c.replies)], (200, 305))  # fmt: skip
    pdf.line_of(SANS, 8, "Delay: from his item's arrival to the first one sent for it.",
                gray=90)  # fmt: skip
    if c.urgent:
        _rows(pdf, [("Urgent logistics item", "Received (UTC)", "First summary sent")],
              (120, 130, 255))  # fmt: skip
        _rows(pdf, ((u.bates, when(u.received_at), _after(u.relayed_after)) for u in c.urgent),
              (120, 130, 255))  # fmt: skip


def _answered(label: str, a: Answered) -> list[tuple[str, str]]:
    """A way of answering in two rows: how many, and how soon (rule 6)."""
    failed = f"; {a.failed} failed" if a.failed else ""
    items = f"{a.items} item" + ("" if a.items == 1 else "s")
    rows = [(label, f"{a.sent} sent, for {items}{failed}")]
    if a.median is not None and a.longest is not None:
        rows.append(("Delay", f"median {duration(a.median)}, longest {duration(a.longest)}"))
    return rows


def _after(delay: timedelta | None) -> str:
    return "not relayed" if delay is None else f"after {duration(delay)}"


def duration(delay: timedelta) -> str:
    """'1 h 05 min', '12 min', '40 s', '2 d 3 h 00 min'."""
    seconds = int(delay.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    days, rest = divmod(seconds // 60, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if not days and not hours:
        return f"{minutes} min"
    return (f"{days} d " if days else "") + f"{hours} h {minutes:02d} min"


def _chart_page(pdf: Pages, s: Summary, *, tz: tzinfo) -> None:
    pdf.new_page("L")
    pdf.line_of(BOLD, 11, f"Items per day, by channel (days in {tz})")
    png = timeline_png(s.per_day, since=s.since)
    if png is None:
        pdf.line_of(SANS, 9, "No items.")
        return
    pdf.image(png, x=pdf.margin, y=pdf.y_cursor + 8, w=pdf.w - 2 * pdf.margin)


def _table_header(pdf: Pages) -> None:
    pdf.new_page("L")
    pdf.line_of(BOLD, 11, "Every item: one row each, with the SHA-256 of its original")
    pdf.advance(10)
    pdf.row(7.5, [(x, w, BOLD, heading) for x, w, _, heading in _COLUMNS])
    pdf.rule(3)


def _table_pages(pdf: Pages, items: Sequence[ReportItem]) -> None:
    _table_header(pdf)
    for item in items:
        if not pdf.room(9.5):
            _table_header(pdf)
        pdf.y_cursor += 9.5
        fields = (item.bates, when(item.received_at), item.channel, item.sender, item.rule,
                  item.tier)  # fmt: skip
        cells = [
            (x, w, family, text) for (x, w, family, _), text in zip(_COLUMNS, fields, strict=False)
        ]
        pdf.row(7, cells)
        x, w, family, _ = _COLUMNS[-1]
        pdf.row(6.5, [(x, w, family, item.sha256)])


def _rendering_pages(
    pdf: Pages, items: Sequence[ReportItem], by_leaf: dict[str, tuple[Answer, ...]]
) -> None:
    if not items:
        return
    pdf.new_page("P")
    pdf.line_of(BOLD, 11, "Renderings of every item")
    for item in items:
        if not pdf.room(100):  # the item's header and its first lines stay together
            pdf.new_page("P")
        pdf.rule(6)
        pdf.line_of(BOLD, 9, f"{item.bates}   {when(item.received_at)} UTC   {item.channel}")
        pdf.line_of(SANS, 8, f"From: {item.sender}")
        pdf.line_of(SANS, 8, f"Person: {item.person or NO_PERSON} · Rule: {item.rule}")
        pdf.line_of(SANS, 8, f"Urgency: {item.urgency}")
        pdf.line_of(SANS, 8, f"Summary: {item.summary}")
        pdf.line_of(SANS, 8, f"SHA-256: {item.sha256}", gray=90)
        pdf.line_of(BOLD, 8, BANNER, gray=90)
        pdf.y_cursor += 3
        _text(pdf, item.rendering, f"{CONTINUED}{item.bates}", SHORTENED)
        for answer in by_leaf.get(item.leaf_hash, ()) if item.leaf_hash else ():
            _answer(pdf, item.bates, answer)


def _text(pdf: Pages, text: str, label: str, shortened_note: str, *, x: float = 0) -> None:
    """Text of any size, cut to MAX_CHARS and MAX_LINES with a note saying so (rule 3)."""
    lines = pdf.faces[SANS].wrap(text[:MAX_CHARS], 8.5, pdf.right - pdf.margin - x)
    pdf.lines(SANS, 8.5, lines[:MAX_LINES], label=label, x=x)
    if len(text) > MAX_CHARS or len(lines) > MAX_LINES:
        pdf.line_of(BOLD, 8, shortened_note, gray=90)


def answer_heading(answer: Answer) -> str:
    """What heads a relay or a reply beside its original (rule 7)."""
    what = "Summary sent to her" if answer.way is Way.RELAY else "Reply sent to him"
    if not answer.sent:
        what = what.replace(" sent ", " NOT delivered (recorded as failed) ", 1)
    return (f"{what} by contact {answer.contact or '(unnamed)'} at {when(answer.at)} UTC "
            "— the contact's words, not evidence")  # fmt: skip


def _answer(pdf: Pages, bates: str, answer: Answer) -> None:
    if not pdf.room(40):
        pdf.new_page("P")
    pdf.y_cursor += 4
    pdf.paragraph(BOLD, 8, answer_heading(answer), x=_ANSWER_X)
    pdf.y_cursor += 2
    _text(pdf, answer.text, f"{CONTINUED}{bates}", "[shortened; the custody log holds it all]",
          x=_ANSWER_X)  # fmt: skip
