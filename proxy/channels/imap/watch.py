"""Watching IMAP folders: IDLE, fetch new mail without reading it, seal, then remove.

Rules this module keeps:
1. imapclient blocks, so each watched folder has its own thread and connection; the
   decision and the sealing run on the daemon's event loop (`Handle`).
2. Order, for every new message: fetch with BODY.PEEK[] (never sets \\Seen; flags of
   mail that stays are never touched) -> decide -> seal (durable) -> remember it was
   sealed -> remove it (UID MOVE, or \\Deleted + UID EXPUNGE) -> remember the UID.
   Nothing is removed before it is sealed. A crash anywhere means the message is looked
   at again, and a message already sealed is removed without being sealed twice.
3. New mail is found by UID, never by IDLE's word alone: the UIDs above the last handled
   one are searched after every (re-)entry into IDLE, so mail that lands while IDLE is
   being re-issued is not missed. IDLE is re-issued before `idle_seconds` (29 min) and at
   least every `keepalive` seconds, whose round trip also detects a dead connection.
4. Any fault drops the connection and reconnects with exponential backoff (1 s to 5 min).
   Nothing is logged about any message; only that a folder's connection failed.
5. A changed UIDVALIDITY means the folder was rebuilt: it is scanned again from the start.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from imapclient import IMAPClient

from proxy.channels.imap.connect import connect, default_folders
from proxy.channels.imap.state import AccountState, FolderState
from proxy.config.model import ImapAccount
from proxy.logs import get_logger

# handle(raw message, INTERNALDATE, "account/folder") -> True if it was held (now sealed).
Handle = Callable[[bytes, datetime, str], bool]

_log = get_logger("imap")
_KEEPALIVE = 120.0
_BACKOFF_MAX = 300.0


class FolderWatcher(threading.Thread):
    """One folder of one account, watched until `stop` is set."""

    def __init__(
        self, account: ImapAccount, folder: str, state: AccountState, handle: Handle,
        stop: threading.Event,
    ) -> None:  # fmt: skip
        super().__init__(name=f"imap-{account.name}-{folder}", daemon=True)
        self.account, self.folder, self.state = account, folder, state
        self.handle, self.stop = handle, stop

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                client = connect(self.account)
            except Exception:
                _log.warning("imap login failed; retrying", component="imap")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            try:
                self._watch(client)
                backoff = 1.0
            except Exception:
                _log.warning("imap folder connection lost; reconnecting", exc_info=True)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):
                    client.logout()

    def _watch(self, client: IMAPClient) -> None:
        selected = client.select_folder(self.folder)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        known = self.state.folder(self.folder)
        last = known.last_uid if known is not None and known.uidvalidity == uidvalidity else 0
        while not self.stop.is_set():
            last = self._handle_new(client, uidvalidity, last)
            self._idle(client)

    def _idle(self, client: IMAPClient) -> None:
        """Wait in IDLE until the server says something, keepalive, or stop."""
        client.idle()
        started = time.monotonic()
        limit = min(self.account.idle_seconds, _KEEPALIVE)
        try:
            while not self.stop.is_set() and time.monotonic() - started < limit:
                if client.idle_check(timeout=0.5):
                    return
        finally:
            client.idle_done()

    def _handle_new(self, client: IMAPClient, uidvalidity: int, last: int) -> int:
        uids = sorted(uid for uid in client.search(["UID", f"{last + 1}:*"]) if uid > last)
        for uid in uids:
            if self.stop.is_set():
                break
            fetched = client.fetch([uid], ["BODY.PEEK[]", "INTERNALDATE"]).get(uid)
            if fetched is None:  # expunged meanwhile by someone else
                last = uid
                continue
            raw: bytes = fetched[b"BODY[]"]
            arrived = fetched.get(b"INTERNALDATE")
            received_at = _utc(arrived) if isinstance(arrived, datetime) else datetime.now(UTC)
            digest = hashlib.sha256(raw).hexdigest()
            origin = f"{self.account.name}/{self.folder}"
            held = self.state.was_sealed(digest) or self.handle(raw, received_at, origin)
            if held:
                before = FolderState(uidvalidity=uidvalidity, last_uid=last)
                self.state.record(self.folder, before, sealed=digest)
                self._remove(client, uid)
            last = uid
            self.state.record(self.folder, FolderState(uidvalidity=uidvalidity, last_uid=last))
        return last

    def _remove(self, client: IMAPClient, uid: int) -> None:
        target = self.account.move_held_to
        if target is not None and client.has_capability("MOVE"):
            client.move([uid], target)
            return
        if target is not None:
            client.copy([uid], target)
        client.delete_messages([uid])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            client.expunge()


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AccountWatcher(threading.Thread):
    """Finds an account's folders (retrying until it can), then watches each one."""

    def __init__(
        self, account: ImapAccount, state: AccountState, handle: Handle, stop: threading.Event
    ) -> None:
        super().__init__(name=f"imap-{account.name}", daemon=True)
        self.account, self.state, self.handle, self.stop = account, state, handle, stop
        self.folders: list[FolderWatcher] = []

    def run(self) -> None:
        names = self.account.folders
        backoff = 1.0
        while names is None and not self.stop.is_set():
            try:
                client = connect(self.account)
                try:
                    names = default_folders(client)
                finally:
                    with contextlib.suppress(Exception):
                        client.logout()
            except Exception:
                _log.warning("imap login failed; retrying")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
        for name in names or []:
            watcher = FolderWatcher(self.account, name, self.state, self.handle, self.stop)
            self.folders.append(watcher)
            watcher.start()
        for watcher in self.folders:
            watcher.join()
