"""Checking a replica bucket with no contact key: is it the archive's log, whole and signed?

Rules this module keeps:
1. Pure-ish: everything is read through a `Replica` (`get` a key's bytes or None, `keys`
   under a prefix or None when the source cannot list, as a static web server cannot);
   sources.py moves the bytes. Nothing here writes, and nothing needs a contact's key.
2. The layout is docs/replication.md's contract. `archive.json` must be the exact form of a
   version 1, 2 or 3 manifest and `signing.pub` the exact form of its key (equal to
   `--key` when one is pinned); without those nothing else can be checked, so they end
   the check. The manifest's version gives the leaf rule (rules 4 and 8). No signature
   covers `segment_bytes` (restore lays segments out by it): it must be one a writer
   makes, 4096 to 1 GiB.
3. The root is the largest `checkpoints/<size>` whose note verifies under the key and
   names the archive's origin and that size (found by listing, or, where the source cannot
   list, through `checkpoint`). A larger one that does not verify is a problem, never the
   root. `checkpoint` must be byte-equal to the `checkpoints/<size>` it names. A size is
   at most 19 digits (2**63 - 1); a longer name is not a checkpoint's.
4. The tiles and entry bundles of that size are bound to its root. The leaves are
   recomputed from the bundles: when they give the signed root, every tile must be the
   bytes those leaves give (a missing or altered tile is named); otherwise the tiles
   are checked on their own (tiled_tree.check), and when they give the root, the bundle
   that disagrees with its level 0 tile is named. Unbound entries end the check. The
   last entry bundle is fetched first: a size no bundle backs costs one request.
   This is version 3's check; versions 1 and 2 are checked by rule 8 instead.
5. Every entry (kind || index || SHA-256(body), 41 bytes) must have its index as its
   position; its blob `blobs/sha256/<hex>` must exist and hash to its name. A checkpoint
   entry's blob must be a note signed by the key, naming the origin, its own index as
   size and the tree's root at that size, and `checkpoints/<index>` must hold exactly it.
   Every other `checkpoints/<size>` found must verify and be consistent with the root
   (RFC 9162 consistency proof).
6. Problems are collected, one per object, each naming its key; none quotes a body.
   A key the listing gave that is not printable, or is longer than S3 allows
   (`_MOST_SHOWN`), is shown by its repr, cut: each problem is one line of text.
   The report carries what restore.py needs (the entries, the root's note, the leaves,
   the best good copy of each witnessed note).
7. Every `witnessed/<size>/<sha256>` must be good (witnessed_copies.py rule 3): a signed
   checkpoint of the replica's own tree. Where the source cannot list (a static web
   server), witnessed copies are not looked for.
8. Versions 1 and 2, whose leaves are over the whole body: the same 41-byte entries are
   in bundles at `index/<N>` (tiles.py rule 7) and are not leaves. Each entry is parsed
   as in rule 5, its blob must exist and hash to its digest, and its leaf is recomputed
   from its kind, index and the blob's body under the manifest's rule, one body held at a
   time. When the leaves give the signed root, every tile must be the bytes they give
   (a missing or altered tile is named); when every blob is good and they do not, the
   tiles are checked on their own and the index bundle that disagrees with its level 0
   tile is named. A missing or altered blob, or unbound entries, end the check. Rule 5's
   checks of checkpoint entries follow, their blobs read again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from proxy.archive import layout
from proxy.archive.merkle import MerkleTree, leaf_hash, verify_consistency
from proxy.archive.note import Checkpoint, NoteError, Verifier, parse_checkpoint
from proxy.archive.records import TILE_ENTRY_BYTES, EntryKind, LeafRule, entry_hash
from proxy.errors import NocontactError
from proxy.replica.signed_archive import REPLICABLE_VERSIONS
from proxy.replica.tiled_tree import TiledTree
from proxy.replica.tiles import (
    Tile,
    TileError,
    build_tiles,
    bundle_of,
    bundles_for_size,
    decode_bundle,
    decode_tile,
    last_bundle,
    tiles_for_size,
)
from proxy.replica.witnessed_copies import PREFIX as WITNESSED
from proxy.replica.witnessed_copies import best_copies, copy_problem

CHECKPOINTS = "checkpoints/"
LATEST = "checkpoint"
BLOBS = "blobs/sha256/"
PUBLIC = "public/"
_MOST_SHOWN = 1024  # an S3 key's longest, in bytes
_MOST_DIGITS = 19  # 2**63 - 1, the largest tree size, has 19 digits
_MOST_SEGMENT_BYTES = 1 << 30  # the most layout.new_segment_bytes makes (restore's segments)


class ReplicaUnreachable(NocontactError):
    """The replica could not be read at all (network, credentials, no bucket): one line."""


class Replica(Protocol):
    """Where the bucket's objects come from (rule 1)."""

    def get(self, key: str) -> bytes | None: ...

    def keys(self, prefix: str) -> list[str] | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    key: str  # the object it is about
    why: str

    def __str__(self) -> str:
        key = self.key
        if not key.isprintable() or len(key) > _MOST_SHOWN:  # a listing's (rule 6)
            key = repr(key[:_MOST_SHOWN]) + ("..." if len(key) > _MOST_SHOWN else "")
        return f"{key}: {self.why}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    kind: EntryKind
    index: int
    digest: bytes  # SHA-256 of the body: the blob's name

    @property
    def blob(self) -> str:
        return BLOBS + self.digest.hex()


@dataclass(slots=True, kw_only=True)
class ReplicaReport:
    """What the check found; `problems` empty means the replica verifies."""

    problems: list[Problem] = field(default_factory=list)
    manifest_bytes: bytes = b""
    verifier_bytes: bytes = b""
    manifest: layout.Manifest | None = None
    verifier: Verifier | None = None
    checkpoint: Checkpoint | None = None  # the root: the largest signed checkpoint
    note: bytes = b""  # its signed note, exactly as stored
    entries: list[Entry] = field(default_factory=list)
    tree: MerkleTree = field(default_factory=MerkleTree)
    checkpoint_sizes: list[int] = field(default_factory=list)  # of the checkpoint entries
    witnessed: dict[int, bytes] = field(default_factory=dict)  # size -> best cosigned note

    @property
    def whole_body_leaves(self) -> bool:
        """Versions 1 and 2: leaves over the whole body, entries under `index/` (rule 8)."""
        return self.manifest is not None and self.manifest.leaf_rule is LeafRule.BODY

    @property
    def checkpoint_root(self) -> bytes:
        return self.checkpoint.root if self.checkpoint is not None else b""

    @property
    def ok(self) -> bool:
        return not self.problems and self.checkpoint is not None

    def problem(self, key: str, why: str) -> None:
        self.problems.append(Problem(key=key, why=why))


def check_replica(replica: Replica, *, pinned: Verifier | None = None) -> ReplicaReport:
    """Every check of the module rules; problems in the report, never raised (except
    `ReplicaUnreachable` from the source)."""
    report = ReplicaReport()
    if not _keys_files(replica, report, pinned):
        return report
    assert report.verifier is not None
    assert report.manifest is not None
    found = _root(replica, report, report.verifier, report.manifest.origin)
    if found is None:
        return report
    if not (_tree_from_blobs if report.whole_body_leaves else _tree)(replica, report):
        return report
    _entries_and_blobs(replica, report, blobs_checked=report.whole_body_leaves)
    _other_checkpoints(report, found)
    _witnessed(replica, report)
    return report


def _keys_files(replica: Replica, report: ReplicaReport, pinned: Verifier | None) -> bool:
    """Rule 2: archive.json and signing.pub, exactly; False ends the check."""
    found = _keys_problem(replica, report, pinned)
    if found is not None:
        report.problem(*found)
        return False
    return True


def _keys_problem(
    replica: Replica, report: ReplicaReport, pinned: Verifier | None
) -> tuple[str, str] | None:
    """(object, why) for the first problem with the two key files, or None (they are
    then in `report`)."""
    manifest_bytes = replica.get(layout.MANIFEST)
    if manifest_bytes is None:
        return layout.MANIFEST, "missing (this is not a nocontact replica)"
    manifest = exact_manifest(manifest_bytes)
    if manifest is None:
        return layout.MANIFEST, "not a nocontact archive manifest in its exact form"
    if manifest.version not in REPLICABLE_VERSIONS:
        return layout.MANIFEST, (
            f"archive format version {manifest.version}: only versions 1, 2 and 3 are replicated"
        )
    verifier_bytes = replica.get(layout.VERIFIER_KEY)
    try:
        text = (verifier_bytes or b"").decode()
        verifier = Verifier.decode(text)
    except (UnicodeDecodeError, NoteError):
        return layout.VERIFIER_KEY, "missing" if verifier_bytes is None else "not a verifier key"
    if text != verifier.encode() + "\n":
        why = "not in its exact form (edited)"
    elif verifier.name != manifest.origin:
        why = "is for another archive (its key name is not archive.json's origin)"
    elif pinned is not None and pinned != verifier:
        why = "is not the key you gave (--key)"
    else:
        report.manifest_bytes, report.verifier_bytes = manifest_bytes, text.encode()
        report.manifest, report.verifier = manifest, verifier
        return None
    return layout.VERIFIER_KEY, why


def exact_manifest(data: bytes) -> layout.Manifest | None:
    """The manifest in `data` if it is exactly as a writer writes it."""
    try:
        parsed = json.loads(data)
        manifest = layout.Manifest(
            origin=parsed["origin"], segment_bytes=parsed["segment_bytes"],
            version=parsed["version"],
        )  # fmt: skip
        exact = layout.manifest_bytes(manifest) == data
    except (ValueError, TypeError, KeyError, RecursionError):  # nested past the stack
        return None
    ok = (
        exact
        and parsed.get("format") == layout.FORMAT
        and isinstance(manifest.origin, str)
        and manifest.origin.startswith(layout.ORIGIN_PREFIX)
        and type(manifest.segment_bytes) is int
        and 4096 <= manifest.segment_bytes <= _MOST_SEGMENT_BYTES
        and type(manifest.version) is int
    )
    return manifest if ok else None


def _signed(note: bytes, verifier: Verifier, origin: str) -> Checkpoint | str:
    """The checkpoint `note` signs, or why it is not one of this archive's."""
    try:
        checkpoint = parse_checkpoint(verifier.open(note))
    except NoteError as error:
        return f"not a checkpoint signed by the archive's key ({error})"
    if checkpoint.origin != origin:
        return "a checkpoint of another archive"
    return checkpoint


def _sizes(replica: Replica, report: ReplicaReport) -> dict[int, str] | None:
    """Every `checkpoints/<size>` key by size (rule 3); None when the source cannot list."""
    names = replica.keys(CHECKPOINTS)
    if names is None:
        return None
    sizes: dict[int, str] = {}
    for name in names:
        text = name[len(CHECKPOINTS) :]
        if (
            not text.isdigit() or not text.isascii() or (text != "0" and text[0] == "0")
            or len(text) > _MOST_DIGITS  # int() refuses over 4,300 digits
        ):  # fmt: skip
            report.problem(name, "not a checkpoint name (checkpoints/<decimal size>)")
            continue
        sizes[int(text)] = name
    return sizes


def _root(
    replica: Replica, report: ReplicaReport, verifier: Verifier, origin: str
) -> dict[int, tuple[str, bytes]] | None:
    """Rule 3: find the root; the checkpoints read on the way, by size."""
    latest = replica.get(LATEST)
    sizes = _sizes(replica, report)
    if sizes is None:  # a static server: `checkpoint` says which size to look at
        signed = _signed(latest, verifier, origin) if latest is not None else None
        if not isinstance(signed, Checkpoint):
            report.problem(LATEST, signed or "missing (and this source cannot be listed)")
            return None
        sizes = {signed.size: f"{CHECKPOINTS}{signed.size}"}
    read: dict[int, tuple[str, bytes]] = {}
    for size in sorted(sizes, reverse=True):
        key = sizes[size]
        note = replica.get(key)
        if note is None:
            report.problem(key, "missing")
            continue
        signed = _signed(note, verifier, origin)
        if isinstance(signed, str):
            report.problem(key, signed)
            continue
        if signed.size != size:
            report.problem(key, f"the note is for tree size {signed.size}, not {size}")
            continue
        read[size] = (key, note)
        if report.checkpoint is None:
            report.checkpoint, report.note = signed, note
    if report.checkpoint is None:
        report.problem(CHECKPOINTS, "no checkpoint signed by the archive's key")
        return None
    if latest is not None and latest != report.note:
        report.problem(LATEST, f"is not {CHECKPOINTS}{report.checkpoint.size}, the newest")
    return read


def _fetch(replica: Replica, report: ReplicaReport, tiles: Iterable[Tile]) -> dict[Tile, bytes]:
    found: dict[Tile, bytes] = {}
    for tile in tiles:
        data = replica.get(tile.path)
        if data is None:
            report.problem(tile.path, "missing")
        else:
            found[tile] = data
    return found


def _tree(replica: Replica, report: ReplicaReport) -> bool:
    """Rule 4: bind the tiles and bundles to the root; False ends the check."""
    assert report.checkpoint is not None
    size, root = report.checkpoint.size, report.checkpoint.root
    before = len(report.problems)  # problems found before this step do not end it
    if size and replica.get(last_bundle(size).path) is None:  # before listing them all
        report.problem(last_bundle(size).path, "missing")
        return False
    tiles = _fetch(replica, report, tiles_for_size(size))
    bundles = _fetch(replica, report, bundles_for_size(size))
    entries = _bundle_entries(report, size, bundles)
    leaves = [leaf_hash(entry) for entry in entries] if entries is not None else None
    if entries is not None and leaves is not None and MerkleTree(leaves).root() == root:
        _tiles_of(report, size, leaves, tiles)
        if len(report.problems) > before:
            return False
        TiledTree(size, tiles).check(bundles)  # rule 4's other way round: cannot fail here
        report.tree = MerkleTree(leaves)
        return _parse_entries(report, entries)
    if len(report.problems) == before:
        rows = (
            (bundle, [leaf_hash(entry) for entry in decode_bundle(bundle, data)])
            for bundle, data in bundles.items()
        )
        _rows_against_tiles(report, size, tiles, rows, "entry bundles")
    return False


def _tiles_of(
    report: ReplicaReport, size: int, leaves: list[bytes], tiles: dict[Tile, bytes]
) -> None:
    """The leaves give the signed root: every tile must be the bytes they give."""
    expected = build_tiles(leaves)
    for tile, data in tiles.items():
        if expected[tile] != data:
            report.problem(
                tile.path, f"altered: not the tile the entries {CHECKPOINTS}{size} signs give"
            )


def _rows_against_tiles(
    report: ReplicaReport, size: int, tiles: dict[Tile, bytes],
    rows: Iterable[tuple[Tile, list[bytes]]], what: str,
) -> None:  # fmt: skip
    """The leaves do not give the signed root: if the tiles do, name each bundle whose
    leaves (`rows`: a bundle and its leaves, made only once the tiles are found good)
    disagree with its level 0 tile; else say that neither gives the root."""
    named = f"{CHECKPOINTS}{size}"
    try:
        tiles_root = TiledTree(size, tiles).check()
    except TileError as error:
        report.problem(_path_in(str(error)), str(error))
        return
    if tiles_root != report.checkpoint_root:
        report.problem(named, f"the tiles and {what} do not hash to the root it signs")
        return
    for bundle, leaves in rows:
        level0 = Tile(level=0, index=bundle.index, width=bundle.width)
        if leaves != decode_tile(level0, tiles[level0]):
            report.problem(bundle.path, f"altered: its entries are not those {named} signs")


def _bundle_entries(
    report: ReplicaReport, size: int, bundles: dict[Tile, bytes], *, own_path: bool = False
) -> list[bytes] | None:
    """Every entry of the bundles in order, or None when one is missing or malformed."""
    entries: list[bytes] | None = []
    for bundle in bundles_for_size(size, own_path=own_path):
        if bundle not in bundles:
            entries = None
            continue
        try:
            decoded = decode_bundle(bundle, bundles[bundle])
        except TileError as error:
            report.problem(bundle.path, str(error).removeprefix(bundle.path + " "))
            entries = None
            continue
        if entries is not None:
            entries.extend(decoded)
    return entries


def _path_in(message: str) -> str:
    return message.split(" ", 1)[0] if message.startswith("tile/") else CHECKPOINTS


def _parse_entries(report: ReplicaReport, raw: list[bytes], *, own_path: bool = False) -> bool:
    """Rule 5's first half: 41 bytes each, a known kind, its own index."""
    for position, data in enumerate(raw):
        bundle = bundle_of(position, own_path=own_path).path
        if len(data) != TILE_ENTRY_BYTES:
            report.problem(bundle, f"entry {position} has {len(data)} bytes, not 41")
            return False
        try:
            kind = EntryKind(data[0])
        except ValueError:
            report.problem(bundle, f"entry {position} has an unknown kind")
            return False
        index = int.from_bytes(data[1:9], "big")
        if index != position:
            report.problem(bundle, f"entry {position} says it is entry {index}")
            return False
        report.entries.append(Entry(kind=kind, index=index, digest=data[9:]))
    return True


def _blob(replica: Replica, report: ReplicaReport, entry: Entry) -> bytes | None:
    """The body of `entry` if its blob is there and hashes to its name, else None and the
    problem named (rule 5)."""
    body = replica.get(entry.blob)
    if body is None:
        report.problem(entry.blob, f"missing (the body of entry {entry.index})")
        return None
    if hashlib.sha256(body).digest() != entry.digest:
        report.problem(entry.blob, "altered: its SHA-256 is not its name")
        return None
    return body


def _entries_and_blobs(replica: Replica, report: ReplicaReport, *, blobs_checked: bool) -> None:
    """Rule 5: every blob hashes to its name; every checkpoint entry is its signed note.
    With `blobs_checked` (rule 8 read them all), only the checkpoint entries' are read."""
    assert report.verifier is not None
    assert report.manifest is not None
    for entry in report.entries:
        if blobs_checked and entry.kind is not EntryKind.CHECKPOINT:
            continue
        body = _blob(replica, report, entry)
        if body is None or entry.kind is not EntryKind.CHECKPOINT:
            continue
        report.checkpoint_sizes.append(entry.index)
        signed = _signed(body, report.verifier, report.manifest.origin)
        if isinstance(signed, str):
            report.problem(entry.blob, f"checkpoint entry {entry.index} is {signed}")
        elif signed.size != entry.index or signed.root != report.tree.root(entry.index):
            report.problem(entry.blob, f"checkpoint entry {entry.index} does not sign the tree")
        key = f"{CHECKPOINTS}{entry.index}"
        if replica.get(key) != body:
            report.problem(key, f"missing or not the body of checkpoint entry {entry.index}")


def _tree_from_blobs(replica: Replica, report: ReplicaReport) -> bool:
    """Rule 8 (versions 1 and 2): the index bound to the root through the blobs' bodies;
    False ends the check."""
    assert report.checkpoint is not None
    assert report.manifest is not None
    size, root = report.checkpoint.size, report.checkpoint.root
    rule = report.manifest.leaf_rule
    before = len(report.problems)
    if size and replica.get(last_bundle(size, own_path=True).path) is None:
        report.problem(last_bundle(size, own_path=True).path, "missing")
        return False
    tiles = _fetch(replica, report, tiles_for_size(size))
    bundles = _fetch(replica, report, bundles_for_size(size, own_path=True))
    raw = _bundle_entries(report, size, bundles, own_path=True)
    if raw is None or not _parse_entries(report, raw, own_path=True):
        return False
    leaves: list[bytes] | None = []
    for entry in report.entries:
        body = _blob(replica, report, entry)  # one body at a time
        if body is None:
            leaves = None
        elif leaves is not None:
            leaves.append(entry_hash(entry.kind, entry.index, body, rule=rule))
        del body
    if leaves is None or len(report.problems) > before:
        return False
    if MerkleTree(leaves).root() == root:
        _tiles_of(report, size, leaves, tiles)
        if len(report.problems) > before:
            return False
        report.tree = MerkleTree(leaves)
        return True
    rows = (
        (bundle, leaves[bundle.start : bundle.start + bundle.width])
        for bundle in bundles_for_size(size, own_path=True)
    )
    _rows_against_tiles(report, size, tiles, rows, "the index")
    return False


def _other_checkpoints(report: ReplicaReport, read: dict[int, tuple[str, bytes]]) -> None:
    """Rule 5's last sentence: every signed checkpoint found is consistent with the root."""
    assert report.checkpoint is not None
    root = report.checkpoint
    verifier, origin = report.verifier, root.origin
    assert verifier is not None
    for size, (key, note) in sorted(read.items()):
        if size >= root.size:
            continue
        signed = _signed(note, verifier, origin)
        assert isinstance(signed, Checkpoint)
        proof = report.tree.consistency_proof(size, root.size) if size else []
        consistent = (
            signed.root == report.tree.root(0)
            if size == 0
            else verify_consistency(size, root.size, signed.root, root.root, proof)
        )
        if not consistent:
            report.problem(key, f"not consistent with {CHECKPOINTS}{root.size} (a fork)")


def _witnessed(replica: Replica, report: ReplicaReport) -> None:
    """Rule 7: every witnessed copy is a signed checkpoint of this tree; the best kept."""
    keys = replica.keys(WITNESSED)
    assert report.checkpoint is not None
    assert report.verifier is not None
    good: dict[str, bytes] = {}
    for key in keys or ():
        data = replica.get(key)
        if data is None:
            continue  # listed, then gone: the listing is not the layout's
        why = copy_problem(
            key, data, verifier=report.verifier, origin=report.checkpoint.origin,
            tree=report.tree, root_size=report.checkpoint.size,
        )  # fmt: skip
        if why is None:
            good[key] = data
        else:
            report.problem(key, why)
    report.witnessed = best_copies(good)
