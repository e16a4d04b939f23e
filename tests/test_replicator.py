"""The replicator (proxy/replica/replicator.py, signed_archive.py) against a real SeaweedFS with
Object Lock: the contract's layout, only what verifies, idempotent and resumable passes."""

from __future__ import annotations

import hashlib
import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest

from proxy.archive import EntryKind, VerifyFailure, layout
from proxy.archive.note import Verifier, parse_checkpoint
from proxy.archive.records import LeafRule, entry_hash, tile_entry
from proxy.archive.segments import segment_name
from proxy.replica.blob_sender import BlobSender
from proxy.replica.replicator import ReplicaRefused, Replicator, Stopped
from proxy.replica.signed_archive import ArchiveSource
from proxy.replica.store import BucketSettings, ObjectStore, Placed
from proxy.replica.tiled_tree import TiledTree
from proxy.replica.tiles import bundles_for_size, encode_bundle, parse_path, tiles_for_size
from tests.old_archives import copy_version_2
from tests.replicator_helpers import (
    contract_keys,
    grow,
    signed_entries,
)
from tests.s3_server import SeaweedS3


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    grow(root, [3, 300, 5])  # across a full level 0 tile
    (root / layout.RECIPIENTS).write_text("age1recipientone\n")
    return root


def _replicate(root: Path, store: ObjectStore) -> Replicator:
    replicator = Replicator(ArchiveSource(root), store)
    replicator.run_pass()
    return replicator


def _versions(server: SeaweedS3, settings: BucketSettings) -> set[tuple[str, str]]:
    client = server.client()
    found: set[tuple[str, str]] = set()
    for page in client.get_paginator("list_object_versions").paginate(Bucket=settings.bucket):
        found |= {(v["Key"], v["VersionId"]) for v in page.get("Versions", [])}
    return found


class _Puts:
    """Counts the writes (the store's put_once and replace, and blob_sender's PUTs), and
    those that wrote."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        self.written: list[str] = []
        for name in ("put_once", "replace"):
            monkeypatch.setattr(ObjectStore, name, self._counting(getattr(ObjectStore, name)))
        monkeypatch.setattr(BlobSender, "_send", self._counting_blobs(BlobSender._send))

    def _counting_blobs(self, method: Any) -> Any:
        async def counted(sender: BlobSender, key: str, data: bytes) -> Placed:
            self.sent.append(key)
            placed: Placed = await method(sender, key, data)
            if placed is Placed.WRITTEN:
                self.written.append(key)
            return placed

        return counted

    def _counting(self, method: Any) -> Any:
        def counted(store: ObjectStore, key: str, data: bytes) -> Placed:
            self.sent.append(key)
            placed: Placed = method(store, key, data)
            if placed is Placed.WRITTEN:
                self.written.append(key)
            return placed

        return counted


def test_an_archive_replicates_in_the_contracts_layout(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore, archive: Path
) -> None:
    """The bucket holds exactly the contract's keys; the tiles give the latest checkpoint's
    root, every bundle and blob binds to them, every checkpoint entry is its size's note,
    and every object is locked COMPLIANCE."""
    _replicate(archive, store)
    assert set(store.keys()) == contract_keys(archive)
    size, entries, note = signed_entries(archive)
    keys = store.keys("tile/")
    tiles = {parse_path(key): store.get(key) or b"" for key in keys}
    hashes = {tile: data for tile, data in tiles.items() if tile.level is not None}
    bundles = {tile: data for tile, data in tiles.items() if tile.level is None}
    tree = TiledTree(size, hashes)
    verifier = Verifier.decode((archive / layout.VERIFIER_KEY).read_text())
    assert tree.check(bundles) == parse_checkpoint(verifier.open(note)).root
    assert store.get("checkpoint") == store.get(f"checkpoints/{size}") == note
    assert store.get("archive.json") == (archive / layout.MANIFEST).read_bytes()
    assert store.get("signing.pub") == (archive / layout.VERIFIER_KEY).read_bytes()
    assert store.get(f"public/{size}/recipients") == b"age1recipientone\n"
    for index, (kind, body) in enumerate(entries):
        if index < size:
            assert store.get(f"blobs/sha256/{hashlib.sha256(body).hexdigest()}") == body
        if kind is EntryKind.CHECKPOINT:
            assert store.get(f"checkpoints/{index}") == body
    head = server.client().head_object(Bucket=settings.bucket, Key="log/tile/0/000")
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_a_second_pass_adds_only_new_objects_and_a_third_writes_nothing(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore, archive: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """After more items, a pass (a new process's) writes only the new keys, each once, and
    moves `checkpoint`; a pass with nothing new writes nothing, and in the same process
    it does not even ask the bucket."""
    _replicate(archive, store)
    before_keys, before = set(store.keys()), _versions(server, settings)
    grow(archive, [7, 250])
    (archive / layout.CUSTODY_KEYS).write_text("fp ed25519:key\n")
    puts = _Puts(monkeypatch)
    replicator = _replicate(archive, store)
    size, _, note = signed_entries(archive)
    new_keys = contract_keys(archive) | {f"public/{size}/custody-keys"}
    new_keys |= {key for key in before_keys if key.startswith("public/")}
    assert set(store.keys()) == new_keys
    added = new_keys - before_keys
    assert sorted(puts.written) == sorted([*added, "checkpoint"])
    assert sorted(key for key in puts.sent if key != "checkpoint") == sorted(added)
    assert before <= _versions(server, settings)  # nothing old rewritten
    assert store.latest("checkpoint") == note
    settled = _versions(server, settings)

    puts.sent.clear()
    puts.written.clear()
    _replicate(archive, store)  # a new process: it reads the bucket, writes nothing
    assert (puts.written, _versions(server, settings)) == ([], settled)
    for name in ("keys", "get", "latest", "put_once", "replace"):
        monkeypatch.setattr(ObjectStore, name, _no_request)
    replicator.run_pass()  # the same process: not one request
    assert _versions(server, settings) == settled


def _no_request(*_: object) -> None:
    raise AssertionError("a pass with nothing new asked the bucket")


def test_a_pass_stopped_midway_leaves_a_whole_checkpoint_and_the_next_completes(
    store: ObjectStore, archive: Path
) -> None:
    """Stopped after some entries (as SIGTERM or a crash would), the bucket's largest
    checkpoint has every object of its size; the next pass finishes the layout exactly."""
    calls = itertools.count()
    stopping = Replicator(ArchiveSource(archive), store, stopping=lambda: next(calls) > 100)
    with pytest.raises(Stopped):
        stopping.run_pass()
    sizes = [int(key.split("/")[1]) for key in store.keys("checkpoints/")]
    assert max(sizes) < signed_entries(archive)[0]
    reached = contract_keys(archive, size=max(sizes), public=False) - {"checkpoint"}
    assert reached <= set(store.keys())
    assert not {k for k in store.keys("tile/") if k not in reached}  # no tile ahead of it
    _replicate(archive, store)
    assert set(store.keys()) == contract_keys(archive)


def test_a_version_2_archive_replicates_with_its_entries_under_index(
    tmp_path: Path, store: ObjectStore
) -> None:
    """The version 2 writer's own archive: the contract's layout with its entry bundles
    under index/ (never tile/entries/), level 0 tiles its own leaves over the whole body,
    each index entry its 41-byte tile entry; appended to, it goes on from there."""
    root = copy_version_2(tmp_path / "old")
    _replicate(root, store)
    assert set(store.keys()) == contract_keys(root)
    assert store.keys("tile/entries/") == []
    size, entries, _ = signed_entries(root)
    leaves = b"".join(entry_hash(kind, i, body, rule=LeafRule.BODY)
                      for i, (kind, body) in enumerate(entries[:size]))  # fmt: skip
    assert store.get(tiles_for_size(size)[0].path) == leaves
    (index,) = bundles_for_size(size, own_path=True)
    assert index.path == f"index/000.p/{size}"
    assert store.get(index.path) == encode_bundle(
        [tile_entry(kind, i, body) for i, (kind, body) in enumerate(entries[:size])]
    )
    grow(root, [4])
    _replicate(root, store)
    assert set(store.keys()) == contract_keys(root)
    assert layout.read_manifest(root).version == 2


def test_an_archive_of_an_unknown_version_is_refused_and_nothing_is_written(
    tmp_path: Path, store: ObjectStore
) -> None:
    """A format version this nocontact does not read: one line, nothing in the bucket."""
    root = tmp_path / "archive"
    grow(root, [2])
    manifest = layout.read_manifest(root)
    future = layout.Manifest(origin=manifest.origin, segment_bytes=manifest.segment_bytes,
                             version=4)  # fmt: skip
    (root / layout.MANIFEST).write_bytes(layout.manifest_bytes(future))
    with pytest.raises(VerifyFailure, match="format version 4 is not one this nocontact reads"):
        _replicate(root, store)
    assert store.keys() == []


def test_a_tampered_segment_is_refused_and_nothing_past_the_last_good_checkpoint_goes(
    store: ObjectStore, tmp_path: Path
) -> None:
    """A byte flipped in a sealed body of the last batch: the pass fails with the
    check's line, and the bucket holds exactly the layout of the last checkpoint before
    that entry (the one signed when the archive was opened again)."""
    root = tmp_path / "archive"
    grow(root, [4, 20])
    bodies = grow(root, [9])
    _, entries, _ = signed_entries(root)
    tampered = next(i for i, (_, body) in enumerate(entries) if body == bodies[4])
    good = max(i for i, (kind, _) in enumerate(entries[:tampered]) if kind is EntryKind.CHECKPOINT)
    expected = contract_keys(root, size=good, public=False)
    segment = root / layout.LOG_DIR / segment_name(1)
    data = bytearray(segment.read_bytes())
    at = data.find(bodies[4]) + 17
    data[at] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(VerifyFailure, match="content does not match its hash"):
        _replicate(root, store)
    assert set(store.keys()) == expected
    assert max(int(key.split("/")[1]) for key in store.keys("checkpoints/")) == good


def test_another_archives_bucket_is_refused_before_anything_is_written(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore, archive: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """A bucket (prefix) holding another archive's replica: one line, not one object."""
    _replicate(archive, store)
    before = _versions(server, settings)
    other = tmp_path / "other"
    grow(other, [2])
    with pytest.raises(ReplicaRefused, match=r"archive\.json is not this archive's"):
        _replicate(other, store)
    assert _versions(server, settings) == before


def test_a_rolled_back_archive_is_refused(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore, tmp_path: Path
) -> None:
    """The archive put back to an earlier copy and refilled: the bucket's latest
    checkpoint is not the archive's entry of that size, so nothing is written."""
    root = tmp_path / "archive"
    grow(root, [3])
    saved = tmp_path / "saved"
    shutil.copytree(root, saved)
    grow(root, [5])
    _replicate(root, store)
    before = _versions(server, settings)
    shutil.rmtree(root)
    shutil.copytree(saved, root)
    grow(root, [6])  # a different history past the saved copy
    with pytest.raises(ReplicaRefused, match="latest checkpoint is not this archive's"):
        _replicate(root, store)
    assert _versions(server, settings) == before


def test_only_the_tiles_of_signed_sizes_exist(store: ObjectStore, archive: Path) -> None:
    """Every tile and bundle in the bucket belongs to the tiles of some checkpoint's size."""
    _replicate(archive, store)
    sizes = [int(key.split("/")[1]) for key in store.keys("checkpoints/")]
    allowed = {t.path for s in sizes for t in tiles_for_size(s) + bundles_for_size(s)}
    assert set(store.keys("tile/")) == allowed
