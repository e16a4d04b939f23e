"""Order compliance in numbers and in the report (proxy/access/compliance.py)."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from pypdf import PdfReader

from proxy.access.compliance import ABUSIVE, NOT_READ, OFF_TOPIC, ON_TOPIC, compliance
from proxy.access.report import ReportItem, write_report
from proxy.alerts.order_mark import OrderMark, Topic
from tests.test_report import item

MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ON = OrderMark(person="mark", topic=Topic.CHILDREN, logistics=True)
OFF = OrderMark(person="mark", topic=Topic.OFF_TOPIC)
VOICEMAIL = OrderMark(person="mark", topic=Topic.UNKNOWN, channel_allowed=False)


def _traffic() -> list[ReportItem]:
    """Mark: two on topic (one at 18:00), an abusive one at 22:00 on topic, an off-topic
    one on Sunday, a voicemail on a channel his order does not allow; Joe: one off topic;
    and an item of no order at all."""
    return [
        item(1, received_at=MONDAY_9, channel="email", order=ON),
        item(2, received_at=MONDAY_9 + timedelta(hours=9), channel="email", order=ON),
        item(3, received_at=MONDAY_9 + timedelta(hours=13), channel="sms", order=ON,
             abusive=True),
        item(4, received_at=MONDAY_9 + timedelta(days=6), channel="sms", order=OFF),
        item(5, received_at=MONDAY_9 + timedelta(days=1), channel="voice", order=VOICEMAIL),
        item(6, received_at=MONDAY_9, channel="email", order=replace(OFF, person="joe")),
        item(7, received_at=MONDAY_9, channel="email"),
    ]  # fmt: skip


def test_each_item_counts_once_under_its_person() -> None:
    """Abusive first, then the topic; hours and weekdays local; logistics and channels
    beside; an item with no order mark is not counted."""
    joe, mark = compliance(_traffic(), timezone(timedelta(hours=1)))
    assert (joe.person, joe.count, joe.kinds[OFF_TOPIC]) == ("joe", 1, 1)
    assert mark.count == 5
    assert mark.kinds == {ON_TOPIC: 2, OFF_TOPIC: 1, ABUSIVE: 1, NOT_READ: 1}
    assert mark.share(ON_TOPIC) == "40%"
    assert (mark.logistics, mark.off_channel) == (3, 1)
    assert mark.by_channel["sms"] == {ON_TOPIC: 0, OFF_TOPIC: 1, ABUSIVE: 1, NOT_READ: 0}
    assert (mark.by_hour[10], mark.by_hour[19], mark.by_hour[23]) == (3, 1, 1)
    assert mark.evening == 2  # 19:00 and 23:00, local
    assert mark.by_weekday == (3, 1, 0, 0, 0, 0, 1)


def test_the_report_has_a_section_only_for_people_with_an_order() -> None:
    """The section names each person with marked items; a report of none has none."""

    def text(items: list[ReportItem]) -> str:
        out = io.BytesIO()
        write_report(out, items=items, title="Held", generated_at=MONDAY_9,
                     no_contact_since=None, timezone=UTC)  # fmt: skip
        return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(out).pages)

    found = text(_traffic())
    assert "Court order compliance: joe" in found
    assert "Court order compliance: mark" in found
    assert "Not read 1 (20%)" in found
    assert "On a channel the order does not allow 1" in found
    assert "Court order compliance" not in text([item(n) for n in range(3)])
