"""check.py on a replica held in memory: each rule's failure, named by its object."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.archive import layout, verify_archive
from proxy.archive.note import Checkpoint, Signer
from proxy.archive.records import EntryKind
from proxy.replica.check import check_replica
from proxy.replica.restore import RestoreFailed, restore
from proxy.replica.tiles import Tile
from tests.old_archives import created_as
from tests.replica_helpers import (
    Contact,
    MemoryReplica,
    archive_entries,
    blob_key,
    hold,
    replicate,
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check") / "archive"
    hold(root, Contact(), 2, tag="memory")
    return root


@pytest.fixture(scope="module", params=[1, 2])
def old(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A version 1 archive (custody records of kind 2, as it wrote them) or a version 2
    one: leaves over the whole body."""
    version: int = request.param
    root = tmp_path_factory.mktemp(f"check-v{version}") / "archive"
    custody = EntryKind.CUSTODY if version == 1 else EntryKind.SEALED
    with created_as(version):
        hold(root, Contact(), 2, tag="old", custody_kind=custody)
    assert layout.read_manifest(root).version == version
    return root


def _replica(archive: Path) -> MemoryReplica:
    replica = MemoryReplica()
    replicate(archive, replica.objects.__setitem__, replica.objects.__setitem__)
    return replica


def _lines(replica: MemoryReplica) -> list[str]:
    return [str(problem) for problem in check_replica(replica).problems]


def test_a_whole_replica_verifies_listed_or_not(archive: Path) -> None:
    """Nothing to report, with or without listing; the root is the archive's newest."""
    replica = _replica(archive)
    report = check_replica(replica)
    assert report.ok
    last_checkpoint = len(archive_entries(archive)) - 1
    assert report.checkpoint is not None
    assert report.checkpoint.size == last_checkpoint
    replica.listing = False
    assert check_replica(replica).ok


def test_an_unknown_version_or_no_manifest_ends_the_check() -> None:
    """Versions 1, 2 and 3 are replicated; a manifest of another version, or a bucket
    without archive.json, is not one."""
    future = layout.Manifest(origin="nocontact.archive/0123456789abcdef", segment_bytes=4096,
                             version=4)  # fmt: skip
    replica = MemoryReplica({layout.MANIFEST: layout.manifest_bytes(future)})
    assert _lines(replica) == [
        "archive.json: archive format version 4: only versions 1, 2 and 3 are replicated"
    ]
    assert _lines(MemoryReplica()) == ["archive.json: missing (this is not a nocontact replica)"]


def test_a_checkpoint_signed_over_another_history_is_a_fork(archive: Path) -> None:
    """A checkpoint signed with the archive's own key over other entries: named, a fork."""
    replica = _replica(archive)
    signer = Signer.from_pem(layout.read_manifest(archive).origin,
                             (archive / layout.SIGNING_KEY).read_bytes())  # fmt: skip
    forged = Checkpoint(origin=signer.name, size=3, root=bytes(32),
                        time=datetime(2026, 3, 2, tzinfo=UTC))  # fmt: skip
    replica.objects["checkpoints/3"] = signer.sign(forged.body())
    newest = len(archive_entries(archive)) - 1
    assert _lines(replica) == [f"checkpoints/3: not consistent with checkpoints/{newest} (a fork)"]


def test_odd_names_a_stale_checkpoint_and_a_missing_blob_are_each_named(archive: Path) -> None:
    """A checkpoint key with a leading zero, `checkpoint` not the newest, a blob gone."""
    replica = _replica(archive)
    entries = archive_entries(archive)
    first_checkpoint = next(i for i, (kind, _) in enumerate(entries)
                            if kind is EntryKind.CHECKPOINT and i)  # fmt: skip
    replica.objects["checkpoints/007"] = b"x"
    replica.objects["checkpoint"] = entries[first_checkpoint][1]
    blob = next(key for key in replica.objects if key.startswith("blobs/"))
    del replica.objects[blob]
    lines = _lines(replica)
    assert "checkpoints/007: not a checkpoint name (checkpoints/<decimal size>)" in lines
    assert any(line.startswith("checkpoint: is not checkpoints/") for line in lines)
    assert any(line.startswith(f"{blob}: missing") for line in lines), lines
    assert len(lines) == 3


def test_restore_refuses_a_replica_that_does_not_verify(archive: Path, tmp_path: Path) -> None:
    """Nothing is written from a replica with a problem."""
    replica = _replica(archive)
    del replica.objects["signing.pub"]
    report = check_replica(replica)
    with pytest.raises(RestoreFailed):
        restore(replica, report, tmp_path / "restored")
    assert list(tmp_path.iterdir()) == []


def test_a_signed_but_absurd_size_costs_one_request(archive: Path) -> None:
    """A checkpoint signed for 10**15 entries (the key can sign anything) is checked by
    asking for its last entry bundle, not by listing its tiles: missing, named, done."""
    replica = _replica(archive)
    signer = Signer.from_pem(layout.read_manifest(archive).origin,
                             (archive / layout.SIGNING_KEY).read_bytes())  # fmt: skip
    size = 10**15
    claimed = Checkpoint(origin=signer.name, size=size, root=bytes(32),
                         time=datetime(2026, 3, 2, tzinfo=UTC))  # fmt: skip
    replica.objects[f"checkpoints/{size}"] = signer.sign(claimed.body())
    lines = _lines(replica)
    last = Tile(level=None, index=(size - 1) // 256, width=size % 256 or 256)
    assert f"{last.path}: missing" in lines
    assert f"checkpoint: is not checkpoints/{size}, the newest" in lines


def test_a_version_1_or_2_replica_verifies_listed_or_not(old: Path) -> None:
    """Entries under index/, none under tile/entries/; every leaf recomputed from its blob
    gives the archive's own root."""
    replica = _replica(old)
    assert not [key for key in replica.objects if key.startswith("tile/entries/")]
    assert [key for key in replica.objects if key.startswith("index/")]
    report = check_replica(replica)
    assert report.ok, report.problems
    assert report.checkpoint is not None
    assert report.tree.root() == report.checkpoint.root == verify_archive(old).checkpoint.root
    assert report.checkpoint.size == len(archive_entries(old)) - 1
    replica.listing = False
    assert check_replica(replica).ok


def _flip(data: bytes, at: int, mask: int = 1) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]


@pytest.mark.parametrize("damage", ["blob altered", "blob removed", "index removed",
                                    "index entry re-kinded", "tile altered"])  # fmt: skip
def test_each_damage_to_a_version_1_or_2_replica_is_one_line_naming_it(
    old: Path, damage: str
) -> None:
    """A blob altered or gone, the index bundle gone, an index entry's kind changed (its
    digest kept, so its blob still matches), a level 0 tile altered: one line each,
    naming the object."""
    replica = _replica(old)
    size = len(archive_entries(old)) - 1
    index = f"index/000.p/{size}"
    tile = f"tile/0/000.p/{size}"
    body = archive_entries(old)[1][1]
    blob = blob_key(body)
    objects = replica.objects
    if damage == "blob altered":
        objects[blob] = _flip(body, 100)
        expected = f"{blob}: altered: its SHA-256 is not its name"
    elif damage == "blob removed":
        del objects[blob]
        expected = f"{blob}: missing (the body of entry 1)"
    elif damage == "index removed":
        del objects[index]
        expected = f"{index}: missing"
    elif damage == "index entry re-kinded":  # entry 1's kind: after entry 0 (2 + 41) and its length
        objects[index] = _flip(objects[index], 2 + 41 + 2, mask=EntryKind.SEALED ^ 2)
        expected = f"{index}: altered: its entries are not those checkpoints/{size} signs"
    else:
        objects[tile] = _flip(objects[tile], 40)
        expected = f"{tile}: altered: not the tile the entries checkpoints/{size} signs give"
    assert _lines(replica) == [expected]
