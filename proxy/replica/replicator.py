"""One pass of the replicator: the archive's signed log copied into the bucket as C2SP
tlog-tiles, in the layout docs/replication.md fixes (the contract with `verify --from` and
`restore`).

Rules this module keeps:
1. Only what verifies is uploaded (signed_archive.py): entries under a signed checkpoint that the
   archive's own keyless check accepted, each read again and checked against the tree
   just before it is sent. A check that fails part-way uploads up to the latest good
   signed checkpoint, then the pass fails with the check's line.
2. Whole, signed checkpoints only. For each signed checkpoint of size S the log holds
   past the bucket's, in log order: the blobs of the entries below S, the entry bundles
   and tiles of size S, then `checkpoints/<S>`. The newest is then copied to
   `checkpoint`. So the largest `checkpoints/<size>` in the bucket always has every
   object of its size below it, and is where a pass goes on from: a pass cut short (a
   crash, SIGTERM, S3 down) leaves the bucket at a whole checkpoint, and the next one
   repeats at most a few puts, which `put_once` finds already there.
3. The bucket must be this archive's, before anything is written: `archive.json` and
   `signing.pub` equal the archive's files (written once, first, when absent; a bucket's
   version 1 `archive.json` also matches the version 2 one a writer makes of it on
   opening, layout.py rule 5: the same origin, segments and leaves), and the
   bucket's latest checkpoint is, byte for byte, the archive's checkpoint entry of that
   size. A bucket ahead of the archive, or holding another checkpoint of that size (the
   archive rolled back or rewritten, or another archive's replica), is `ReplicaRefused`.
4. `public/<S>/recipients` and `public/<S>/custody-keys` (the files as they are when the
   pass publishes S) are written before `checkpoints/<S>` when either differs from the
   bucket's latest pair; a file the archive does not have is not written.
5. Bounded memory: blobs go through blob_sender.py, one PUT each and many at once (sent
   one by one the round trips, not the bytes, set the pace), holding at most
   `_IN_FLIGHT` bytes of bodies and `_QUEUED` blobs (a larger body goes alone), and all
   of them are in the bucket before anything of the checkpoint above them is written
   (rule 2); one level 0 row of at most 256 entries of 41 bytes; tile hashes are read
   from the walk's tree, which holds them already.
6. A pass with nothing new writes nothing. Within one process, where the bucket stands is
   remembered after a pass that succeeds, so such a pass sends no request at all; any
   failure forgets it, and the next pass lists the bucket again.
7. A version 1 or 2 archive (leaves over the whole body) is laid out the same way except
   its entry bundles: the same bundles of the same 41-byte entries go to `index/<N>`
   (tiles.py rule 7), never to `tile/entries/`, where they would not be tlog-tiles
   bundles. Its tiles are its own leaves, as for version 3.
8. The witnesses' cosignatures follow the log (witnessed_copies.py): after the log's
   objects, each pass uploads the archive's cosigned notes of replicated sizes that
   changed, as `witnessed/<size>/<sha256>`; a note that changed is something new (rule 6).
9. Nothing here logs or prints a count or a size: a pass returns an `Outcome`, which the
   process reduces to fixed words, and the size only goes to the state file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxy.archive import layout
from proxy.archive.merkle import MerkleTree
from proxy.archive.records import EntryKind, LeafRule, tile_entry
from proxy.errors import NocontactError
from proxy.replica.blob_sender import SENDERS, BlobSender
from proxy.replica.check import exact_manifest
from proxy.replica.signed_archive import ArchiveSource, Entries, Signed
from proxy.replica.store import ObjectStore, Placed
from proxy.replica.tiles import (
    HEIGHT,
    WIDTH,
    Tile,
    bundle_of,
    encode_bundle,
    last_bundle,
    tiles_for_size,
)
from proxy.replica.witnessed_copies import PREFIX as WITNESSED
from proxy.replica.witnessed_copies import LocalWitnessed

MANIFEST = "archive.json"
VERIFIER = "signing.pub"
LATEST = "checkpoint"
CHECKPOINTS = "checkpoints/"
BLOBS = "blobs/sha256/"
PUBLIC = "public/"
PUBLIC_FILES = (layout.RECIPIENTS, layout.CUSTODY_KEYS)
_IN_FLIGHT = 64 << 20  # bytes of bodies queued at most (rule 5)
_QUEUED = 4 * SENDERS  # blobs queued at most


class _Blobs:
    """Blob uploads in flight (rule 5): `send`, then `settle` before anything that must
    come after them; the first failure is raised by `settle`."""

    def __init__(self, store: ObjectStore) -> None:
        self._sender = BlobSender(store)
        self._bytes = 0

    def send(self, key: str, data: bytes) -> None:
        pending = self._sender.pending
        if pending and (self._bytes + len(data) > _IN_FLIGHT or pending >= _QUEUED):
            self.settle()
        self._sender.send(key, data)
        self._bytes += len(data)

    def settle(self) -> None:
        self._bytes = 0
        self._sender.settle()

    def close(self) -> None:
        self._sender.close()


class ReplicaRefused(NocontactError):
    """The bucket is not this archive's replica, or is ahead of it (rule 3): one line."""


class Stopped(NocontactError):
    """The pass was asked to stop; the bucket stands at a whole checkpoint (rule 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What a pass left: the bucket holds the archive's signed log up to `size`."""

    size: int  # for the state file only (rule 9)
    wrote: bool  # whether anything was written


def blob_key(body: bytes) -> str:
    return BLOBS + hashlib.sha256(body).hexdigest()


def checkpoint_key(size: int) -> str:
    return f"{CHECKPOINTS}{size}"


def tile_bytes(tree: MerkleTree, tile: Tile) -> bytes:
    """A tile's hashes from the tree: hash j of level L is the complete subtree of
    256**L leaves starting at leaf j * 256**L."""
    level = tile.level if tile.level is not None else 0
    return b"".join(
        tree.complete(HEIGHT * level, j) for j in range(tile.start, tile.start + tile.width)
    )


def _sizes(keys: list[str], prefix: str) -> list[int]:
    """The decimal sizes written right after `prefix` (other spellings are not ours)."""
    found = []
    for key in keys:
        name = key[len(prefix) :].split("/", 1)[0]
        if name.isascii() and name.isdigit() and str(int(name)) == name:
            found.append(int(name))
    return found


@dataclass(slots=True)
class _Row:
    """The tile entries of the level 0 tile being filled: [start, start + len(entries))."""

    start: int
    entries: list[bytes] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.start + len(self.entries)


class Replicator:
    """Passes from one archive into one bucket (rule 6 keeps what a pass learnt)."""

    def __init__(
        self, source: ArchiveSource, store: ObjectStore, *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:  # fmt: skip
        self._source = source
        self._store = store
        self._stopping = stopping
        self._position: int | None = None  # the bucket's latest checkpoint, once known
        self._note = b""  # and its note
        self._files_checked = False
        self._public: tuple[bytes | None, ...] | None = None
        self._row: _Row | None = None
        self._witnessed = LocalWitnessed(source.root)

    def run_pass(self) -> Outcome:
        """One pass (rules 1 to 6); every failure forgets what was learnt."""
        try:
            return self._pass()
        except BaseException:
            self._position = self._public = self._row = None
            self._note = b""
            self._files_checked = False
            self._witnessed.forget()
            raise

    def _pass(self) -> Outcome:
        signed = self._source.refresh()
        known = self._position is not None
        if known and signed.note == self._note and signed.failure is None:
            return Outcome(size=signed.size, wrote=self._cosigned(signed.size))  # rule 6
        if not self._files_checked:
            self._bucket_files(signed)
            self._files_checked = True
        position = self._position if known else self._bucket_position()
        wrote = False
        with self._source.entries() as entries:
            self._check_position(entries, signed, position)
            if position != signed.size:
                self._public_files(signed.size)
                self._stream(entries, signed, position)
                wrote = True
        if wrote or not known:
            wrote = self._store.replace(LATEST, signed.note) is Placed.WRITTEN or wrote
        if signed.failure is not None:
            raise signed.failure
        self._position, self._note = signed.size, signed.note
        wrote = self._cosigned(signed.size) or wrote
        return Outcome(size=signed.size, wrote=wrote)

    def _cosigned(self, size: int) -> bool:
        """Rule 8: the cosigned notes of sizes up to `size` that changed; whether any was
        written."""
        if not self._witnessed.knows_bucket:
            self._witnessed.know_bucket(self._store.keys(WITNESSED))
        wrote = False
        for copy in list(self._witnessed.changed(size)):
            wrote = self._store.put_once(copy.key, copy.data) is Placed.WRITTEN or wrote
            self._witnessed.uploaded(copy.key)
        return wrote

    def _bucket_files(self, signed: Signed) -> None:
        """Rule 3: the bucket's archive.json and signing.pub are this archive's."""
        for key, data in ((MANIFEST, signed.manifest), (VERIFIER, signed.verifier_key)):
            there = self._store.get(key)
            if there is None:
                self._store.put_once(key, data)
            elif there != data and not (key == MANIFEST and upgraded(there, data)):
                raise ReplicaRefused(
                    f"the bucket's {key} is not this archive's: it holds another archive's "
                    "replica (use another bucket or prefix)"
                )

    def _bucket_position(self) -> int | None:
        """The size of the bucket's largest `checkpoints/<size>` (None: none yet)."""
        sizes = _sizes(self._store.keys(CHECKPOINTS), CHECKPOINTS)
        return max(sizes) if sizes else None

    def _check_position(self, entries: Entries, signed: Signed, position: int | None) -> None:
        """Rule 3: the bucket's latest checkpoint is the archive's own of that size."""
        if position is None:
            return
        if position > signed.size:
            if signed.failure is not None:
                raise signed.failure
            raise ReplicaRefused(
                "the bucket holds a later checkpoint than this archive has: the archive was "
                "rolled back, or the bucket holds another archive's replica"
            )
        there = (
            self._note if self._position is not None else self._store.get(checkpoint_key(position))
        )
        if position == signed.size:
            ours: bytes | None = signed.note
        else:
            entry = entries.read(position)
            ours = entry.body if entry.kind is EntryKind.CHECKPOINT else None
        if there != ours:
            raise ReplicaRefused(
                "the bucket's latest checkpoint is not this archive's: the archive was rolled "
                "back or rewritten, or the bucket holds another archive's replica"
            )

    def _public_files(self, size: int) -> None:
        """Rule 4: a new pair of public files when either changed."""
        local = tuple(_read_or_none(self._source.root / name) for name in PUBLIC_FILES)
        if self._public is None:
            sizes = _sizes(self._store.keys(PUBLIC), PUBLIC)
            latest = max(sizes) if sizes else None
            self._public = tuple(
                None if latest is None else self._store.get(f"{PUBLIC}{latest}/{name}")
                for name in PUBLIC_FILES
            )
        if local == self._public or all(data is None for data in local):
            return
        for name, data in zip(PUBLIC_FILES, local, strict=True):
            if data is not None:
                self._store.put_once(f"{PUBLIC}{size}/{name}", data)
        self._public = local

    def _stream(self, entries: Entries, signed: Signed, position: int | None) -> None:
        """Rule 2, entry by entry from the bucket's checkpoint to the archive's latest."""
        blobs = _Blobs(self._store)
        try:
            self._stream_into(entries, signed, position, blobs)
        finally:
            blobs.close()

    def _stream_into(
        self, entries: Entries, signed: Signed, position: int | None, blobs: _Blobs
    ) -> None:
        own_path = signed.rule is LeafRule.BODY  # rule 7
        start = 0 if position is None else position
        row = self._row_at(entries, start)
        published = position
        for index in range(start, signed.size):
            if self._stopping():
                blobs.settle()
                raise Stopped("stopped: the bucket stands at a whole checkpoint")
            entry = entries.read(index)
            if entry.kind is EntryKind.CHECKPOINT and (published is None or index > published):
                blobs.settle()  # every blob below it is in the bucket first (rule 2)
                self._publish(signed, published, index, entry.body, row)
                published = index
            blobs.send(blob_key(entry.body), entry.body)
            row.entries.append(tile_entry(entry.kind, index, entry.body))
            if len(row.entries) == WIDTH:
                self._store.put_once(bundle_of(row.start, own_path=own_path).path,
                                     encode_bundle(row.entries))  # fmt: skip
                row = _Row(start=row.end)
        blobs.settle()
        if published != signed.size:
            self._publish(signed, published, signed.size, signed.note, row)
        self._row = row

    def _row_at(self, entries: Entries, position: int) -> _Row:
        """The level 0 row up to `position`: remembered from the last pass, or read again."""
        start = position - position % WIDTH
        if self._row is not None and (self._row.start, self._row.end) == (start, position):
            return self._row
        row = _Row(start=start)
        for index in range(start, position):
            entry = entries.read(index)
            row.entries.append(tile_entry(entry.kind, index, entry.body))
        return row

    def _publish(
        self, signed: Signed, before: int | None, size: int, note: bytes, row: _Row
    ) -> None:
        """Rule 2 for one checkpoint: its partial bundle, its new tiles, then its note.
        (Its blobs and full bundles were written as the entries streamed by.)"""
        tree = signed.tree
        if size % WIDTH:
            bundle = last_bundle(size, own_path=signed.rule is LeafRule.BODY)  # rule 7
            if (row.start, row.end) != (bundle.start, size):
                raise AssertionError("the row is not the partial bundle's")  # a bug, not data
            self._store.put_once(bundle.path, encode_bundle(row.entries))
        had = set(tiles_for_size(before or 0))
        for tile in tiles_for_size(size):
            if tile not in had:
                self._store.put_once(tile.path, tile_bytes(tree, tile))
        self._store.put_once(checkpoint_key(size), note)


def upgraded(there: bytes, ours: bytes) -> bool:
    """Whether the manifest `there` is `ours` before a writer upgraded it (rule 3)."""
    old, new = exact_manifest(there), exact_manifest(ours)
    return old is not None and new is not None and old != new and old.for_writing() == new


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ReplicaRefused(f"cannot read {path}: {error.strerror}") from None
