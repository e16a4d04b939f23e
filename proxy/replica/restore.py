"""Rebuilding a lost archive directory from its replica (`nocontact restore`).

Rules this module keeps:
1. Only a replica that verifies (check.py, every rule) is restored; otherwise nothing is
   written and the problems are returned to be shown.
2. The target must not exist or be an empty directory. Everything is written into a
   temporary sibling (0700, files 0600 as the writer makes them) and renamed onto the
   target at the end, so a failure leaves no half archive under the target's name.
3. The log is rewritten as the writer wrote it: every entry up to the newest signed
   checkpoint, then that checkpoint's own entry (its body is `checkpoints/<size>`), each
   framed by records.py under the leaf rule of the manifest's version (layout.py rule 5:
   version 3's over the body's SHA-256, versions 1 and 2's over the whole body), into
   segments of the manifest's `segment_bytes` filled as log.py fills them: a record goes
   into the current segment when it fits, else it starts the next one, made
   `max(segment_bytes, record)` long.
   So each segment holding entries is byte-identical to the lost one. Each blob is hashed
   again as it is read, and each record's leaf must be the tree's.
4. Beside the log: `archive.json` and `signing.pub` exactly as replicated, `checkpoint`
   (the newest signed note), and the newest `public/<size>/recipients` and
   `custody-keys` at or below the restored size, and `witnessed/<size>`, the best copy
   of each cosigned note the replica holds (check.py rule 7), so evidence bundles made
   from the restored archive carry the witnesses' cosignatures. There is no
   `signing.key` (the replica never had one): the restored archive is evidence to verify
   and read; a daemon that goes on holding starts a new archive (docs/replication.md).
5. Every failure is `RestoreFailed`, one line, and the temporary directory is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from proxy.archive import layout
from proxy.archive.records import EntryKind, LeafRule, encode_parts, entry_hash
from proxy.archive.segments import segment_name
from proxy.disk import fsync_directory, write_all
from proxy.errors import NocontactError
from proxy.replica.check import PUBLIC, Replica, ReplicaReport
from proxy.witness.witnessed import DIRECTORY as WITNESSED_DIRECTORY


class RestoreFailed(NocontactError):
    """The archive could not be restored; the message says why, in one line."""


def restore(replica: Replica, report: ReplicaReport, target: Path) -> None:
    """Write the archive `report` describes into `target` (rules 2 to 5); `report` must
    be a verified one (rule 1)."""
    if not report.ok or report.manifest is None or report.checkpoint is None:
        raise RestoreFailed("the replica does not verify: nothing was restored")
    _usable(target)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.restoring-", dir=target.parent))
    try:
        _write(replica, report, temporary)
        os.rename(temporary, target)
        fsync_directory(target.parent)
    except OSError as error:
        shutil.rmtree(temporary, ignore_errors=True)
        raise RestoreFailed(
            f"cannot write the archive in {target.parent}: {error.strerror}"
        ) from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _usable(target: Path) -> None:
    """Rule 2: a new name, or an empty directory, in a directory that exists."""
    if not target.parent.is_dir():
        raise RestoreFailed(f"{target.parent} does not exist")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise RestoreFailed(f"{target} is not a directory: nothing was restored")
    if target.is_dir() and any(target.iterdir()):
        raise RestoreFailed(f"{target} is not empty: restore writes only into a new directory")


def _file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(replica: Replica, report: ReplicaReport, root: Path) -> None:
    assert report.manifest is not None
    assert report.checkpoint is not None
    root.chmod(0o700)
    _file(root / layout.MANIFEST, report.manifest_bytes)
    _file(root / layout.VERIFIER_KEY, report.verifier_bytes)
    log_dir = root / layout.LOG_DIR
    log_dir.mkdir(mode=0o700)
    rule = report.manifest.leaf_rule
    segments = _Segments(log_dir, report.manifest.segment_bytes, rule)
    try:
        for entry in report.entries:
            body = replica.get(entry.blob)
            if body is None or hashlib.sha256(body).digest() != entry.digest:
                raise RestoreFailed(f"{entry.blob} changed or went away during the restore")
            segments.place(entry.kind, entry.index, body, report.tree.leaf(entry.index))
        last = report.checkpoint.size
        checkpoint_leaf = entry_hash(EntryKind.CHECKPOINT, last, report.note, rule=rule)
        segments.place(EntryKind.CHECKPOINT, last, report.note, checkpoint_leaf)
    finally:
        segments.close(report.checkpoint.time.timestamp())
    fsync_directory(log_dir)
    _file(root / layout.HEAD, report.note)
    recipients, custody_keys = _public(replica, report, last + 1)
    _file(root / layout.RECIPIENTS, recipients)
    _file(root / layout.CUSTODY_KEYS, custody_keys)
    if report.witnessed:
        witnessed = root / WITNESSED_DIRECTORY
        witnessed.mkdir(mode=0o700)
        for size, note in sorted(report.witnessed.items()):
            _file(witnessed / str(size), note)
        fsync_directory(witnessed)
    fsync_directory(root)


class _Segments:
    """Rule 3: the writer's filling of segments, replayed."""

    def __init__(self, log_dir: Path, segment_bytes: int, rule: LeafRule) -> None:
        self._dir = log_dir
        self._segment_bytes = segment_bytes
        self._rule = rule
        self._number = 0
        self._fd = -1
        self._used = 0
        self._capacity = 0
        self._made: list[Path] = []

    def place(self, kind: EntryKind, index: int, body: bytes, leaf: bytes) -> None:
        parts, digest = encode_parts(kind, index, body, rule=self._rule)
        if digest != leaf:
            raise RestoreFailed(f"entry {index} does not give the tree's leaf")
        size = sum(map(len, parts))
        if self._fd < 0 or self._used + size > self._capacity:
            self._next(max(self._segment_bytes, size))
        offset = self._used
        for part in parts:
            written = 0
            while written < len(part):
                written += os.pwrite(self._fd, memoryview(part)[written:], offset + written)
            offset += len(part)
        self._used = offset

    def _next(self, capacity: int) -> None:
        self._finish()
        self._number += 1
        path = self._dir / segment_name(self._number)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, capacity)  # zeros, as a prepared segment holds
        self._made.append(path)
        self._used, self._capacity = 0, capacity

    def _finish(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self, signed_at: float) -> None:
        """Finish the last segment; every segment dated as the newest checkpoint (the
        writer dates segments by checkpoints only: log.py rule 5)."""
        self._finish()
        for path in self._made:
            with contextlib.suppress(OSError):
                os.utime(path, (signed_at, signed_at))


def _public(replica: Replica, report: ReplicaReport, size: int) -> tuple[bytes, bytes]:
    """Rule 4: the newest pair of public files at or below `size`. A source that cannot
    list is asked at the restored size and each checkpoint's size, newest first."""
    listed = replica.keys(PUBLIC)
    if listed is None:
        candidates = sorted({size, size - 1, *report.checkpoint_sizes}, reverse=True)
    else:
        found = set()
        for key in listed:
            parts = key.split("/")
            if len(parts) == 3 and parts[1].isascii() and parts[1].isdigit():
                found.add(int(parts[1]))
        candidates = sorted((s for s in found if s <= size), reverse=True)
    for candidate in candidates:
        recipients = replica.get(f"{PUBLIC}{candidate}/{layout.RECIPIENTS}")
        custody_keys = replica.get(f"{PUBLIC}{candidate}/{layout.CUSTODY_KEYS}")
        if recipients is not None and custody_keys is not None:
            return recipients, custody_keys
    raise RestoreFailed(
        f"the replica has no {PUBLIC}<size>/{layout.RECIPIENTS} and {layout.CUSTODY_KEYS}: "
        "without them contacts could not record custody"
    )
