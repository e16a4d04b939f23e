"""SMTP connection limits and timeouts: a flood is told 421, an idle client is let go."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import smtplib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from proxy.channels.smtp import TOO_MANY
from tests.test_smtp import (
    ALLOWED,
    Service,
    _write_config,
    daemon,
    free_port,
    maildir_messages,
)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(port: int, source: str = "127.0.0.1") -> Connection:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def first_reply(connection: Connection) -> bytes:
    return await asyncio.wait_for(connection[0].readline(), 10)


@contextlib.asynccontextmanager
async def idle_sessions(port: int, count: int, source: str) -> AsyncIterator[list[Connection]]:
    """`count` connections from `source`, each greeted, then left idle."""
    connections = [await connect(port, source) for _ in range(count)]
    try:
        for connection in connections:
            assert (await first_reply(connection)).startswith(b"220 ")
        yield connections
    finally:
        for _, writer in connections:
            writer.close()


async def turned_away(port: int, source: str = "127.0.0.1") -> bool:
    """True when a new connection is told 421 4.7.0 and closed, with no greeting."""
    connection = await connect(port, source)
    try:
        reply = await first_reply(connection)
        rest = await asyncio.wait_for(connection[0].read(), 10)
    finally:
        connection[1].close()
    return reply == TOO_MANY.encode() + b"\r\n" and rest == b""


def deliver_from(port: int, source: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
        client.ehlo("client.test")
        client.mail("friend@example.org")
        client.rcpt("sam@home.example")
        code: int = client.data(ALLOWED)[0]
        return code


def test_one_address_flooding_does_not_keep_another_out(tmp_path: Path) -> None:
    """Past max_connections_per_client from 127.0.0.1 a connection is told 421, while
    127.0.0.2 is still greeted and delivers."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}",
                      max_connections=10, max_connections_per_client=3)  # fmt: skip

    async def run() -> tuple[bool, int, bytes]:
        async with service.running():
            async with idle_sessions(service.port, 3, "127.0.0.1"):
                refused = await turned_away(service.port, "127.0.0.1")
                other = await asyncio.to_thread(deliver_from, service.port, "127.0.0.2")
            await asyncio.sleep(0.2)  # the server sees the idle sessions go
            fresh = await connect(service.port, "127.0.0.1")
            again = await first_reply(fresh)
            fresh[1].close()
        return refused, other, again

    refused, other, again = asyncio.run(run())
    assert refused
    assert other == 250
    assert again.startswith(b"220 ")
    assert len(maildir_messages(tmp_path / "mail")) == 1


def test_total_limit_tells_everyone_421_until_a_session_ends(tmp_path: Path) -> None:
    """With max_connections sessions open, a new one from any address is told 421; once
    one ends, the next is greeted."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}",
                      max_connections=4, max_connections_per_client=2)  # fmt: skip

    async def run() -> tuple[bool, bool, bytes]:
        async with (
            service.running(),
            idle_sessions(service.port, 2, "127.0.0.1"),
            idle_sessions(service.port, 2, "127.0.0.2") as others,
        ):
            refused = await turned_away(service.port, "127.0.0.3")
            refused_too = await turned_away(service.port, "127.0.0.4")
            others[0][1].close()
            await others[0][1].wait_closed()
            await asyncio.sleep(0.2)
            fresh = await connect(service.port, "127.0.0.3")
            greeting = await first_reply(fresh)
            fresh[1].close()
        return refused, refused_too, greeting

    refused, refused_too, greeting = asyncio.run(run())
    assert refused
    assert refused_too
    assert greeting.startswith(b"220 ")


def test_an_idle_client_is_disconnected(tmp_path: Path) -> None:
    """A client that says nothing after the greeting, or stops in the middle of DATA, is
    disconnected after idle_timeout_seconds, and the half message is kept nowhere."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}", idle_timeout_seconds=0.5)

    async def silent(after: list[bytes]) -> float:
        reader, writer = await connect(service.port)
        try:
            assert (await first_reply((reader, writer))).startswith(b"220 ")
            for command in after:
                writer.write(command)
            started = time.monotonic()
            await asyncio.wait_for(reader.read(), 10)  # until the server closes
            return time.monotonic() - started
        finally:
            writer.close()

    async def run() -> tuple[float, float]:
        async with service.running():
            commands = [b"EHLO client.test\r\n", b"MAIL FROM:<friend@example.org>\r\n",
                        b"RCPT TO:<sam@home.example>\r\n", b"DATA\r\n"]  # fmt: skip
            return await silent([]), await silent([*commands, ALLOWED[:20]])

    idle, mid_data = asyncio.run(run())
    assert 0.3 < idle < 5
    assert 0.3 < mid_data < 5
    assert maildir_messages(tmp_path / "mail") == []


def test_a_slow_but_steady_sender_is_not_cut_off(tmp_path: Path) -> None:
    """Inside DATA the timeout counts silence, not the whole message: a sender writing a
    line every 0.2 s for 1.5 s, with a 0.5 s timeout, is answered 250."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}", idle_timeout_seconds=0.5)

    async def run() -> bytes:
        async with service.running():
            reader, writer = await connect(service.port)
            try:
                await first_reply((reader, writer))
                for command in (b"EHLO client.test\r\n", b"MAIL FROM:<friend@example.org>\r\n",
                                b"RCPT TO:<sam@home.example>\r\n", b"DATA\r\n"):  # fmt: skip
                    writer.write(command)
                    while (await first_reply((reader, writer)))[3:4] == b"-":
                        pass
                writer.write(ALLOWED)
                for _ in range(8):
                    await asyncio.sleep(0.2)
                    writer.write(b"more\r\n")
                writer.write(b".\r\n")
                return await first_reply((reader, writer))
            finally:
                writer.close()

    assert asyncio.run(run()).startswith(b"250 ")
    assert len(maildir_messages(tmp_path / "mail")) == 1


def _lower_soft_open_files() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))


def test_daemon_raises_its_open_files_limit(tmp_path: Path) -> None:
    """The daemon started with a soft limit of 256 open files runs with the hard limit."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 256
    with daemon(config, port, preexec_fn=_lower_soft_open_files) as process:
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
