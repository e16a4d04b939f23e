"""The witnesses' cosignatures in the replica (witnessed_copies.py): uploaded as they come,
checked by `verify --from`, and restored with the log, against the real SeaweedFS."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from proxy.archive import EntryKind, verify_archive
from proxy.replica.check import check_replica
from proxy.replica.replicator import Replicator
from proxy.replica.restore import restore
from proxy.replica.signed_archive import ArchiveSource
from proxy.replica.sources import S3Replica
from proxy.replica.store import BucketSettings, ObjectStore
from proxy.replica.witnessed_copies import RECENT, LocalWitnessed, copy_key, parse_key
from proxy.witness.cosignature import Cosigner
from proxy.witness.signed import read_note
from proxy.witness.witnessed import Witnessed
from tests.replica_helpers import Contact
from tests.replicator_helpers import grow, signed_entries
from tests.s3_server import SeaweedS3

ONE = Cosigner.generate("lawyer.example/witness")
TWO = Cosigner.generate("advocacy.example/witness")


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    grow(root, [40, 300, 5])
    Contact().publish(root)
    return root


def _notes(root: Path) -> dict[int, bytes]:
    """Every checkpoint note in the log, by its size."""
    _, entries, _ = signed_entries(root)
    return {
        index: body for index, (kind, body) in enumerate(entries) if kind is EntryKind.CHECKPOINT
    }


def _cosign(root: Path, size: int, note: bytes, *cosigners: Cosigner) -> bytes:
    """What the daemon keeps when witnesses cosign the checkpoint of `size`; the file."""
    body = note.decode().rpartition("\n\n")[0] + "\n"
    Witnessed(root).keep(size, note, [c.cosign(body, 1_772_366_400 + size) for c in cosigners])
    return (root / "witnessed" / str(size)).read_bytes()


def _witnessed_keys(store: ObjectStore) -> set[str]:
    return set(store.keys("witnessed/"))


def test_cosigned_notes_follow_the_log_into_the_bucket_and_back(
    archive: Path, store: ObjectStore, tmp_path: Path
) -> None:
    """Each state of a cosigned note is its own object; nothing new writes nothing;
    verify --from keeps the best of each size, and restore puts it back."""
    notes = _notes(archive)
    first, second = sorted(notes)[1:3]
    one = _cosign(archive, first, notes[first], ONE)
    replicator = Replicator(ArchiveSource(archive), store)
    replicator.run_pass()
    assert _witnessed_keys(store) == {copy_key(first, one)}
    assert replicator.run_pass().wrote is False

    both = _cosign(archive, first, notes[first], TWO)
    other = _cosign(archive, second, notes[second], ONE)
    assert replicator.run_pass().wrote is True
    keys = {copy_key(first, one), copy_key(first, both), copy_key(second, other)}
    assert _witnessed_keys(store) == keys
    again = Replicator(ArchiveSource(archive), store)  # a new process lists, then skips
    assert again.run_pass().wrote is False

    report = check_replica(S3Replica(store))
    assert report.ok, report.problems
    assert report.witnessed == {first: both, second: other}
    assert len(read_note(both).signatures) == 3  # the log's own, then two witnesses
    target = tmp_path / "restored"
    restore(S3Replica(store), report, target)
    assert (target / "witnessed" / str(first)).read_bytes() == both
    assert (target / "witnessed" / str(second)).read_bytes() == other
    assert (target / "witnessed").stat().st_mode & 0o777 == 0o700
    assert verify_archive(target).checkpoint.root == report.checkpoint_root


def test_a_note_of_a_size_not_yet_replicated_waits(archive: Path, store: ObjectStore) -> None:
    """A cosigned note beyond the bucket's checkpoint is not uploaded until that size is
    replicated (its root could not be checked against the bucket's tree)."""
    notes = _notes(archive)
    grown = max(notes)
    replicator = Replicator(ArchiveSource(archive), store)
    replicator.run_pass()
    grow(archive, [3])
    later = max(_notes(archive))
    data = _cosign(archive, later, _notes(archive)[later], ONE)
    assert later > grown
    replicator.run_pass()
    assert copy_key(later, data) in _witnessed_keys(store)


@pytest.mark.parametrize(
    ("forge", "why"),
    [
        ("junk", "not a signed checkpoint note"),
        ("renamed", "its checkpoint is of size"),
        ("unsigned", "not a checkpoint signed by this archive's key"),
        ("altered", "altered: its SHA-256 is not its name"),
    ],
)
def test_a_forged_copy_is_named_by_verify_from(
    archive: Path, store: ObjectStore, *, server: SeaweedS3, settings: BucketSettings,
    forge: str, why: str,
) -> None:  # fmt: skip
    """Whoever can write the bucket can add objects under witnessed/; each that is not a
    checkpoint of this log, signed by its key, is a problem naming its key."""
    notes = _notes(archive)
    size = sorted(notes)[1]
    Replicator(ArchiveSource(archive), store).run_pass()
    note = notes[size]
    if forge == "junk":
        data = b"not a note\n"
        key = copy_key(size, data)
    elif forge == "renamed":
        data = note
        key = copy_key(size + 1, data)
    elif forge == "unsigned":
        data = note.replace(b"\n\n", b"\nextension\n\n", 1)  # its signature no longer holds
        key = copy_key(size, data)
    else:
        data = note
        key = f"witnessed/{size}/{hashlib.sha256(b'other').hexdigest()}"
    assert parse_key(key) is not None
    server.client().put_object(Bucket=settings.bucket, Key="log/" + key, Body=data)
    problems = [str(p) for p in check_replica(S3Replica(store)).problems]
    assert len(problems) == 1
    assert problems[0].startswith(f"{key}: {why}")


def test_a_pass_rereads_only_the_newest_files_it_has_seen(tmp_path: Path) -> None:
    """Every new file is read; a file seen before is read again only while it is among
    the RECENT newest sizes, so a pass over a long-lived directory reads names, not files."""
    directory = tmp_path / "witnessed"
    directory.mkdir()
    for size in range(1, RECENT + 11):
        (directory / str(size)).write_bytes(b"note %d\n" % size)
    local = LocalWitnessed(tmp_path)
    local.know_bucket([])
    assert len(list(local.changed(RECENT + 10))) == RECENT + 10
    assert list(local.changed(RECENT + 10)) == []
    for size in (1, RECENT + 10):
        (directory / str(size)).write_bytes(b"note %d, cosigned\n" % size)
    (directory / str(RECENT + 11)).write_bytes(b"a new one\n")
    again = list(local.changed(RECENT + 11))
    assert [parse_key(copy.key) for copy in again] == [
        (RECENT + 10, hashlib.sha256(b"note %d, cosigned\n" % (RECENT + 10)).hexdigest()),
        (RECENT + 11, hashlib.sha256(b"a new one\n").hexdigest()),
    ]
