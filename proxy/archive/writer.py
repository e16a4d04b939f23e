"""The archive for asyncio code: seal, then group-commit through one writer thread.

Rules this module keeps:
1. `hold` and `append` return only when the entry is on disk (the log's fdatasync);
   callers acknowledge upstream after that and never before.
2. Group commit: while one batch is being written and fsync'd, new entries queue; the
   next batch takes them all. Many producers share one fsync; a single producer pays one.
3. Checkpoints: a batch carries a signed checkpoint when the last one is older than
   `checkpoint_every` (default 250 ms), and an idle archive signs its unsigned tail after
   that long. So every entry is under a signature within `checkpoint_every`, and a
   steady stream of items costs one signature per interval, not per item. (A crash
   before that leaves complete, unsigned entries that opening the archive signs.)
4. Sealing is CPU work: small items are sealed on the event loop (a thread hop would cost
   more than the seal), large ones (over 1 MiB) in a worker thread so other sessions run.
5. A failed batch fails every entry in it with the log's typed error (`RetryLater`):
   nothing in it was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from proxy.archive.errors import ArchiveUnavailable
from proxy.archive.layout import SEGMENT_BYTES
from proxy.archive.log import ArchiveLog, Clock, Receipt
from proxy.archive.records import EntryKind
from proxy.archive.seal import CustodyRecord, Recipients, seal_custody, seal_item
from proxy.errors import RetryLater
from proxy.message import Decision, InboundMessage

_INLINE_SEAL_BYTES = 1 << 20
_Pending = tuple[EntryKind, bytes, "asyncio.Future[Receipt]"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Archive:
    """An open archive, writable from the event loop it was opened on."""

    def __init__(
        self, log: ArchiveLog, recipients: Recipients, *, clock: Clock, checkpoint_every: float
    ) -> None:
        self._log = log
        self._recipients = recipients
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archive-writer")
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._last_checkpoint = time.monotonic()
        self._closing = False
        self._committer = asyncio.get_running_loop().create_task(self._commit_forever())

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        recipients: Sequence[str],
        segment_bytes: int = SEGMENT_BYTES,
        checkpoint_every: float = 0.25,
        clock: Clock = _utc_now,
    ) -> Archive:
        """Open (or create) the archive at `path`; raises ArchiveLocked if in use."""
        parsed = Recipients.parse(recipients)
        log = await asyncio.to_thread(
            ArchiveLog.open, path, segment_bytes=segment_bytes, clock=clock
        )
        return cls(log, parsed, clock=clock, checkpoint_every=checkpoint_every)

    @property
    def path(self) -> str:
        return str(self._log.root)

    async def hold(
        self,
        message: InboundMessage,
        decision: Decision,
        *,
        extras: Mapping[str, object] | None = None,
    ) -> Receipt:
        """Seal a held message and store it durably; returns once it is on disk."""
        now = self._clock()
        if len(message.raw) < _INLINE_SEAL_BYTES:
            sealed = seal_item(message, decision, self._recipients, sealed_at=now, extras=extras)
        else:
            sealed = await asyncio.to_thread(
                seal_item, message, decision, self._recipients, sealed_at=now, extras=extras
            )
        return await self.append(EntryKind.ITEM, sealed)

    async def record_custody(self, record: CustodyRecord) -> Receipt:
        """Seal and store a custody record (a contact's access)."""
        return await self.append(EntryKind.CUSTODY, seal_custody(record, self._recipients))

    async def append(self, kind: EntryKind, body: bytes) -> Receipt:
        """Store one already-sealed entry durably."""
        if self._closing:
            raise ArchiveUnavailable("the archive is closing")
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._pending.append((kind, body, future))
        self._wake.set()
        return await future

    async def _commit_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                timeout = self._checkpoint_every if self._log.unsigned else None
                if self._closing:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            batch, self._pending = self._pending, []
            due = time.monotonic() - self._last_checkpoint >= self._checkpoint_every
            checkpoint = due and (bool(batch) or self._log.unsigned > 0)
            if not batch and not checkpoint:
                continue
            entries = [(kind, body) for kind, body, _ in batch]
            try:
                receipts = await loop.run_in_executor(self._io, self._append, entries, checkpoint)
            except Exception as error:  # every entry of the batch fails the same way
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, _, future), receipt in zip(batch, receipts, strict=True):
                if not future.done():
                    future.set_result(receipt)
            if checkpoint:
                self._last_checkpoint = time.monotonic()
                await loop.run_in_executor(self._io, self._publish_head)

    def _append(self, entries: list[tuple[EntryKind, bytes]], checkpoint: bool) -> list[Receipt]:
        return self._log.append(entries, checkpoint=checkpoint, now=self._clock())

    def _publish_head(self) -> None:
        # The head is an anchor against truncation; a failure is retried at the next checkpoint.
        with contextlib.suppress(RetryLater):
            self._log.publish_head()

    async def close(self) -> None:
        """Finish every queued entry, sign the tail, release the archive."""
        self._closing = True
        self._wake.set()
        await self._committer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, lambda: self._log.close(now=self._clock()))
        self._io.shutdown(wait=True)
