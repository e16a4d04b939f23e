"""The alerts service end to end, on real transports (proxy/alerts/service.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from structlog.testing import capture_logs

from proxy import logs
from proxy.alerts.acks import ask_ack
from proxy.alerts.held import Held
from proxy.alerts.service import AlertService
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.archive import Archive
from proxy.config import Config
from proxy.daemon import NO_NEXT_HOP
from proxy.pipeline import Arrival, Pipeline
from proxy.rules import compile_rules
from tests.alerts_helpers import Clock, Receiver, alerts_config, receiving
from tests.factories import RECIPIENT
from tests.test_smtp import free_port

THREAT = Assessment.of([Reason(tier=Tier.URGENT, code="threat")])
CHILDREN = Assessment.of([Reason(tier=Tier.ELEVATED, code="children")])
URGENT_ONLY = ["urgent"]


DIGEST = Assessment()


def _held(sequence: int, assessment: Assessment = DIGEST, *, person: str | None = "mark",
          channel: str = "sms", identity: str = "+15550100199") -> Held:  # fmt: skip
    return Held(sequence=sequence, assessment=assessment, person=person, channel=channel,
                identity=identity)  # fmt: skip


Body = Callable[[Archive, Receiver], Awaitable[None]]


def _with_archive(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[RECIPIENT])
        try:
            async with receiving() as receiver:
                await body(archive, receiver)
        finally:
            await archive.close()

    asyncio.run(main())


def _two_contacts(archive: Archive, receiver: Receiver, **alerts: Any) -> Config:
    return alerts_config(
        archive.path, {"dana": receiver.url("dana"), "priya": receiver.url("priya")},
        contacts=[{"name": "Dana Reyes", "alerts": {"transports": ["dana"]}},
                  {"name": "Priya Raman", "alerts": {"transports": ["priya"]}}],
        **alerts,
    )  # fmt: skip


def test_urgent_escalates_until_acknowledged(tmp_path: Path) -> None:
    """An urgent alert goes to the first contact; unacknowledged after escalate_after it
    is repeated and sent to the next; acknowledged by its code, it stops."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        clock = Clock()
        config = _two_contacts(archive, receiver, escalate_after=30)
        service = await AlertService.open(config, archive, clock=clock)
        service.held(_held(7, THREAT))
        await service.step()
        assert len(receiver.bodies("dana")) == 1
        assert "priya" not in receiver.got
        first = receiver.bodies("dana")[0]
        assert "urgent" in first
        assert "urgent:threat" in first
        assert "nocontact contact show --archive" in first
        assert " 7\n" in first
        code = service.state.urgent[0].code
        assert f"Acknowledgement code: {code}" in first
        assert "checkpoint" in first
        clock.advance(minutes=29)
        await service.step()
        assert len(receiver.bodies("dana")) == 1  # not yet
        clock.advance(minutes=2)
        await service.step()
        assert len(receiver.bodies("dana")) == 2
        assert len(receiver.bodies("priya")) == 1
        assert "repeated" in receiver.bodies("priya")[0]
        assert not await asyncio.to_thread(ask_ack, Path(archive.path), "WRONGCDE")
        assert await asyncio.to_thread(ask_ack, Path(archive.path), code.lower())
        assert not await asyncio.to_thread(ask_ack, Path(archive.path), code)  # used once
        clock.advance(minutes=90)
        await service.step()
        assert len(receiver.bodies("dana")) == 2
        assert len(receiver.bodies("priya")) == 1
        await service.close()

    _with_archive(tmp_path, body)


def test_every_alert_carries_the_signed_checkpoint(tmp_path: Path) -> None:
    """The alert ends with the archive's latest checkpoint note, as in its file."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        config = _two_contacts(archive, receiver)
        service = await AlertService.open(config, archive, clock=Clock())
        service.held(_held(0, CHILDREN))
        await service.step()
        note = archive.head()[0]
        assert note
        assert note.rstrip("\n") in receiver.bodies("dana")[0]
        assert note.rstrip("\n") in receiver.bodies("priya")[0]  # elevated: everyone
        await service.close()

    _with_archive(tmp_path, body)


def test_contacts_hear_only_their_tiers(tmp_path: Path) -> None:
    """A contact who takes only urgent alerts hears nothing of an elevated item."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        config = alerts_config(
            archive.path, {"dana": receiver.url("dana"), "priya": receiver.url("priya")},
            contacts=[{"name": "Dana Reyes", "alerts": {"transports": ["dana"],
                                                        "tiers": URGENT_ONLY}},
                      {"name": "Priya Raman", "alerts": {"transports": ["priya"]}}],
        )  # fmt: skip
        service = await AlertService.open(config, archive, clock=Clock())
        service.held(_held(0, CHILDREN))
        await service.step()
        assert "dana" not in receiver.got
        assert len(receiver.bodies("priya")) == 1
        await service.close()

    _with_archive(tmp_path, body)


def test_digest_waits_for_its_time_and_the_quiet_hours(tmp_path: Path) -> None:
    """The daily digest at 08:00 Berlin time, in quiet hours until 09:00, goes out at
    09:00 with counts by channel and person (never a name); elevated alerts wait too,
    urgent ones do not."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        clock = Clock()  # 13:00 Berlin
        config = _two_contacts(
            archive, receiver, timezone="Europe/Berlin",
            digest={"every": "daily", "at": "08:00"},
            quiet_hours={"start": "22:00", "end": "09:00"}, escalate_after=24 * 60,
        )  # fmt: skip
        service = await AlertService.open(config, archive, clock=clock)
        for n in range(3):
            service.held(_held(n, channel="sms"))
        service.held(_held(3, channel="smtp", person=None, identity=""))
        await service.step()
        assert len(receiver.bodies("dana")) == 1  # his first item: elevated, not quiet yet
        clock.advance(hours=10)  # 23:00 Berlin: quiet
        service.held(_held(4, channel="imap"))  # a new channel: elevated, waits
        service.held(_held(5, THREAT))  # urgent: at once
        await service.step()
        assert len(receiver.bodies("dana")) == 2
        assert "urgent" in receiver.bodies("dana")[1]
        clock.advance(hours=9)  # 07:00 UTC = 08:00 Berlin: digest due, but quiet
        await service.step()
        assert len(receiver.bodies("dana")) == 2
        assert any(letter.digest for letter in service.state.letters)
        clock.advance(hours=1)  # 09:00 Berlin
        await service.step()
        dana = receiver.bodies("dana")
        assert len(dana) == 4  # + the elevated one that waited, and the digest
        digest = next(text for text in dana if text.startswith("Held since"))
        assert "Held since 2026-03-02 13:00 CET: 6." in digest
        assert "By channel: imap 1, sms 4, smtp 1" in digest
        assert "By person: person 1 5" in digest
        assert "mark" not in digest.lower()
        assert len(receiver.bodies("priya")) == 3  # no urgent (not reached): the rest
        await service.close()

    _with_archive(tmp_path, body)


def test_first_items_of_a_person_are_elevated(tmp_path: Path) -> None:
    """His first item (a new channel, a new identity) is elevated; the next is not."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        config = _two_contacts(archive, receiver)
        service = await AlertService.open(config, archive, clock=Clock())
        service.held(_held(0))
        await service.step()
        first = receiver.bodies("dana")
        assert len(first) == 1
        assert "elevated:new-channel, elevated:new-identity" in first[0]
        service.held(_held(1))
        await service.step()
        assert len(receiver.bodies("dana")) == 1
        await service.close()

    _with_archive(tmp_path, body)


def test_the_outbox_survives_a_crash_mid_retry(tmp_path: Path) -> None:
    """A transport refusing: the alert is retried with backoff; the service dies without
    closing; a new one, started on the same archive, sends it once the transport is back,
    and only once."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        clock = Clock()
        config = _two_contacts(archive, receiver)
        receiver.failing = True
        with capture_logs(processors=[logs.redact]) as captured:
            dead = await AlertService.open(config, archive, clock=clock)
            dead.held(_held(9, THREAT))
            await dead.step()
            clock.advance(seconds=31)
            await dead.step()  # the first retry fails too
        assert receiver.got == {}
        assert [line["event"] for line in captured] == ["alerts started"]  # no line per alert
        receiver.failing = False
        service = await AlertService.open(config, archive, clock=clock)  # `dead` never closed
        await service.step()
        assert receiver.got == {}  # the backoff holds after the restart
        clock.advance(minutes=2)
        await service.step()
        assert len(receiver.bodies("dana")) == 1
        assert " 9\n" in receiver.bodies("dana")[0]
        clock.advance(minutes=5)
        await service.step()
        assert len(receiver.bodies("dana")) == 1
        await service.close()

    _with_archive(tmp_path, body)


def test_a_failing_digest_says_so_without_a_count(tmp_path: Path) -> None:
    """A digest that cannot be sent logs one fixed line (its time is the schedule's)."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        clock = Clock()
        config = _two_contacts(archive, receiver, digest={"every": "daily", "at": "14:00"},
                               timezone="Europe/Berlin")  # fmt: skip
        receiver.failing = True
        service = await AlertService.open(config, archive, clock=clock)
        with capture_logs(processors=[logs.redact]) as captured:
            clock.advance(hours=1, minutes=1)
            await service.step()
        assert [line["event"] for line in captured] == [
            "alerts: a digest could not be sent; retrying"
        ]
        assert set(captured[0]) == {"component", "event", "log_level"}
        await service.close()

    _with_archive(tmp_path, body)


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(bytes(envelope.content))
        return "250 OK"


def test_email_through_a_real_smtp_server(tmp_path: Path) -> None:
    """apprise's mailto:// delivers the alert to a local SMTP server (aiosmtpd)."""
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:

        async def body(archive: Archive, receiver: Receiver) -> None:
            url = (f"mailto://127.0.0.1:{port}?from=alerts@alerts.example"
                   "&to=dana@reyes-law.example&mode=insecure")  # fmt: skip
            config = alerts_config(archive.path, {"mail": url},
                                   contacts=[{"name": "Dana Reyes",
                                              "alerts": {"transports": ["mail"]}}])  # fmt: skip
            service = await AlertService.open(config, archive, clock=Clock())
            service.held(_held(4, THREAT))
            await service.step()
            await service.close()

        _with_archive(tmp_path, body)
    finally:
        controller.stop()
    assert len(mailbox.messages) == 1
    text = mailbox.messages[0].decode()
    assert "nocontact: urgent" in text
    assert "urgent:threat" in text


def test_a_hanging_transport_never_delays_the_held_path(tmp_path: Path) -> None:
    """A transport that takes the connection and never answers: while the service's send
    hangs, the pipeline still seals and returns each held letter at once (rule 1: the
    held path only enqueues), each from a new address of his, so each raises an alert."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    durations: list[float] = []

    async def main() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[RECIPIENT])
        config = alerts_config(
            archive.path, {"dana": f"json://127.0.0.1:{port}/x?cto=3&rto=3"},
            contacts=[{"name": "Dana Reyes", "alerts": {"transports": ["dana"]}}],
        )  # fmt: skip
        pipeline = Pipeline(rules=compile_rules(config), archive=archive, next_hop=NO_NEXT_HOP,
                            hostname="nocontact.test", default_region="US")  # fmt: skip
        service = await AlertService.open(config, archive)
        pipeline.alerts = service.held
        service.start()
        for n in range(8):
            sender = f"m{n}@markscompany.example"
            raw = (f"From: <{sender}>\r\nTo: <sam@home.example>\r\nSubject: x\r\n"
                   f"Message-ID: <{n}@x.example>\r\n\r\nanswer me\r\n").encode()  # fmt: skip
            started = time.perf_counter()
            await pipeline.receive(Arrival(raw=raw, sender=sender, recipients=("sam@home.example",),
                                           peer="127.0.0.1", helo="x.example"))  # fmt: skip
            durations.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)  # the service takes it up and its send hangs
        assert service.state.letters  # still unsent: the transport has not answered
        await service.close()
        await archive.close()

    try:
        asyncio.run(main())
    finally:
        listener.close()
    assert max(durations) < 0.5, durations


def test_a_reload_sends_through_the_new_transports(tmp_path: Path) -> None:
    """After `replace` (SIGHUP), queued and new alerts go where the new config says; a
    letter for a transport no longer configured is dropped, never sent elsewhere."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        clock = Clock()
        receiver.failing = True
        old = _two_contacts(archive, receiver)
        service = await AlertService.open(old, archive, clock=clock)
        service.held(_held(1, THREAT))
        await service.step()  # refused: waits to be retried
        new = alerts_config(
            archive.path, {"dana-new": receiver.url("dana-new")},
            contacts=[{"name": "Dana Reyes", "alerts": {"transports": ["dana-new"]}}],
        )  # fmt: skip
        service.replace(new)
        receiver.failing = False
        clock.advance(minutes=5)
        await service.step()
        assert receiver.got == {}  # the old transport's letter is dropped
        assert not service.state.letters
        service.held(_held(2, THREAT))
        await service.step()
        assert len(receiver.bodies("dana-new")) == 1
        await service.close()

    _with_archive(tmp_path, body)


def test_urgent_with_no_urgent_contact_goes_to_the_elevated_ones_at_once(tmp_path: Path) -> None:
    """No contact takes urgent alerts: an urgent item still goes out, at once in quiet
    hours, to those taking elevated ones, and is never escalated."""

    async def body(archive: Archive, receiver: Receiver) -> None:
        clock = Clock()  # 13:00 Berlin
        config = alerts_config(
            archive.path, {"priya": receiver.url("priya")},
            contacts=[{"name": "Priya Raman",
                       "alerts": {"transports": ["priya"], "tiers": ["elevated"]}}],
            timezone="Europe/Berlin", quiet_hours={"start": "12:00", "end": "18:00"},
        )  # fmt: skip
        service = await AlertService.open(config, archive, clock=clock)
        service.held(_held(3, THREAT, person=None, identity=""))
        await service.step()
        assert len(receiver.bodies("priya")) == 1
        assert "nocontact: urgent" in receiver.got["priya"][0]["title"]
        assert not service.state.urgent
        await service.close()

    _with_archive(tmp_path, body)
