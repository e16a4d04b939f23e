"""The phone line's journal: one append-only file of JSON lines, written in order, synced in groups.

Rules this module keeps:
1. `write` puts lines in the file at once, on the caller's thread (the event loop), in call
   order: the file's order is the order of events, whoever asks for durability later.
2. Durability is separate and grouped: `sync` returns once everything written before it
   was called is on disk; one syncer thread runs one fdatasync for every caller waiting
   then. `sync_now` does the same on the calling thread: the archive's writer runs it
   just before it stores sealed bytes whose sealing note must be on disk first.
3. A write or sync that fails raises JournalUnavailable (a RetryLater): the caller
   acknowledges nothing. A write that failed half-way may leave a torn line; the next
   write first ends it with a newline, and until that works every write is refused, so
   no good line is ever glued to a torn one.
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

from proxy.archive.layout import replace_file
from proxy.errors import RetryLater

Entry = dict[str, Any]
_STOP = None


class JournalUnavailable(RetryLater):
    """The journal cannot be written or synced now (a full or failing disk)."""


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._waiting: queue.SimpleQueue[asyncio.Future[None] | None] = queue.SimpleQueue()
        self._syncer: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._torn = False

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
        """Put `entries` in the file now, after everything written before (not yet synced)."""
        data = b"".join(_encode(e) for e in entries)
        try:
            if self._torn:
                _write_all(self._fd, b"\n")
                self._torn = False
            self._torn = True
            _write_all(self._fd, data)
            self._torn = False
        except OSError as error:
            raise JournalUnavailable(f"cannot write the phone journal: {error.strerror}") from None

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
        """Everything written so far, on disk before this returns (any thread)."""
        try:
            os.fdatasync(self._fd)
        except OSError as error:
            raise JournalUnavailable(f"cannot sync the phone journal: {error.strerror}") from None

    async def append(self, entries: Iterable[Entry], *, durable: bool) -> None:
        """`write`, then `sync` if `durable`.

        A line that need not be durable is a hint (a task done, a handled SID whose sealing
        note stands for it): if it cannot be written it is dropped, and a restart at worst
        repeats that work. Raising instead would fail what is already safe, or stop the
        outbox's loop.
        """
        if not durable:
            with contextlib.suppress(JournalUnavailable):
                self.write(entries)
            return
        self.write(entries)
        await self.sync()

    def close(self) -> None:
        """Sync what was written, stop the syncer, close the file."""
        if self._syncer is not None:
            self._waiting.put(_STOP)
            self._syncer.join()
            self._syncer = None
        with contextlib.suppress(OSError):  # nothing waits on it: what needed to be durable
            os.fdatasync(self._fd)  # was synced when it was asked for
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
                self._loop.call_soon_threadsafe(_settle, batch, error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one encoder, not one per line


def _encode(entry: Entry) -> bytes:
    return _ENCODER.encode(entry).encode() + b"\n"
