"""Archives of format versions 1 and 2 (leaves over the whole body) through the replica
against a real S3 (SeaweedFS): replicated by the replicator, checked by `nocontact verify
--from`, restored byte for byte by `nocontact restore`, and damage named by its object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.access.reading import open_archive
from proxy.archive import EntryKind, layout, verify_archive
from proxy.cli import main
from proxy.replica.check import exact_manifest
from proxy.replica.replicator import Replicator
from proxy.replica.signed_archive import ArchiveSource
from proxy.replica.tiles import bundles_for_size
from tests.old_archives import copy_version_2, created_as
from tests.replica_helpers import (
    Bucket,
    Contact,
    archive_entries,
    blob_key,
    copy_archive,
    hold,
    restored_segments,
)
from tests.replicator_helpers import contract_keys
from tests.s3_server import SeaweedS3


@dataclass(frozen=True, slots=True, kw_only=True)
class Old:
    archive: Path
    version: int
    contact: Contact
    held: list[bytes] | None  # the held messages' bytes; None: not sealed to `contact`


@pytest.fixture(scope="module", params=["version 1", "version 2", "version 2 writer's own"])
def old(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Old:
    """A version 1 archive (custody records of kind 2, one session as that release never
    reopened it), a version 2 one written over three sessions (entries rolling over many
    segments, one record larger than a segment), and the version 2 writer's own fixture
    (its public files added, which restore needs)."""
    tmp = tmp_path_factory.mktemp("old")
    archive = tmp / "archive"
    contact = Contact()
    if request.param == "version 1":
        with created_as(1):
            held = hold(archive, contact, 3, tag="first", big=True, custody_kind=EntryKind.CUSTODY)
        return Old(archive=archive, version=1, contact=contact, held=held)
    if request.param == "version 2":
        with created_as(2):
            held = hold(archive, contact, 1, tag="first", big=True)
        held += hold(archive, contact, 2, tag="second")
        held += hold(archive, contact, 1, tag="third")
        return Old(archive=archive, version=2, contact=contact, held=held)
    copy_version_2(archive)
    contact.publish(archive)
    return Old(archive=archive, version=2, contact=contact, held=None)


@pytest.fixture(scope="module")
def bucket(server: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Bucket:
    credentials = server.write_credentials(tmp_path_factory.mktemp("s3") / "credentials")
    return Bucket(server=server, name=server.locked_bucket("old-versions"), credentials=credentials)


def _nocontact(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in-process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _root_of(archive: Path) -> str:
    return verify_archive(archive).checkpoint.root.hex()


def test_it_replicates_with_its_entries_under_index_and_verifies_from_s3(
    old: Old, bucket: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    """The contract's layout, its entry bundles under index/ and none under tile/entries/;
    `verify --from` passes with the archive's own root, and with `--archive` shows the
    two are one log."""
    assert layout.read_manifest(old.archive).version == old.version
    prefix, size = bucket.replicate(old.archive)
    store = bucket.store(prefix)
    keys = set(store.keys())
    assert keys == contract_keys(old.archive) | {f"public/{size}/{layout.CUSTODY_KEYS}"}
    assert store.keys("tile/entries/") == []
    assert {bundle.path for bundle in bundles_for_size(size, own_path=True)} <= keys
    assert store.get(layout.MANIFEST) == (old.archive / layout.MANIFEST).read_bytes()
    code, out, err = _nocontact(capsys, "verify", *bucket.source(prefix))
    assert (code, err) == (0, "")
    assert out == f"replica OK, root {_root_of(old.archive)}\n"
    code, out, _ = _nocontact(capsys, "verify", *bucket.source(prefix), "--archive",
                              str(old.archive))  # fmt: skip
    assert code == 0, out


def test_restore_rebuilds_it_byte_for_byte_and_a_contact_opens_it(
    old: Old, bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Restored under its own version's leaf rule: `verify` passes with the same root,
    archive.json is still its version, every segment holding entries is the lost one's
    bytes, and the contact opens every held item."""
    prefix, _ = bucket.replicate(old.archive)
    lost = copy_archive(old.archive, tmp_path / "lost")  # kept only to compare
    target = tmp_path / "restored"
    code, out, err = _nocontact(capsys, "restore", *bucket.source(prefix), "--to", str(target))
    assert (code, err) == (0, ""), out
    code, out, _ = _nocontact(capsys, "verify", "--archive", str(target))
    assert (code, out) == (0, f"archive OK, root {_root_of(lost)}\n")
    for name in (layout.MANIFEST, layout.VERIFIER_KEY, layout.HEAD, layout.RECIPIENTS,
                 layout.CUSTODY_KEYS):  # fmt: skip
        assert (target / name).read_bytes() == (lost / name).read_bytes(), name
    assert layout.read_manifest(target).version == old.version
    restored = restored_segments(lost, target)
    assert restored
    if old.held is not None:
        assert len(restored) > 3  # entries rolled over, one record larger than a segment
        opened = open_archive(target, old.contact.identity)
        assert [item.payload for item in opened.items()] == old.held


@pytest.mark.parametrize("damage", ["blob altered", "index removed"])
def test_an_altered_blob_or_a_removed_index_bundle_fails_naming_it(
    old: Old, bucket: Bucket, damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the bucket's operator can do behind Object Lock's back (the filer API): one
    line naming the object, `replica BAD`, exit 1; restore writes nothing."""
    prefix, size = bucket.replicate(old.archive)
    store = bucket.store(prefix)
    if damage == "blob altered":
        key = blob_key(archive_entries(old.archive)[1][1])
        data = store.get(key)
        assert data is not None
        bucket.server.operator_rewrite(bucket.name, f"{prefix}/{key}", data[:5] + b"!" + data[6:])
        expected = f"{key}: altered: its SHA-256 is not its name"
    else:
        key = bundles_for_size(size, own_path=True)[-1].path
        bucket.server.operator_delete(bucket.name, f"{prefix}/{key}")
        expected = f"{key}: missing"
    code, out, err = _nocontact(capsys, "verify", *bucket.source(prefix))
    assert (code, err) == (1, "")
    assert out.splitlines() == [expected, "replica BAD"]
    target = tmp_path / "restored"
    code, out, _ = _nocontact(capsys, "restore", *bucket.source(prefix), "--to", str(target))
    assert code == 1
    assert out.splitlines()[0] == expected
    assert list(tmp_path.iterdir()) == []


def test_a_version_1_archive_upgraded_by_its_writer_still_replicates(
    bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer that opens a version 1 archive rewrites archive.json as version 2 (the same
    leaves); the bucket keeps the version 1 file it got first, and is still this archive's
    replica: the next process goes on, and the two verify as one log."""
    archive, contact = tmp_path / "archive", Contact()
    with created_as(1):
        hold(archive, contact, 2, tag="first", custody_kind=EntryKind.CUSTODY)
    assert layout.read_manifest(archive).version == 1
    prefix, size = bucket.replicate(archive)
    hold(archive, contact, 1, tag="after the upgrade")
    assert layout.read_manifest(archive).version == 2
    store = bucket.store(prefix)
    later = Replicator(ArchiveSource(archive), store).run_pass()
    assert later.size > size
    bucket_manifest = exact_manifest(store.get(layout.MANIFEST) or b"")
    assert bucket_manifest is not None
    assert bucket_manifest.version == 1
    code, out, _ = _nocontact(capsys, "verify", *bucket.source(prefix), "--archive", str(archive))
    assert code == 0, out
    assert out.startswith(f"replica OK, root {_root_of(archive)}\n")
