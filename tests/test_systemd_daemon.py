"""`nocontact run` and `nocontact portal` under a stand-in for systemd: sd_notify notices on
a test socket (READY after listening, WATCHDOG while running, RELOADING then READY around
SIGHUP, STOPPING at SIGTERM), and listening sockets passed as systemd passes them."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from proxy.channels.sms.webhooks import EMPTY
from tests.portal_helpers import CONFIG, write_config
from tests.systemd_helpers import Notices, listening_socket, notify_socket, port_of, start
from tests.test_sms import MARK, NUMBER, PUBLIC, TOKEN, _daemon_config, run_with_fake
from tests.test_smtp import (
    ALLOWED,
    HELD,
    _send_sync,
    _wait_for_port,
    _write_config,
    free_port,
    held_items,
    maildir_messages,
    stopped,
)
from tests.twilio_fake import FakeTwilio, post_webhook


@contextmanager
def running(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The process, killed at the end if a failed test left it running."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def statuses(notices: Notices) -> set[str]:
    return {
        line for notice in notices.notices() for line in notice.splitlines()
        if line.startswith("STATUS=")
    }  # fmt: skip


def refused(args: list[str], name: str) -> str:
    """The one line on stderr of `python -m proxy ARGS` given a socket named `name`."""
    sock = listening_socket()
    with sock, running(start(args, sockets=[(name, sock)])) as process:
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    return line


def test_the_daemon_says_ready_pings_reloads_and_stops(tmp_path: Path) -> None:
    """READY=1 only once SMTP accepts, WATCHDOG=1 every half second, RELOADING=1 then
    READY=1 around SIGHUP, STOPPING=1 at SIGTERM; the statuses say nothing of held mail."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    with notify_socket(tmp_path / "notify") as notices:
        env = {"NOTIFY_SOCKET": notices.address, "WATCHDOG_USEC": "1000000"}
        with running(start(["run", "-c", str(config)], env=env)) as process:
            ready = notices.wait_for("READY=1", timeout=60)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass  # at once, no retry: it listened before it said so
            first = notices.wait_for("WATCHDOG=1", after=ready)
            notices.wait_for("WATCHDOG=1", after=first + 1, timeout=5)
            _send_sync(port, "mark.smith@gmail.com", HELD)
            process.send_signal(signal.SIGHUP)
            reloading = notices.wait_for("RELOADING=1", after=ready + 1)
            notices.wait_for("READY=1", after=reloading)
            stderr = stopped(process)
        heard = notices.notices()
    assert ready == 0  # nothing before READY=1
    assert heard[reloading].splitlines()[1].startswith("MONOTONIC_USEC=")
    assert heard[-1] == "STOPPING=1\nSTATUS=stopping"
    assert statuses(notices) == {"STATUS=listening", "STATUS=reloading", "STATUS=stopping"}
    assert "config reloaded" in stderr
    assert len(held_items(tmp_path / "archive")) == 1


def test_the_daemon_takes_the_smtp_socket_systemd_passed(tmp_path: Path) -> None:
    """Mail sent to the passed socket's port is held or delivered; the configured address
    is never bound."""
    configured, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, configured)
    sock = listening_socket()
    with notify_socket(tmp_path / "notify") as notices, sock:
        env = {"NOTIFY_SOCKET": notices.address}
        process = start(["run", "-c", str(config)], sockets=[("smtp", sock)], env=env)
        with running(process):
            notices.wait_for("READY=1", timeout=60)
            _send_sync(port_of(sock), "mark.smith@gmail.com", HELD)
            _send_sync(port_of(sock), "friend@example.org", ALLOWED)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", configured), timeout=5).close()
            stderr = stopped(process)
    assert len(held_items(tmp_path / "archive")) == 1
    assert len(maildir_messages(tmp_path / "mail")) == 1
    assert "sockets passed by systemd" in stderr


def test_the_daemon_takes_the_webhooks_socket_systemd_passed(tmp_path: Path) -> None:
    """A held text posted to the passed `webhooks` socket is answered empty and sealed."""

    async def test(fake: FakeTwilio) -> None:
        config = tmp_path / "config.yaml"
        _daemon_config(config, fake, free_port(), "+15550108888")
        sock = listening_socket()
        with notify_socket(tmp_path / "notify") as notices, sock:
            env = {"NOTIFY_SOCKET": notices.address}
            process = start(["run", "-c", str(config)], sockets=[("webhooks", sock)], env=env)
            with running(process):
                await asyncio.to_thread(notices.wait_for, "READY=1", timeout=60)
                _, held = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY")
                async with aiohttp.ClientSession() as session:
                    answer = await post_webhook(
                        session, public_url=PUBLIC + "/sms",
                        local_url=f"http://127.0.0.1:{port_of(sock)}/sms",
                        params=held, auth_token=TOKEN,
                    )  # fmt: skip
                assert answer == (200, EMPTY)
                await asyncio.to_thread(stopped, process)
        assert len(held_items(tmp_path / "archive")) == 1

    run_with_fake(test)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("portal", "nocontact: a socket named 'portal' was passed (FileDescriptorName=), "
                   "but nocontact run listens only as smtp, webhooks"),
        ("webhooks", "nocontact: a socket named 'webhooks' was passed, but channels.sms is "
                     "not configured"),
        ("unknown", "nocontact: a socket named 'unknown' was passed (FileDescriptorName=), "
                    "but nocontact run listens only as smtp, webhooks"),
    ],
)  # fmt: skip
def test_the_daemon_refuses_a_socket_it_cannot_use(tmp_path: Path, name: str, line: str) -> None:
    """A socket with a name the daemon does not use, or for a channel not configured, is
    one line and exit 2, before the archive is even opened."""
    config = tmp_path / "config.yaml"
    _write_config(config, free_port())
    assert refused(["run", "-c", str(config)], name) == line
    assert not (tmp_path / "archive").exists()


def _portal_config(tmp_path: Path, port: int) -> Path:
    text = CONFIG.replace("portal:\n", f"portal:\n  listen: 127.0.0.1:{port}\n").replace(
        "https://home.example/portal/", f"http://127.0.0.1:{port}/"
    )
    return write_config(tmp_path, text)


def test_the_portal_takes_its_socket_and_tells_systemd(tmp_path: Path) -> None:
    """The portal serves on the passed `portal` socket, says READY=1 then, answers SIGHUP
    with RELOADING=1 and READY=1, and says STOPPING=1 at SIGTERM."""
    sock = listening_socket()
    path = _portal_config(tmp_path, port_of(sock))
    with notify_socket(tmp_path / "notify") as notices, sock:
        env = {"NOTIFY_SOCKET": notices.address, "WATCHDOG_USEC": "1000000"}
        process = start(["portal", "-c", str(path)], sockets=[("portal", sock)], env=env,
                        cwd=tmp_path)  # fmt: skip
        with running(process):
            ready = notices.wait_for("READY=1", timeout=60)
            url = f"http://127.0.0.1:{port_of(sock)}/login"
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
            notices.wait_for("WATCHDOG=1", after=ready)
            process.send_signal(signal.SIGHUP)
            reloading = notices.wait_for("RELOADING=1", after=ready + 1)
            notices.wait_for("READY=1", after=reloading)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert notices.notices()[-1] == "STOPPING=1\nSTATUS=stopping"
    assert "restart it to apply a new config" in stderr
    assert "Traceback" not in stderr


def test_the_portal_listens_on_its_address_without_systemd(tmp_path: Path) -> None:
    """No socket passed and no NOTIFY_SOCKET: it binds portal.listen, as before."""
    port = free_port()
    path = _portal_config(tmp_path, port)
    with running(start(["portal", "-c", str(path)], cwd=tmp_path)) as process:
        _wait_for_port(port, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_the_portal_refuses_a_socket_it_cannot_use(tmp_path: Path) -> None:
    """A socket named for the daemon's SMTP listener, passed to the portal: one line, exit 2."""
    path = _portal_config(tmp_path, free_port())
    assert refused(["portal", "-c", str(path)], "smtp") == (
        "nocontact: a socket named 'smtp' was passed (FileDescriptorName=), but nocontact "
        "portal listens only as portal"
    )
