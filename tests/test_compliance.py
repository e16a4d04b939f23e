"""Order compliance in numbers and in the report (proxy/access/compliance.py)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pypdf import PdfReader

from proxy.access.compliance import (
    ABUSIVE,
    NOT_READ,
    OFF_TOPIC,
    ON_TOPIC,
    REPLY,
    REPLY_FAILED,
    Answer,
    Answered,
    Urgent,
    Way,
    compliance,
    read_answers,
)
from proxy.access.relaying import RELAY, RELAY_FAILED
from proxy.access.report import ReportItem, duration, write_report
from proxy.alerts.order_mark import OrderMark, Topic
from proxy.archive.metadata import SealedCustody
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


LEAF = {n: hashlib.sha256(f"leaf {n}".encode()).hexdigest() for n in range(1, 8)}
PRIYA, DANA = "a1b2c3d4e5f60718", "0918f7e6d5c4b3a2"


def _record(action: str, reason: str, *, minutes: float, contact: str = PRIYA,
            items: tuple[int, ...] = (1,), at: bool = True) -> SealedCustody:  # fmt: skip
    moment = MONDAY_9 + timedelta(minutes=minutes) if at else None
    return SealedCustody(contact=contact, action=action, items=items, at=moment, reason=reason)


def _relay(n: int, text: str, *, minutes: float, **more: Any) -> SealedCustody:
    return _record(RELAY, f"relay of leaf {LEAF[n]}\n{text}", minutes=minutes, items=(n,), **more)


def test_relays_and_replies_are_read_from_their_fixed_form_only() -> None:
    """A relay and a reply are read with their leaf, text, time and contact; a malformed
    reason, another action, a record with no time and a stray failure are passed over."""
    records = [
        _record("show", f"relay of leaf {LEAF[1]}\nnot a relay", minutes=1),
        _relay(1, "Summary from your contact Priya — not his words\n\nWhat: pickup\n",
               minutes=20),
        _record(RELAY, f"relay of leaf {LEAF[1][:-1]}\ntoo short a leaf", minutes=21),
        _record(RELAY, f"relay of leaf {LEAF[1].upper()}\nupper case", minutes=22),
        _record(RELAY, f"relay of leaf {LEAF[1]} no newline", minutes=23),
        _record(REPLY, f"reply to leaf {LEAF[1]}\nConfirmed.", minutes=60, contact=DANA),
        _record(REPLY, f"reply of leaf {LEAF[1]}\nwrong verb", minutes=61),
        _relay(2, "no time", minutes=62, at=False),
        _record(REPLY_FAILED, "the provider refused it", minutes=63, items=(5,)),
    ]  # fmt: skip
    relay, reply = read_answers(records)
    assert relay == Answer(way=Way.RELAY, leaf_hash=LEAF[1], contact=PRIYA,
                           at=MONDAY_9 + timedelta(minutes=20),
                           text="Summary from your contact Priya — not his words\n\n"
                                "What: pickup\n")  # fmt: skip
    assert reply == Answer(way=Way.REPLY, leaf_hash=LEAF[1], text="Confirmed.", contact=DANA,
                           at=MONDAY_9 + timedelta(hours=1))  # fmt: skip


def test_a_failure_marks_the_answer_it_follows() -> None:
    """A relay-failed marks its contact's last unsettled relay of the same item as not sent,
    and no other: not another contact's, not another item's, not a reply."""
    records = [
        _relay(1, "first try", minutes=10),
        _relay(1, "Dana's", minutes=11, contact=DANA),
        _record(REPLY, f"reply to leaf {LEAF[1]}\nOK", minutes=12),
        _record(RELAY_FAILED, "the next hop did not answer", minutes=13),
        _relay(1, "second try", minutes=30),
        _record(RELAY_FAILED, "a second failure with nothing left to mark", minutes=31,
                items=(2,)),
    ]  # fmt: skip
    found = read_answers(records)
    assert [(a.text, a.sent) for a in found] == [
        ("first try", False), ("Dana's", True), ("OK", True), ("second try", True)]  # fmt: skip


def _ordered(n: int, hours: float, **changes: Any) -> ReportItem:
    return item(n, received_at=MONDAY_9 + timedelta(hours=hours), leaf_hash=LEAF[n],
                order=ON, **changes)  # fmt: skip


def test_relays_replies_and_delays_in_exact_numbers() -> None:
    """Two relays of one item are both counted, its delay from the first; a failed one is
    counted apart and gives no delay; an unknown leaf is ignored; every urgent logistics
    item is listed with its first relay's delay or as not relayed."""
    items = [
        _ordered(1, 0, urgent_logistics=True),  # relayed at +20 min, corrected at +50
        _ordered(2, 1),  # relayed at +3 h (from 10:00), a failure first
        _ordered(3, 2, urgent_logistics=True),  # one relay, failed: not relayed
        _ordered(4, 3, urgent_logistics=True),  # relayed before it arrived (a clock set back)
        _ordered(5, 4),  # a reply only
    ]
    records = [
        _relay(1, "one", minutes=20),
        _relay(1, "one, corrected", minutes=50),
        _relay(2, "two, failed", minutes=70),
        _record(RELAY_FAILED, "down", minutes=71, items=(2,)),
        _relay(2, "two", minutes=60 + 180),
        _relay(3, "three, failed", minutes=150),
        _record(RELAY_FAILED, "down", minutes=151, items=(3,)),
        _relay(4, "four", minutes=170),
        _record(RELAY, f"relay of leaf {'f' * 64}\nan item not in this report", minutes=5),
        _record(REPLY, f"reply to leaf {LEAF[5]}\nConfirmed.", minutes=4 * 60 + 45, items=(5,)),
        _record(REPLY, f"reply to leaf {LEAF[1]}\nNot possible.", minutes=90),
    ]  # fmt: skip
    (mark,) = compliance(items, UTC, read_answers(records))
    assert mark.relays == Answered(sent=4, failed=2, items=3, delays=(
        timedelta(minutes=20), timedelta(hours=3), timedelta(0)))  # fmt: skip
    assert (mark.relays.median, mark.relays.longest) == (timedelta(minutes=20), timedelta(hours=3))
    assert mark.replies == Answered(sent=2, failed=0, items=2, delays=(
        timedelta(minutes=90), timedelta(minutes=45)))  # fmt: skip
    assert mark.replies.median == timedelta(minutes=67, seconds=30)  # the mean of the middle two
    assert mark.urgent == (
        Urgent(bates="NC-000001", received_at=MONDAY_9, relayed_after=timedelta(minutes=20)),
        Urgent(bates="NC-000003", received_at=MONDAY_9 + timedelta(hours=2), relayed_after=None),
        Urgent(bates="NC-000004", received_at=MONDAY_9 + timedelta(hours=3),
               relayed_after=timedelta(0)),
    )  # fmt: skip


def test_no_answers_are_zero_with_no_delay() -> None:
    """With no relay or reply, both ways count zero and have no median or longest."""
    (mark,) = compliance([_ordered(1, 0)], UTC)
    assert mark.relays == mark.replies == Answered(sent=0, failed=0, items=0, delays=())
    assert (mark.relays.median, mark.relays.longest, mark.urgent) == (None, None, ())


def _pdf_text(items: list[ReportItem], answers: tuple[Answer, ...] = ()) -> str:
    out = io.BytesIO()
    write_report(out, items=items, title="Held", generated_at=MONDAY_9, no_contact_since=None,
                 timezone=UTC, answers=answers)  # fmt: skip
    return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(out).pages)


def test_each_summary_is_shown_after_its_original_marked_not_evidence() -> None:
    """A relay's text follows the rendering of the item it names, headed as the contact's
    words and not evidence; a failed one says so; the original comes first, untouched."""
    items = [_ordered(1, 0, rendering="HIS-ORIGINAL-WORDS about Lily"), _ordered(2, 1)]
    answers = read_answers([
        _relay(1, "Summary from your contact Priya — not his words\n\nWhat: RELAYED-TEXT\n",
               minutes=20),
        _relay(1, "FAILED-TEXT", minutes=30),
        _record(RELAY_FAILED, "down", minutes=31),
        _record(REPLY, f"reply to leaf {LEAF[1]}\nREPLY-TEXT", minutes=40),
        _record(RELAY, f"relay of leaf {'e' * 64}\nUNKNOWN-LEAF-TEXT", minutes=41),
    ])  # fmt: skip
    text = _pdf_text(items, answers)
    original = text.index("HIS-ORIGINAL-WORDS about Lily")
    relayed = text.index(f"Summary sent to her by contact {PRIYA} at 2026-03-02 09:20:00 UTC "
                         "— the contact's words, not evidence")  # fmt: skip
    assert original < relayed < text.index("What: RELAYED-TEXT") < text.index("NC-000002", original)
    assert text.index("Summary NOT delivered (recorded as failed) to her by contact") < (
        text.index("FAILED-TEXT"))  # fmt: skip
    assert f"Reply sent to him by contact {PRIYA} at 2026-03-02 09:40:00 UTC" in text
    assert "UNKNOWN-LEAF-TEXT" not in text
    assert "Summaries relayed to her 1 sent, for 1 items; 1 failed" in text
    assert "Delay median 20 min, longest 20 min" in text
    assert "Replies sent to him 1 sent, for 1 items" in text


def test_urgent_items_are_listed_relayed_or_not() -> None:
    """The section lists every urgent logistics item, "not relayed" where none was sent."""
    items = [_ordered(1, 0, urgent_logistics=True), _ordered(2, 1, urgent_logistics=True)]
    text = _pdf_text(items, read_answers([_relay(1, "ok", minutes=65)]))
    assert "NC-000001 2026-03-02 09:00:00 after 1 h 05 min" in text
    assert "NC-000002 2026-03-02 10:00:00 not relayed" in text


def test_durations_read_plainly() -> None:
    """Seconds, minutes, hours and days, as the report writes a delay."""
    assert [duration(timedelta(seconds=s)) for s in (0, 59, 60, 3600, 3660, 90061)] == [
        "0 s", "59 s", "1 min", "1 h 00 min", "1 h 01 min", "1 d 1 h 01 min"]  # fmt: skip
