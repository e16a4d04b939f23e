"""Watching IMAP folders: IDLE, fetch new mail without reading it, seal, then remove.

Rules this module keeps:
1. imapclient blocks, so each watched folder has its own thread and connection; the
   decision and the sealing run on the daemon's event loop (`Handle`).
2. Order, for every new message: fetch with BODY.PEEK[] (never sets \\Seen; flags of
   mail that stays are never touched) -> decide -> if held, stored in the archive with
   its mark (durable: pipeline rule 6) -> remove it from the mailbox entirely
   (removal.py: expunged where it is, or moved to the server's Trash and expunged there)
   -> remember the UID. Nothing is removed before it is sealed. A crash anywhere means
   the message is looked at again, and one the archive already holds is removed without
   being sealed twice. The account's state records the same for every message whatever
   became of it: only each folder's position.
3. New mail is found by UID, never by IDLE's word alone: the UIDs above the last handled
   one are searched after every (re-)entry into IDLE, so mail that lands while IDLE is
   being re-issued is not missed, nor mail the server took in during an empty search
   (announced in that search's reply, never again in IDLE). IDLE is re-issued before
   `idle_seconds` (29 min) and at least every `keepalive` seconds, whose round trip also
   detects a dead connection.
   With `poll_seconds` set, IDLE is replaced by a UID SEARCH every `poll_seconds`: mail is
   found as soon as the server stores it, not when it gets round to notifying (Dovecot
   waits ~0.5 s), at the cost of two round trips (NOOP, UID SEARCH) per folder per poll.
4. New mail is handled in batches, in UID order: decided and sealed together (one archive
   fsync), remembered in one state write, removed with one command. A batch is bounded by
   bytes as well as count (see batches.py): the sizes (RFC822.SIZE) are fetched first,
   then the bodies, so a burst of large messages never holds more than about one budget
   of mail in memory, and a message larger than the budget is fetched alone.
5. One message that cannot be handled (its decision or sealing raises, or the server
   sends no body) never holds back the others: each message of a batch is decided on its
   own, the rest go on, and that one stays in the folder, untouched, its UID kept in the
   folder's retry list (state.py rule 4). It is looked at again after 1 s, then less and
   less often (at most every 5 min), for as long as it fails; never removed unsealed.
   Held mail that is sealed but cannot be removed the way the account asks (trash on a
   server without a \\Trash folder: removal.py rule 3) is retried the same way.
6. Any other fault drops the connection and reconnects with exponential backoff (1 s to
   5 min). Nothing is logged about any message; only that a folder's connection failed.
7. A changed UIDVALIDITY means the folder was rebuilt: it is scanned again from the start.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from imapclient import IMAPClient

from proxy.channels.imap.batches import plan
from proxy.channels.imap.connect import connect, default_folders
from proxy.channels.imap.removal import (
    HeldRemoval,
    Way,
    held_removal,
    remove,
    remove_held,
    sweep_trash,
)
from proxy.channels.imap.state import AccountState, FolderState
from proxy.config.model import ImapAccount
from proxy.logs import get_logger
from proxy.pipeline import Fate

# handle([(raw message, INTERNALDATE, "account/folder"), ...]) -> for each, in order, what
# became of it (HELD: durably sealed); or None if it could not be decided or sealed (it
# stays in the folder and is looked at again later: rule 5).
Found = tuple[bytes, datetime, str]
Judged = Fate | None
Handle = Callable[[list[Found]], list[Judged]]


class Archivist(Protocol):
    """What a watcher needs of the archive: whether it holds a message (its mark), and
    taking over the marks an older state kept."""

    def sealed(self, mark: str) -> bool: ...

    def adopt(self, marks: list[str]) -> None: ...

    def stored(self, since: int) -> set[str]: ...


_log = get_logger("imap")
_KEEPALIVE = 120.0
_BACKOFF_MAX = 300.0
_SIZES_PER_FETCH = 1000
_RETRY_FIRST = 1.0  # a message that failed is looked at again after this, then doubling


class FolderWatcher(threading.Thread):
    """One folder of one account, watched until `stop` is set."""

    def __init__(
        self, account: ImapAccount, folder: str, state: AccountState, *, handle: Handle,
        archive: Archivist, stop: threading.Event,
        progress: Callable[[int], None] = lambda _: None,
    ) -> None:  # fmt: skip
        super().__init__(name=f"imap-{account.name}-{folder}", daemon=True)
        self.account, self.folder, self.state = account, folder, state
        self.handle, self.archive, self.stop, self.progress = handle, archive, stop, progress
        # UIDs whose handling failed -> (when to look again, monotonic; the last wait)
        self._retry: dict[int, tuple[float, float]] = {}
        self._held = HeldRemoval(way=Way.EXPUNGE)  # settled anew on each connection

    def sweep(self) -> None:
        """One pass over the folder (for `nocontact imap sweep`), then return."""
        client = connect(self.account)
        try:
            selected = client.select_folder(self.folder)
            uidvalidity = int(selected[b"UIDVALIDITY"])
            self._settle_removal(client)
            self._handle_new(client, uidvalidity, self._last(uidvalidity))
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def count_new(self) -> int:
        """How many messages a sweep of this folder would look at."""
        client = connect(self.account)
        try:
            selected = client.select_folder(self.folder, readonly=True)
            last = self._last(int(selected[b"UIDVALIDITY"]))
            return sum(1 for uid in client.search(["UID", f"{last + 1}:*"]) if uid > last)
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def _last(self, uidvalidity: int) -> int:
        """The last UID handled in this folder, and (rule 5) the UIDs to look at again."""
        known = self.state.folder(self.folder)
        if known is None or known.uidvalidity != uidvalidity:
            self._retry = {}
            return 0
        now = time.monotonic()
        self._retry = {uid: self._retry.get(uid, (now, 0.0)) for uid in known.retry}
        return known.last_uid

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                client = connect(self.account)
            except Exception:
                _log.warning("imap login failed; retrying")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            try:
                self._watch(client)
                backoff = 1.0
            except Exception:
                # No error detail: a fault while sealing would show a held message arrived.
                _log.warning("imap folder connection lost; reconnecting")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):
                    client.logout()

    def _watch(self, client: IMAPClient) -> None:
        selected = client.select_folder(self.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        self._settle_removal(client)
        last = self._last(uidvalidity)
        poll = self.account.poll_seconds
        while not self.stop.is_set():
            last = self._handle_new(client, uidvalidity, last)
            if poll is None:
                self._idle(client)
            else:  # low-latency mode: the next UID SEARCH is the poll
                self.stop.wait(poll)

    def _settle_removal(self, client: IMAPClient) -> None:
        """How held mail leaves the mailbox on this connection (removal.py rules 1, 3)."""
        self._held = held_removal(self.account, client, self.folder)
        if self._held.way is Way.KEEP:  # about the account, logged whether or not mail is held
            _log.warning(
                "imap held_removal is trash but the server has no \\Trash folder (or no "
                "UIDPLUS): held mail stays in the folder, sealed, and removal is retried"
            )

    def _idle(self, client: IMAPClient) -> None:
        """Wait in IDLE until the server says something, keepalive, or stop."""
        client.idle()
        started = time.monotonic()
        limit = min(self.account.idle_seconds, _KEEPALIVE, self._until_retry(started))
        try:
            while not self.stop.is_set() and time.monotonic() - started < limit:
                if client.idle_check(timeout=0.5):
                    return
        finally:
            client.idle_done()

    def _until_retry(self, now: float) -> float:
        """Seconds until a message that failed is due to be looked at again (inf: none)."""
        return max(0.0, min((due for due, _ in self._retry.values()), default=math.inf) - now)

    def _handle_new(self, client: IMAPClient, uidvalidity: int, last: int) -> int:
        """Handle every message above UID `last`, and those due another try, in UID order.

        Searches again after handling, until nothing new is found: mail that arrived
        while we were removing (announced in a reply we do not read) is not left for the
        next IDLE notice.
        """
        now = time.monotonic()
        again = sorted(uid for uid, (due, _) in self._retry.items() if due <= now)
        while not self.stop.is_set():
            client.noop()  # lets the server take in mail delivered since the last command
            _announced_new(client)  # what it said is in the search that follows
            new = sorted(uid for uid in client.search(["UID", f"{last + 1}:*"]) if uid > last)
            if not new and not again:
                if _announced_new(client):  # arrived during the search: search again
                    continue
                break
            last = self._handle_uids(client, uidvalidity, last, again + new)
            again = []
        return last

    def _handle_uids(self, client: IMAPClient, uidvalidity: int, last: int, uids: list[int]) -> int:
        """Handle `uids` in batches under a byte budget (rule 4); the new last UID."""
        sizes: dict[int, object] = {}
        for start in range(0, len(uids), _SIZES_PER_FETCH):  # commands of bounded length
            answer = client.fetch(uids[start : start + _SIZES_PER_FETCH], ["RFC822.SIZE"])
            sizes.update((uid, data.get(b"RFC822.SIZE")) for uid, data in answer.items())
        for batch in plan(uids, sizes):
            if self.stop.is_set():
                break
            fetched = client.fetch(batch, ["BODY.PEEK[]", "INTERNALDATE"])
            failed = self._handle_batch(client, uidvalidity, batch, fetched)
            last = max(last, batch[-1])
            self._reschedule(batch, failed)
            self.state.record(self.folder, self._state(uidvalidity, last))
            self.progress(len(batch))
        return last

    def _state(self, uidvalidity: int, last: int) -> FolderState:
        return FolderState(uidvalidity=uidvalidity, last_uid=last, retry=tuple(sorted(self._retry)))

    def _reschedule(self, batch: list[int], failed: set[int]) -> None:
        """Forget the retries that were handled; put off those that failed again (rule 5)."""
        now = time.monotonic()
        for uid in batch:
            if uid in failed:
                _, wait = self._retry.get(uid, (now, 0.0))
                wait = min(max(wait * 2, _RETRY_FIRST), _BACKOFF_MAX)
                self._retry[uid] = (now + wait, wait)
            else:
                self._retry.pop(uid, None)

    def _handle_batch(
        self, client: IMAPClient, uidvalidity: int, batch: list[int],
        fetched: dict[int, dict[bytes, Any]],
    ) -> set[int]:  # fmt: skip
        """Decide and seal a batch together (one archive sync), then remove what went.

        Returns the UIDs that could not be handled: they stay in the folder (rule 5).
        """
        origin = f"{self.account.name}/{self.folder}"
        found: list[tuple[int, Found]] = []
        failed: set[int] = set()
        for uid in batch:
            data = fetched.get(uid)
            if data is None:  # expunged meanwhile by someone else
                continue
            raw = data.get(b"BODY[]")
            if not isinstance(raw, bytes):  # the server sent no body: ask again later
                failed.add(uid)
                continue
            arrived = data.get(b"INTERNALDATE")
            received = _utc(arrived) if isinstance(arrived, datetime) else datetime.now(UTC)
            found.append((uid, (raw, received, origin)))
        judged = self.handle([one for _, one in found]) if found else []
        held: list[int] = []
        pulled: list[int] = []
        for (uid, _), fate in zip(found, judged, strict=True):
            if fate is Fate.HELD:
                held.append(uid)
            elif fate is Fate.DELIVERED:
                pulled.append(uid)
            elif fate is not Fate.KEPT:  # undecided, or it could not be sealed
                failed.add(uid)
        if held:  # sealed durably by now (rule 2)
            failed |= self._remove_held(client, uidvalidity, held, fetched)
        if pulled:
            remove(client, pulled, self.account.move_pulled_to)
        return failed

    def _remove_held(
        self, client: IMAPClient, uidvalidity: int, held: list[int],
        fetched: dict[int, dict[bytes, Any]],
    ) -> set[int]:  # fmt: skip
        """Remove sealed mail from the mailbox entirely; the UIDs that stay (rule 5)."""
        if self._held.way is Way.KEEP:  # the Trash folder may have been made since
            self._held = held_removal(self.account, client, self.folder)
        bodies = [(uid, fetched[uid][b"BODY[]"]) for uid in held]
        sized = [(uid, hashlib.sha256(raw).hexdigest(), len(raw)) for uid, raw in bodies]
        return remove_held(
            client, self._held, folder=self.folder, uidvalidity=uidvalidity, held=sized
        )


def _announced_new(client: IMAPClient) -> bool:
    """Whether the server said, since last asked, that new mail is in the folder (EXISTS).

    Dovecot searches the folder as it was when UID SEARCH began, takes in mail delivered
    meanwhile at the end of the command, and says so in an untagged EXISTS that IDLE will
    not repeat. imapclient leaves such replies in imaplib's store of untagged responses
    (as it reads SELECT's and QUOTA's there itself); this takes them out.
    """
    return bool(client._imap.untagged_responses.pop("EXISTS", None))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AccountWatcher(threading.Thread):
    """Finds an account's folders (retrying until it can), then watches each one."""

    def __init__(
        self, account: ImapAccount, state: AccountState, handle: Handle, archive: Archivist,
        stop: threading.Event,
    ) -> None:  # fmt: skip
        super().__init__(name=f"imap-{account.name}", daemon=True)
        self.account, self.state, self.handle, self.stop = account, state, handle, stop
        self.archive = archive
        self.folders: list[FolderWatcher] = []

    def folder_names(self) -> list[str]:
        """The folders to watch: as configured, or INBOX and Junk (one login to find out)."""
        if self.account.folders is not None:
            return self.account.folders
        client = connect(self.account)
        try:
            return default_folders(client)
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def settle(self) -> None:
        """Hand the marks an older version kept in the account's state to the archive
        (its sealed hashes, and its pending notes that the log shows were stored)."""
        sealed, pending, since = self.state.legacy()
        if sealed or pending:
            stored = self.archive.stored(since) if pending else set()
            kept = sealed | {d for d, c in pending.items() if c in stored}
            self.archive.adopt(sorted("imap:" + digest for digest in kept))
            self.state.forget_legacy()

    def tidy_trash(self) -> None:
        """Expunge held copies a crash left in the account's Trash (removal.py rule 6)."""
        client = connect(self.account)
        try:
            removal = held_removal(self.account, client, "")
            if removal.way is Way.TRASH and removal.trash is not None:
                sweep_trash(client, removal.trash, self.archive.sealed)
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def run(self) -> None:
        self.settle()
        names: list[str] | None = None
        backoff = 1.0
        while names is None and not self.stop.is_set():
            try:
                names = self.folder_names()
            except Exception:
                _log.warning("imap login failed; retrying")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        if names is not None:
            try:
                self.tidy_trash()
            except Exception:  # the next start sweeps again; what was there says nothing
                _log.warning("imap trash could not be swept; the next start tries again")
        for name in names or []:
            watcher = FolderWatcher(
                self.account, name, self.state, handle=self.handle, archive=self.archive,
                stop=self.stop,
            )  # fmt: skip
            self.folders.append(watcher)
            watcher.start()
        for watcher in self.folders:
            watcher.join()
