"""The archive for asyncio code: seal, then group-commit through one writer thread.

Rules this module keeps:
1. `hold` and `append` return only when the entry is on disk (the log's fdatasync);
   callers acknowledge upstream after that and never before.
2. Group commit: one dedicated writer thread takes everything queued as one batch, writes
   and fsyncs it, and hands all the receipts back to the event loop in one call. Many
   producers share one fsync; a single producer pays one fsync and two thread hops.
3. Checkpoints on a fixed cadence: one is signed at every multiple of `checkpoint_every`
   (10 minutes) of wall-clock time, whether or not anything arrived, so neither their
   number nor their times (rounded down, log.py rule 5) say when items came. Entries are
   durable at once and signed at the next tick; a crash before it leaves complete,
   unsigned entries that opening the archive signs. A custody record is signed at once
   (`sign`): a contact's tools read only what a checkpoint covers, and a contact's
   action says nothing about held items. The `checkpoint` file is rewritten on a third
   thread, so its fsyncs never delay a batch. (`checkpoint_every` 0, for tests: a
   checkpoint after every batch, none while idle.)
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
   The contacts' custody public keys (config `custody_key`) are published beside the log
   the same way (`custody-keys`, custody_keys.py rule 3), when the caller gives them.
7. Sealed once (once.py): an entry appended with a `once` mark is noted with it before
   it is stored, in the batch's own order; `sealed(mark)` then says the archive holds that
   arrival, so no channel seals it twice and no channel's state need say what was held.
8. A contact's custody record (`record_signed`) is stored only if it is signed by the
   custody key configured for its contact (custody_keys.py rule 4), and only once per
   contact and nonce, ever: the pair is the record's mark (rule 7), so a request replayed
   after a restart is refused too. Its time is this writer's clock, never the caller's.
9. A witness's consistency proof (`consistency`) is computed from the tree in memory
   between signed sizes only, so it never reads what the writer thread is changing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from proxy.archive import layout
from proxy.archive.custody_keys import (
    CustodyRefused,
    CustodyRequest,
    check_request,
    keys_file_bytes,
    read_published,
)
from proxy.archive.errors import ArchiveUnavailable
from proxy.archive.log import ArchiveLog, Clock, Receipt
from proxy.archive.once import SealedMarks
from proxy.archive.reader import item_digests
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
CHECKPOINT_EVERY = 600.0
_Future = asyncio.Future[Receipt]


@dataclass(frozen=True, slots=True)
class _Pending:
    kind: EntryKind
    body: bytes
    future: _Future
    once: str | None  # the arrival's mark (rule 7)
    sign: bool  # a checkpoint right after it (rule 3)


_CLOSE = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Archive:
    """An open archive, writable from the event loop it was opened on."""

    def __init__(
        self, log: ArchiveLog, marks: SealedMarks, recipients: Recipients, sealer: Sealer, *,
        clock: Clock, checkpoint_every: float,
    ) -> None:  # fmt: skip
        self._log = log
        self._marks = marks
        self._custody_marks: set[str] = set()  # custody records asked for in this run
        self._sealer = sealer
        self._recipients = recipients
        self._custody_keys: dict[str, str] = {}
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
        custody_keys: Mapping[str, str] | None = None,
        segment_bytes: int | None = None,
        checkpoint_every: float = CHECKPOINT_EVERY,
        clock: Clock = _utc_now,
    ) -> Archive:
        """Open (or create) the archive at `path`; raises ArchiveLocked if in use."""
        parsed, sealer = Recipients.parse(recipients), Sealer(recipients)
        log = await asyncio.to_thread(
            ArchiveLog.open, path, segment_bytes=segment_bytes, clock=clock
        )
        try:
            marks = await asyncio.to_thread(_open_marks, log)
        except BaseException:
            log.close(now=clock())
            raise
        changed = await asyncio.to_thread(_publish_recipients, log.root, recipients)
        archive = cls(log, marks, parsed, sealer, clock=clock, checkpoint_every=checkpoint_every)
        await archive.replace_custody_keys(custody_keys)
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

    async def replace_custody_keys(self, keys: Mapping[str, str] | None) -> None:
        """Check custody records against `keys` (fingerprint to custody key) from now on,
        and publish them (rule 6); None keeps the published file and checks against it."""
        if keys is None:
            self._custody_keys = await asyncio.to_thread(read_published, self._log.root)
            return
        self._custody_keys = dict(keys)
        await asyncio.to_thread(_publish_custody_keys, self._log.root, keys)

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
        return await self.append(EntryKind.SEALED, sealed)

    async def record_custody(self, record: CustodyRecord, *, once: str | None = None) -> Receipt:
        """Seal and store a custody record (a contact's access), signed at once (rule 3);
        `once` is its mark, as an arrival's (rule 7)."""
        sealed = await self._sealer.seal(custody_metadata(record), b"")
        return await self.append(EntryKind.SEALED, sealed, once=once, sign=True)

    async def record_signed(self, request: CustodyRequest) -> Receipt:
        """Store a contact's signed custody record, stamped with this writer's time (rule
        8); `CustodyRefused` (nothing stored) unless its signature verifies."""
        check_request(request, self._custody_keys)
        mark = f"custody:{request.contact}:{request.nonce}"
        if mark in self._custody_marks or self._marks.holds(mark):
            raise CustodyRefused("this custody record was stored already: nothing stored")
        self._custody_marks.add(mark)  # at once: the writer thread notes it a moment later
        record = CustodyRecord(contact=request.contact, action=request.action,
                               items=request.items, at=self._clock(), reason=request.reason,
                               nonce=request.nonce, signature=request.signature)  # fmt: skip
        return await self.record_custody(record, once=mark)

    async def sign(self) -> int:
        """Sign a checkpoint now, over everything stored so far (for a contact's tools,
        rule 3); the tree size it signs."""
        if self._closing:
            raise ArchiveUnavailable("the archive is closing")
        future: _Future = self._loop.create_future()
        self._queue.put(_Pending(EntryKind.CHECKPOINT, b"", future, None, True))
        await future
        return self._log.last_checkpoint

    def derive_key(self, purpose: bytes) -> bytes:
        """A secret key for `purpose`, derived from the archive's signing key."""
        return self._log.derive_key(purpose)

    def head(self) -> tuple[str, int]:
        """The newest signed checkpoint note (C2SP text) and its time, ns (any thread)."""
        note = self._log.latest_note
        return (note.decode("utf-8", "replace") if note else ""), self._log.signed_at

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """The RFC 6962 consistency proof from `old_size` to `new_size`, both at most the
        newest signed size (for a witness, rule 9). Event loop or any thread: it reads only
        complete subtrees, which the writer's appends never change."""
        if not 0 < old_size <= new_size <= self._log.last_checkpoint:
            raise ValueError("a consistency proof is between two signed sizes")
        return self._log.tree.consistency_proof(old_size, new_size)

    def sealed(self, mark: str) -> bool:
        """Whether the arrival with this mark is sealed, or being sealed now (rule 7)."""
        return self._marks.holds(mark)

    def stored(self, since: int) -> set[str]:
        """SHA-256 of the sealed bytes of every sealed entry from index `since` on, read
        from disk (blocking: call off the event loop). Settles an older version's notes."""
        return item_digests(self._log.root / layout.LOG_DIR, since)

    async def adopt(self, marks: Sequence[str]) -> None:
        """Remember marks of arrivals a channel's older state says were sealed."""
        await asyncio.to_thread(self._marks.adopt, marks)

    async def append(
        self, kind: EntryKind, body: bytes, *, once: str | None = None, sign: bool = False
    ) -> Receipt:
        """Store one already-sealed entry durably; with `once`, the arrival's mark is noted
        first (rule 7); with `sign`, a checkpoint follows it at once."""
        if self._closing:
            raise ArchiveUnavailable("the archive is closing")
        future: _Future = self._loop.create_future()
        self._queue.put(_Pending(kind, body, future, once, sign))
        return await future

    # -- the writer thread ---------------------------------------------------------------

    def _write_forever(self) -> None:
        closing = False
        tick = self._next_tick()
        while not closing:
            batch, closing = self._next_batch(tick)
            due = tick <= time.time()
            if due:
                tick = self._next_tick()
            every_batch = self._checkpoint_every <= 0 and bool(batch)
            checkpoint = due or every_batch or any(pending.sign for pending in batch)
            if batch or checkpoint:
                self._commit(batch, checkpoint)
        self._publisher.shutdown(wait=True)
        try:
            self._log.close(now=self._clock())
            self._marks.touch(self._log.signed_at)  # closing signed: the marks follow
            self._marks.close()
        except BaseException as error:
            self._loop.call_soon_threadsafe(settle, [self._stopped], error)
        else:
            self._loop.call_soon_threadsafe(settle, [self._stopped], None)

    def _next_tick(self) -> float:
        """The next multiple of `checkpoint_every` in wall-clock time (inf: no ticks)."""
        every = self._checkpoint_every
        return math.inf if every <= 0 else (math.floor(time.time() / every) + 1) * every

    def _next_batch(self, tick: float) -> tuple[list[_Pending], bool]:
        """Everything queued now (waiting for the first, until the next tick); and whether
        close was asked."""
        timeout = None if tick == math.inf else max(0.0, tick - time.time())
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
        futures = [pending.future for pending in batch]
        marks = [(p.once, p.body) for p in batch if p.once is not None]
        try:
            try:
                self._marks.note(marks, self._log.tree.size)
            except OSError as error:
                raise ArchiveUnavailable(
                    f"cannot note sealed items beside the archive: {error.strerror}"
                ) from None
            entries = [(p.kind, p.body) for p in batch if p.kind is not EntryKind.CHECKPOINT]
            receipts = self._log.append(
                entries,
                checkpoint=checkpoint,
                now=self._clock(),
                publish=False,
            )
        except Exception as error:  # every entry of the batch fails the same way
            self._marks.forget(mark for mark, _ in marks)
            self._loop.call_soon_threadsafe(fail, futures, error)
            return
        if marks:
            with contextlib.suppress(OSError):  # a hint: opening checks the notes anyway
                self._marks.settle()
        signed = Receipt(index=self._log.last_checkpoint, leaf_hash=b"")
        answers = iter(receipts)  # a request to sign (no entry of its own) gets the checkpoint
        receipts = [signed if p.kind is EntryKind.CHECKPOINT else next(answers) for p in batch]
        self._loop.call_soon_threadsafe(resolve, futures, receipts)
        if checkpoint:
            with contextlib.suppress(OSError):  # the marks' times follow the log's
                self._marks.touch(self._log.signed_at)
        note = self._log.take_head() if checkpoint else None
        if note is not None:
            self._publisher.submit(self._publish, note)

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


def _open_marks(log: ArchiveLog) -> SealedMarks:
    """The archive's sealed marks (once.py), checked against the log after a crash."""
    key = log.derive_key(b"nocontact sealed marks v1")
    log_dir = log.root / layout.LOG_DIR
    marks = SealedMarks.open(log.root, key, lambda since: item_digests(log_dir, since))
    marks.touch(log.signed_at)
    return marks


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


def _publish_custody_keys(root: os.PathLike[str], keys: Mapping[str, str]) -> None:
    """Write the contacts' custody public keys beside the log (rule 6): a contact's tools
    check custody records against them on a copy of the archive too. They open nothing."""
    path = Path(root) / layout.CUSTODY_KEYS
    data = keys_file_bytes(keys)
    if not path.exists() or path.read_bytes() != data:
        layout.replace_file(path, data)


CONTACTS_CHANGED = "contacts changed"


def _contacts_changed(recipients: Sequence[str], at: datetime) -> CustodyRecord:
    """The log's record of a new set of contacts: the daemon's doing, naming each new key
    by its fingerprint (a public key's hash: it opens nothing)."""
    fingerprints = sorted(fingerprint(r.strip()) for r in recipients)
    return CustodyRecord(contact="daemon", action=CONTACTS_CHANGED, items=(), at=at,
                         reason="from now on sealed to " + ", ".join(fingerprints))  # fmt: skip
