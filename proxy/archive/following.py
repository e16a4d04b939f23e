"""Following an archive for a long-running reader (the portal): verified once, then only
what is new, and every entry read checked against the verified tree.

Rules this module keeps:
1. The first `refresh` is the whole keyless check (verify.py); each later one checks the
   manifest and verifier key again (another key, origin or leaf rule: a whole check),
   goes on from the latest signed checkpoint it met (verify.py rule 5) and checks the
   `checkpoint` file against the log. Its cost follows what was added since, not the
   archive's size.
2. What was checked is not trusted to stay so: `entry` reads one entry where the walk
   found it and compares its hash, under the archive's leaf rule (layout.py rule 5, as
   the walk took it from `archive.json`), with the tree's leaf; a change since is
   `VerifyFailure` and the follower starts over, so the next `refresh` is a whole check
   again.
3. Any failed refresh forgets everything: the next one starts from the first entry.
4. A log cut back and refilled behind the follower's back must not pass for the one it
   checked: each later `refresh` first reads the latest signed checkpoint entry it met
   again (rule 2), and a `checkpoint` file smaller than at the last refresh means the
   log may have been rolled back: either way the refresh is a whole check, so the
   report is of the log as it is now (continuation.py then tells a rollback).
5. One follower per archive directory per process (`follower`), shared by every session
   and safe across threads (one refresh or read at a time).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

from proxy.archive import layout
from proxy.archive.reader import mapped
from proxy.archive.records import HASH_BYTES, HEADER_BYTES, EntryKind, entry_hash
from proxy.archive.segments import segment_name
from proxy.archive.verify import LogWalk, VerifyFailure, VerifyReport, check_files


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One entry as stored, checked against the verified tree."""

    kind: EntryKind
    index: int
    body: bytes
    leaf_hash: bytes


class FollowedArchive:
    """An archive checked once in full, then as it grows (rules 1 to 3)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._walk: LogWalk | None = None
        self._report: VerifyReport | None = None
        self._lock = threading.Lock()

    def refresh(self) -> VerifyReport:
        """Check what was added since the last refresh (everything, the first time)."""
        with self._lock:
            try:
                manifest, verifier = check_files(self.root)
                walk = self._walk
                if (walk is None or walk.verifier != verifier or walk.origin != manifest.origin
                        or walk.rule is not manifest.leaf_rule
                        or not self._still_there(walk)):  # fmt: skip
                    walk = LogWalk(manifest, verifier)
                self._walk = None  # rule 3: kept only once the check passes
                before = walk.head_size
                report = walk.check(self.root)
                if walk.head_size < before:  # rule 4: the checkpoint file went back
                    walk = LogWalk(manifest, verifier)
                    report = walk.check(self.root)
            except VerifyFailure:
                self._walk = self._report = None
                raise
            self._walk, self._report = walk, report
            return report

    def _still_there(self, walk: LogWalk) -> bool:
        """Whether the latest signed checkpoint entry `walk` met is still as it was (rule 4)."""
        if walk.last is None:
            return True
        try:
            self._read(walk, range(walk.last.size, walk.last.size + 1))
        except VerifyFailure:
            return False
        return True

    def entries(self, indexes: range) -> list[Entry]:
        """Entries `indexes` (within the last refresh's checkpoint), each checked (rule 2)."""
        with self._lock:
            walk, report = self._walk, self._report
            if walk is None or report is None:
                raise VerifyFailure("the archive has not been checked yet")
            if indexes.start < 0 or indexes.stop > report.checkpoint.size:
                raise VerifyFailure(f"no entries {indexes.start} to {indexes.stop - 1} are signed")
            try:
                return self._read(walk, indexes)
            except VerifyFailure:
                self._walk = self._report = None
                raise

    def _read(self, walk: LogWalk, indexes: range) -> list[Entry]:
        found: list[Entry] = []
        log_dir = self.root / layout.LOG_DIR
        index = indexes.start
        try:
            with contextlib.ExitStack() as stack:
                buffers: dict[int, memoryview] = {}
                for index in indexes:
                    number, offset, length = walk.position(index)
                    if number not in buffers:
                        buffers.clear()  # entries come in log order: one segment at a time
                        buffers[number] = stack.enter_context(
                            mapped(log_dir / segment_name(number))
                        )
                    found.append(_checked(buffers[number], walk, index, offset, length))
        except (OSError, ValueError) as error:
            raise VerifyFailure(f"entry {index} cannot be read again: {error}") from error
        return found


def _checked(buffer: memoryview, walk: LogWalk, index: int, offset: int, length: int) -> Entry:
    header = buffer[offset : offset + HEADER_BYTES]
    body = bytes(buffer[offset + HEADER_BYTES : offset + HEADER_BYTES + length])
    if len(header) < HEADER_BYTES or len(body) < length:
        raise VerifyFailure(f"entry {index} is gone from its segment since it was verified")
    try:
        kind = EntryKind(header[4])
    except ValueError:
        raise VerifyFailure(f"entry {index} changed since it was verified") from None
    digest = entry_hash(kind, index, body, rule=walk.rule)
    if digest != walk.tree.leaf(index) or len(buffer) < offset + HEADER_BYTES + length + HASH_BYTES:
        raise VerifyFailure(f"entry {index} changed since it was verified")
    return Entry(kind=kind, index=index, body=body, leaf_hash=digest)


_followers: dict[Path, FollowedArchive] = {}
_followers_lock = threading.Lock()


def follower(root: Path) -> FollowedArchive:
    """This process's follower of the archive at `root` (rule 5)."""
    key = root.resolve()
    with _followers_lock:
        found = _followers.get(key)
        if found is None:
            found = _followers[key] = FollowedArchive(key)
        return found
