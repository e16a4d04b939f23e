"""Next-hop connections kept and reused: never a lost or doubled message, closed at stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from proxy.archive import Archive
from proxy.deliver.address import Destination, Scheme
from proxy.deliver.hops import DeliveryDeferred, LmtpHop, NextHop, PartlyDelivered, SmtpHop
from proxy.deliver.pool import Pool
from proxy.pipeline import Arrival, Pipeline
from tests.factories import config_data, make_rules
from tests.test_smtp import (
    ALLOWED,
    RECIPIENT,
    Service,
    _send_sync,
    daemon,
    free_port,
)

FIRST = b"From: friend@example.org\r\nSubject: one\r\n\r\nfirst\r\n"
SECOND = b"From: friend@example.org\r\nSubject: two\r\n\r\nsecond\r\n"


class Mailbox:
    """An aiosmtpd next hop's handler that records what it took and misbehaves on cue."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.envelopes: list[tuple[str | None, list[str]]] = []
        self.connections = 0
        self.quits = 0
        self.answer_mail: str | None = None  # once, instead of 250
        self.vanish_after_data = False  # take the message, then drop the line unanswered
        self.sessions: list[SMTP] = []

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.answer_mail is not None:
            answer, self.answer_mail = self.answer_mail, None
            return answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        self.messages.append(envelope.original_content or b"")
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.vanish_after_data:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        self.quits += 1
        return "221 Bye"

    def hang_up_on_everyone(self) -> None:
        for session in self.sessions:
            if session.transport is not None:
                session.transport.close()


@contextlib.asynccontextmanager
async def next_hop_server(
    kind: type[SMTP] = SMTP, *, mailbox: Mailbox | None = None
) -> AsyncIterator[tuple[int, Mailbox]]:
    """A next hop in this event loop, on a free port."""
    mailbox = mailbox if mailbox is not None else Mailbox()

    def session() -> SMTP:
        mailbox.connections += 1
        made = kind(mailbox, enable_SMTPUTF8=kind is SMTP)
        mailbox.sessions.append(made)
        return made

    server = await asyncio.get_running_loop().create_server(session, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], mailbox
    finally:
        mailbox.hang_up_on_everyone()
        server.close()


def hop_to(kind: type[SMTP], port: int) -> NextHop:
    if kind is LMTP:
        return LmtpHop(Destination(scheme=Scheme.LMTP, host="127.0.0.1", port=port),
                       hostname="test")  # fmt: skip
    return SmtpHop("127.0.0.1", port, hostname="test")


async def deliver(hop: NextHop, message: bytes) -> None:
    await hop.deliver(message, "friend@example.org", ["sam@home.example"], [])


@pytest.mark.parametrize("kind", [SMTP, LMTP], ids=["smtp", "lmtp"])
def test_connection_is_reused(kind: type[SMTP]) -> None:
    """Three messages in a row travel over one connection to the next hop."""

    async def run() -> Mailbox:
        async with next_hop_server(kind) as (port, mailbox):
            hop = hop_to(kind, port)
            for message in (FIRST, SECOND, FIRST):
                await deliver(hop, message)
            await hop.aclose()
        return mailbox

    mailbox = asyncio.run(run())
    assert mailbox.messages == [FIRST, SECOND, FIRST]
    assert mailbox.connections == 1


@pytest.mark.parametrize("kind", [SMTP, LMTP], ids=["smtp", "lmtp"])
def test_connection_closed_meanwhile_is_replaced_and_the_message_delivered_once(
    kind: type[SMTP],
) -> None:
    """A kept connection the next hop closed in the meantime fails at MAIL; the message
    goes over a fresh connection, exactly once."""

    async def run() -> Mailbox:
        async with next_hop_server(kind) as (port, mailbox):
            hop = hop_to(kind, port)
            await deliver(hop, FIRST)
            mailbox.hang_up_on_everyone()
            await asyncio.sleep(0.1)
            await deliver(hop, SECOND)
            await hop.aclose()
        return mailbox

    mailbox = asyncio.run(run())
    assert mailbox.messages == [FIRST, SECOND]
    assert mailbox.connections == 2


def test_421_at_mail_on_a_kept_connection_is_tried_once_more_fresh() -> None:
    """A next hop closing a kept connection (421 at MAIL) gets the message on a fresh one;
    the same 421 on a fresh connection is not retried: the sender is told to retry."""

    async def run() -> tuple[Mailbox, bool]:
        async with next_hop_server() as (port, mailbox):
            hop = hop_to(SMTP, port)
            await deliver(hop, FIRST)
            mailbox.answer_mail = "421 4.4.2 closing: idle too long"
            await deliver(hop, SECOND)
            await hop.aclose()
            fresh = hop_to(SMTP, port)
            mailbox.answer_mail = "421 4.3.2 shutting down"
            try:
                await deliver(fresh, FIRST)
            except DeliveryDeferred:
                deferred = True
            else:
                deferred = False
            await fresh.aclose()
        return mailbox, deferred

    mailbox, deferred = asyncio.run(run())
    assert mailbox.messages == [FIRST, SECOND]
    assert mailbox.connections == 3
    assert deferred


def test_failure_after_data_is_451_and_never_sent_twice(tmp_path: Path) -> None:
    """A next hop that takes the message and drops the line before answering leaves the
    sender with 451, and nothing is sent again on our side; the pool recovers."""

    async def run() -> tuple[list[int], Mailbox]:
        async with next_hop_server() as (port, mailbox):
            service = Service(tmp_path, f"smtp://127.0.0.1:{port}")
            async with service.running():
                codes = [(await service.send("friend@example.org", ALLOWED))[0]]
                mailbox.vanish_after_data = True
                codes.append((await service.send("friend@example.org", ALLOWED))[0])
                mailbox.vanish_after_data = False
                codes.append((await service.send("friend@example.org", ALLOWED))[0])
        return codes, mailbox

    codes, mailbox = asyncio.run(run())
    assert codes == [250, 451, 250]
    assert len(mailbox.messages) == 3  # the second was taken once, never resent by us
    assert mailbox.connections == 2


class _Link:
    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy
        self.closed = self.quit_said = False

    async def check(self) -> bool:
        return self.healthy

    async def quit(self) -> None:
        self.quit_said = True

    def close(self) -> None:
        self.closed = True


def _pool(made: list[_Link], **settings: Any) -> Pool[_Link]:
    async def open_link() -> _Link:
        made.append(_Link())
        return made[-1]

    options: dict[str, Any] = {"size": 2, "idle_seconds": 60.0, "check_after": 60.0}
    return Pool(open_link, **(options | settings))


def test_pool_keeps_at_most_size_and_closes_the_rest() -> None:
    """Given back beyond `size`, a connection is closed; kept ones are lent again."""

    async def run() -> tuple[list[_Link], list[bool]]:
        made: list[_Link] = []
        pool = _pool(made)
        lent = [await pool.take() for _ in range(3)]
        for link, _ in lent:
            pool.give_back(link)
        again = [(await pool.take())[1] for _ in range(3)]
        return made, again

    made, again = asyncio.run(run())
    assert [link.closed for link in made] == [False, False, True, False]
    assert again == [True, True, False]


def test_pool_sweeps_idle_connections_and_checks_old_ones() -> None:
    """A connection idle past idle_seconds is closed by the sweep; one idle past
    check_after that fails its NOOP is closed and a fresh one lent instead."""

    async def run() -> tuple[list[_Link], list[_Link], bool]:
        swept: list[_Link] = []
        pool = _pool(swept, idle_seconds=0.05)
        pool.give_back((await pool.take())[0])
        await asyncio.sleep(0.2)
        checked: list[_Link] = []
        checking = _pool(checked, check_after=0.01)
        link, _ = await checking.take()
        link.healthy = False
        checking.give_back(link)
        await asyncio.sleep(0.05)
        _, reused = await checking.take()
        return swept, checked, reused

    swept, checked, reused = asyncio.run(run())
    assert swept[0].closed
    assert checked[0].closed
    assert len(checked) == 2
    assert not reused


def test_pool_aclose_quits_waiting_and_closes_lent_on_return() -> None:
    """aclose says QUIT on every waiting connection and closes a lent one when it comes
    back; a connection taken afterwards is fresh and closed when given back."""

    async def run() -> tuple[list[_Link], bool]:
        made: list[_Link] = []
        pool = _pool(made)
        waiting, _ = await pool.take()
        lent, _ = await pool.take()
        pool.give_back(waiting)
        await pool.aclose()
        pool.give_back(lent)
        late, reused = await pool.take()
        pool.give_back(late)
        return made, reused

    made, reused = asyncio.run(run())
    assert made[0].quit_said
    assert made[0].closed
    assert made[1].closed
    assert not made[1].quit_said
    assert not reused
    assert len(made) == 3
    assert made[2].closed


def _wait(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_daemon_closes_its_pool_on_reload_and_stop(tmp_path: Path) -> None:
    """The daemon says QUIT on its kept next-hop connection when SIGHUP replaces the next
    hop and again when SIGTERM stops it."""
    mailbox = Mailbox()
    hop_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=hop_port)
    controller.start()
    try:
        port, config = free_port(), tmp_path / "config.yaml"
        data = config_data(
            archive={"path": str(tmp_path / "archive")},
            contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}],
            channels={"smtp": {"listen": f"127.0.0.1:{port}",
                               "deliver": f"smtp://127.0.0.1:{hop_port}"}},
        )  # fmt: skip
        config.write_text(yaml.safe_dump(data))
        with daemon(config, port) as process:
            _send_sync(port, "friend@example.org", ALLOWED)
            process.send_signal(signal.SIGHUP)
            reloaded = _wait(lambda: mailbox.quits == 1)
            _send_sync(port, "friend@example.org", ALLOWED)
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
            assert process.returncode == 0
        stopped = _wait(lambda: mailbox.quits == 2)
    finally:
        controller.stop()
    assert reloaded
    assert stopped
    assert len(mailbox.messages) == 2


class _DefersKimOnce(Mailbox):
    """A next hop that defers one recipient the first time it is offered, as a full
    mailbox or a lock would."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred = False

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address == "kim@home.example" and not self.deferred:
            self.deferred = True
            return "452 4.2.2 Mailbox busy, try again"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_retry_after_a_delivery_in_part_reaches_only_the_rest(tmp_path: Path) -> None:
    """The next hop took the message for one recipient and deferred the other: the sender
    is told to retry (4xx), and the retry goes to the other alone; a further retry (its
    250 lost on the way) delivers nothing again. Nobody gets it twice."""
    arrival = Arrival(raw=ALLOWED, sender="friend@example.org",
                      recipients=("sam@home.example", "kim@home.example"),
                      peer="127.0.0.1", helo="client.test")  # fmt: skip

    async def run() -> list[object]:
        archive = await Archive.open(tmp_path / "archive", recipients=[RECIPIENT])
        mailbox = _DefersKimOnce()
        outcomes: list[object] = []
        async with next_hop_server(mailbox=mailbox) as (port, _):
            pipeline = Pipeline(rules=make_rules(), archive=archive,
                                next_hop=SmtpHop("127.0.0.1", port, hostname="test"),
                                hostname="nocontact.test", default_region="US")  # fmt: skip
            for _ in range(3):
                try:
                    await pipeline.receive(arrival)
                    outcomes.append("250")
                except PartlyDelivered as partly:
                    outcomes.append(partly.delivered)
            await pipeline.next_hop.aclose()
        await archive.close()
        return [*outcomes, [recipients for _, recipients in mailbox.envelopes]]

    assert asyncio.run(run()) == [
        ("sam@home.example",),
        "250",
        "250",
        [["sam@home.example"], ["kim@home.example"]],
    ]
