"""check.py on a replica held in memory: each rule's failure, named by its object."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from proxy.archive import ArchiveLog, layout
from proxy.archive.note import Checkpoint, Signer
from proxy.archive.records import EntryKind
from proxy.replica.check import check_replica
from proxy.replica.restore import RestoreFailed, restore
from proxy.replica.tiles import Tile
from tests.old_archives import created_as
from tests.replica_helpers import Contact, archive_entries, hold, replicate


@dataclass
class MemoryReplica:
    """A bucket as a dict; `listing` False plays a static web server (no listing)."""

    objects: dict[str, bytes] = field(default_factory=dict)
    listing: bool = True

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def keys(self, prefix: str) -> list[str] | None:
        if not self.listing:
            return None
        return sorted(key for key in self.objects if key.startswith(prefix))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("check") / "archive"
    hold(root, Contact(), 2, tag="memory")
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


def test_an_older_version_or_no_manifest_ends_the_check(tmp_path: Path) -> None:
    """Only version 3 archives are replicated; a bucket without archive.json is not one."""
    with created_as(2):
        ArchiveLog.open(tmp_path / "v2", segment_bytes=4096).close()
    old = tmp_path / "v2"
    replica = MemoryReplica({layout.MANIFEST: (old / layout.MANIFEST).read_bytes()})
    assert _lines(replica) == [
        "archive.json: archive format version 2: only version 3 archives are replicated"
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
