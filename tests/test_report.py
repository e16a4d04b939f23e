"""The pattern report: one table row and one rendering per item, right totals, odd input safe."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from proxy.access.pdf_text import BOLD, MONO, SANS, Face, Pages
from proxy.access.report import (
    BANNER,
    CONTINUED,
    MAX_LINES,
    NO_SENDER,
    SHORTENED,
    TOP_SENDERS,
    ReportItem,
    summarize,
    write_report,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
GENERATED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
TABLE_TITLE = "Every item: one row each"
TABLE_HEADER = "Bates Received (UTC) Channel Sender Rule Urgency SHA-256 of the original"
BATES = re.compile(r"NC-\d{6}\b")
SENDERS = ("mark@example.com", "+15551234567", "Марк Иванов <mark@example.ru>")


def item(n: int, **changes: Any) -> ReportItem:
    base = ReportItem(
        bates=f"NC-{n:06d}",
        received_at=T0 + timedelta(hours=7 * n),
        channel=("email", "sms", "voice")[n % 3],
        sender=SENDERS[n % len(SENDERS)],
        person="mark" if n % 4 else None,
        rule="people.mark.emails",
        summary=f"message {n}",
        sha256=hashlib.sha256(str(n).encode()).hexdigest(),
        rendering="\n".join(f"line {k} of item {n}" for k in range(5)),
    )
    return replace(base, **changes)


def render(
    items: list[ReportItem], *, since: date | None = None, tz: tzinfo | None = None
) -> list[str]:
    """Write the report and read back the text of each page."""
    out = io.BytesIO()
    write_report(
        out, items=items, title="Held items", generated_at=GENERATED, no_contact_since=since,
        timezone=tz,
    )  # fmt: skip
    return [page.extract_text() for page in PdfReader(out).pages]


@pytest.fixture(scope="module")
def many() -> tuple[list[ReportItem], list[str]]:
    """A report of 130 items: enough for several table pages."""
    items = [item(n) for n in range(1, 131)]
    return items, render(items, since=date(2024, 3, 10))


@pytest.fixture(scope="module")
def faces() -> dict[str, Face]:
    return Pages(footer="test").faces


def table_pages(pages: list[str]) -> list[str]:
    return [page for page in pages if TABLE_TITLE in page]


def test_one_table_row_per_item(many: tuple[list[ReportItem], list[str]]) -> None:
    """Every Bates number is in exactly one table row, with its time and full SHA-256."""
    items, pages = many
    rows = [line for page in table_pages(pages) for line in page.splitlines() if BATES.match(line)]
    assert [BATES.match(row).group() for row in rows] == [i.bates for i in items]  # type: ignore[union-attr]
    for row, it in zip(rows, items, strict=True):
        assert it.sha256 in row
        assert f"{it.received_at:%Y-%m-%d %H:%M:%S}" in row


def test_every_item_is_rendered_once_with_the_banner(
    many: tuple[list[ReportItem], list[str]],
) -> None:
    """Each Bates number appears twice in all (table and rendering); one banner per item."""
    items, pages = many
    # A rendering that runs onto another page repeats its number there, marked "continued".
    text = re.sub(re.escape(CONTINUED) + r"\S+", "", "\n".join(pages))
    counts = {
        bates: len(re.findall(re.escape(bates) + r"\b", text)) for bates in BATES.findall(text)
    }
    assert counts == {it.bates: 2 for it in items}
    assert text.count(BANNER) == len(items)
    assert "line 4 of item 130" in text


def test_table_header_repeats_on_every_table_page(
    many: tuple[list[ReportItem], list[str]],
) -> None:
    """The item table spans several pages and each one starts with the column headings."""
    tables = table_pages(many[1])
    assert len(tables) >= 3
    assert all(TABLE_HEADER in page for page in tables)


def test_summary_page_shows_the_totals(many: tuple[list[ReportItem], list[str]]) -> None:
    """The first page states the count, first and last contact, channels and since-date totals."""
    items, pages = many
    first = pages[0]
    assert "Items held 130" in first
    assert "First contact 2024-03-01 16:00:00 UTC" in first
    assert f"Last contact {items[-1].received_at:%Y-%m-%d %H:%M:%S} UTC" in first
    assert "email 43" in first
    assert "sms 44" in first
    assert "voice 43" in first
    since = [it for it in items if it.received_at.date() >= date(2024, 3, 10)]
    assert f"Contact attempts since {len(since)} from 3 identities" in first
    assert "verify.py" in first


def test_report_counts_and_shows_urgency() -> None:
    """The summary counts items by tier (every tier, most urgent first), the table shows
    each item's tier, and each rendering block its reasons."""
    items = [
        item(1, tier="urgent", urgency="urgent (threat, weapon)"),
        item(2, tier="urgent", urgency="urgent (proximity)"),
        item(3, tier="elevated", urgency="elevated (children)"),
        item(4),
    ]
    pages = render(items)
    text = "\n".join(pages)
    assert "urgent 2" in pages[0]
    assert "elevated 1" in pages[0]
    assert "digest 1" in pages[0]
    assert re.search(r"NC-000001 .* urgent", "\n".join(table_pages(pages)))
    assert "Urgency: urgent (threat, weapon)" in text
    assert "Urgency: elevated (children)" in text
    assert "Urgency: digest" in text
    counted = summarize(items, no_contact_since=None, tz=UTC)
    assert counted.by_tier == (("urgent", 2), ("elevated", 1), ("digest", 1))


def test_summarize_counts_everything() -> None:
    """Totals by channel, person and sender, the span, and new identities per week."""
    items = [item(n) for n in range(1, 13)] + [item(13, sender="", channel="voice")]
    summary = summarize(items, no_contact_since=date(2024, 3, 3), tz=UTC)
    assert summary.count == 13
    assert summary.first == items[0].received_at
    assert summary.last == items[-1].received_at
    assert dict(summary.by_channel) == {"email": 4, "sms": 4, "voice": 5}
    assert dict(summary.by_person) == {"mark": 10, "(unknown)": 3}
    assert {i.sender: i.count for i in summary.by_sender} == {
        SENDERS[0]: 4, SENDERS[1]: 4, SENDERS[2]: 4, NO_SENDER: 1,
    }  # fmt: skip
    # 2024-03-03 starts at item 6 (42 hours after 09:00 on the 1st).
    assert summary.since_count == 8
    assert summary.since_senders == 4
    assert summary.period == "week"
    assert summary.new_identities == (("week of 2024-02-26", (SENDERS[1], SENDERS[2], SENDERS[0])),)
    assert sum(sum(days.values()) for days in summary.per_day.values()) == 13


def test_new_identities_are_counted_per_month_over_long_spans() -> None:
    """Over more than half a year, new identities are grouped by the month of first contact."""
    items = [
        item(n, sender=f"n{n}@x.org", received_at=T0 + timedelta(days=40 * n)) for n in range(6)
    ]
    summary = summarize(items, no_contact_since=None, tz=UTC)
    assert summary.period == "month"
    assert [label for label, _ in summary.new_identities] == [
        "2024-03", "2024-04", "2024-05", "2024-06", "2024-08", "2024-09",
    ]  # fmt: skip


def test_days_are_counted_in_the_given_time_zone() -> None:
    """23:30 UTC on 29 February is 1 March in UTC+1, so it counts as after a 1 March cut-off."""
    late = [item(1, received_at=datetime(2024, 2, 29, 23, 30, tzinfo=UTC))]
    paris = timezone(timedelta(hours=1))
    assert summarize(late, no_contact_since=date(2024, 3, 1), tz=paris).since_count == 1
    assert summarize(late, no_contact_since=date(2024, 3, 1), tz=UTC).since_count == 0


def test_top_senders_then_others() -> None:
    """Only the top 50 identities get a row; the rest are one 'others' row with their total."""
    items = [item(n, sender=f"s{n:03d}@x.org") for n in range(1, 61)]
    first = "\n".join(render(items)[:2])
    assert "s050@x.org 1" in first
    assert "s051@x.org 1" not in first
    assert f"others ({60 - TOP_SENDERS} identities) {60 - TOP_SENDERS}" in first


def test_unicode_senders_survive() -> None:
    """Cyrillic and emoji are drawn; CJK, which the font lacks, is written as code points."""
    items = [item(1, sender="Марк 😀 <m@x.ru>", rendering="Я знаю, где ты. 你好")]
    text = "\n".join(render(items))
    assert "Марк 😀 <m@x.ru>" in text
    assert "Я знаю, где ты. [U+4F60][U+597D]" in text


def test_empty_report() -> None:
    """No items still gives a summary, an empty table and no rendering section."""
    pages = render([], since=date(2024, 1, 1))
    assert "Items held 0" in pages[0]
    assert "Contact attempts since 0 from 0 identities" in pages[0]
    assert len(table_pages(pages)) == 1
    assert not any("Renderings of every item" in page for page in pages)


def test_long_rendering_is_shortened_with_a_note() -> None:
    """A rendering past MAX_LINES lines is cut there and says the original is complete."""
    long = "\n".join(f"row {k}" for k in range(MAX_LINES + 50))
    text = "\n".join(render([item(1, rendering=long), item(2)]))
    assert f"row {MAX_LINES - 1}\n" in text
    assert f"row {MAX_LINES}\n" not in text
    assert text.count(SHORTENED) == 1


def test_huge_rendering_is_shortened() -> None:
    """A 1 MB rendering without a single space is cut, not drawn whole, and not fatal."""
    text = "\n".join(render([item(1, rendering="x" * 1_000_000)]))
    assert SHORTENED in text


ODD: dict[str, Callable[[], ReportItem]] = {
    "empty fields": lambda: ReportItem(
        bates="",
        received_at=T0,
        channel="",
        sender="",
        person=None,
        rule="",
        summary="",
        sha256="",
        rendering="",
    ),
    "controls": lambda: item(
        1, sender="a\x00b\x1b[31m\u202ec", summary="\r\n\t", rendering="\x00\x07\x0c\ud800\n\x85"
    ),
    "naive time": lambda: item(1, received_at=datetime(2024, 3, 1, 12)),
    "first and last days": lambda: item(1, received_at=datetime.min.replace(tzinfo=UTC)),
    "mathtext channel": lambda: item(1, channel="$\\frac{$", person="{nb}"),
    "very long fields": lambda: item(1, sender="s" * 5000, rule="r " * 5000, bates="B" * 300),
}


@pytest.mark.parametrize("name", ODD)
def test_odd_input_never_raises(name: str) -> None:
    """Odd items still give a PDF with the item's banner in it."""
    odd = ODD[name]()
    far = item(2, received_at=datetime.max.replace(tzinfo=timezone(timedelta(hours=5))))
    pages = render([odd, far], since=date(2024, 1, 1), tz=timezone(timedelta(hours=-12)))
    assert "\n".join(pages).count(BANNER) == 2


def test_same_items_give_the_same_bytes() -> None:
    """The report is a pure function of its arguments: two runs are byte for byte equal."""
    items = [item(n) for n in range(1, 6)]
    outs = [io.BytesIO(), io.BytesIO()]
    for out in outs:
        write_report(out, items=items, title="t", generated_at=GENERATED, no_contact_since=None)
    assert outs[0].getvalue() == outs[1].getvalue()


def test_chart_is_embedded_only_when_there_are_items() -> None:
    """The timeline page carries one image, or none for an empty report."""
    for items, images in (([item(1), item(2)], 1), ([], 0)):
        out = io.BytesIO()
        write_report(out, items=items, title="t", generated_at=GENERATED, no_contact_since=None)
        assert sum(len(page.images) for page in PdfReader(out).pages) == images


def test_clean_writes_unshowable_characters_as_code_points(faces: dict[str, Face]) -> None:
    """Glyphs the font has pass through; missing, control and format characters become [U+…]."""
    face = faces[SANS]
    assert face.clean("Жж é 😀") == "Жж é 😀"
    assert face.clean("你\u202e\x00\ud800") == "[U+4F60][U+202E][U+0000][U+D800]"
    assert faces[MONO].clean("😀") == "[U+1F600]"


@settings(max_examples=200, deadline=None)
@given(text=st.text(), width=st.floats(20, 500))
def test_wrapped_lines_fit_and_keep_every_character(
    faces: dict[str, Face], text: str, width: float
) -> None:
    """No wrapped line is wider than asked, and no visible character is dropped."""
    face = faces[BOLD]
    lines = face.wrap(text, 9, width)
    assert all(face.width(line, 9) <= width + 1e-6 or len(line) == 1 for line in lines)
    kept = "".join("".join(line.split()) for line in lines)
    raw_lines = text.expandtabs(4).splitlines()
    assert kept == "".join("".join(face.clean(raw).split()) for raw in raw_lines)


@settings(max_examples=200, deadline=None)
@given(text=st.text(), width=st.floats(10, 300))
def test_fit_stays_inside_its_cell(faces: dict[str, Face], text: str, width: float) -> None:
    """A table cell is one line no wider than its column, cut with an ellipsis."""
    face = faces[SANS]
    line = face.fit(text, 7, width)
    assert "\n" not in line
    assert face.width(line, 7) <= width + 1e-6 or line == "…"
