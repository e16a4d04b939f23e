"""Held or not, the survivor reads the same: one traffic run twice through `nocontact run`.

Run A holds some of the traffic (from him, or about him); run B has, at the same positions,
messages of the same sizes from someone allowed. Everything she can read without a
contact's key is then compared, and must not tell the runs apart.

Rules this module keeps:
1. The daemon is the real `python -m proxy run` child process with all three channels,
   each run in a fresh directory with the same config, against a fresh private Dovecot
   (IMAP) and a fresh fake of Twilio's REST API posting really signed webhooks (SMS).
2. The runs differ only in who wrote what: every message has the same length in both,
   and every wait is for a condition (the daemon done with everything), never a sleep.
3. Alerts are configured (a `json://` transport to a receiver in the test): run A's held
   items alert the contact, run B's traffic alerts no one, and nothing she can read shows
   the difference (the alerts' sealed state, their socket, the log).
4. What she can read: the daemon's output, `nocontact verify`, `nocontact contact list`
   with a key she made herself, and every file under the archive and the channels' state
   directories (names, sizes, when they were last written, and their contents' shape).
   What differs from run to run whatever is held (random ids, keys, times, ports, paths)
   is normalised by shape, never dropped: a digit stays a digit, a key stays a key.
5. What she can read and that differs by design is left out, each for its stated reason
   (`DELIVERED`, `GROWS`): what was delivered to her, and the files docs say grow with
   held items, of which only the promised form is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.channels.sms.reconcile import FILE
from proxy.channels.sms.runner import JOURNAL
from proxy.channels.sms.webhooks import EMPTY
from tests import servers
from tests.alerts_helpers import Receiver, receiving
from tests.factories import config_data, write_secret
from tests.imap_helpers import append_raw, tokens
from tests.test_sms import ACCOUNT, FRIEND, NUMBER, PHONE, PUBLIC, TOKEN
from tests.test_smtp import RECIPIENT, free_port, held_items, maildir_messages
from tests.twilio_fake import FakeTwilio, post_webhook

REPO = Path(__file__).resolve().parents[1]
HIM = "mark.smith@gmail.com"
HIM_ALIAS = "Marky"  # a nickname in the rules (tests/factories.py MARK)
HIM_PHONE = "+15550100199"
# In run B the same positions come from people the rules do not name, written alike.
OTHER = "anna.jones@gmail.com"
OTHER_ALIAS = "Annie"
OTHER_PHONE = "+15550134567"
FRIEND_EMAIL = "jo@friends.example"
ALERTED = 2  # his first email and his first text: new channel and identity, elevated
# Where the last reconciliation pass of an earlier run left off.
RECONCILED = (datetime.now(UTC) - timedelta(hours=1)).isoformat()

# Files she can read that differ by design, and why; nothing else is left out.
DELIVERED = "her Maildir (delivered mail), her IMAP INBOX, the texts forwarded to her phone"
SEALED = "archive/sealed"
ALERTS = "archive/alerts"  # the alerts' sealed state (proxy/alerts/vault.py)
LOCK = "archive/lock"  # the daemon's pid: its length is the pid's, held or not
# Archive files documented to change with held items: only their promised form is checked
# (`test_growing_archive_files_keep_their_promised_form`).
CHECKPOINT = "archive/checkpoint"
GROWS = {
    CHECKPOINT: "the tree size of the latest signed checkpoint (docs/what-files-tell.md)",
    SEALED: "a keyed mark per held arrival (archive/once.py rule 1)",
}


# -- the traffic ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Traffic:
    """What arrives in one run: held (run A) or the same from others (run B)."""

    held: bool

    def letters(self) -> list[tuple[str, bytes]]:
        """SMTP: (envelope sender, message); positions 1 (from him) and 2 (about him) held."""
        him, alias = (HIM, "Mark Smith") if self.held else (OTHER, "Anna Jones")
        return [
            (FRIEND_EMAIL, _letter(0, f"Jo <{FRIEND_EMAIL}>", "Lunch on Sunday?")),
            (him, _letter(1, f"Me <{him}>", "I just want to talk.")),
            (FRIEND_EMAIL, _letter(2, f"Jo <{FRIEND_EMAIL}>", f"I saw {alias} at the market.")),
            (FRIEND_EMAIL, _letter(3, f"Jo <{FRIEND_EMAIL}>", "Forms due on Friday.")),
        ]

    def texts(self) -> list[tuple[str, str]]:
        """SMS: (sender, body); position 1 held."""
        return [
            (FRIEND, "see you at noon"),
            (HIM_PHONE if self.held else OTHER_PHONE, "pick up the phone"),
            (FRIEND, "bring the forms!"),
        ]

    def mailbox(self) -> list[bytes]:
        """IMAP: messages appended to her INBOX; positions 1 (from him), 2 (about him) held."""
        him, alias = (HIM, HIM_ALIAS) if self.held else (OTHER, OTHER_ALIAS)
        return [
            _letter(10, f"Jo <{FRIEND_EMAIL}>", "The school trip is on."),
            _letter(11, f"Me <{him}>", "Answer me."),
            _letter(12, f"Jo <{FRIEND_EMAIL}>", f"{alias} was at the school."),
            _letter(13, f"Jo <{FRIEND_EMAIL}>", "Tea on Tuesday?"),
        ]


def _letter(number: int, sender: str, text: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: Sam <sam@home.example>\r\nSubject: note {number:02d}\r\n"
        f"Message-ID: <{number:02d}@friends.example>\r\n"
        f"Date: Sun, 01 Mar 2026 12:00:00 +0000\r\n\r\n{text}\r\n"
    ).encode()


def test_runs_alike_in_size() -> None:
    """The two runs' messages have the same lengths, position by position (rule 2)."""
    held, other = Traffic(held=True), Traffic(held=False)
    assert [len(m) for _, m in held.letters()] == [len(m) for _, m in other.letters()]
    assert [(len(s), len(t)) for s, t in held.texts()] == [
        (len(s), len(t)) for s, t in other.texts()
    ]
    assert [len(m) for m in held.mailbox()] == [len(m) for m in other.mailbox()]
    assert held.letters() != other.letters()


# -- one run -------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One daemon, its directories and its counterparts."""

    root: Path
    dovecot: servers.Dovecot
    fake: FakeTwilio
    smtp_port: int
    sms_port: int
    alerts: Receiver

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def log(self) -> Path:
        return self.root / "daemon.log"

    def write_config(self) -> Path:
        config = self.root / "config.yaml"
        write_secret(self.root / "password", servers.PASSWORD)
        write_secret(self.root / "token", TOKEN)
        data = config_data(
            archive={"path": str(self.archive)},
            contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT,
                       "alerts": {"transports": ["hook"]}}],
            alerts={"transports": {"hook": {"url": self.alerts.url("hook")}},
                    "digest": {"every": "off"}},
            channels={
                "smtp": {"listen": f"127.0.0.1:{self.smtp_port}",
                         "deliver": f"maildir:{self.root / 'mail'}"},
                "sms": {"listen": f"127.0.0.1:{self.sms_port}", "public_url": PUBLIC,
                        "account_sid": ACCOUNT, "auth_token_file": str(self.root / "token"),
                        "number": NUMBER, "forward_to": PHONE,
                        "api_base_url": self.fake.base_url,
                        "state_dir": str(self.root / "sms"), "reconcile_every": 3600},
                "imap": {"state_dir": str(self.root / "imap"), "accounts": [
                    {"name": "home", "host": servers.HOST, "port": self.dovecot.imap_port,
                     "tls": "none", "username": servers.USER,
                     "password_file": str(self.root / "password")}]},
            },
        )  # fmt: skip
        config.write_text(yaml.safe_dump(data))
        return config

    def said(self, event: str) -> bool:
        return f'"event": "{event}"' in self.log.read_text(errors="replace")

    def imap_state(self) -> dict[str, Any]:
        state = self.root / "imap" / "home.json"
        return json.loads(state.read_text()) if state.exists() else {}


async def _until(
    check: Callable[[], bool], what: str, run: Run, timeout: float = 30,
    seen: Callable[[], str] = str,
) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what} ({seen()})\n{servers.log_tail(run.log)}"
            )
        await asyncio.sleep(0.02)


async def _ready(run: Run, process: subprocess.Popen[bytes]) -> None:
    """Wait until the daemon listens, watches, and has made the reconciliation pass it makes
    at start (which rewrites `reconciled.json`): after it, it writes only for the traffic."""

    def alive() -> bool:
        assert process.poll() is None, servers.log_tail(run.log)
        return True

    def passed() -> bool:
        return RECONCILED not in (run.root / "sms" / FILE).read_text()

    await _until(lambda: alive() and servers.greets(run.smtp_port), "smtp", run)
    await _until(lambda: alive() and run.said("imap watching"), "imap", run)
    await _until(lambda: alive() and passed(), "the first reconciliation pass", run)


async def _traffic(run: Run, traffic: Traffic) -> None:
    """Send everything, and wait until the daemon has done all it will do with it."""

    def send_letters() -> None:
        with smtplib.SMTP("127.0.0.1", run.smtp_port, timeout=30) as client:
            for sender, raw in traffic.letters():
                client.sendmail(sender, ["sam@home.example"], raw)

    await asyncio.to_thread(send_letters)

    held_sids = []
    async with aiohttp.ClientSession() as session:
        for position, (sender, body) in enumerate(traffic.texts()):
            sid, params = run.fake.inbound_message(sender=sender, to=NUMBER, body=body)
            if traffic.held and position == 1:
                held_sids.append(sid)
            answer = await post_webhook(
                session, public_url=PUBLIC + "/sms", params=params, auth_token=TOKEN,
                local_url=f"http://127.0.0.1:{run.sms_port}/sms",
            )  # fmt: skip
            assert answer == (200, EMPTY)
    forwards = len(traffic.texts()) - len(held_sids)
    await _until(lambda: len(run.fake.sent()) == forwards, "forwards", run)
    await _until(lambda: not set(held_sids) & set(run.fake.messages), "held texts gone", run)

    def journaled() -> bool:  # every SID recorded handled, on disk
        lines = (run.root / "sms" / JOURNAL).read_text().splitlines()
        return sum('"sid"' in line for line in lines) == len(traffic.texts())

    await _until(journaled, "the journal written", run)

    for raw in traffic.mailbox():
        await asyncio.to_thread(append_raw, run.dovecot, "INBOX", raw)
    count = len(traffic.mailbox())
    kept = count - (2 if traffic.held else 0)

    def mailbox_done() -> bool:
        inbox = run.imap_state().get("folders", {}).get("INBOX", {"last_uid": 0})
        return bool(inbox["last_uid"] >= count and not inbox.get("retry")) and (
            sum(tokens(run.dovecot, "INBOX").values()) == kept
        )

    def mailbox_seen() -> str:
        return f"state {run.imap_state()}, INBOX {tokens(run.dovecot, 'INBOX')}"

    await _until(mailbox_done, "the mailbox handled", run, seen=mailbox_seen)
    if traffic.held:  # his first item on each channel: elevated alerts (rule 3)
        await _until(lambda: len(run.alerts.bodies("hook")) == ALERTED, "the alerts", run)


def run_daemon(root: Path, traffic: Traffic) -> Seen:
    """One run of `traffic` through a fresh daemon; what she can read afterwards."""
    root.mkdir()
    with servers.dovecot() as dovecot:

        async def main() -> tuple[float, float, int]:
            async with FakeTwilio(ACCOUNT, TOKEN) as fake, receiving() as alerts:
                run = Run(root, dovecot, fake, free_port(), free_port(), alerts)
                config = run.write_config()
                (root / "sms").mkdir(mode=0o700)  # as a daemon that ran before left it
                (root / "sms" / FILE).write_text(json.dumps({"since": RECONCILED}))
                with run.log.open("ab") as log:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "proxy", "run", "-c", str(config)],
                        stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=root,
                        env={**os.environ, "PYTHONPATH": str(REPO)},  # this tree's code
                    )  # fmt: skip
                try:
                    await _ready(run, process)
                    started = time.time()
                    await _traffic(run, traffic)
                    stopping = time.time()
                    process.send_signal(signal.SIGTERM)
                    code = await asyncio.to_thread(process.wait, 60)
                    assert code == 0, servers.log_tail(run.log)
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                return started, stopping, len(alerts.bodies("hook"))

        started, stopping, alerted = asyncio.run(main())
    return seen(root, started=started, stopping=stopping, alerted=alerted)


# -- what she can read ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """What she can read after one run, each part normalised by shape (rule 3)."""

    log: Counter[str]  # the daemon's output, line shapes
    verify: tuple[int, str, str]  # exit code, stdout, stderr
    contact_list: tuple[int, str, str]  # with a key she made herself
    sizes: dict[str, int | None]  # every path under the archive -> its size (None: a folder)
    contents: dict[str, list[str]]  # every state file and growing archive file -> its lines
    modified: dict[str, str]  # every path -> when it was last modified (`_phase`)
    changed: dict[str, str]  # every path -> when its inode last changed (`_phase`)
    # Not hers to read, but proof the runs differ as meant: items the contact's key opens,
    # and messages in her Maildir (`DELIVERED`).
    held: int
    delivered: int
    alerted: int  # alerts the contact got


_HEX = re.compile(r"[0-9a-fA-F]{8,}")
_BASE64 = re.compile(r"(?<![\w+/])[A-Za-z0-9+/]{40,}={0,2}")  # hashes, keys, signatures
_DIGITS = re.compile(r"[0-9]")


def shape(value: object) -> object:
    """`value` with what differs from run to run whatever is held made alike: long base64
    runs (hashes, keys, signatures) become "B", long hex runs (ids) "H", each digit "0";
    structure, keys, lengths and the other characters stay."""
    if isinstance(value, dict):
        return {str(shape(k)): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((shape(v) for v in value), key=repr)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return _DIGITS.sub("0", repr(value))
    return _DIGITS.sub("0", _HEX.sub("H", _BASE64.sub("B", str(value))))


def line_shape(line: str, root: Path) -> str:
    """One line's shape: JSON by its structure, text as `shape` makes it; the run's own
    directory (which names the run) is `<root>`."""
    line = line.replace(str(root), "<root>")
    with contextlib.suppress(ValueError):
        return json.dumps(shape(json.loads(line)), sort_keys=True)
    return str(shape(line))


def _cli(root: Path, *args: str) -> tuple[int, str, str]:
    """`nocontact ARGS` as she would run it: exit code, and the shapes of what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, check=False,
        cwd=root,
    )  # fmt: skip
    return done.returncode, line_shape(done.stdout, root), line_shape(done.stderr, root)


def _phase(moment: float, *, started: float, stopping: float) -> str:
    """A file time, as much of it as two runs share: before the traffic (the start), while
    it flowed, after the stop was asked, or a time rounded down to 10 minutes (a checkpoint)."""
    if moment % 600 == 0:
        return "rounded"
    if moment < started:
        return "start"
    if moment >= stopping:
        return "stop"
    return "traffic"


def seen(root: Path, *, started: float, stopping: float, alerted: int) -> Seen:
    """Everything she can read of the run in `root`, with the daemon stopped."""
    output = (root / "daemon.log").read_text().splitlines()
    key = root / "hers.key"
    assert _cli(root, "contact", "keygen", "--out", str(key))[0] == 0
    sizes: dict[str, int | None] = {}
    contents: dict[str, list[str]] = {}
    modified: dict[str, str] = {}
    changed: dict[str, str] = {}
    for top in ("archive", "imap", "sms"):
        for path in sorted((root / top).rglob("*")):
            name = str(path.relative_to(root))
            stat = path.lstat()
            modified[name] = _phase(stat.st_mtime, started=started, stopping=stopping)
            changed[name] = _phase(stat.st_ctime, started=started, stopping=stopping)
            if top == "archive":
                sizes[name] = None if path.is_dir() else stat.st_size
            if (top != "archive" or name in GROWS or name == LOCK) and path.is_file():
                text = path.read_text(errors="replace").split("\0", 1)[0].splitlines()
                contents[name] = sorted(line_shape(line, root) for line in text)
    archive = str(root / "archive")
    return Seen(
        log=Counter(line_shape(line, root) for line in output),
        verify=_cli(root, "verify", "--archive", archive),
        contact_list=_cli(root, "contact", "list", "--archive", archive, "--identity", str(key)),
        sizes=sizes, contents=contents, modified=modified, changed=changed,
        held=len(held_items(root / "archive")), delivered=len(maildir_messages(root / "mail")),
        alerted=alerted,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Seen, Seen]:
    """What she reads after run A (held items) and after run B (none), in that order."""
    if os.geteuid() != 0:
        pytest.fail("these tests run a private Dovecot, which needs root")
    tmp = tmp_path_factory.mktemp("same")
    return run_daemon(tmp / "a", Traffic(held=True)), run_daemon(tmp / "b", Traffic(held=False))


def test_run_a_held_what_run_b_delivered(runs: tuple[Seen, Seen]) -> None:
    """Run A held two letters, a text and two IMAP messages, and alerted the contact;
    run B held nothing, alerted no one and delivered all four letters (the texts and the
    mailbox were checked while running)."""
    a, b = runs
    assert (a.held, a.delivered, a.alerted) == (5, 2, ALERTED)
    assert (b.held, b.delivered, b.alerted) == (0, 4, 0)


def _but(table: dict[str, Any], *left_out: str) -> dict[str, Any]:
    return {name: value for name, value in table.items() if name not in left_out}


def test_cli_output_is_the_same(runs: tuple[Seen, Seen]) -> None:
    """`verify` prints the same line, and `contact list` with her own key refuses alike."""
    a, b = runs
    assert a.verify == b.verify == (0, "archive OK, root B\n", "")
    assert a.contact_list == b.contact_list
    assert a.contact_list[0] == 1
    assert "not one of the archive's contacts" in a.contact_list[2]


def test_daemon_output_is_the_same(runs: tuple[Seen, Seen]) -> None:
    """The daemon's log has the same lines, in number and in shape."""
    a, b = runs
    assert a.log == b.log
    assert sum(a.log.values()) >= 5  # listening, watching, stopping, stopped


def test_archive_names_and_sizes_are_the_same(runs: tuple[Seen, Seen]) -> None:
    """The archive has the same files of the same sizes, but for the checkpoint (the tree
    size's digits) and the lock holding a pid; `sealed` grows only in whole blocks."""
    a, b = runs
    assert _but(a.sizes, CHECKPOINT, LOCK) == _but(b.sizes, CHECKPOINT, LOCK)
    assert a.sizes[SEALED] == b.sizes[SEALED]  # made in whole blocks (archive/once.py rule 5)
    assert a.sizes[ALERTS] == b.sizes[ALERTS]  # sealed, in whole blocks (alerts/vault.py)
    assert (a.modified[ALERTS], a.changed[ALERTS]) == ("rounded", "stop")  # vault.py rule 4
    assert any(name.endswith(".seg") for name in a.sizes)
    assert set(a.sizes) == set(b.sizes)
    assert _numbers(a.contents[LOCK]) == _numbers(b.contents[LOCK]) == ['"N"']  # a pid


def _numbers(lines: list[str]) -> list[str]:
    """Lines with each number (already all zeros, `shape`) as N, whatever its length."""
    return [re.sub("0+", "N", line) for line in lines]


def test_growing_archive_files_keep_their_promised_form(runs: tuple[Seen, Seen]) -> None:
    """What grows with held items says only what its docs say: the checkpoint is one signed
    note (its size and root differ), `sealed` holds keyed marks, notes and settled lines."""
    a, b = runs
    checkpoint = "archive/checkpoint"
    assert _numbers(a.contents[checkpoint]) == _numbers(b.contents[checkpoint])
    forms = re.compile(r"k H|n H B 0+|s")  # archive/once.py: mark, sha-256, log size
    for one in (a, b):
        assert all(forms.fullmatch(line) for line in one.contents[SEALED])
    assert a.contents[SEALED] != b.contents[SEALED]  # it grows, as said


def test_imap_state_is_the_same(runs: tuple[Seen, Seen]) -> None:
    """The IMAP watcher's state records every message alike, held or not."""
    a, b = runs
    imap = [name for name in a.contents if name.startswith("imap/")]
    assert imap
    assert {n: a.contents[n] for n in imap} == {n: b.contents.get(n) for n in imap}
    assert set(imap) == {name for name in b.contents if name.startswith("imap/")}


def test_sms_reconciliation_state_is_the_same(runs: tuple[Seen, Seen]) -> None:
    """The SMS channel keeps the same files, and the same where reconciliation left off."""
    a, b = runs
    sms = {name for name in a.contents if name.startswith("sms/")}
    assert sms == {name for name in b.contents if name.startswith("sms/")}
    assert f"sms/{JOURNAL}" in sms
    assert a.contents[f"sms/{FILE}"] == b.contents[f"sms/{FILE}"]


def test_sms_journal_is_the_same(runs: tuple[Seen, Seen]) -> None:
    """The SMS journal records every text alike, held or not (sms/ledger.py rule 2)."""
    a, b = runs
    assert a.contents[f"sms/{JOURNAL}"] == b.contents[f"sms/{JOURNAL}"]


def test_files_are_written_at_the_same_moments(runs: tuple[Seen, Seen]) -> None:
    """Every file and folder was last modified, and its inode last changed, in the same
    phase of both runs (before the traffic, during it, at the stop, at a checkpoint), but
    for the marks of sealed arrivals (`test_sealed_marks_are_written_at_the_same_moments`)."""
    a, b = runs
    assert _but(a.modified, SEALED) == _but(b.modified, SEALED)
    assert _but(a.changed, SEALED) == _but(b.changed, SEALED)
    assert "traffic" in a.modified.values()  # the channels' state, written as mail came


def test_sealed_marks_are_written_at_the_same_moments(runs: tuple[Seen, Seen]) -> None:
    """The archive's `sealed` file was last modified and changed in the same phase."""
    a, b = runs
    assert (a.modified[SEALED], a.changed[SEALED]) == (b.modified[SEALED], b.changed[SEALED])
