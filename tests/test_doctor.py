"""`nocontact doctor` against a whole setup of real servers: all ok, then one thing broken
at a time, each named by one FAIL line, exit 1, never a traceback.

Rules these tests keep:
1. The servers are real where they can run here (Dovecot, aiosmtpd, an HTTP receiver for
   alerts) and the Twilio fake for Twilio; doctor runs as the user runs it, a child
   process.
2. Each breakage is one a helper would meet (a secret others can read, the next hop
   down, a wrong IMAP password, an archive byte changed, a wrong Twilio token, a host
   that never answers) and gives exactly one FAIL line saying what is wrong.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from proxy.archive.segments import segment_name
from tests import servers
from tests.doctor_helpers import ACCOUNT, Setup, alert_receiver, run, twilio
from tests.factories import write_secret
from tests.test_smtp import free_port, sink
from tests.twilio_fake import FakeTwilio


@pytest.fixture(scope="module")
def dovecot() -> Iterator[servers.Dovecot]:
    servers.require("dovecot", "dovecot-imapd dovecot-lmtpd")
    with servers.dovecot() as server:
        yield server


@pytest.fixture(scope="module")
def hop_port() -> Iterator[int]:
    with sink() as (port, _):
        yield port


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeTwilio]:
    with twilio() as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[int, list[bytes]]]:
    with alert_receiver() as running:
        yield running


@pytest.fixture
def setup(
    tmp_path: Path, dovecot: servers.Dovecot, hop_port: int, fake: FakeTwilio,
    receiver: tuple[int, list[bytes]],
) -> Setup:  # fmt: skip
    receiver[1].clear()
    return Setup(tmp_path, dovecot, hop_port, fake, receiver[0])


def test_a_healthy_setup_is_all_ok_and_sends_nothing(
    setup: Setup, receiver: tuple[int, list[bytes]]
) -> None:
    """Every check of a working setup is an ok line, exit 0; no alert is sent unasked."""
    ran = run("doctor", setup.config)
    assert (ran.code, ran.err) == (0, ""), ran.out
    lines = ran.out.splitlines()
    assert all(line.startswith("ok   ") for line in lines), ran.out
    assert "ok   archive verifies" in lines
    for expected in ("config", "secret files", "archive directory", "clock", "free disk",
                     f"next hop smtp://127.0.0.1:{setup.hop_port} answers",
                     "imap account home (sam at 127.0.0.1) logs in",
                     f"twilio account {ACCOUNT} credentials work",
                     "portal certificate for 127.0.0.1",
                     "alert transport phone parses"):  # fmt: skip
        assert any(line.startswith(f"ok   {expected}") for line in lines), (expected, ran.out)
    assert receiver[1] == []


def test_a_test_alert_is_sent_only_when_asked_and_says_nothing_else(
    setup: Setup, receiver: tuple[int, list[bytes]]
) -> None:
    """--send-test-alert sends each transport "nocontact test alert", title and body, only."""
    ran = run("doctor", setup.config, "--send-test-alert")
    assert ran.code == 0, ran.out
    assert "ok   test alert sent through phone" in ran.out.splitlines()
    (body,) = receiver[1]
    sent = json.loads(body)
    assert (sent["title"], sent["message"]) == ("nocontact test alert", "nocontact test alert")


def _secret_readable(setup: Setup) -> None:
    setup.password.chmod(0o644)


def _archive_open_to_all(setup: Setup) -> None:
    setup.archive.chmod(0o755)


def _next_hop_down(setup: Setup) -> None:
    smtp = {"listen": "127.0.0.1:1", "deliver": f"smtp://127.0.0.1:{free_port()}"}
    channels = _channels(setup)
    setup.write(channels={**channels, "smtp": smtp})


def _wrong_imap_password(setup: Setup) -> None:
    write_secret(setup.password, "not-the-password")


def _archive_byte_changed(setup: Setup) -> None:
    segment = setup.archive / "log" / segment_name(1)
    with segment.open("r+b") as file:
        file.seek(40)  # inside the first entry's body
        byte = file.read(1)
        file.seek(40)
        file.write(bytes([byte[0] ^ 1]))


def _wrong_twilio_token(setup: Setup) -> None:
    write_secret(setup.token, "not-the-token")


def _channels(setup: Setup) -> dict[str, object]:
    import yaml  # noqa: PLC0415 - only this helper reads the config back

    channels: dict[str, object] = yaml.safe_load(setup.config.read_text())["channels"]
    return channels


BREAKAGES: list[tuple[str, Callable[[Setup], None], tuple[str, ...]]] = [
    ("secret", _secret_readable,
     ("FAIL config: ", "password_file", "mode 0644", "make it 0600")),
    ("archive mode", _archive_open_to_all,
     ("FAIL archive directory: ", "mode 0755, make it 0700")),
    ("next hop down", _next_hop_down, ("FAIL next hop smtp://127.0.0.1:", "connection refused")),
    ("imap password", _wrong_imap_password,
     ("FAIL imap account home (sam at 127.0.0.1): login refused: ", "AUTHENTICATIONFAILED")),
    ("archive byte", _archive_byte_changed,
     ("FAIL archive verifies: it does not: damaged or tampered with",)),
    ("twilio token", _wrong_twilio_token,
     (f"FAIL twilio account {ACCOUNT}: refused (HTTP 401, code 20003)",)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "breaking", "said"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_one_thing_broken_is_one_fail_line_and_exit_1(
    setup: Setup, name: str, breaking: Callable[[Setup], None], said: tuple[str, ...]
) -> None:
    """Each breakage gives exactly one FAIL line, saying what is wrong; exit 1, no traceback."""
    breaking(setup)
    ran = run("doctor", setup.config)
    assert ran.code == 1, ran.out
    (failure,) = ran.failures
    assert failure.startswith(said[0]), (name, ran.out)
    assert all(part in failure for part in said), (name, failure)
    assert "Traceback" not in ran.out + ran.err
    assert ran.err == ""


def test_a_host_that_never_answers_is_one_fail_line_within_the_timeout(setup: Setup) -> None:
    """A next hop that accepts the connection and never greets costs one timeout, one line."""
    with socket.socket() as silent:
        silent.bind((servers.HOST, 0))
        silent.listen(8)  # the kernel accepts; no one ever speaks
        port = silent.getsockname()[1]
        smtp = {"listen": "127.0.0.1:1", "deliver": f"smtp://127.0.0.1:{port}"}
        setup.write(channels={**_channels(setup), "smtp": smtp})
        started = time.monotonic()
        ran = run("doctor", setup.config, "--timeout", "1")
        took = time.monotonic() - started
    assert ran.code == 1
    assert ran.failures == [f"FAIL next hop smtp://127.0.0.1:{port}: no answer within 1 s"]
    assert took < 20


def test_a_config_that_does_not_load_is_one_line(tmp_path: Path) -> None:
    """A config with a problem is one FAIL config line naming it, exit 1, no other check."""
    config = tmp_path / "config.yaml"
    config.write_text("archive: {path: 3}\n")
    ran = run("doctor", config)
    assert ran.code == 1
    (only,) = ran.out.splitlines()
    assert only.startswith(f"FAIL config: {config}:1:1: contacts: required key is missing")
    assert only.endswith("(and 2 more: nocontact check-config lists them)")  # people, path
