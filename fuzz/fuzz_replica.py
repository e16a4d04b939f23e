"""Fuzz target: a hostile bucket through the keyless check of a replica (`verify --from`).

Whoever can write the bucket, or runs its S3 server, chooses every object's bytes and
which keys exist. Once, at import, a real version 3 archive (several checkpoints, full and
partial tiles, a level 1 tile, a cosigned `witnessed/<size>/<sha256>` copy) is written to
a bucket held in memory by the test writer (tests/replica_helpers.py `replicate`). Each
input is then a list of edits to that bucket (`_Edits`): replace, flip a bit, truncate,
append or splice an object, delete one, copy one object's bytes under another key (also
under its own `blobs/sha256/` or `witnessed/<size>/` name), add keys of input bytes under
every prefix the layout has, set `checkpoint`, give `signing.pub` another name. The
bucket is checked twice, listed and as a static web server would serve it (no listing).
For each input this checks that:
1. `check_replica` never raises; every problem is one line, and none quotes more than
   `_QUOTE` characters of the bytes the input wrote (keys aside);
2. a report that says ok has as its root a checkpoint the archive signed, and every
   object that root binds (archive.json, signing.pub, its `checkpoints/<size>`, each
   tile and entry bundle of its size, each blob of its entries, each `checkpoints/<i>`
   of a checkpoint entry) is in the bucket with its bytes unchanged; its root is the
   newest unchanged signed checkpoint. A bucket rolled back whole to an older signed
   state (its newest `checkpoints/<size>` removed and `checkpoint` set back) verifies
   as that state: without a size known from elsewhere (a witness, a contact's copy) no
   check of the bucket alone can tell;
3. the unchanged bucket verifies, listed or not (checked at import);
4. all of it takes under `fuzz.invariants.LIMIT_SECONDS`.

Run with `scripts/fuzz replica [SECONDS]`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.invariants import InvariantBroken, assert_utf8, guarded, timed
from proxy.archive import EntryKind, layout
from proxy.archive.merkle import MerkleTree
from proxy.archive.note import Verifier
from proxy.archive.records import LeafRule, entry_hash
from proxy.replica.check import ReplicaReport, check_replica
from proxy.replica.tiles import bundles_for_size, tiles_for_size
from proxy.replica.witnessed_copies import copy_key
from proxy.witness.cosignature import Cosigner
from proxy.witness.signed import read_note
from proxy.witness.witnessed import Witnessed
from tests.replica_helpers import Contact, MemoryReplica, archive_entries, replicate
from tests.replicator_helpers import grow

_QUOTE = 48  # the most characters of an input's bytes a problem may carry
_KEY_LIKE = re.compile(r"\S*/\S*")  # keys a problem names (they may be the input's)
_PREFIXES = ("checkpoints/", "tile/0/", "tile/1/", "tile/entries/", "witnessed/",
             "blobs/sha256/", "checkpoint", "public/", "")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class _Genuine:
    """The bucket as the replicator left it, and what each signed size binds."""

    objects: dict[str, bytes]
    bound: dict[int, frozenset[str]]  # signed size -> every key its root binds
    roots: dict[int, bytes]  # size -> the tree's root at that size
    manifest: layout.Manifest


@contextmanager
def _segment_mib(value: str) -> Iterator[None]:
    before = os.environ.get(layout.SEGMENT_ENV)
    os.environ[layout.SEGMENT_ENV] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[layout.SEGMENT_ENV]
        else:
            os.environ[layout.SEGMENT_ENV] = before


def _build() -> _Genuine:
    with tempfile.TemporaryDirectory(prefix="nocontact-fuzz-replica-") as directory:
        root = Path(directory) / "archive"
        with _segment_mib("1"):  # the same archive.json whatever the environment says
            grow(root, [40, 300, 5], size=64)
        Contact().publish(root)
        objects: dict[str, bytes] = {}
        replicate(root, objects.__setitem__, objects.__setitem__)
        entries = archive_entries(root)
        sizes = [i for i, (kind, _) in enumerate(entries) if kind is EntryKind.CHECKPOINT]
        cosigned = sizes[1]
        body = entries[cosigned][1].decode().rpartition("\n\n")[0] + "\n"
        witness = Cosigner.generate("lawyer.example/witness")
        Witnessed(root).keep(cosigned, entries[cosigned][1], [witness.cosign(body, 1_772_366_400)])
        data = (root / "witnessed" / str(cosigned)).read_bytes()
        objects[copy_key(cosigned, data)] = data
    leaves = MerkleTree()
    roots: dict[int, bytes] = {}
    for index, (kind, body_bytes) in enumerate(entries):
        roots[index] = leaves.root()
        leaves.append(entry_hash(kind, index, body_bytes, rule=LeafRule.BODY_SHA256))
    bound: dict[int, frozenset[str]] = {}
    for size in sizes:
        keys = {layout.MANIFEST, layout.VERIFIER_KEY, f"checkpoints/{size}"}
        keys |= {tile.path for tile in tiles_for_size(size) + bundles_for_size(size)}
        for index, (kind, body_bytes) in enumerate(entries[:size]):
            keys.add("blobs/sha256/" + hashlib.sha256(body_bytes).hexdigest())
            if kind is EntryKind.CHECKPOINT:
                keys.add(f"checkpoints/{index}")
        bound[size] = frozenset(keys)
    manifest = layout.Manifest(**{
        k: v for k, v in json.loads(objects[layout.MANIFEST]).items() if k != "format"
    })  # fmt: skip
    return _Genuine(objects=objects, bound=bound, roots=roots, manifest=manifest)


@dataclass(slots=True)
class _Edits:
    """Reads an input as edits to a bucket; `written` keeps every run of input bytes put
    into an object or a name (what a problem must not quote)."""

    data: bytes
    objects: dict[str, bytes]
    at: int = 0
    written: list[bytes] = field(default_factory=list)

    def _byte(self) -> int:
        value = self.data[self.at] if self.at < len(self.data) else 0
        self.at += 1
        return value

    def _number(self) -> int:
        return self._byte() << 8 | self._byte()

    def _chunk(self) -> bytes:
        length = self._number() % 8192
        chunk = self.data[self.at : self.at + length]
        self.at += length
        self.written.append(chunk)
        return chunk

    def _key(self) -> str | None:
        keys = sorted(self.objects)
        return keys[self._number() % len(keys)] if keys else None

    def _new_key(self) -> str:
        prefix = _PREFIXES[self._byte() % len(_PREFIXES)]
        return prefix + self._chunk().decode("utf-8", "replace")

    def apply(self) -> None:
        while self.at < len(self.data):
            operation = self._byte() % 12
            if operation == 9:
                new = self._new_key()
                self.objects[new] = self._chunk()
                continue
            key = self._key()
            if key is None:
                continue
            if operation < 5:
                self._change(operation, key, self.objects[key])
            else:
                self._copy(operation, key, self.objects[key])

    def _change(self, operation: int, key: str, value: bytes) -> None:
        """Replace, flip a bit of, truncate or delete the object at `key`, or put its bytes
        at another key."""
        if operation == 0:
            self.objects[key] = self._chunk()
        elif operation == 1 and value:
            bit = self._number() % (len(value) * 8)
            flipped = bytearray(value)
            flipped[bit // 8] ^= 1 << bit % 8
            self.objects[key] = bytes(flipped)
        elif operation == 2:
            self.objects[key] = value[: self._number() % (len(value) + 1)]
        elif operation == 3:
            del self.objects[key]
        elif operation == 4 and (target := self._key()) is not None:
            self.objects[target] = value

    def _copy(self, operation: int, key: str, value: bytes) -> None:
        """Put the object's bytes as `checkpoint`, as a blob or a witnessed copy under their
        own hash; add to or splice into them; or give signing.pub another name."""
        if operation == 5:
            self.objects["checkpoint"] = value
        elif operation == 6:
            self.objects["blobs/sha256/" + hashlib.sha256(value).hexdigest()] = value
        elif operation == 7:
            self.objects[copy_key(self._number(), value)] = value
        elif operation == 8:
            self.objects[key] = value + self._chunk()
        elif operation == 10:
            start = self._number() % (len(value) + 1)
            end = start + self._byte()
            self.objects[key] = value[:start] + self._chunk() + value[end:]
        else:
            self._rename()

    def _rename(self) -> None:
        """signing.pub as the archive's key under another name (its id recomputed)."""
        name = self._chunk()[:1024].decode("utf-8", "replace")
        public = Verifier.decode(GENUINE.objects[layout.VERIFIER_KEY].decode()).public
        self.objects[layout.VERIFIER_KEY] = (Verifier(name, public).encode() + "\n").encode()


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one input."""
    edits = _Edits(data=data, objects=dict(GENUINE.objects))
    edits.apply()
    with timed(len(data)):
        for listing in (True, False):
            bucket = MemoryReplica(dict(edits.objects), listing=listing)
            report = check_replica(bucket)
            _one_line_each(report, edits.written)
            if report.ok:
                _bound_unchanged(report, edits.objects, listing=listing)


def _one_line_each(report: ReplicaReport, written: list[bytes]) -> None:
    assert_utf8(report.problems, "problems")
    windows: set[str] = set()
    for problem in report.problems:
        text = str(problem)
        if "\n" in text or "\r" in text:
            raise InvariantBroken(f"a problem is not one line: {text[:200]!r}")
        why = _KEY_LIKE.sub(" ", problem.why)
        windows |= {why[i : i + _QUOTE] for i in range(len(why) - _QUOTE + 1)}
    if not windows:
        return
    for chunk in written:
        for text in {chunk.decode("utf-8", "replace"), chunk.decode("latin-1"), repr(chunk)}:
            for i in range(len(text) - _QUOTE + 1):
                if text[i : i + _QUOTE] in windows:
                    raise InvariantBroken(
                        f"a problem is not free of the input's bytes: {text[i : i + 60]!r}"
                    )


def _bound_unchanged(report: ReplicaReport, objects: dict[str, bytes], *, listing: bool) -> None:
    assert report.checkpoint is not None
    size = report.checkpoint.size
    note = GENUINE.objects.get(f"checkpoints/{size}")
    if size not in GENUINE.bound or report.note != note:
        raise InvariantBroken(f"an ok root is not one the archive signed: size {size}")
    changed = sorted(k for k in GENUINE.bound[size] if objects.get(k) != GENUINE.objects[k])
    if changed[:1] == [layout.MANIFEST] and _only_segment_bytes(report):
        changed.pop(0)
    if changed:
        raise InvariantBroken(f"an ok root is not its objects' (changed: {changed[0]})")
    # Unlisted, `checkpoint` alone names the root: set back, it is an older signed state.
    newer = [s for s in GENUINE.bound if listing and s > size and _unchanged(s, objects)]
    if newer:
        raise InvariantBroken(
            f"an ok root is not the newest: {size}, checkpoints/{newer[0]} unchanged"
        )
    if len(report.entries) != size:
        raise InvariantBroken(
            f"an ok root is not its entries': {len(report.entries)} at size {size}"
        )
    for at, copy in report.witnessed.items():
        if read_note(copy).root != GENUINE.roots.get(at):
            raise InvariantBroken(f"an ok witnessed copy is not of the tree: size {at}")


def _only_segment_bytes(report: ReplicaReport) -> bool:
    """archive.json differs only in `segment_bytes`, within a writer's range: no signature
    covers it, so no check can tell (check.py rule 2)."""
    manifest = report.manifest
    assert manifest is not None
    return (
        dataclasses.replace(manifest, segment_bytes=GENUINE.manifest.segment_bytes)
        == GENUINE.manifest
        and 4096 <= manifest.segment_bytes <= 1 << 30
    )


def _unchanged(size: int, objects: dict[str, bytes]) -> bool:
    key = f"checkpoints/{size}"
    return objects.get(key) == GENUINE.objects[key]


GENUINE = _build()
for _listing in (True, False):
    if not check_replica(MemoryReplica(dict(GENUINE.objects), listing=_listing)).ok:
        raise InvariantBroken("the replica as the replicator wrote it does not verify")

test_one_input = guarded(check)
