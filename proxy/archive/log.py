"""The archive's append-only log: one writer, durable batches, signed checkpoints.

Rules this module keeps:
1. One writer per archive, enforced by an exclusive lock held for the writer's life; a
   second writer gets `ArchiveLocked` with the holder's pid, never a shared file.
2. `append` returns only when its records are on disk: one write and one fdatasync per
   batch (group commit), into a zero-filled segment (see segments.py). The directory is
   fsync'd whenever a file is created or renamed. A write error poisons the writer: every
   later append raises `ArchiveUnavailable` until the archive is reopened, because after a
   failed fsync the kernel may have dropped the data it reported dirty.
3. A batch may end with a checkpoint entry: the Ed25519-signed C2SP checkpoint of the
   tree before it. The writer decides when (see writer.py). Opening and closing always
   sign one, whether or not entries came since the last: a checkpoint's presence never
   says that something arrived. The latest checkpoint is also kept in the file
   `checkpoint`, so cutting entries off the end of the log is detected.
4. Opening recovers from a crash: a torn record at the end (written, never acknowledged)
   is zeroed, never kept half; complete records after the last checkpoint are kept and
   signed. Damage inside the signed part is never "repaired": it raises `ArchiveCorrupt`.
5. Times are coarse: a checkpoint's time is rounded down to `TIME_GRAIN` (10 minutes),
   and after every batch the segment's modification time is set back to the latest
   checkpoint's, so neither dates an entry more finely than the checkpoint cadence does.
   (The inode's change time, which no one can set, still moves: docs/what-files-tell.md.)
   Opening returns only once the next segment is made, so how fast the disk is does not
   decide whether that file dates from the start or from the first traffic.
6. Opening a version 1 archive upgrades its `archive.json` to version 2: the entries
   already written keep their kinds and stay valid (records.py rule 3). A version 2
   archive stays version 2, a version 3 one version 3 (layout.py rule 5).
7. Every leaf is hashed under the archive's own leaf rule (records.py rule 2), taken from
   its `archive.json` when opened: a new archive is version 3; an old one is written
   with the rule its existing entries and checkpoints were made with.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from proxy.archive import layout
from proxy.archive.errors import ArchiveCorrupt, ArchiveLocked, ArchiveUnavailable
from proxy.archive.merkle import MerkleTree
from proxy.archive.note import Checkpoint, NoteError, Signer, Verifier
from proxy.archive.reader import (
    Damage,
    SegmentScan,
    contiguous_segments,
    frames,
    mapped,
    zeros_from,
)
from proxy.archive.records import HEADER_BYTES, MAGIC, EntryKind, Parts, encode_parts, entry_hash
from proxy.archive.segments import SUFFIX as SEGMENT_SUFFIX
from proxy.archive.segments import (
    SegmentPreparer,
    create_segment,
    raise_typed,
    segment_name,
)
from proxy.disk import fsync_directory, write_all
from proxy.errors import RetryLater

Clock = Callable[[], datetime]
_IOV_MAX = 1024
TIME_GRAIN = 600  # seconds: checkpoint times are rounded down to this (rule 5)


def coarse(moment: datetime) -> datetime:
    """`moment` rounded down to `TIME_GRAIN` (rule 5), in UTC."""
    seconds = int(moment.timestamp())
    return datetime.fromtimestamp(seconds - seconds % TIME_GRAIN, UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """Proof of storage handed back to whoever appended: the entry's index and leaf hash."""

    index: int
    leaf_hash: bytes


class ArchiveLog:
    """The single writer of one archive directory. Blocking; see writer.py for asyncio."""

    def __init__(self, root: Path, lock_fd: int, signer: Signer, manifest: layout.Manifest) -> None:
        self.root = root
        self._rule = manifest.leaf_rule  # rule 7
        segment_bytes = manifest.segment_bytes
        self._lock_fd = lock_fd
        self._signer = signer
        self._segment_bytes = segment_bytes
        self._log_dir = root / layout.LOG_DIR
        self._preparer = SegmentPreparer(self._log_dir, segment_bytes)
        self.tree = MerkleTree()
        self.last_checkpoint = -1  # index of the latest checkpoint entry (-1: none yet)
        self._segment = 0
        self._fd = -1
        self._offset = 0
        self._capacity = 0
        self._latest_note: bytes | None = None  # the newest checkpoint note
        self._signed_at = 0  # the newest checkpoint's (coarse) time, in ns since the epoch
        self._head_stale = False  # the `checkpoint` file is older than _latest_note
        self._broken: str | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, segment_bytes: int | None = None,
        clock: Clock = _utc_now,
    ) -> ArchiveLog:  # fmt: skip
        """Open (creating on first use) the archive at `path` for writing; a new archive's
        segments are `segment_bytes` long (by default `layout.new_segment_bytes()`)."""
        root = Path(path)
        try:
            if not root.exists():
                if not root.parent.is_dir():
                    raise ArchiveUnavailable(f"{root.parent} does not exist; no archive there")
                root.mkdir(mode=0o700)
            if not root.is_dir():
                raise ArchiveUnavailable(f"{root} is not a directory")
            lock_fd = _lock(root)
        except OSError as error:
            raise_typed(error, f"opening {root}")
            raise  # unreachable: raise_typed always raises
        try:
            if not (root / layout.MANIFEST).exists():
                size = layout.new_segment_bytes() if segment_bytes is None else segment_bytes
                log = cls._create(root, lock_fd, size, clock)
            else:
                log = cls._reopen(root, lock_fd, clock)
        except BaseException:
            os.close(lock_fd)
            raise
        log._preparer.wait()  # the next segment is made before traffic, however slow the disk
        return log

    @classmethod
    def _create(cls, root: Path, lock_fd: int, segment_bytes: int, clock: Clock) -> ArchiveLog:
        _clear_unfinished_creation(root)
        origin = f"{layout.ORIGIN_PREFIX}{secrets.token_hex(8)}"
        signer = Signer.generate(origin)
        try:
            _write_new(root / layout.SIGNING_KEY, signer.to_pem())
            _write_new(root / layout.VERIFIER_KEY, (signer.verifier.encode() + "\n").encode())
            (root / layout.LOG_DIR).mkdir(mode=0o700)
            create_segment(root / layout.LOG_DIR, 1, segment_bytes)
            manifest = layout.Manifest(
                origin=origin, segment_bytes=segment_bytes, version=layout.VERSION
            )
            _write_new(root / layout.MANIFEST, layout.manifest_bytes(manifest))
            fsync_directory(root)
        except OSError as error:
            raise_typed(error, f"creating the archive in {root}")
        log = cls(root, lock_fd, signer, manifest)
        log._use_segment(1, 0)
        log.append([], checkpoint=True, now=clock())
        log.publish_head()
        return log

    @classmethod
    def _reopen(cls, root: Path, lock_fd: int, clock: Clock) -> ArchiveLog:
        manifest = layout.read_manifest(root)
        try:
            signer = Signer.from_pem(manifest.origin, (root / layout.SIGNING_KEY).read_bytes())
            verifier = Verifier.decode((root / layout.VERIFIER_KEY).read_text())
        except (OSError, NoteError, UnicodeDecodeError) as error:
            raise ArchiveCorrupt(f"the archive's signing keys are unusable: {error}") from error
        if verifier != signer.verifier:
            raise ArchiveCorrupt("signing.pub does not match the archive's signing key")
        log = cls(root, lock_fd, signer, manifest)
        log._recover(verifier)
        upgraded = manifest.for_writing()
        if upgraded != manifest:  # rule 6: version 1 to 2 only, the same leaf rule
            layout.replace_file(root / layout.MANIFEST, layout.manifest_bytes(upgraded))
        log.append([], checkpoint=True, now=clock())  # rule 3: whether or not any are unsigned
        log.publish_head()
        return log

    def _recover(self, verifier: Verifier) -> None:
        head_size = layout.read_head_size(self.root, verifier)
        try:
            numbers = contiguous_segments(self._log_dir)
        except Damage as damage:
            raise ArchiveCorrupt(f"the archive's log is damaged: {damage}") from damage
        if not numbers:
            raise ArchiveCorrupt("the archive's log has no segments")
        end_segment, end_offset, torn = numbers[-1], 0, None
        for number in numbers:
            end, torn = self._scan_segment(number, head_size)
            if end or number == 1 or torn is not None:
                end_segment, end_offset = number, end
            if torn is not None:
                break
        if torn is not None:
            if self.tree.size < head_size or self._later_batch_after(numbers, torn, verifier):
                raise ArchiveCorrupt(f"entry {self.tree.size} is damaged ({torn}); nothing changed")
            self._discard_tail(numbers, end_segment, end_offset)
        if head_size > self.tree.size:
            raise ArchiveCorrupt("the log is shorter than its latest checkpoint: entries are gone")
        self._use_segment(end_segment, end_offset)

    def _scan_segment(self, number: int, head_size: int) -> tuple[int, Damage | None]:
        """Add one segment's records to the tree; (where they end, the damage if any)."""
        with mapped(self._log_dir / segment_name(number)) as buffer:
            scan = SegmentScan(number, buffer)
            try:
                for record in scan:
                    header = record.header
                    if header.index != self.tree.size:
                        raise Damage(number, record.offset, "entry out of sequence")
                    unsigned = header.index >= max(head_size, self.last_checkpoint + 1)
                    if unsigned and (
                        entry_hash(header.kind, header.index, record.body, rule=self._rule)
                        != record.stored_hash
                    ):
                        raise Damage(number, record.offset, "incomplete entry")
                    self.tree.append(record.stored_hash)
                    if header.kind is EntryKind.CHECKPOINT:
                        self.last_checkpoint = header.index
                        self._latest_note = bytes(record.body)
                    del record
            except Damage as damage:
                return damage.offset, damage
            return scan.end, None

    def _later_batch_after(self, numbers: list[int], damage: Damage, verifier: Verifier) -> bool:
        """Whether a later, separately written batch follows the damage.

        A crash can only tear the last batch: batch k+1 is written after batch k's
        fdatasync. A batch ends with its checkpoint, if it has one. So a valid signed
        checkpoint with any record after it, beyond the damage, proves the damaged entry
        was durably written and acknowledged: it is damage, not a torn write. Records are
        re-found after broken framing by looking for the record magic.
        """
        seen_checkpoint = False
        for number in (n for n in numbers if n >= damage.segment):
            with mapped(self._log_dir / segment_name(number)) as buffer:
                position = damage.offset + 1 if number == damage.segment else 0
                data = bytes(buffer)  # only after damage: one copy per segment, to search
                while (position := data.find(MAGIC, position)) >= 0:
                    found, end, _ = frames(buffer, number, position)
                    for offset, kind, _, length in found:
                        if seen_checkpoint:
                            return True
                        if kind is EntryKind.CHECKPOINT:
                            body = bytes(
                                buffer[offset + HEADER_BYTES : offset + HEADER_BYTES + length]
                            )
                            try:
                                verifier.open(body)
                                seen_checkpoint = True
                            except NoteError:
                                pass
                    position = max(end, position + 1)
        return False

    def _discard_tail(self, numbers: list[int], segment: int, offset: int) -> None:
        """Zero a torn tail (never acknowledged) so the log ends cleanly at `offset`."""
        for number in (n for n in numbers if n >= segment):
            path = self._log_dir / segment_name(number)
            start = offset if number == segment else 0
            fd = os.open(path, os.O_WRONLY)
            try:
                length = os.fstat(fd).st_size - start
                position = start
                while length > 0:
                    chunk = min(length, 1 << 20)
                    position += os.pwrite(fd, bytes(chunk), position)
                    length -= chunk
                os.fdatasync(fd)
            finally:
                os.close(fd)

    # -- writing -------------------------------------------------------------------------

    def _use_segment(self, number: int, offset: int) -> None:
        path = self._log_dir / segment_name(number)
        fd = os.open(path, os.O_RDWR)
        if self._fd >= 0:
            os.close(self._fd)
        self._segment, self._fd, self._offset = number, fd, offset
        self._capacity = os.fstat(fd).st_size
        self._preparer.start(number + 1)

    def append(
        self,
        entries: Sequence[tuple[EntryKind, bytes]],
        *,
        checkpoint: bool,
        now: datetime,
        publish: bool = True,
    ) -> list[Receipt]:
        """Store `entries` durably (and, if asked, a checkpoint after them).

        With `publish`, a new checkpoint is also written to the `checkpoint` file before
        returning; the asyncio writer passes False and writes it on another thread.
        """
        if self._broken is not None:
            raise ArchiveUnavailable(f"the archive stopped after a write error ({self._broken})")
        start_size = self.tree.size
        records: list[Parts] = []
        receipts: list[Receipt] = []
        for kind, body in entries:
            record, digest = encode_parts(kind, self.tree.size, body, rule=self._rule)
            receipts.append(Receipt(index=self.tree.size, leaf_hash=digest))
            records.append(record)
            self.tree.append(digest)
        note = None
        signed_at = self._signed_at
        if checkpoint:
            size, stamp = self.tree.size, coarse(now)
            note = self._signer.sign(
                Checkpoint(origin=self._signer.name, size=size, root=self.tree.root(), time=stamp)
                .body()
            )  # fmt: skip
            signed_at = int(stamp.timestamp()) * 1_000_000_000
            record, digest = encode_parts(EntryKind.CHECKPOINT, size, note, rule=self._rule)
            records.append(record)
            self.tree.append(digest)
        try:
            self._write(records, signed_at)
        except BaseException:
            self.tree.truncate(start_size)
            raise
        self._signed_at = signed_at
        if note is not None:
            self.last_checkpoint = self.tree.size - 1
            self._latest_note, self._head_stale = note, True
            if publish:
                self.publish_head()
        return receipts

    def _write(self, records: list[Parts], signed_at: int) -> None:
        """Write a batch: first every segment it needs is made ready, then the bytes go in.

        Any segment the batch rolls into is created (or found prepared) before a byte is
        written, so running out of room fails the batch cleanly, with nothing on disk.
        A failure while writing poisons the writer (rule 2).
        """
        if os.fstat(self._fd).st_nlink == 0:
            raise ArchiveUnavailable("the archive's current segment was deleted")
        groups: list[list[Parts]] = [[]]
        segment, used, capacity = self._segment, self._offset, self._capacity
        for record in records:
            size = sum(map(len, record))
            if used + size > capacity:
                segment += 1
                capacity = self._preparer.take(segment, size).stat().st_size
                used = 0
                groups.append([])
            groups[-1].append(record)
            used += size
        try:
            for index, group in enumerate(groups):
                if index:
                    self._use_segment(self._segment + 1, 0)
                self._flush(group)
                os.utime(self._fd, ns=(signed_at, signed_at))  # rule 5
        except OSError as error:
            self._broken = error.strerror or type(error).__name__
            raise_typed(error, "appending")

    def _flush(self, pending: list[Parts]) -> None:
        buffers = [part for record in pending for part in record if part]
        if not buffers:
            return
        offset = self._offset
        for start in range(0, len(buffers), _IOV_MAX):
            chunk = buffers[start : start + _IOV_MAX]
            expected = sum(map(len, chunk))
            written = os.pwritev(self._fd, chunk, offset)
            if written < expected:  # a short write (rare on files): finish it plainly
                rest = memoryview(b"".join(chunk))[written:]
                while rest:
                    step = os.pwrite(self._fd, rest, offset + written)
                    rest, written = rest[step:], written + step
            offset += expected
        os.fdatasync(self._fd)
        self._offset = offset

    @property
    def signed_at(self) -> int:
        """The latest checkpoint's (coarse) time, in ns since the epoch (rule 5)."""
        return self._signed_at

    def derive_key(self, purpose: bytes) -> bytes:
        """A secret key for `purpose`, derived from the archive's signing key."""
        return self._signer.derive_key(purpose)

    @property
    def latest_note(self) -> bytes | None:
        """The newest signed checkpoint note (C2SP text), as the `checkpoint` file holds it."""
        return self._latest_note

    @property
    def unsigned(self) -> int:
        """How many entries come after the latest checkpoint (not yet signed)."""
        return self.tree.size - self.last_checkpoint - 1

    def take_head(self) -> bytes | None:
        """The newest checkpoint note if the `checkpoint` file lags it; the caller writes it."""
        if not self._head_stale:
            return None
        self._head_stale = False
        return self._latest_note

    def publish_head(self) -> None:
        """Write the newest checkpoint to the `checkpoint` file (atomic replace)."""
        if self._latest_note is None:
            return
        try:
            layout.replace_file(self.root / layout.HEAD, self._latest_note)
        except OSError as error:
            raise_typed(error, "writing the checkpoint file")
        self._head_stale = False

    def close(self, *, now: datetime | None = None) -> None:
        """Sign whatever is unsigned, publish the head, and let go of the lock."""
        try:
            if self._broken is None:  # rule 3: whether or not any are unsigned
                try:
                    self.append([], checkpoint=True, now=now or _utc_now())
                except RetryLater:
                    if self.unsigned:  # entries need it: say so; else nothing is lost
                        raise
            if self._broken is None:
                self.publish_head()
        finally:
            self._preparer.wait()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._lock_fd)


def _clear_unfinished_creation(root: Path) -> None:
    """Remove what an interrupted `_create` left, or refuse if anything else is there.

    archive.json is written before the first entry, so without it no entry was ever
    acknowledged; still, only our own files are removed, and only if every segment is
    entirely zeros: anything else means this is not a half-made archive, and it is kept.
    """
    ours = {layout.LOCK, layout.SIGNING_KEY, layout.VERIFIER_KEY, layout.LOG_DIR,
            layout.MANIFEST + ".tmp", layout.HEAD + ".tmp"}  # fmt: skip
    names = set(os.listdir(root))
    log_dir = root / layout.LOG_DIR
    if names - ours or (log_dir in root.iterdir() and not log_dir.is_dir()):
        raise ArchiveCorrupt(f"{root} is not empty and holds no nocontact archive")
    if log_dir.is_dir():
        for entry in log_dir.iterdir():
            if not entry.name.endswith((SEGMENT_SUFFIX, SEGMENT_SUFFIX + ".tmp")):
                raise ArchiveCorrupt(f"{root} is not empty and holds no nocontact archive")
            with mapped(entry) as buffer:
                if not zeros_from(buffer, 0):
                    raise ArchiveCorrupt(f"{root} holds entries but no archive.json")
    try:
        for name in names - {layout.LOCK}:
            path = root / name
            if path.is_dir():
                for entry in path.iterdir():
                    entry.unlink()
                path.rmdir()
            else:
                path.unlink()
    except OSError as error:
        raise_typed(error, f"clearing an unfinished archive in {root}")


def _lock(root: Path) -> int:
    fd = os.open(root / layout.LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ArchiveLocked(
            f"the archive {root} is in use by another nocontact process (pid {holder}); "
            "stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
