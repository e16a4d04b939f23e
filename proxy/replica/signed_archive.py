"""The sealed archive as the replicator reads it: read-only, and only what verifies.

Rules this module keeps:
1. Read-only and keyless: the archive directory's files are opened for reading and its
   segments mapped read-only; no lock is taken and no key is needed (verify.py rule 1).
2. Format versions 1, 2 and 3 (layout.py rule 5), each with its own leaf rule, which
   `Signed.rule` carries: version 3's leaves are the tlog-tiles leaves of 41-byte entries,
   versions 1 and 2's are over the whole body (docs/replication.md says how each is
   laid out). Any other version is refused with one line (`NotReplicable`) before any
   entry is read.
3. `refresh` is the archive's own keyless check (verify.py `LogWalk`): the first one
   whole, each later one going on from the latest signed checkpoint it met, as
   following.py does; another manifest or key, a `checkpoint` file gone back, or the
   latest checkpoint entry changed since it was checked, and the check is whole again.
4. A check that fails still says how far the log verified (`Signed.failure` beside the
   size): the latest signed checkpoint met before the first problem, whose tree covers
   only entries hashed and bound to its signature. Nothing past it is handed out. After a
   failure the next refresh is a whole check.
5. `Entries.read` takes one entry where the walk found it and checks its hash against the
   verified tree's leaf: an entry changed since the check is `VerifyFailure`, never
   uploaded. One segment is mapped at a time and one body held at a time.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from proxy.archive import layout
from proxy.archive.merkle import MerkleTree
from proxy.archive.reader import mapped
from proxy.archive.records import HASH_BYTES, HEADER_BYTES, EntryKind, LeafRule, entry_hash
from proxy.archive.segments import segment_name
from proxy.archive.verify import LogWalk, VerifyFailure, check_files
from proxy.errors import NocontactError

REPLICABLE_VERSIONS = (1, 2, 3)  # rule 2


class NotReplicable(NocontactError):
    """An archive the replica cannot carry (rule 2); the message says why, in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """How far the archive verifies: the latest good signed checkpoint and its tree."""

    size: int  # the tree size of that checkpoint (its entry's index)
    note: bytes  # its signed note, exactly as stored
    tree: MerkleTree  # leaf hashes, every one below `size` checked against the signature
    failure: VerifyFailure | None  # the first problem past it, if the check failed (rule 4)
    manifest: bytes  # archive.json exactly as on disk
    verifier_key: bytes  # signing.pub exactly as on disk
    rule: LeafRule  # the archive's leaf rule, from its version (rule 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    kind: EntryKind
    index: int
    body: bytes


class ArchiveSource:
    """One archive directory, checked once in full and then as it grows (rule 3)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._walk: LogWalk | None = None  # to go on from (rule 3)
        self._checked: LogWalk | None = None  # what the last refresh found, to read from

    def refresh(self) -> Signed:
        """The latest signed checkpoint that verifies (rules 2 to 4); `VerifyFailure` when
        not even one does, or the archive's files themselves do not."""
        manifest_bytes, verifier_key = self._files()
        manifest, verifier = check_files(self.root)
        if manifest.version not in REPLICABLE_VERSIONS:
            raise NotReplicable(
                f"{self.root} is an archive of format version {manifest.version}: only "
                "versions 1, 2 and 3 are replicated (docs/replication.md)"
            )
        walk = self._walk
        if (walk is None or walk.verifier != verifier or walk.origin != manifest.origin
                or not self._still_there(walk)):  # fmt: skip
            walk = LogWalk(manifest, verifier)
        self._walk = self._checked = None  # to go on from only once a check passes (rule 4)
        before = walk.head_size
        failure = None
        try:
            walk.check(self.root)
            if walk.head_size < before:  # the checkpoint file went back: check it all
                walk = LogWalk(manifest, verifier)
                walk.check(self.root)
        except VerifyFailure as problem:
            failure = problem
        else:
            self._walk = walk
        self._checked = walk
        if walk.last is None:
            raise failure or VerifyFailure("the log has no signed checkpoint")
        return Signed(size=walk.last.size, note=walk.last_note, tree=walk.tree,
                      failure=failure, manifest=manifest_bytes,
                      verifier_key=verifier_key, rule=manifest.leaf_rule)  # fmt: skip

    def entries(self) -> Entries:
        """A reader of the entries the last refresh checked (rule 5)."""
        if self._checked is None:
            raise VerifyFailure("the archive has not been checked yet")
        return Entries(self.root, self._checked)

    def forget(self) -> None:
        """Check the whole archive again at the next refresh."""
        self._walk = self._checked = None

    def _files(self) -> tuple[bytes, bytes]:
        try:
            return (
                (self.root / layout.MANIFEST).read_bytes(),
                (self.root / layout.VERIFIER_KEY).read_bytes(),
            )
        except OSError as error:
            raise VerifyFailure(f"{self.root}: cannot read the archive: {error.strerror}") from None

    def _still_there(self, walk: LogWalk) -> bool:
        """Whether the latest signed checkpoint entry `walk` met is still as it was."""
        if walk.last is None:
            return True
        try:
            with Entries(self.root, walk) as entries:
                entries.read(walk.last.size)
        except VerifyFailure:
            return False
        return True


class Entries:
    """Reads entries one at a time where the walk found them, each checked (rule 5)."""

    def __init__(self, root: Path, walk: LogWalk) -> None:
        self._log_dir = root / layout.LOG_DIR
        self._walk = walk
        self._stack = ExitStack()
        self._number = 0
        self._buffer = memoryview(b"")

    def __enter__(self) -> Entries:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:  # fmt: skip
        self._buffer = memoryview(b"")
        self._stack.close()

    def read(self, index: int) -> Entry:
        """Entry `index`, its hash checked against the verified tree's leaf."""
        walk = self._walk
        if not 0 <= index < walk.tree.size:
            raise VerifyFailure(f"entry {index} was not checked")
        try:
            number, offset, length = walk.position(index)
            if number != self._number:
                self._buffer = memoryview(b"")
                self._stack.close()
                self._buffer = self._stack.enter_context(
                    mapped(self._log_dir / segment_name(number))
                )
                self._number = number
            buffer = self._buffer
            body = bytes(buffer[offset + HEADER_BYTES : offset + HEADER_BYTES + length])
            if len(body) < length or len(buffer) < offset + HEADER_BYTES + length + HASH_BYTES:
                raise VerifyFailure(f"entry {index} is gone from its segment since it was checked")
            kind = EntryKind(buffer[offset + 4])
        except (OSError, ValueError) as error:
            raise VerifyFailure(f"entry {index} cannot be read again: {error}") from None
        if entry_hash(kind, index, body, rule=walk.rule) != walk.tree.leaf(index):
            raise VerifyFailure(f"entry {index} changed since it was checked")
        return Entry(kind=kind, index=index, body=body)
