"""sd_notify: the address NOTIFY_SOCKET names, the notices, and a watchdog that pings only
while the event loop runs."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from proxy.systemd.manager import ServiceManager
from proxy.systemd.notify import Notifier, notify_address, ready, reloading
from proxy.systemd.watchdog import watchdog_interval
from tests.systemd_helpers import notify_socket


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", b"/run/systemd/notify"),
        ("@/org/freedesktop/systemd1/notify/1", b"\0/org/freedesktop/systemd1/notify/1"),
        ("", None),
        ("@", None),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_notify_address(value: str, address: bytes | None) -> None:
    """A path, or an abstract name after '@'; anything else names no socket we use."""
    assert notify_address(value) == address


def test_a_notice_reaches_a_path_socket_and_the_variable_is_taken(tmp_path: Path) -> None:
    """READY=1 arrives as one datagram, and NOTIFY_SOCKET leaves the environment."""
    with notify_socket(tmp_path / "notify") as notices:
        environ = {"NOTIFY_SOCKET": notices.address, "PATH": "/bin"}
        notifier = Notifier.from_environment(environ)
        notifier.send(ready("listening"))
        notices.wait_for("READY=1")
        notifier.close()
    assert notices.notices() == ["READY=1\nSTATUS=listening"]
    assert environ == {"PATH": "/bin"}


def test_a_notice_reaches_an_abstract_socket() -> None:
    """A NOTIFY_SOCKET starting with '@' is an abstract socket (no file)."""
    name = f"nocontact-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(b"\0" + name.encode())
        listener.settimeout(5)
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": f"@{name}"})
        notifier.send("STOPPING=1")
        assert listener.recv(100) == b"STOPPING=1"
        notifier.close()


def test_without_a_manager_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    """No NOTIFY_SOCKET, or one nobody listens on: sending does nothing and never raises."""
    silent = Notifier.from_environment({})
    assert not silent.active
    silent.send("READY=1")
    gone = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.active
    gone.send("READY=1")  # ENOENT: dropped with one log line
    gone.send("WATCHDOG=1")
    gone.close()


def test_reloading_carries_the_monotonic_clock() -> None:
    """RELOADING=1 comes with MONOTONIC_USEC, the monotonic clock in microseconds."""
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    lines = dict(line.split("=", 1) for line in reloading().splitlines())
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert lines["RELOADING"] == "1"
    assert before <= int(lines["MONOTONIC_USEC"]) <= after
    assert reloading(42).splitlines()[1] == "MONOTONIC_USEC=42"


@pytest.mark.parametrize(
    ("usec", "owner", "interval"),
    [
        ("1000000", None, 0.5),
        ("30000000", str(os.getpid()), 15.0),
        ("1000000", "1", None),  # meant for another process
        ("1000000", "x", None),
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(usec: str | None, owner: str | None, interval: float | None) -> None:
    """Half of WATCHDOG_USEC, only if WATCHDOG_PID is ours or unset; both variables taken."""
    environ = {"WATCHDOG_USEC": usec, "WATCHDOG_PID": owner, "HOME": "/root"}
    present = {key: value for key, value in environ.items() if value is not None}
    assert watchdog_interval(present, os.getpid()) == interval
    assert present == {"HOME": "/root"}


def test_a_stuck_event_loop_stops_the_watchdog_pings(tmp_path: Path) -> None:
    """Pings come every half period while the loop runs, none while it is blocked, and
    they resume when it runs again."""
    period = 0.1  # WATCHDOG_USEC: 100 ms, so a ping every 50 ms

    async def serve() -> tuple[float, float]:
        manager = ServiceManager(Notifier(os.fsencode(notices.address)), period / 2)
        manager.ready()
        await asyncio.sleep(0.5)
        blocked_at = time.monotonic()
        time.sleep(0.6)  # the loop is stuck: no task runs
        unblocked_at = time.monotonic()
        await asyncio.sleep(0.5)
        manager.close()
        return blocked_at, unblocked_at

    with notify_socket(tmp_path / "notify") as notices:
        blocked_at, unblocked_at = asyncio.run(serve())
        time.sleep(0.1)
        pings = [at for at, notice in notices.heard if notice == "WATCHDOG=1"]
    before = [at for at in pings if at < blocked_at]
    during = [at for at in pings if blocked_at + 0.01 < at < unblocked_at]
    after = [at for at in pings if at > unblocked_at]
    assert len(before) >= 5
    assert during == []
    assert len(after) >= 5


def test_no_watchdog_pings_without_a_manager_or_a_period(tmp_path: Path) -> None:
    """READY=1 starts no pinger when no watchdog is asked for."""

    async def serve() -> None:
        manager = ServiceManager(Notifier(os.fsencode(notices.address)), None)
        manager.ready()
        await asyncio.sleep(0.3)
        manager.stopping()
        manager.close()

    with notify_socket(tmp_path / "notify") as notices:
        asyncio.run(serve())
        notices.wait_for("STOPPING=1")
    assert notices.notices() == ["READY=1\nSTATUS=listening", "STOPPING=1\nSTATUS=stopping"]
