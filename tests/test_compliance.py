"""Order compliance in numbers and in the report (proxy/access/compliance.py)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyrage
from pypdf import PdfReader

from proxy.access import bundle
from proxy.access.bundle import ExportRequest, bates, report_item
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
from proxy.access.keys import custody_public_key
from proxy.access.reading import Selection, open_archive
from proxy.access.recording import signed_request
from proxy.access.relaying import RELAY, RELAY_FAILED, relay_reason
from proxy.access.report import ReportItem, duration, write_report
from proxy.alerts.order_mark import SAME_DAY_LOGISTICS, OrderMark, Topic
from proxy.alerts.threats import THREAT
from proxy.alerts.tiers import Assessment
from proxy.archive import Archive, CustodyRecord
from proxy.archive.metadata import SealedCustody
from proxy.archive.seal import fingerprint
from proxy.channels.sms.capture import ArrivalKind
from proxy.message import Action, InboundMessage, Kind
from proxy.rules import decide
from tests.factories import make_rules
from tests.portal_helpers import Holding, from_mark, from_marks_phone
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
    assert "Summaries relayed to her 1 sent, for 1 item; 1 failed" in text
    assert "Delay median 20 min, longest 20 min" in text
    assert "Replies sent to him 1 sent, for 1 item" in text


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


def _email(hours: float, text: str) -> InboundMessage:
    raw = (f"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: {text}\r\n"
           f"\r\n{text}\r\n").encode()  # fmt: skip
    return from_mark(raw, MONDAY_9 + timedelta(hours=hours), recipients=("sam@home.example",))


def _phone(hours: float, text: str, kind: ArrivalKind = ArrivalKind.TEXT) -> InboundMessage:
    return from_marks_phone(text, received_at=MONDAY_9 + timedelta(hours=hours), kind=kind)


URGENT_PICKUP = Assessment.of([SAME_DAY_LOGISTICS])
VOICE_MARK = OrderMark(person="mark", topic=Topic.UNKNOWN, channel_allowed=False)
# His traffic, in UTC: three on topic (two urgent), two off topic, one abusive, a voicemail.
TRAFFIC = (
    Holding(_email(0, "A: Lily pickup moved today"), order=ON, assessment=URGENT_PICKUP),
    Holding(_email(1, "B: Noah dentist on Friday"), order=ON),
    Holding(_phone(33, "C: Lily at the hospital, come now"), order=ON, kind=Kind.DIRECT,
            assessment=URGENT_PICKUP),
    Holding(_email(34, "D: why do you never answer"), order=OFF),
    Holding(_phone(5 * 24 + 12, "E: you owe me"), order=OFF, kind=Kind.DIRECT),
    Holding(_email(5 * 24 + 13.5, "F: you will regret this"), order=ON,
            assessment=Assessment.of([THREAT])),
    Holding(_phone(6 * 24 + 8, "", ArrivalKind.VOICEMAIL), order=VOICE_MARK, kind=Kind.DIRECT),
)  # fmt: skip


def _held_with_answers(root: Path, identity: Any) -> None:
    """Seal TRAFFIC, then a relay of A after 20 minutes, a reply to A after an hour and a
    relay of B after 2 h 20 min, each stamped by the archive's writer at that time."""
    recipient = str(identity.to_public())
    clock = [MONDAY_9 - timedelta(hours=1)]

    async def main() -> None:
        keys = {fingerprint(recipient): custody_public_key(identity)}
        archive = await Archive.open(root, recipients=[recipient], custody_keys=keys,
                                     clock=lambda: clock[0])  # fmt: skip
        rules, receipts = make_rules(), []
        for holding in TRAFFIC:
            decision = decide(holding.message, rules)
            decision = replace(decision, action=Action.HOLD, kind=holding.kind or decision.kind,
                               order=holding.order,
                               assessment=holding.assessment or decision.assessment)  # fmt: skip
            receipts.append(await archive.hold(holding.message, decision))
        a, b = receipts[0], receipts[1]
        for minutes, action, receipt, reason in (
            (20, RELAY, a, relay_reason(a.leaf_hash, "Summary from your contact Priya — not "
                                        "his words\n\nChild: Lily\nWhat: PICKUP-MOVED\n")),
            (60, REPLY, a, f"reply to leaf {a.leaf_hash.hex()}\nConfirmed, REPLY-SENT."),
            (140, RELAY, b, relay_reason(b.leaf_hash, "Summary: DENTIST-FRIDAY\n")),
        ):  # fmt: skip
            clock[0] = MONDAY_9 + timedelta(minutes=minutes)
            if action == REPLY:  # the writer's own way: the signed "reply" action is the
                # replies' own (custody_keys.ACTIONS); the record reads the same either way
                record = CustodyRecord(contact=fingerprint(recipient), action=action,
                                       items=(receipt.index,), at=clock[0],
                                       reason=reason)  # fmt: skip
                await archive.record_custody(record)
                continue
            await archive.record_signed(
                signed_request(identity, action=action, items=[receipt.index], reason=reason)
            )
        await archive.close()

    asyncio.run(main())


def test_the_report_of_real_traffic_counts_exactly_what_was_held_and_answered(
    tmp_path: Path,
) -> None:
    """Through a real archive and `bundle.report`: the compliance numbers are exactly the
    traffic's, and each relay's text is beside its original, marked not evidence."""
    root, identity = tmp_path / "archive", pyrage.x25519.Identity.generate()
    _held_with_answers(root, identity)
    opened = open_archive(root, identity)
    reports = [report_item(bates(n), i) for n, i in enumerate(opened.items(Selection()), 1)]
    (mark,) = compliance(reports, UTC, read_answers(r for _, r in opened.custody_read))
    assert (mark.count, mark.logistics, mark.off_channel, mark.evening) == (7, 4, 1, 5)
    assert mark.kinds == {ON_TOPIC: 3, OFF_TOPIC: 2, ABUSIVE: 1, NOT_READ: 1}
    assert mark.by_channel == {
        "email": {ON_TOPIC: 2, OFF_TOPIC: 1, ABUSIVE: 1, NOT_READ: 0},
        "sms": {ON_TOPIC: 1, OFF_TOPIC: 1, ABUSIVE: 0, NOT_READ: 0},
        "voice": {ON_TOPIC: 0, OFF_TOPIC: 0, ABUSIVE: 0, NOT_READ: 1},
    }
    assert mark.by_hour == tuple({9: 1, 10: 1, 17: 1, 18: 1, 19: 1, 21: 1, 22: 1}.get(h, 0)
                                 for h in range(24))  # fmt: skip
    assert mark.by_weekday == (2, 2, 0, 0, 0, 2, 1)
    assert mark.relays == Answered(sent=2, failed=0, items=2, delays=(
        timedelta(minutes=20), timedelta(hours=1, minutes=20)))  # fmt: skip
    assert mark.replies == Answered(sent=1, failed=0, items=1, delays=(timedelta(hours=1),))
    assert [(u.bates, u.relayed_after) for u in mark.urgent] == [
        ("NC-000001", timedelta(minutes=20)), ("NC-000003", None)]  # fmt: skip

    out = tmp_path / "report.pdf"
    request = ExportRequest(out=out, reason="", contact="", selection=Selection(),
                            timezone=UTC)  # fmt: skip
    assert bundle.report(opened, request, lambda _: None) == 7
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(out).pages)
    for line in ("Held from him under the order 7", "On topic 3 (43%)", "Off topic 2 (29%)",
                 "Abusive 1 (14%)", "Not read 1 (14%)", "5 messages after 17:00",
                 "Summaries relayed to her 2 sent, for 2 items",
                 "Delay median 50 min, longest 1 h 20 min", "Replies sent to him 1 sent, for 1 "
                 "item Delay median 1 h 00 min, longest 1 h 00 min",
                 "NC-000001 2026-03-02 09:00:00 after 20 min",
                 "NC-000003 2026-03-03 18:00:00 not relayed"):  # fmt: skip
        assert line in text, line
    original = text.index(
        "A: Lily pickup moved today", text.index("NC-000001 2026-03-02 09:00:00 UTC")
    )
    heading = text.index("Summary sent to her by contact "
                         f"{fingerprint(str(identity.to_public()))} at 2026-03-02 09:20:00 UTC "
                         "— the contact's words, not evidence", original)  # fmt: skip
    assert (
        original
        < heading
        < text.index("What: PICKUP-MOVED")
        < text.index("Reply sent to him")
        < text.index("REPLY-SENT")
        < text.index("NC-000002", heading)
    )
    assert text.index("DENTIST-FRIDAY") > text.index("B: Noah dentist on Friday", heading)
    # The bundle's report.pdf reads the same records, from its custody listing.
    bundled = tmp_path / "bundle.zip"
    exported = replace(request, out=bundled, contact=fingerprint(str(identity.to_public())))
    assert bundle.export(open_archive(root, identity), exported, lambda _: None) == 7
    with zipfile.ZipFile(bundled) as zipped:
        pages = PdfReader(io.BytesIO(zipped.read("report.pdf"))).pages
    in_bundle = " ".join(" ".join(p.extract_text().split()) for p in pages)
    assert "Summaries relayed to her 2 sent, for 2 items" in in_bundle
    assert in_bundle.index("Summary sent to her by contact") < in_bundle.index("PICKUP-MOVED")


def test_an_answer_is_cleaned_as_a_rendering_is() -> None:
    """Control and invisible characters in a relay's text are written as code points, and a
    huge one is cut with a note: the report neither breaks nor hides them."""
    items = [_ordered(1, 0)]
    hostile = "ESC\x1b[2J RLO\u202eevil\n" + "long line\n" * 400
    text = _pdf_text(items, read_answers([_relay(1, hostile, minutes=5)]))
    assert "ESC[U+001B][2J RLO[U+202E]evil" in text
    assert "[shortened; the custody log holds it all]" in text
