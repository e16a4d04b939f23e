"""The archive for asyncio code: seal, then group-commit through one writer thread.

Rules this module keeps:
1. `hold` and `append` return only when the entry is on disk (the log's fdatasync);
   callers acknowledge upstream after that and never before.
2. Group commit: one dedicated writer thread takes everything queued as one batch, writes
   and fsyncs it, and hands all the receipts back to the event loop in one call. Many
   producers share one fsync; a single producer pays one fsync and two thread hops.
3. Checkpoints: a batch carries a signed checkpoint when the last one is older than
   `checkpoint_every` (default 250 ms), and an idle archive signs its unsigned tail after
   that long. So every entry is under a signature within `checkpoint_every`, and a steady
   stream of items costs one signature per interval, not per item. (A crash before that
   leaves complete, unsigned entries that opening the archive signs.) The `checkpoint`
   file is rewritten on a third thread, so its fsyncs never delay a batch.
4. Sealing is CPU work, and pyrage holds the GIL while it encrypts: items under 1 MiB
   are sealed in a child process (`sealer`), so the event loop keeps serving every
   channel meanwhile and the daemon uses a second core. Larger ones are streamed through
   age on a worker thread, without the copies a trip to the child would make.
5. A failed batch fails every entry in it with the log's typed error (`RetryLater`):
   nothing in it was acknowledged.
6. The contacts sealed to can change while the archive is open (`replace_recipients`, a
   reload): every item sealed after the call is sealed to the new set, the new public
   keys are published beside the log, and the change is itself an entry of the log (a
   custody record naming the new keys' fingerprints, sealed to the new set). A change
   made while the daemon was stopped is recorded the same way when it opens the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from proxy.archive import layout
from proxy.archive.errors import ArchiveUnavailable
from proxy.archive.log import ArchiveLog, Clock, Receipt
from proxy.archive.records import EntryKind
from proxy.archive.seal import (
    CustodyRecord,
    Recipients,
    custody_metadata,
    fingerprint,
    item_metadata,
    seal,
)
from proxy.archive.sealer import Sealer
from proxy.errors import RetryLater
from proxy.futures import fail, resolve, settle
from proxy.message import Decision, InboundMessage

_CHILD_SEAL_BYTES = 1 << 20
_Future = asyncio.Future[Receipt]
_First = Callable[[], None]
_Pending = tuple[EntryKind, bytes, _Future, _First | None]
_CLOSE = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Archive:
    """An open archive, writable from the event loop it was opened on."""

    def __init__(
        self, log: ArchiveLog, recipients: Recipients, sealer: Sealer, *, clock: Clock,
        checkpoint_every: float,
    ) -> None:  # fmt: skip
        self._log = log
        self._sealer = sealer
        self._recipients = recipients
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-head")
        self._closing = False
        self._stopped: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._write_forever, name="archive-writer", daemon=True
        )
        self._thread.start()

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        recipients: Sequence[str],
        segment_bytes: int = layout.SEGMENT_BYTES,
        checkpoint_every: float = 0.25,
        clock: Clock = _utc_now,
    ) -> Archive:
        """Open (or create) the archive at `path`; raises ArchiveLocked if in use."""
        parsed, sealer = Recipients.parse(recipients), Sealer(recipients)
        log = await asyncio.to_thread(
            ArchiveLog.open, path, segment_bytes=segment_bytes, clock=clock
        )
        changed = await asyncio.to_thread(_publish_recipients, log.root, recipients)
        archive = cls(log, parsed, sealer, clock=clock, checkpoint_every=checkpoint_every)
        if changed:  # the contacts changed while it was closed (rule 6)
            await archive.record_custody(_contacts_changed(recipients, clock()))
        return archive

    @property
    def path(self) -> str:
        return str(self._log.root)

    @property
    def size(self) -> int:
        """Entries stored so far (a lower bound while appends are in flight)."""
        return self._log.tree.size

    async def replace_recipients(self, recipients: Sequence[str]) -> None:
        """Seal to `recipients` from now on (rule 6); ValueError for a bad key, and then
        nothing changes."""
        parsed, sealer = Recipients.parse(recipients), Sealer(recipients)
        old, self._sealer, self._recipients = self._sealer, sealer, parsed  # before any await
        try:
            await sealer.start()
            changed = await asyncio.to_thread(_publish_recipients, self._log.root, recipients)
            if changed:
                await self.record_custody(_contacts_changed(recipients, self._clock()))
        finally:
            await old.close()  # seals it was given finish first

    async def start_sealing(self) -> None:
        """Start the sealing processes now, not at the first held item (which they would
        date by appearing then)."""
        await self._sealer.start()

    async def seal(
        self,
        message: InboundMessage,
        decision: Decision,
        *,
        extras: Mapping[str, object] | None = None,
    ) -> bytes:
        """The sealed bytes of a held message, not yet stored (see `hold`)."""
        metadata = item_metadata(message, decision, sealed_at=self._clock(), extras=extras)
        if len(message.raw) < _CHILD_SEAL_BYTES:
            return await self._sealer.seal(metadata, message.raw)
        # A large item is streamed through age on a thread here: sent to the child it would
        # be copied three times over (pickle, pipe buffers, answer), too much memory.
        return await asyncio.to_thread(seal, metadata, message.raw, self._recipients)

    async def hold(
        self,
        message: InboundMessage,
        decision: Decision,
        *,
        extras: Mapping[str, object] | None = None,
    ) -> Receipt:
        """Seal a held message and store it durably; returns once it is on disk."""
        sealed = await self.seal(message, decision, extras=extras)
        return await self.append(EntryKind.ITEM, sealed)

    async def record_custody(self, record: CustodyRecord) -> Receipt:
        """Seal and store a custody record (a contact's access)."""
        sealed = await self._sealer.seal(custody_metadata(record), b"")
        return await self.append(EntryKind.CUSTODY, sealed)

    async def append(self, kind: EntryKind, body: bytes, *, first: _First | None = None) -> Receipt:
        """Store one already-sealed entry durably.

        `first`, if given, runs on the writer thread just before the entry is written (once
        per batch however many entries share it): what must be on disk before the entry
        is, such as a channel's note that these bytes are being stored. If it raises, the
        entry is not written and the error is raised here.
        """
        if self._closing:
            raise ArchiveUnavailable("the archive is closing")
        future: _Future = self._loop.create_future()
        self._queue.put((kind, body, future, first))
        return await future

    # -- the writer thread ---------------------------------------------------------------

    def _write_forever(self) -> None:
        last_checkpoint = time.monotonic()
        closing = False
        while not closing:
            batch, closing = self._next_batch(last_checkpoint)
            due = time.monotonic() - last_checkpoint >= self._checkpoint_every
            checkpoint = due and (bool(batch) or self._log.unsigned > 0)
            if batch or checkpoint:
                self._commit(batch, checkpoint)
                if checkpoint:
                    last_checkpoint = time.monotonic()
        self._publisher.shutdown(wait=True)
        try:
            self._log.close(now=self._clock())
        except BaseException as error:
            self._loop.call_soon_threadsafe(settle, [self._stopped], error)
        else:
            self._loop.call_soon_threadsafe(settle, [self._stopped], None)

    def _next_batch(self, last_checkpoint: float) -> tuple[list[_Pending], bool]:
        """Everything queued now (waiting for the first); and whether close was asked."""
        timeout = None
        if self._log.unsigned:
            timeout = max(0.0, last_checkpoint + self._checkpoint_every - time.monotonic())
        batch: list[_Pending] = []
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return batch, False
        item: _Pending | None = first
        while True:
            if item is _CLOSE:
                return batch, True
            batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    def _commit(self, batch: list[_Pending], checkpoint: bool) -> None:
        batch = self._run_first(batch)
        if not batch and not checkpoint:
            return
        futures = [future for _, _, future, _ in batch]
        try:
            receipts = self._log.append(
                [(kind, body) for kind, body, _, _ in batch],
                checkpoint=checkpoint,
                now=self._clock(),
                publish=False,
            )
        except Exception as error:  # every entry of the batch fails the same way
            self._loop.call_soon_threadsafe(fail, futures, error)
            return
        self._loop.call_soon_threadsafe(resolve, futures, receipts)
        note = self._log.take_head() if checkpoint else None
        if note is not None:
            self._publisher.submit(self._publish, note)

    def _run_first(self, batch: list[_Pending]) -> list[_Pending]:
        """Run each distinct `first` of the batch once; fail the entries whose `first` failed."""
        failed: dict[_First, BaseException] = {}
        for prerequisite in {first for _, _, _, first in batch if first is not None}:
            try:
                prerequisite()
            except Exception as error:
                failed[prerequisite] = error
        if not failed:
            return batch
        for _, _, future, first in batch:
            if first in failed:
                self._loop.call_soon_threadsafe(fail, [future], failed[first])
        return [pending for pending in batch if pending[3] not in failed]

    def _publish(self, note: bytes) -> None:
        # The head anchors against truncation; a failure is retried at the next checkpoint.
        with contextlib.suppress(RetryLater, OSError):
            layout.replace_file(self._log.root / layout.HEAD, note)

    async def close(self) -> None:
        """Finish every queued entry, sign the tail, release the archive."""
        await self._sealer.close()
        if not self._closing:
            self._closing = True
            self._queue.put(_CLOSE)
        await asyncio.shield(self._stopped)
        await asyncio.to_thread(self._thread.join)


def _publish_recipients(root: os.PathLike[str], recipients: Sequence[str]) -> bool:
    """Write the contacts' public keys beside the log: a contact's tools seal custody
    records to all of them, even on a copy of the archive. Public keys open nothing.
    Whether they replaced a different set (a new archive has none to replace)."""
    path = Path(root) / layout.RECIPIENTS
    data = "".join(f"{r.strip()}\n" for r in recipients).encode()
    before = path.read_bytes() if path.exists() else None
    if before != data:
        layout.replace_file(path, data)
    return before is not None and set(before.split()) != set(data.split())


CONTACTS_CHANGED = "contacts changed"


def _contacts_changed(recipients: Sequence[str], at: datetime) -> CustodyRecord:
    """The log's record of a new set of contacts: the daemon's doing, naming each new key
    by its fingerprint (a public key's hash: it opens nothing)."""
    fingerprints = sorted(fingerprint(r.strip()) for r in recipients)
    return CustodyRecord(contact="daemon", action=CONTACTS_CHANGED, items=(), at=at,
                         reason="from now on sealed to " + ", ".join(fingerprints))  # fmt: skip
