"""`nocontact verify`: check a whole archive with no decryption key.

Rules this module keeps:
1. Read-only, keyless: it needs the archive directory and nothing else (optionally a
   pinned verifier key), so a contact, a court's examiner or the survivor can run it on a
   copy.
2. Everything is re-derived, nothing trusted: every entry is re-hashed under the leaf rule
   of the archive's version (layout.py rule 5: the body itself for versions 1 and 2, its
   SHA-256 for version 3) and its stored hash compared; the RFC 6962 tree is rebuilt;
   every checkpoint's signature, origin, size and root are checked against the rebuilt
   tree, and each checkpoint is proven consistent with the one before (RFC 9162
   consistency proof); the `checkpoint` file must match the log, so entries cut off the
   end are caught; bytes after the last entry must be zeros.
3. The first problem ends the check and is reported by entry index; no message quotes
   content (there is none in the clear to quote).
4. A log that a live writer is appending to may end in entries not yet signed; they are
   checked but not counted. With no live writer, unsigned entries mean the writer died
   before closing: that is reported, and opening the archive signs them.
5. A `LogWalk` can be checked again later (a process that reads the archive for long,
   like the portal): it goes on from the entry after the latest signed checkpoint it
   met, with every rule above for what follows, and remembers where each entry lies
   and the `checkpoint` file's size (`head_size`: following.py rule 4).
   What it checked before is not read again; a reader of an old entry checks it against
   the rebuilt tree instead (following.py). A resumed check looks for stray bytes only in
   the first MiB after the last entry, not to the segment's end (64 MiB of zeros on every
   page would be most of a page's time): the whole check (the first, and `nocontact
   verify`) still looks at every byte, and bytes further on are framed and checked like
   any other once the log reaches them.
"""

from __future__ import annotations

import errno
import fcntl
import os
from array import array
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from proxy.archive import layout
from proxy.archive.errors import ArchiveCorrupt
from proxy.archive.merkle import MerkleTree, verify_consistency
from proxy.archive.note import Checkpoint, NoteError, Verifier, parse_checkpoint
from proxy.archive.reader import Damage, Frame, contiguous_segments, frames, mapped, zeros_from
from proxy.archive.records import (
    HASH_BYTES,
    HEADER_BYTES,
    OVERHEAD,
    EntryKind,
    LeafRule,
    entry_hash,
)
from proxy.archive.segments import segment_name

_HASH_CHUNK = 256
_RESUMED_ZEROS = 1 << 20  # a resumed check looks this far past the last entry (rule 5)
_NOTE = EntryKind.CHECKPOINT


class VerifyFailure(Exception):
    """The archive does not verify; the message names the first bad entry or file."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries: int  # entries covered by the latest signed checkpoint, that one included
    checkpoint: Checkpoint
    verifier: Verifier
    note: bytes  # the latest checkpoint entry's signed note, exactly as stored
    tree: MerkleTree  # every entry's leaf hash, as rebuilt (for inclusion proofs)
    version: int  # the archive's format version, which says its leaf rule (layout.py rule 5)


def verify_archive(path: str | os.PathLike[str], *, pinned: Verifier | None = None) -> VerifyReport:
    """Check the archive at `path`; raise VerifyFailure at the first problem."""
    root = Path(path)
    manifest, verifier = check_files(root, pinned)
    walk = LogWalk(manifest, verifier)
    return walk.check(root)


def check_files(root: Path, pinned: Verifier | None = None) -> tuple[layout.Manifest, Verifier]:
    """The archive's manifest and verifier key, each checked to be exactly as written."""
    if not (root / layout.MANIFEST).is_file():
        raise VerifyFailure(f"{root}: not a nocontact archive (no {layout.MANIFEST})")
    try:
        manifest = layout.read_manifest(root)
        verifier_text = (root / layout.VERIFIER_KEY).read_text()
        verifier = Verifier.decode(verifier_text)
        exact = (root / layout.MANIFEST).read_bytes() == layout.manifest_bytes(manifest)
    except (ArchiveCorrupt, NoteError, OSError, UnicodeDecodeError) as error:
        raise VerifyFailure(f"{root}: {error}") from error
    if not exact:
        raise VerifyFailure(f"{layout.MANIFEST} has been edited")
    if verifier_text != verifier.encode() + "\n":
        raise VerifyFailure(f"{layout.VERIFIER_KEY} has been edited")
    if verifier.name != manifest.origin:
        raise VerifyFailure(f"{layout.VERIFIER_KEY} is for another archive ({verifier.name})")
    if pinned is not None and pinned != verifier:
        raise VerifyFailure(f"{layout.VERIFIER_KEY} is not the key you gave (--key)")
    return manifest, verifier


class LogWalk:
    """A pass over the records, rebuilding the tree and checking checkpoints; `check` may
    be called again to go on from the latest signed checkpoint (rule 5). It remembers
    where each entry lies (`position`)."""

    def __init__(self, manifest: layout.Manifest, verifier: Verifier) -> None:
        self.origin = manifest.origin
        self.segment_bytes = manifest.segment_bytes
        self.version = manifest.version
        self.rule = manifest.leaf_rule
        self.verifier = verifier
        self.tree = MerkleTree()
        self.last: Checkpoint | None = None
        self.last_note = b""
        self.head_size = 0  # the `checkpoint` file's size at the last check
        self._resumed = False  # this check goes on from an earlier one (rule 5)
        self._segments = array("I")  # per entry: its segment number,
        self._offsets = array("Q")  # where its record starts,
        self._lengths = array("I")  # and its body's length

    def check(self, root: Path) -> VerifyReport:
        """Walk the log from the entry after the latest signed checkpoint met so far (from
        the start, the first time), then check the `checkpoint` file against it."""
        self._back_to_signed()
        self._resumed = self.tree.size > 0
        start = (self._segments[-1], self._end_of(self.tree.size - 1)) if self.tree.size else (1, 0)
        self._run(root / layout.LOG_DIR, live=writer_is_live(root), start=start)
        head = _head(root, self.verifier)
        if self.last is None:
            raise VerifyFailure("the log has no signed checkpoint")
        if head.size > self.last.size:
            raise VerifyFailure(
                f"the log is shorter than its latest checkpoint ({head.size} entries): "
                "entries were removed from the end"
            )
        if head.origin != self.origin or head.root != self.tree.root(head.size):
            raise VerifyFailure(f"the {layout.HEAD} file does not match the log")
        self.head_size = head.size
        return VerifyReport(entries=self.last.size + 1, checkpoint=self.last,
                            verifier=self.verifier, note=self.last_note,
                            tree=self.tree, version=self.version)  # fmt: skip

    def position(self, index: int) -> tuple[int, int, int]:
        """Entry `index`'s segment, record offset and body length."""
        return self._segments[index], self._offsets[index], self._lengths[index]

    def _end_of(self, index: int) -> int:
        return self._offsets[index] + OVERHEAD + self._lengths[index]

    def _back_to_signed(self) -> None:
        """Forget the entries after the latest checkpoint: they are read again."""
        keep = self.last.size + 1 if self.last is not None else 0
        self.tree.truncate(keep)
        del self._segments[keep:], self._offsets[keep:], self._lengths[keep:]

    def _run(self, log_dir: Path, *, live: bool, start: tuple[int, int]) -> None:
        try:
            numbers = contiguous_segments(log_dir)
        except Damage as damage:
            raise VerifyFailure(f"the log is damaged: {damage}") from damage
        if not numbers:
            raise VerifyFailure("the log has no segment files")
        first, offset = start
        if first > len(numbers):
            raise VerifyFailure(f"segment {first}, checked before, is missing")
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as hashers:
            for number in numbers[first - 1 :]:
                with mapped(log_dir / segment_name(number)) as buffer:
                    at = offset if number == first else 0
                    if not self._segment(number, buffer, hashers, live=live, start=at):
                        return
        if self._unsigned_tail() and not live:
            first_unsigned = (self.last.size + 1) if self.last else 0
            raise VerifyFailure(
                f"entries {first_unsigned} to {self.tree.size - 1} are not covered by a signed "
                "checkpoint (the writer stopped without closing; opening the archive signs them)"
            )

    def _segment(
        self, number: int, buffer: memoryview, hashers: ThreadPoolExecutor, *, live: bool,
        start: int,
    ) -> bool:  # fmt: skip
        """Check one segment from `start`; False when a live writer's unfinished tail ends
        the walk."""
        if len(buffer) < self.segment_bytes:
            raise VerifyFailure(
                f"after entry {self.tree.size - 1}: segment {number} is shorter than "
                "the archive's segment size (cut)"
            )
        found, end, damage = frames(buffer, number, start)
        chunks = [found[i : i + _HASH_CHUNK] for i in range(0, len(found), _HASH_CHUNK)]
        if len(chunks) > 1:
            hashed: Iterable[list[bytes]] = hashers.map(
                lambda c: _digests(buffer, c, self.rule), chunks
            )
        else:  # a follower's few new entries: no thread for them
            hashed = [_digests(buffer, chunk, self.rule) for chunk in chunks]
        for chunk, digests in zip(chunks, hashed, strict=True):
            for (offset, kind, index, length), digest in zip(chunk, digests, strict=True):
                body_end = offset + HEADER_BYTES + length
                stored = bytes(buffer[body_end : body_end + HASH_BYTES])
                note = bytes(buffer[offset + HEADER_BYTES : body_end]) if kind is _NOTE else b""
                self._entry(kind, index, digest, stored, note)
                self._segments.append(number)
                self._offsets.append(offset)
                self._lengths.append(length)
        if damage is not None:
            if live and self._unsigned_tail():
                return False
            raise VerifyFailure(f"entry {self.tree.size}: {damage.reason}")
        tail = buffer[: end + _RESUMED_ZEROS] if self._resumed else buffer
        if not zeros_from(tail, end):
            if live and self._unsigned_tail():
                return False
            raise VerifyFailure(
                f"after entry {self.tree.size - 1}: unexpected bytes in segment "
                f"{number} after its last entry (tampering or an unfinished write)"
            )
        return True

    def _unsigned_tail(self) -> bool:
        covered = self.last.size + 1 if self.last is not None else 0
        return self.tree.size > covered

    def _entry(
        self, kind: EntryKind, index: int, digest: bytes, stored: bytes, note: bytes
    ) -> None:
        if index != self.tree.size:
            raise VerifyFailure(f"entry {self.tree.size}: out of sequence (says {index})")
        if digest != stored:
            raise VerifyFailure(f"entry {index}: content does not match its hash (changed)")
        if kind is EntryKind.CHECKPOINT:
            self._checkpoint(index, note)
        self.tree.append(digest)

    def _checkpoint(self, index: int, note: bytes) -> None:
        try:
            checkpoint = parse_checkpoint(self.verifier.open(note))
        except NoteError as error:
            raise VerifyFailure(f"entry {index}: checkpoint {error}") from error
        if checkpoint.origin != self.origin:
            raise VerifyFailure(f"entry {index}: checkpoint is for another archive")
        if checkpoint.size != index:
            raise VerifyFailure(f"entry {index}: checkpoint claims {checkpoint.size} entries")
        if checkpoint.root != self.tree.root():
            raise VerifyFailure(f"entry {index}: checkpoint root does not match the entries")
        previous = self.last
        if previous is not None and previous.size > 0:
            proof = self.tree.consistency_proof(previous.size, checkpoint.size)
            if not verify_consistency(
                previous.size, checkpoint.size, previous.root, checkpoint.root, proof
            ):
                raise VerifyFailure(f"entry {index}: checkpoint is not consistent with entry "
                                    f"{previous.size}'s")  # fmt: skip
        self.last, self.last_note = checkpoint, note


def _digests(buffer: memoryview, chunk: list[Frame], rule: LeafRule) -> list[bytes]:
    """Leaf hashes of a run of records (hashlib releases the GIL: runs on several cores)."""
    return [
        entry_hash(
            kind, index, buffer[offset + HEADER_BYTES : offset + HEADER_BYTES + length], rule=rule
        )
        for offset, kind, index, length in chunk
    ]


def _head(root: Path, verifier: Verifier) -> Checkpoint:
    try:
        return parse_checkpoint(verifier.open((root / layout.HEAD).read_bytes()))
    except FileNotFoundError as error:
        raise VerifyFailure(f"the {layout.HEAD} file is missing") from error
    except (OSError, NoteError) as error:
        raise VerifyFailure(f"the {layout.HEAD} file does not verify: {error}") from error


def writer_is_live(root: Path) -> bool:
    """True if another process holds the archive's writer lock right now."""
    try:
        fd = os.open(root / layout.LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)
    return False
