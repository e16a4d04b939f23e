"""The phone line's journal: one append-only file of JSON lines, kept in order, synced in groups.

Rules this module keeps:
1. `write` queues lines in call order, in memory; they reach the file in that order, all
   queued so far in one write: the file's order is the order of events. Whoever needs them
   on disk syncs (rule 2); lines no one waits for are written within `FLUSH_AFTER`
   seconds. So a held text costs the event loop no system call here: its sealing note
   goes to disk with the archive writer's sync.
2. Durability is grouped: `sync` returns once everything queued before it was called is on
   disk; one syncer thread writes and fdatasyncs for every caller waiting then.
   `sync_now` does the same on the calling thread: the archive's writer runs it just
   before it stores sealed bytes whose sealing note must be on disk first.
3. A sync that fails raises JournalUnavailable (a RetryLater): the caller acknowledges
   nothing. A failed fdatasync stops the journal's syncing for good, as a write error
   stops the archive: after one, the kernel may have dropped the lines it could not
   store and a later fdatasync can succeed without them, so every sync after it is
   refused until a restart (syncs run one at a time, so none slips past a failure).
   Lines whose write failed (a full disk) stay queued, and the next write tries them all again,
   first ending a torn line with a newline, so no good line is ever glued to a torn one.
   A line may then be in the file twice; every line is idempotent (a note, a handled SID,
   a named task, a task's done), so reading it twice changes nothing. A line whose sync
   was refused may still reach the file later: at worst a forward its webhook's retry
   queued again is sent twice after a restart; never is a line reported durable that
   is not.
4. A torn line is skipped when the journal is read: nothing relied on it, since nothing is
   acknowledged before its lines were written (and synced, when it mattered).
5. Opening rewrites the file compactly (`compact`) before any write: a crash during the
   rewrite leaves the old file or the new one (write, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proxy.disk import replace_file, write_all
from proxy.errors import RetryLater
from proxy.futures import settle

Entry = dict[str, Any]
_STOP = None
FLUSH_AFTER = 0.05  # seconds a line no one waits for may stay queued


class JournalUnavailable(RetryLater):
    """The journal cannot be written or synced now (a full or failing disk)."""


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._waiting: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()
        self._syncer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # the queue and the file, between loop and threads
        self._sync_lock = threading.Lock()  # one fdatasync at a time
        self._queued: list[bytes] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._torn = False
        self._broken: str | None = None  # why syncing stopped (rule 3)
        self._closed = False

    @classmethod
    def open(cls, path: Path) -> tuple[Journal, list[Entry]]:
        """The journal at `path` and the entries in it, oldest first."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        entries: list[Entry] = []
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
        return cls(path), entries

    def compact(self, entries: Iterable[Entry]) -> None:
        """Replace the whole file with `entries` (at start, before any append)."""
        assert self._syncer is None, "compact only before the first sync"
        replace_file(self.path, b"".join(_encode(e) for e in entries))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)

    def write(self, entries: Iterable[Entry]) -> None:
        """Queue `entries` after everything queued before; see rule 1 for when they reach
        the file. On the event loop."""
        data = b"".join(_encode(e) for e in entries)
        with self._lock:
            self._queued.append(data)
        if self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(FLUSH_AFTER, self._flush_queued)

    def _flush_queued(self) -> None:
        self._flush_timer = None
        with contextlib.suppress(JournalUnavailable):  # kept queued: the next write retries
            self.flush()

    def flush(self) -> None:
        """Write every queued line to the file, in order (any thread); not yet synced."""
        with self._lock:
            if self._closed:
                raise JournalUnavailable("the phone journal is closed")
            if not self._queued:
                return
            data = b"".join(self._queued)
            try:
                if self._torn:
                    write_all(self._fd, b"\n")
                    self._torn = False
                self._torn = True
                write_all(self._fd, data)
                self._torn = False
            except OSError as error:
                raise JournalUnavailable(
                    f"cannot write the phone journal: {error.strerror}"
                ) from None
            self._queued.clear()

    async def sync(self) -> None:
        """Return once everything written so far is on disk (one fdatasync for many)."""
        if self._syncer is None:
            self._loop = asyncio.get_running_loop()
            self._syncer = threading.Thread(target=self._sync_forever, name="sms-journal",
                                            daemon=True)  # fmt: skip
            self._syncer.start()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.put(future)
        await future

    def sync_now(self) -> None:
        """Everything queued so far, on disk before this returns (any thread)."""
        with self._sync_lock:
            if self._broken is not None:
                raise JournalUnavailable(f"the phone journal stopped syncing ({self._broken})")
            self.flush()
            try:
                os.fdatasync(self._fd)
            except OSError as error:
                self._broken = error.strerror or type(error).__name__
                raise JournalUnavailable(
                    f"cannot sync the phone journal: {error.strerror}"
                ) from None

    async def append(self, entries: Iterable[Entry], *, durable: bool) -> None:
        """`write`, then `sync` if `durable`.

        A line that need not be durable is a hint (a task done, a handled SID whose sealing
        note stands for it): it never raises, and if the disk fails it stays queued until
        a write works; a crash before then at worst repeats that work.
        """
        self.write(entries)
        if durable:
            await self.sync()

    async def aclose(self) -> None:
        """`close` from the event loop: the flush timer is cancelled here, on its loop (a
        TimerHandle is not for other threads), the rest runs on a worker thread."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Write and sync what was queued, stop the syncer, close the file (a flush timer
        still pending finds the journal closed and does nothing)."""
        if self._syncer is not None:
            self._waiting.put(_STOP)
            self._syncer.join()
            self._syncer = None
        # Nothing waits on what is left: what needed to be durable was synced when asked.
        with contextlib.suppress(JournalUnavailable):
            self.sync_now()
        with self._sync_lock, self._lock:  # the archive's writer may still ask for a sync
            self._closed = True
            os.close(self._fd)

    def _sync_forever(self) -> None:
        stop = False
        while not stop:
            batch: list[asyncio.Future[None]] = []
            item = self._waiting.get()
            while item is not _STOP:
                batch.append(item)
                try:
                    item = self._waiting.get_nowait()
                except queue.Empty:
                    break
            stop = item is _STOP
            error: BaseException | None = None
            try:
                self.sync_now()
            except JournalUnavailable as failure:
                error = failure
            if batch and self._loop is not None:
                self._loop.call_soon_threadsafe(settle, batch, error)


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one encoder, not one per line


def _encode(entry: Entry) -> bytes:
    return _ENCODER.encode(entry).encode() + b"\n"
