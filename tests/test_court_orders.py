"""Court orders end to end: his mail through the real SMTP filter into the archive, urgent
child logistics to the relay contact at a local transport, and the compliance report."""

from __future__ import annotations

import asyncio
import io
import smtplib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from proxy.access.bundle import bates, report_item
from proxy.access.compliance import ABUSIVE, OFF_TOPIC, ON_TOPIC, compliance
from proxy.access.reading import Selection, open_archive
from proxy.access.report import write_report
from proxy.alerts.held import Held
from proxy.alerts.order_mark import Topic
from proxy.alerts.service import AlertService
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.archive import Archive
from proxy.archive.metadata import SealedItem
from proxy.channels.smtp import SmtpHandler, serve_smtp
from proxy.config import Config
from proxy.config.model import SmtpChannel
from proxy.deliver.address import parse_destination
from proxy.deliver.hops import open_next_hop
from proxy.pipeline import Pipeline
from proxy.rules import compile_rules
from tests.alerts_helpers import Clock, Receiver, receiving
from tests.factories import MARK, RECIPIENT, make_config
from tests.test_smtp import IDENTITY, free_port, held_items, maildir_messages
from tests.test_smtp import RECIPIENT as ARCHIVE_RECIPIENT

BERLIN = ZoneInfo("Europe/Berlin")
THURSDAY_EVENING = datetime(2026, 3, 12, 16, 30, tzinfo=UTC)  # 17:30 in Berlin
ORDER = {"children": ["Lily", "Noah"], "channels": ["email"], "relay": "Priya Raman"}
PICKUP = (b"From: Mark Smith <mark.smith@gmail.com>\r\nSubject: change of plan\r\n\r\n"
          b"I pick Lily up from school today at 18:30, not Friday. CANARY-PICKUP\r\n")  # fmt: skip
ABUSE = (b"From: Mark Smith <mark.smith@gmail.com>\r\nSubject: answer me\r\n\r\n"
         b"You pathetic liar. I'll kill you. CANARY-ABUSE\r\n")  # fmt: skip
SULKING = (b"From: Mark Smith <mark.smith@gmail.com>\r\nSubject: why\r\n\r\n"
           b"Why don't you ever answer me?\r\n")  # fmt: skip
DENTIST = (b"From: Mark Smith <mark.smith@gmail.com>\r\nSubject: Noah\r\n\r\n"
           b"Noah has the dentist tomorrow at 9:00.\r\n")  # fmt: skip
LOGISTICS_CODES = ("same_day_logistics", "child_emergency", "child_logistics")


def _config(archive: str, receiver: Receiver, *, priya_tiers: list[str] | None = None) -> Config:
    """Dana takes urgent alerts first; Priya, the relay, only what `priya_tiers` says."""
    priya: dict[str, Any] = {"transports": ["priya"]}
    if priya_tiers is not None:
        priya["tiers"] = priya_tiers
    contacts = [
        {"name": "Dana Reyes", "role": "lawyer", "age_recipient": RECIPIENT,
         "alerts": {"transports": ["dana"]}},
        {"name": "Priya Raman", "role": "contact", "age_recipient": RECIPIENT, "alerts": priya},
    ]  # fmt: skip
    transports = {"dana": {"url": receiver.url("dana")}, "priya": {"url": receiver.url("priya")}}
    return make_config(archive={"path": archive}, contacts=contacts,
                       people=[{**MARK, "court_order": ORDER}],
                       alerts={"transports": transports, "timezone": "Europe/Berlin",
                               "escalate_after": 30})  # fmt: skip


SAME_DAY = Assessment.of([Reason(tier=Tier.URGENT, code="same_day_logistics"),
                          Reason(tier=Tier.ELEVATED, code="child_logistics")])  # fmt: skip
THREAT = Assessment.of([Reason(tier=Tier.URGENT, code="threat")])


def _held(sequence: int, assessment: Assessment) -> Held:
    return Held(sequence=sequence, assessment=assessment, person="mark", channel="email",
                identity="mark.smith@gmail.com")  # fmt: skip


def test_the_relay_is_told_first_of_urgent_logistics_then_the_ladder(tmp_path: Path) -> None:
    """Urgent logistics go first to the order's relay (though she takes no urgent tier),
    and escalate to the next contact; a threat from him goes down the usual ladder, which
    she is not on."""

    async def main() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[RECIPIENT])
        async with receiving() as receiver:
            clock = Clock()
            config = _config(archive.path, receiver, priya_tiers=["digest"])
            service = await AlertService.open(config, archive, clock=clock)
            service.held(_held(3, SAME_DAY))
            service.held(_held(4, THREAT))
            await service.step()
            assert [b for b in receiver.bodies("priya") if "same_day_logistics" in b]
            assert not [b for b in receiver.bodies("priya") if "urgent:threat" in b]
            assert not [b for b in receiver.bodies("dana") if "same_day_logistics" in b]
            assert [b for b in receiver.bodies("dana") if "urgent:threat" in b]
            clock.advance(minutes=31)
            await service.step()  # neither acknowledged: each goes one step down its ladder
            assert [b for b in receiver.bodies("dana") if "same_day_logistics" in b]
            assert len([b for b in receiver.bodies("dana") if "urgent:threat" in b]) == 2
            # she takes no urgent tier: only her order's logistics reach her as urgent
            assert not [b for b in receiver.bodies("priya") if "urgent:threat" in b]
            await service.close()
        await archive.close()

    asyncio.run(main())


def test_an_open_urgent_alert_keeps_its_relay_across_a_restart(tmp_path: Path) -> None:
    """The alert's first contact is saved with it: after a restart it escalates from the
    relay down, as before."""

    async def main() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[RECIPIENT])
        async with receiving() as receiver:
            clock = Clock()
            config = _config(archive.path, receiver)
            service = await AlertService.open(config, archive, clock=clock)
            service.held(_held(3, SAME_DAY))
            await service.step()
            await service.close()
            again = await AlertService.open(config, archive, clock=clock)
            assert [u.first for u in again.state.urgent] == ["Priya Raman"]
            await again.close()
        await archive.close()

    asyncio.run(main())


def _item_reasons(metadata: dict[str, Any]) -> list[str]:
    item = SealedItem.from_json(metadata)
    return [str(r) for r in item.assessment.reasons]


def test_his_urgent_pickup_change_through_smtp_is_sealed_and_told_to_the_relay(
    tmp_path: Path,
) -> None:
    """Through the real SMTP filter: the urgent pickup change is held (250, nothing in
    her Maildir), sealed with its logistics reasons and order mark, and alerts the relay
    at a local json:// transport with no word of it; the off-topic threat is held, marked
    off topic, with no logistics reason and no alert to the relay; the compliance report
    counts exactly the traffic."""
    mail = tmp_path / "mail"
    port = free_port()
    settings = SmtpChannel(listen=f"127.0.0.1:{port}", deliver=f"maildir:{mail}")

    async def main() -> Receiver:
        archive = await Archive.open(tmp_path / "archive", recipients=[ARCHIVE_RECIPIENT])
        async with receiving() as receiver:
            config = _config(archive.path, receiver)
            pipeline = Pipeline(
                rules=compile_rules(config), archive=archive,
                next_hop=open_next_hop(parse_destination(settings.deliver), hostname="test"),
                hostname="nocontact.test", default_region="US", clock=lambda: THURSDAY_EVENING,
            )  # fmt: skip
            service = await AlertService.open(config, archive, clock=Clock())
            pipeline.alerts = service.held
            server = await serve_smtp(settings, SmtpHandler(pipeline))
            try:
                for raw in (PICKUP, ABUSE, SULKING, DENTIST):
                    code, _ = await asyncio.to_thread(_send, port, raw)
                    assert code == 250
                await service.step()
            finally:
                server.close()
                await server.wait_closed()
                await pipeline.next_hop.aclose()
                await service.close()
                await archive.close()
            return receiver

    receiver = asyncio.run(main())
    assert maildir_messages(mail) == []
    items = held_items(tmp_path / "archive")
    assert [payload for _, payload in items] == [PICKUP, ABUSE, SULKING, DENTIST]
    (pickup, _), (abuse, _), (sulking, _), (dentist, _) = items
    assert set(_item_reasons(pickup)) >= {"urgent:same_day_logistics", "elevated:child_logistics"}
    assert pickup["order"] == {"person": "mark", "topic": "children", "logistics": True,
                               "channel_allowed": True}  # fmt: skip
    assert "urgent:threat" in _item_reasons(abuse)
    assert not any(code in r for r in _item_reasons(abuse) for code in LOGISTICS_CODES)
    assert abuse["order"]["topic"] == Topic.OFF_TOPIC.value
    assert sulking["order"] == {"person": "mark", "topic": "off_topic", "logistics": False,
                                "channel_allowed": True}  # fmt: skip
    assert "elevated:child_logistics" in _item_reasons(dentist)
    assert "urgent:same_day_logistics" not in _item_reasons(dentist)

    told = receiver.bodies("priya")
    assert [b for b in told if "urgent:same_day_logistics" in b]
    assert not [b for b in told if "urgent:threat" in b]  # the threat went to Dana
    assert [b for b in receiver.bodies("dana") if "urgent:threat" in b]
    for body in [*told, *receiver.bodies("dana")]:
        assert "CANARY" not in body
        assert "Lily" not in body

    _compliance_matches_the_traffic(tmp_path / "archive")


def _compliance_matches_the_traffic(root: Path) -> None:
    """One on topic and urgent, one on topic for tomorrow, one abusive, one off topic:
    all four by email, at 17:30 on a Thursday in Berlin."""
    opened = open_archive(root, IDENTITY)
    reports = [report_item(bates(n), item) for n, item in
               enumerate(opened.items(Selection()), 1)]  # fmt: skip
    (mark,) = compliance(reports, BERLIN)
    assert (mark.person, mark.count, mark.logistics, mark.off_channel) == ("mark", 4, 2, 0)
    assert mark.kinds == {ON_TOPIC: 2, OFF_TOPIC: 1, ABUSIVE: 1, "not read": 0}
    assert mark.by_channel == {"email": {ON_TOPIC: 2, OFF_TOPIC: 1, ABUSIVE: 1, "not read": 0}}
    assert mark.by_hour == tuple(4 if hour == 17 else 0 for hour in range(24))
    assert mark.by_weekday == (0, 0, 0, 4, 0, 0, 0)
    assert mark.evening == 4
    out = io.BytesIO()
    write_report(out, items=reports, title="Held items", generated_at=THURSDAY_EVENING,
                 no_contact_since=None, timezone=BERLIN)  # fmt: skip
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(out).pages)
    assert "Court order compliance: mark" in text
    assert "Held from him under the order 4" in text
    assert "On topic 2 (50%)" in text
    assert "Off topic 1 (25%)" in text
    assert "Abusive 1 (25%)" in text
    assert "4 messages after 17:00" in text
    assert "Summaries relayed to her 0 sent, for 0 items" in text
    assert text.count("not relayed") == 1  # the urgent pickup, which no one relayed


def _send(port: int, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        client.mail("mark.smith@gmail.com")
        client.rcpt("sam@home.example")
        reply: tuple[int, bytes] = client.data(raw)
        return reply
