"""The phone line's journal: one append-only file of JSON lines, group-committed.

Rules this module keeps:
1. One writer thread takes everything queued as one batch: one write, and one fdatasync
   if anything in the batch must be durable. Many webhooks in flight share one fsync.
2. `append(..., durable=True)` returns only once the lines are on disk; `durable=False`
   returns at once, and its lines reach the disk in order, no later than the next
   durable batch (the file is append-only and written by one thread).
3. A line torn by a crash is skipped when the journal is read: it was never relied on,
   since nothing is acknowledged before its durable append returned.
4. Opening rewrites the file compactly (`compact`) before any append: a crash during the
   rewrite leaves the old file or the new one (write, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proxy.archive.layout import replace_file

Entry = dict[str, Any]
_Pending = tuple[bytes, "asyncio.Future[None] | None"]


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
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

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
        assert self._thread is None, "compact only before the first append"
        replace_file(self.path, b"".join(_encode(e) for e in entries))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)

    async def append(self, entries: Iterable[Entry], *, durable: bool) -> None:
        data = b"".join(_encode(e) for e in entries)
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._write_forever, name="sms-journal",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        if not durable:
            self._queue.put((data, None))
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((data, future))
        await future

    def close(self) -> None:
        """Write what is queued (durably), stop the writer, close the file."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        os.close(self._fd)

    def _write_forever(self) -> None:
        stop = False
        while not stop:
            batch: list[_Pending] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stop = item is None  # close: everything before it is in this batch
            self._commit(batch, sync=stop or any(f is not None for _, f in batch))

    def _commit(self, batch: list[_Pending], *, sync: bool) -> None:
        futures = [future for _, future in batch if future is not None]
        error: BaseException | None = None
        try:
            data = b"".join(data for data, _ in batch)
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
            if sync:
                os.fdatasync(self._fd)
        except OSError as failure:
            error = failure
        if futures and self._loop is not None:
            self._loop.call_soon_threadsafe(_settle, futures, error)


def _encode(entry: Entry) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"
