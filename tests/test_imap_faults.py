"""The IMAP watcher under faults, against a real private Dovecot and the daemon as a child.

Each test proves invariant 1 (nothing lost, nothing sealed twice) or 2 (allowed mail left
exactly as it was) across one fault: the server restarting under the watcher, the folder
rebuilt with a new UIDVALIDITY, and SIGKILL at random moments during a burst.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from imapclient import IMAPClient

from proxy.archive import verify_archive
from proxy.channels.imap import watch
from proxy.channels.imap.runner import ImapRunner
from proxy.channels.imap.state import AccountState
from proxy.config.model import ImapChannel
from proxy.pipeline import Fate, Pipeline
from tests import servers
from tests.imap_helpers import (
    ABOUT_HIM,
    ALLOWED,
    FROM_HIM,
    Daemon,
    append,
    append_raw,
    flags,
    imap,
    message,
    messages,
    sealed,
    token,
    tokens,
    uidvalidity,
    wait_for,
    watching,
)
from tests.test_smtp import held_items

SEEN = b"\\Seen"
RECONNECT_SECONDS = 20.0


@pytest.fixture
def dovecot() -> Iterator[servers.Dovecot]:
    """A fresh private Dovecot per test: no test sees another's mail or restarts."""
    with servers.dovecot() as server:
        yield server


def _gone(server: servers.Dovecot, folder: str, *marks: str) -> bool:
    present = tokens(server, folder)
    return not any(present[mark] for mark in marks)


def test_dovecot_restarted_under_the_watcher(dovecot: servers.Dovecot, tmp_path: Path) -> None:
    """After Dovecot restarts, the watcher reconnects by itself and handles the mail that comes."""
    daemon = Daemon(tmp_path, dovecot)
    with daemon.running():
        before = append(dovecot, "INBOX", FROM_HIM)
        wait_for(lambda: _gone(dovecot, "INBOX", before), why=daemon.tail)
        dovecot.stop()
        time.sleep(2.0)  # several failed logins: the watcher is backing off
        dovecot.start()
        held = append(dovecot, "INBOX", FROM_HIM)
        junk = append(dovecot, servers.JUNK, ABOUT_HIM)
        allowed = append(dovecot, "INBOX", ALLOWED)
        wait_for(
            lambda: _gone(dovecot, "INBOX", held) and _gone(dovecot, servers.JUNK, junk),
            timeout=RECONNECT_SECONDS, why=daemon.tail,
        )  # fmt: skip
        time.sleep(0.5)  # let a wrong move of the allowed message happen, if it would
        assert flags(dovecot, "INBOX") == {allowed: frozenset()}
    assert sealed(daemon.archive) == Counter([before, held, junk])
    verify_archive(daemon.archive)


def test_mail_landing_during_a_search_is_not_left_for_the_keepalive(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """Mail the server takes in during an empty UID SEARCH is handled at once.

    Dovecot announces such mail only in that search's reply and never again in IDLE, so a
    watcher that went straight back to IDLE would leave it for the 2-minute keepalive. The
    real client below has the mail land between the watcher's NOOP and its first search.
    """
    landed: list[str] = []

    class LandsDuringTheSearch(IMAPClient):  # type: ignore[misc]  # imapclient is untyped
        def search(self, criteria: object = "ALL", charset: str | None = None) -> list[int]:
            if not landed:
                landed.append(append(dovecot, "INBOX", FROM_HIM))
            return list(super().search(criteria, charset))

    held: list[bytes] = []

    def handle(found: list[watch.Found]) -> list[watch.Judged]:
        held.extend(raw for raw, _, _ in found)
        return [Fate.HELD for _ in found]

    with watching(tmp_path, dovecot, handle, client=LandsDuringTheSearch):
        wait_for(lambda: bool(landed) and _gone(dovecot, "INBOX", *landed), timeout=5.0)
    assert [landed[0].encode() in raw for raw in held] == [True]


POISON_SUBJECT = "=?utf-7?q?+2AA-?="  # decodes to a lone surrogate, '\ud800'


def test_a_message_that_cannot_be_decided_holds_back_nothing_and_is_retried(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """A message whose handling raises stays untouched while later mail is handled at once;
    it is tried again (after a restart too) and removed only once it is sealed."""
    first = append(dovecot, "INBOX", FROM_HIM)
    stuck = append(dovecot, "INBOX", FROM_HIM, flags="(\\Flagged)")
    later = append(dovecot, "INBOX", FROM_HIM)
    tries: list[str] = []
    failing = threading.Event()
    failing.set()

    def handle(found: list[watch.Found]) -> list[watch.Judged]:
        judged: list[watch.Judged] = []
        for raw, _, _ in found:
            if stuck.encode() in raw:
                tries.append(stuck)
                if failing.is_set():
                    judged.append(None)
                    continue
            judged.append(Fate.HELD)
            handed_over.append(raw)
        return judged

    handed_over: list[bytes] = []
    with watching(tmp_path, dovecot, handle):
        wait_for(lambda: _gone(dovecot, "INBOX", first, later), timeout=5.0)
        wait_for(lambda: len(tries) >= 2, timeout=5.0)  # looked at again, about 1 s later
        assert flags(dovecot, "INBOX") == {stuck: frozenset({b"\\Flagged"})}
    assert AccountState(tmp_path / "state.json").folder("INBOX").retry  # type: ignore[union-attr]
    failing.clear()
    with watching(tmp_path, dovecot, handle):  # a restart: tried again at once
        wait_for(lambda: _gone(dovecot, "INBOX", stuck), timeout=5.0)
    assert sorted(raw.split(b"Subject: ")[1][:32].decode() for raw in handed_over) == sorted(
        [first, stuck, later]
    )
    assert AccountState(tmp_path / "state.json").folder("INBOX").retry == ()  # type: ignore[union-attr]


POISON_FROM_HIM = f"From: Mark <mark.smith@gmail.com>\r\nSubject: {POISON_SUBJECT}\r\n\r\nx\r\n"
POISON_FROM_A_FRIEND = f"From: friend@example.org\r\nSubject: {POISON_SUBJECT}\r\n\r\nhi\r\n"


@pytest.mark.parametrize("poison", [POISON_FROM_HIM, POISON_FROM_A_FRIEND], ids=["his", "friend"])
def test_a_poison_subject_never_blocks_the_folder(
    dovecot: servers.Dovecot, tmp_path: Path, poison: str
) -> None:
    """A Subject that decodes to a lone surrogate never keeps the held mail after it in
    INBOX for more than 5 s, and is itself handled (pull mode: held, or delivered)."""
    local = tmp_path / "local"
    daemon = Daemon(tmp_path, dovecot, mode="pull", deliver=f"maildir:{local}")
    with daemon.running():
        append_raw(dovecot, "INBOX", poison.encode())
        held = append(dovecot, "INBOX", FROM_HIM)
        wait_for(lambda: _gone(dovecot, "INBOX", held), timeout=5.0, why=daemon.tail)
        wait_for(lambda: not messages(dovecot, "INBOX"), timeout=10.0, why=daemon.tail)
    delivered = [path.read_bytes() for path in (local / "new").iterdir()] if local.exists() else []
    if poison is POISON_FROM_HIM:
        assert delivered == []
        assert len(held_items(daemon.archive)) == 2
    else:
        assert [raw.endswith(poison.encode()) for raw in delivered] == [True]
        assert sealed(daemon.archive) == Counter([held])
    verify_archive(daemon.archive)


def _rebuild(server: servers.Dovecot, folder: str) -> None:
    """Delete `folder` with everything in it and create it again, as a server rebuild does."""
    with imap(server) as client:
        status, detail = client.delete(folder)
        assert status == "OK", detail
        status, detail = client.create(folder)
        assert status == "OK" or b"ALREADYEXISTS" in detail[0], detail


def test_uidvalidity_change_rescans_without_sealing_twice(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """A folder rebuilt with a new UIDVALIDITY is re-scanned; mail sealed before is not resealed."""
    folder = servers.JUNK
    daemon = Daemon(tmp_path, dovecot)
    old = token()
    raw = message(FROM_HIM, old)
    with daemon.running():
        for _ in range(5):  # UIDs above those the rebuilt folder will hand out
            append(dovecot, folder, ALLOWED)
        append_raw(dovecot, folder, raw)
        wait_for(lambda: _gone(dovecot, folder, old), why=daemon.tail)
    assert sealed(daemon.archive) == Counter([old])
    validity = uidvalidity(dovecot, folder)
    _rebuild(dovecot, folder)
    assert uidvalidity(dovecot, folder) != validity, "the rebuild did not change UIDVALIDITY"
    append_raw(dovecot, folder, raw)  # the very same message, back again
    new = append(dovecot, folder, FROM_HIM)
    allowed = append(dovecot, folder, ALLOWED)
    with daemon.running():
        wait_for(lambda: _gone(dovecot, folder, old, new), why=daemon.tail)
        time.sleep(0.5)
    assert sealed(daemon.archive) == Counter([old, new])
    assert flags(dovecot, folder) == {allowed: frozenset()}
    verify_archive(daemon.archive)


FLAG_SETS = ("(\\Flagged)", "(\\Flagged \\Answered)", "($Important)", "(\\Seen \\Flagged)", None)


def _stored(flag_list: str | None) -> frozenset[bytes]:
    return frozenset(flag_list.strip("()").encode().split()) if flag_list else frozenset()


def test_flags_of_allowed_mail_are_never_touched(dovecot: servers.Dovecot, tmp_path: Path) -> None:
    """Allowed mail keeps exactly the flags it had, whether swept at start or seen in IDLE."""
    expected: dict[str, dict[str, frozenset[bytes]]] = {"INBOX": {}, servers.JUNK: {}}
    held: list[tuple[str, str]] = []

    def arrive() -> None:
        for folder, want in expected.items():
            for flag_list in FLAG_SETS:
                want[append(dovecot, folder, ALLOWED, flags=flag_list)] = _stored(flag_list)
                held.append((folder, append(dovecot, folder, FROM_HIM, flags=flag_list)))

    daemon = Daemon(tmp_path, dovecot)
    arrive()  # already there: the first start sweeps them
    with daemon.running():
        arrive()  # arriving while the watcher IDLEs
        wait_for(
            lambda: all(_gone(dovecot, folder, mark) for folder, mark in held), why=daemon.tail
        )
        time.sleep(0.5)
    for folder, want in expected.items():
        assert flags(dovecot, folder) == want
    assert sealed(daemon.archive) == Counter(mark for _, mark in held)


BURST = 60
KILLS = 12


class SealedTwice(AssertionError):
    """A held message was sealed into the archive more than once."""


def _burst(
    server: servers.Dovecot, rng: random.Random
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Append BURST messages at irregular short intervals, a third from him; (held, allowed)."""
    held: list[tuple[str, str]] = []
    allowed: list[tuple[str, str]] = []
    with imap(server) as client:
        for number in range(BURST):
            folder = servers.JUNK if rng.random() < 0.25 else "INBOX"
            mark = token()
            from_him = number % 3 == 0
            raw = message(FROM_HIM if from_him else ALLOWED, mark)
            status, _ = client.append(folder, None, None, raw)
            assert status == "OK"
            (held if from_him else allowed).append((folder, mark))
            time.sleep(rng.uniform(0.0, 0.12))
    return held, allowed


def _handled(daemon: Daemon) -> int:
    """How far the archive has grown (it grows with every seal): the daemon logs no line
    per message, which would tell the survivor which were held."""
    return sum(path.stat().st_size for path in daemon.archive.rglob("*") if path.is_file())


def _kill_at_random(daemon: Daemon, rng: random.Random) -> None:
    """Start the daemon and SIGKILL it soon after: at a random time, or just after a seal."""
    daemon.start()
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0.0, 0.4))
    else:  # aim at the moments after a message was sealed, before its removal upstream
        handled = _handled(daemon)
        deadline = time.monotonic() + 1.0
        while _handled(daemon) == handled and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(rng.uniform(0.0, 0.005))
    daemon.kill()


def test_sigkill_during_a_burst_loses_and_doubles_nothing(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """SIGKILL at random moments in a burst: every held message sealed once, every allowed kept."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    daemon = Daemon(tmp_path, dovecot)
    with ThreadPoolExecutor(max_workers=1) as pool:
        arrivals = pool.submit(_burst, dovecot, random.Random(rng.random()))
        kills = 0
        while not arrivals.done() or kills < KILLS:
            _kill_at_random(daemon, rng)
            kills += 1
        held, allowed = arrivals.result()
    with daemon.running():
        wait_for(
            lambda: all(_gone(dovecot, folder, mark) for folder, mark in held),
            why=lambda: f"seed {seed}\n{daemon.tail()}",
        )
        time.sleep(0.5)
    found = {folder: messages(dovecot, folder) for folder in ("INBOX", servers.JUNK)}
    for present in found.values():
        assert all(SEEN not in stored for _, stored in present), f"seed {seed}: \\Seen set"
    kept = Counter(mark for present in found.values() for mark, _ in present)
    assert kept == Counter(mark for _, mark in allowed), f"seed {seed}: mailbox differs"
    verify_archive(daemon.archive)
    counts = sealed(daemon.archive)
    assert set(counts) == {mark for _, mark in held}, f"seed {seed}: sealed set differs"
    doubled = {mark: n for mark, n in counts.items() if n > 1}
    if doubled:
        raise SealedTwice(f"seed {seed}, {kills} kills: sealed more than once: {doubled}")


def test_the_runner_decides_each_message_of_a_batch_on_its_own(tmp_path: Path) -> None:
    """A message whose decision raises is answered None; the rest of its batch is decided."""

    class PoisonedPipeline:
        archive = None

        async def receive_stored(self, raw: bytes, **_: object) -> Fate:
            if raw == b"poison":
                raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
            return Fate.HELD if raw == b"one" else Fate.KEPT

    settings = ImapChannel.model_validate({
        "accounts": [{"name": "home", "host": servers.HOST, "port": 1, "tls": "none",
                      "username": servers.USER, "password_file": str(tmp_path / "none")}],
        "state_dir": str(tmp_path / "imap"),
    })  # fmt: skip
    batch = [(raw, datetime.now(UTC), "home/INBOX") for raw in (b"one", b"poison", b"two")]

    async def main() -> list[watch.Judged]:
        runner = ImapRunner(
            settings, cast(Pipeline, PoisonedPipeline()), asyncio.get_running_loop()
        )
        return await asyncio.to_thread(runner._handle, batch)

    assert asyncio.run(main()) == [Fate.HELD, None, Fate.KEPT]
