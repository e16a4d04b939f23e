"""Helpers for IMAP tests: a private mailbox seen through imaplib, and the daemon as a child.

Rules this module keeps:
1. Messages are told apart by a unique token in their Subject, never by position or UID:
   the tests count tokens to prove that nothing is lost or doubled.
2. Looking at a mailbox never changes it: folders are EXAMINEd (read-only) and bodies
   fetched with BODY.PEEK, so a check can never set the \\Seen it is looking for.
3. The daemon runs as a real `python -m proxy run` child process, its output appended to a
   log file (a pipe could fill and stall it); a failed wait shows that log's tail.
4. A watcher can also run in the test's own process (`watching`), with a client class of
   the test's choosing, when a test must see or steer what goes over the wire.
"""

from __future__ import annotations

import contextlib
import imaplib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from imapclient import IMAPClient

from proxy.channels.imap import watch
from proxy.channels.imap.state import AccountState
from proxy.config.model import ImapAccount
from tests import servers
from tests.factories import config_data, write_secret
from tests.test_smtp import RECIPIENT, held_items

FROM_HIM = "From: Mark <mark.smith@gmail.com>\r\nSubject: {token}\r\n\r\nit's me\r\n"
ABOUT_HIM = "From: friend@example.org\r\nSubject: {token}\r\n\r\nMarky was at the school\r\n"
ALLOWED = "From: friend@example.org\r\nSubject: {token}\r\n\r\nlunch at noon?\r\n"

# A session flag the server sets by itself; not one the daemon could have touched.
_SESSION_FLAGS = frozenset({b"\\Recent"})


def token() -> str:
    """A fresh unique token for one message's Subject."""
    return uuid.uuid4().hex


def message(template: str, mark: str) -> bytes:
    """The raw bytes of one message from `template`, its Subject set to `mark`."""
    return template.format(token=mark).encode()


@contextlib.contextmanager
def imap(server: servers.Dovecot, timeout: float = 10) -> Iterator[imaplib.IMAP4]:
    """A logged-in imaplib client of the private Dovecot."""
    client = imaplib.IMAP4(servers.HOST, server.imap_port, timeout=timeout)
    try:
        client.login(servers.USER, servers.PASSWORD)
        yield client
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def append(server: servers.Dovecot, folder: str, template: str, *, flags: str | None = None) -> str:
    """Append one new message to `folder` (with `flags`, e.g. "(\\Flagged)"); its token."""
    mark = token()
    append_raw(server, folder, message(template, mark), flags=flags)
    return mark


def append_raw(
    server: servers.Dovecot, folder: str, raw: bytes, *, flags: str | None = None
) -> None:
    """Append `raw` to `folder` exactly as given."""
    with imap(server) as client:
        status, _ = client.append(folder, flags, None, raw)
        assert status == "OK", f"APPEND to {folder} failed"


def messages(server: servers.Dovecot, folder: str) -> list[tuple[str, frozenset[bytes]]]:
    """(Subject token, stored flags) of every message in `folder`, duplicates included."""
    with imap(server) as client:
        status, _ = client.select(folder, readonly=True)
        assert status == "OK", f"cannot examine {folder}"
        _, found = client.uid("SEARCH", "ALL")
        if not found or not found[0]:
            return []
        uids = b",".join(found[0].split()).decode()
        _, data = client.uid("FETCH", uids, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    result = []
    for part in data:
        if isinstance(part, tuple):
            subject = part[1].decode().split(":", 1)[1].strip()
            flags = frozenset(imaplib.ParseFlags(part[0])) - _SESSION_FLAGS
            result.append((subject, flags))
    return result


def tokens(server: servers.Dovecot, folder: str) -> Counter[str]:
    """How many times each Subject token is in `folder`."""
    return Counter(mark for mark, _ in messages(server, folder))


def flags(server: servers.Dovecot, folder: str) -> dict[str, frozenset[bytes]]:
    """Subject token -> stored flags, for a folder where each token is there once."""
    found = messages(server, folder)
    result = dict(found)
    assert len(result) == len(found), f"a message is in {folder} twice"
    return result


def uidvalidity(server: servers.Dovecot, folder: str) -> int:
    """The UIDVALIDITY of `folder` right now."""
    with imap(server) as client:
        _, data = client.status(folder, "(UIDVALIDITY)")
    raw = data[0]
    assert isinstance(raw, bytes)
    return int(raw.rsplit(b"UIDVALIDITY", 1)[1].strip(b" )"))


def sealed(archive: Path) -> Counter[str]:
    """How many times each Subject token was sealed into the archive."""
    return Counter(str(meta["subject"]) for meta, _ in held_items(archive))


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 20.0, why: Callable[[], str] = str
) -> None:
    """Poll `condition` until it holds; AssertionError (with `why()`) after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout:.0f} s\n{why()}")
        time.sleep(0.05)


class Daemon:
    """`nocontact run` watching the private Dovecot's account, as a child process."""

    def __init__(self, tmp: Path, server: servers.Dovecot, **account: object) -> None:
        self.archive = tmp / "archive"
        self.state_dir = tmp / "imap"
        self.log = tmp / "daemon.log"
        self.config = tmp / "config.yaml"
        password = tmp / "password"
        write_secret(password, servers.PASSWORD)
        settings = {"name": "home", "host": servers.HOST, "port": server.imap_port,
                    "tls": "none", "username": servers.USER, "password_file": str(password),
                    **account}  # fmt: skip
        data = config_data(
            archive={"path": str(self.archive)},
            contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}],
            channels={"imap": {"accounts": [settings], "state_dir": str(self.state_dir)}},
        )
        self.config.write_text(yaml.safe_dump(data))
        self.process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def start(self) -> None:
        """Start the daemon; returns once it says it is watching (it logs in just after)."""
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "proxy", "run", "-c", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        self._starts += 1
        wait_for(lambda: self._watching() >= self._starts, why=self.tail)

    def _watching(self) -> int:
        """How many times the daemon said it is watching (raises if it has died)."""
        process = self.process
        assert process is not None
        if process.poll() is not None:
            raise AssertionError(f"the daemon exited with {process.returncode}\n{self.tail()}")
        return self.log.read_text(errors="replace").count('"event": "imap watching"')

    def kill(self) -> None:
        """SIGKILL the daemon: no clean-up of any kind."""
        process, self.process = self.process, None
        assert process is not None
        process.kill()
        process.wait()

    def stop(self) -> None:
        """SIGTERM the daemon and check that it stopped cleanly (exit 0)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        assert code == 0, f"the daemon exited with {code}\n{self.tail()}"

    def tail(self, lines: int = 40) -> str:
        """The last lines of the daemon's output."""
        return servers.log_tail(self.log, lines)

    @contextlib.contextmanager
    def running(self) -> Iterator[Daemon]:
        """Start the daemon, and stop it cleanly afterwards (killing it if the body failed)."""
        self.start()
        try:
            yield self
        except BaseException:
            if self.process is not None:
                self.kill()
            raise
        self.stop()


class Shelf:
    """The archive as a watcher sees it (marks an older state hands over): for tests about
    the watcher, whose `handle` stands for the pipeline that seals."""

    def __init__(self) -> None:
        self.adopted: list[str] = []

    def adopt(self, marks: list[str]) -> None:
        self.adopted.extend(marks)

    def sealed(self, mark: str) -> bool:
        return mark in self.adopted

    def stored(self, since: int) -> set[str]:
        return set()


def account(tmp: Path, server: servers.Dovecot, **settings: object) -> ImapAccount:
    """The private Dovecot's account, as the daemon's config would give it (plus `settings`)."""
    password = tmp / "password"
    write_secret(password, servers.PASSWORD)
    return ImapAccount.model_validate({
        "name": "home", "host": servers.HOST, "port": server.imap_port, "tls": "none",
        "username": servers.USER, "password_file": str(password), **settings,
    })  # fmt: skip


@contextlib.contextmanager
def watching(
    tmp: Path, server: servers.Dovecot, handle: watch.Handle, *, folder: str = "INBOX",
    client: type[IMAPClient] = IMAPClient, shelf: Shelf | None = None, **settings: object,
) -> Iterator[watch.FolderWatcher]:  # fmt: skip
    """A FolderWatcher of `folder` in this process, logging in with `client`; stopped after.
    `settings` are the account's, beyond how to log in (e.g. held_removal).

    Its state is tmp/state.json, so a second `watching` of the same `tmp` is a restart.
    """

    def connect(account: ImapAccount) -> IMAPClient:
        logged_in = client(account.host, port=account.port, ssl=False)
        logged_in.login(account.username, servers.PASSWORD)
        return logged_in

    stop = threading.Event()
    watcher = watch.FolderWatcher(
        account(tmp, server, **settings), folder, AccountState(tmp / "state.json"), handle=handle,
        archive=shelf if shelf is not None else Shelf(), stop=stop,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(watch, "connect", connect)
        try:
            watcher.start()
            yield watcher
        finally:
            stop.set()
            watcher.join(timeout=30)
    assert not watcher.is_alive(), "the watcher did not stop"
