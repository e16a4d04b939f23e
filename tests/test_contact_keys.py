"""The daemon's watch on portal contacts' key files: an enrollment takes effect without
SIGHUP, a garbage key file changes nothing, a removed one is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyrage
import pytest
import yaml

from proxy.access.keys import custody_public_key
from proxy.access.reading import AccessProblem, open_archive
from proxy.access.recording import signed_request
from proxy.config import load_config
from proxy.config.meaning import custody_key_file
from proxy.contact_keys import (
    CUSTODY_KEY_SET,
    FILE_CHANGED,
    KEY_ADDED,
    KEY_CHANGED,
    KEY_REMOVED,
    KeyChange,
    key_changes,
    key_files,
    look,
    watch,
)
from proxy.errors import ConfigError
from proxy.portal.accounts import Accounts
from tests.factories import config_data
from tests.portal_helpers import ADDRESS, EMAIL, FAST, STRONG, Clock, code
from tests.test_contact import _ask_socket
from tests.test_smtp import HELD, IDENTITY, RECIPIENT, _send_sync, daemon, free_port

PRIYA = "Priya Raman"


def _write_config(directory: Path, port: int, *, portal: bool = True) -> Path:
    """A daemon config: one contact with a key (the test's IDENTITY), and Priya, a portal
    contact who has not enrolled yet (or a second ordinary contact, `portal=False`)."""
    priya: dict[str, Any] = {"name": PRIYA, "role": "contact", "email": EMAIL}
    if portal:
        priya |= {"portal": True, "age_recipient_file": "keys/priya.pub"}
    else:
        priya |= {"age_recipient": str(pyrage.x25519.Identity.generate().to_public())}
    data = config_data(
        archive={"path": str(directory / "archive")},
        contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}, priya],
        channels={"smtp": {"listen": f"127.0.0.1:{port}",
                           "deliver": f"maildir:{directory / 'mail'}"}},
    )  # fmt: skip
    if portal:
        data["portal"] = {"public_url": "https://home.example/portal/", "state_dir": "./portal"}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def _daemon(config: Path, port: int, log: Path) -> Iterator[subprocess.Popen[str]]:
    """`nocontact run`, its log (JSON lines) going to `log` so a test can follow it."""
    with log.open("w") as sink, daemon(config, port, stdout=subprocess.DEVNULL,
                                       stderr=sink) as process:  # fmt: skip
        yield process


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


def _events(log: Path) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _wait_for_event(log: Path, event: str, count: int = 1, timeout: float = 20) -> None:
    """Until the log holds `count` lines of `event` (the watch looks every 2 s)."""
    deadline = time.monotonic() + timeout
    while sum(e["event"] == event for e in _events(log)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event!r} in the log:\n{log.read_text()}")
        time.sleep(0.1)


def _enroll(config: Path, clock: Clock) -> tuple[Accounts, str]:
    """Priya enrolls through the portal's accounts; her accounts and TOTP secret."""
    accounts = Accounts(load_config(config), clock=clock, hasher=FAST)
    token = accounts.invite(PRIYA).rsplit("/", 1)[1]
    setup = accounts.totp_setup(accounts.begin(token))
    accounts.enroll(token, STRONG, code(setup.secret, clock), setup.secret)
    return accounts, setup.secret


def _log_in(accounts: Accounts, secret: str, clock: Clock) -> Any:
    """Priya's identity, from a login at the next TOTP step (a login rewrites a missing
    key file: portal/accounts.py rule 5)."""
    clock.advance(seconds=30)
    return accounts.login(EMAIL, STRONG, code(secret, clock), ADDRESS).identity


def _sequences(archive: Path, identity: Any) -> list[int]:
    return [item.sequence for item in open_archive(archive, identity).items()]


def test_an_enrollment_takes_effect_without_sighup(tmp_path: Path) -> None:
    """While the daemon runs, Priya enrolls: within seconds, with no signal, the log says
    so with her name, items held afterwards open with her key, and a custody record she
    signs is accepted over the socket. Her key file removed, new items are sealed to the
    other contact only (and the log says so); her next login writes it again and she is
    back. Items held before her enrollment stay the other contact's alone."""
    port = free_port()
    config, log, archive = (
        _write_config(tmp_path, port),
        tmp_path / "daemon.log",
        tmp_path / "archive",
    )
    clock = Clock()
    with _daemon(config, port, log) as process:
        _send_sync(port, "mark.smith@gmail.com", HELD)  # before: sealed to Test Contact only
        accounts, secret = _enroll(config, clock)
        _wait_for_event(log, KEY_ADDED)
        _send_sync(port, "mark.smith@gmail.com", HELD)  # after: to Priya too
        priya = _log_in(accounts, secret, clock)
        mine = _sequences(archive, IDENTITY)[1]
        assert _sequences(archive, priya) == [mine]
        request = signed_request(priya, action="show", items=[mine], reason="checking")
        assert "index" in _ask_socket(archive, request.to_json())
        Path(tmp_path / "keys" / "priya.pub").unlink()
        _wait_for_event(log, KEY_REMOVED)
        _send_sync(port, "mark.smith@gmail.com", HELD)  # removed: Test Contact only
        _log_in(accounts, secret, clock)  # writes her key file again
        _wait_for_event(log, KEY_ADDED, count=2)
        _send_sync(port, "mark.smith@gmail.com", HELD)
        _stop(process)
    _, second, _, fourth = _sequences(archive, IDENTITY)
    assert _sequences(archive, priya) == [second, fourth]
    [entry] = [e for e in open_archive(archive, priya).custody() if e.action == "show"]
    assert (entry.items, entry.signed) == ((second,), "verified")
    events = _events(log)
    added = [e for e in events if e["event"] == KEY_ADDED]
    assert [e["contact"] for e in added] == [PRIYA, PRIYA]
    assert any(e["event"] == CUSTODY_KEY_SET and e["contact"] == PRIYA for e in events)
    assert any(e["event"] == FILE_CHANGED for e in events)
    assert not any(e["level"] in ("error", "critical") for e in events), events
    assert "CANARY" not in log.read_text()  # the held message's subject
    assert "Traceback" not in log.read_text()


def test_a_garbage_key_file_changes_nothing(tmp_path: Path) -> None:
    """A key file that is not a key, then a good key beside a garbage custody key: each is
    one refusal in the log, the daemon keeps running, and items stay sealed to the old set."""
    port = free_port()
    config, log, archive = (
        _write_config(tmp_path, port),
        tmp_path / "daemon.log",
        tmp_path / "archive",
    )
    stranger = pyrage.x25519.Identity.generate()
    keys = tmp_path / "keys"
    keys.mkdir()
    with _daemon(config, port, log) as process:
        (keys / "priya.pub").write_bytes(b"\xff\xfe not a key \x00")
        _wait_for_event(log, "reload refused: the new config is invalid; the old one stays")
        _send_sync(port, "mark.smith@gmail.com", HELD)
        (keys / "priya.pub").unlink()  # (so no look sees both files bad)
        (keys / "priya.custody").write_text("ed25519:not-base64!\n")
        (keys / "priya.pub").write_text(f"{stranger.to_public()}\n")
        _wait_for_event(log, "reload refused: the new config is invalid; the old one stays", 2)
        _send_sync(port, "mark.smith@gmail.com", HELD)
        assert process.poll() is None
        _stop(process)
    assert len(_sequences(archive, IDENTITY)) == 2
    with pytest.raises(AccessProblem, match=r"not one of the archive's contacts"):
        open_archive(archive, stranger)
    refusals = [e for e in _events(log) if e["event"].startswith("reload refused")]
    assert len(refusals) == 2
    assert "priya.pub" in str(refusals[0]["problems"])
    assert "priya.custody" in str(refusals[1]["problems"])
    assert "not-base64" not in log.read_text()  # the file's content is never echoed
    assert not any(e["event"] == KEY_ADDED for e in _events(log))


def test_the_watch_runs_the_reload_when_a_file_appears_changes_or_goes(tmp_path: Path) -> None:
    """A file written while the config was read runs the reload at the first look; then
    each appearance, change and removal runs it once, and a look with nothing changed
    runs nothing; a reload that raises does not end the watch."""
    watched = (tmp_path / "a.pub", tmp_path / "a.custody")
    reloads: list[float] = []

    def reload() -> None:
        reloads.append(time.monotonic())
        if len(reloads) == 1:
            raise RuntimeError("one bad reload")

    async def reloaded(count: int) -> None:
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(reloads) > count:
                break
        assert len(reloads) == count + 1

    async def scenario() -> None:
        since = time.time_ns()  # the config is read, and meanwhile the portal writes:
        watched[1].write_text("custody")
        task = asyncio.create_task(
            watch(lambda: watched, reload, since=since, every=0.05, settle=0.01)
        )
        await reloaded(0)
        await asyncio.sleep(0.2)
        assert len(reloads) == 1
        for change in (lambda: watched[0].write_text("one"),
                       lambda: watched[0].write_text("longer"),
                       watched[0].unlink):  # fmt: skip
            count = len(reloads)
            change()
            await reloaded(count)
        await asyncio.sleep(0.2)
        assert len(reloads) == 4
        task.cancel()

    asyncio.run(scenario())


def test_no_portal_contact_no_watch(tmp_path: Path) -> None:
    """Without portal contacts there is nothing to watch, and a watch given nothing ends."""
    config = load_config(_write_config(tmp_path, free_port(), portal=False))
    assert key_files(config) == ()
    asyncio.run(asyncio.wait_for(watch(lambda: (), lambda: None, since=0, every=60), 5))
    portal = load_config(_write_config(tmp_path, free_port()))
    pub = tmp_path / "keys" / "priya.pub"
    assert key_files(portal) == (pub, pub.with_suffix(".custody"))
    assert look(key_files(portal)) == {pub: None, pub.with_suffix(".custody"): None}


def test_key_changes_name_each_contact_once(tmp_path: Path) -> None:
    """A reload's key changes, contact by contact: added with its custody key, changed,
    removed; nothing for a reload that changed no key."""
    config_path = _write_config(tmp_path, free_port())
    before = load_config(config_path)
    identity, other = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    (tmp_path / "keys").mkdir()
    custody_key_file(str(tmp_path / "keys" / "priya.pub")).write_text(
        custody_public_key(identity) + "\n"
    )
    (tmp_path / "keys" / "priya.pub").write_text(f"{identity.to_public()}\n")
    enrolled = load_config(config_path)
    [priya] = [c for c in enrolled.contacts if c.portal]
    assert priya.custody_key == custody_public_key(identity)
    (tmp_path / "keys" / "priya.pub").write_text(f"{other.to_public()}\n")
    changed = load_config(config_path)
    assert key_changes(before, enrolled) == [
        KeyChange(event=KEY_ADDED, contact=PRIYA),
        KeyChange(event=CUSTODY_KEY_SET, contact=PRIYA),
    ]
    assert key_changes(enrolled, changed) == [KeyChange(event=KEY_CHANGED, contact=PRIYA)]
    assert key_changes(enrolled, before) == [KeyChange(event=KEY_REMOVED, contact=PRIYA)]
    assert key_changes(enrolled, enrolled) == []


def test_a_garbage_custody_key_file_is_one_config_problem(tmp_path: Path) -> None:
    """An enrolled portal contact's custody key file that holds no custody key refuses the
    config with one line naming the file, never what it holds."""
    config_path = _write_config(tmp_path, free_port())
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "priya.pub").write_text(
        f"{pyrage.x25519.Identity.generate().to_public()}\n"
    )
    (tmp_path / "keys" / "priya.custody").write_bytes(b"SECRETISH \xff garbage")
    with pytest.raises(ConfigError) as refused:
        load_config(config_path)
    [line] = str(refused.value).splitlines()
    assert "priya.custody" in line
    assert "SECRETISH" not in line
