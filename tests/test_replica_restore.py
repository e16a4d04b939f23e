"""`nocontact verify --from` and `nocontact restore` against a real S3 (SeaweedFS) and a
plain static web server on loopback, with a replica written from a real archive."""

from __future__ import annotations

import asyncio
import io
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from proxy.access.reading import open_archive
from proxy.archive import ArchiveLog, layout, verify_archive
from proxy.cli import main
from proxy.replica.tiles import bundles_for_size, tiles_for_size
from tests.replica_helpers import (
    Bucket,
    Contact,
    archive_entries,
    blob_key,
    copy_archive,
    hold,
    restored_segments,
    to_directory,
)
from tests.s3_server import SeaweedS3
from tests.servers import HOST, free_port


def nocontact(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main(list(args))
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True, slots=True, kw_only=True)
class Made:
    archive: Path  # the archive, three sessions of writing
    early: Path  # a copy of it after its first session (a prefix)
    fork: Path  # that copy, written on differently (the same key: a fork)
    contact: Contact
    held: list[bytes]  # every held message's bytes, in log order


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    tmp = tmp_path_factory.mktemp("replica")
    contact = Contact()
    archive = tmp / "archive"
    held = hold(archive, contact, 1, tag="first", big=True)
    early = copy_archive(archive, tmp / "early")
    fork = copy_archive(archive, tmp / "fork")
    held += hold(archive, contact, 2, tag="second")
    held += hold(archive, contact, 1, tag="third")
    hold(fork, contact, 1, tag="forked")
    return Made(archive=archive, early=early, fork=fork, contact=contact, held=held)


@pytest.fixture(scope="module")
def bucket(server: SeaweedS3, tmp_path_factory: pytest.TempPathFactory) -> Bucket:
    credentials = server.write_credentials(tmp_path_factory.mktemp("s3") / "credentials")
    return Bucket(server=server, name=server.locked_bucket("replica"), credentials=credentials)


@pytest.fixture
def static(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    """Serve a directory over plain HTTP on loopback (aiohttp's static files); its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runners: list[web.AppRunner] = []

    def serve(directory: Path) -> str:
        app = web.Application()
        app.router.add_static("/replica/", directory)
        runner = web.AppRunner(app)
        port = free_port()
        asyncio.run_coroutine_threadsafe(runner.setup(), loop).result(10)
        site = web.TCPSite(runner, HOST, port)
        asyncio.run_coroutine_threadsafe(site.start(), loop).result(10)
        runners.append(runner)
        return f"http://{HOST}:{port}/replica"

    try:
        yield serve
    finally:
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _root_of(archive: Path) -> str:
    return verify_archive(archive).checkpoint.root.hex()


def test_a_replica_of_a_real_archive_verifies_from_s3(made: Made, bucket: Bucket) -> None:
    """Items, custody records and several checkpoints: every check passes, and the root
    is the archive's own."""
    prefix, _ = bucket.replicate(made.archive)
    code, out, err = nocontact("verify", *bucket.source(prefix))
    assert (code, err) == (0, "")
    assert out == f"replica OK, root {_root_of(made.archive)}\n"


def test_a_static_copy_verifies_over_http_and_restores(
    made: Made, bucket: Bucket, static: Callable[[Path], str], tmp_path: Path
) -> None:
    """The same layout from a plain web server (no listing): verified through
    `checkpoint`, and restored."""
    prefix, _ = bucket.replicate(made.archive)
    copy = tmp_path / "copy"
    to_directory(bucket.store(prefix), copy)
    url = static(copy)
    code, out, _ = nocontact("verify", "--from", url)
    assert (code, out) == (0, f"replica OK, root {_root_of(made.archive)}\n")
    code, out, _ = nocontact("restore", "--from", url, "--to", str(tmp_path / "restored"))
    assert code == 0, out
    assert nocontact("verify", "--archive", str(tmp_path / "restored"))[0] == 0
    (copy / blob_key(archive_entries(made.archive)[1][1])).write_bytes(b"not it")
    code, out, _ = nocontact("verify", "--from", url)
    assert code == 1
    assert out.splitlines()[0].startswith("blobs/sha256/")
    assert out.splitlines()[-1] == "replica BAD"


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


@pytest.mark.parametrize("damage", ["tile removed", "tile altered", "blob altered",
                                    "bundle altered", "checkpoint signature"])  # fmt: skip
def test_each_damage_fails_naming_the_object(made: Made, bucket: Bucket, damage: str) -> None:
    """What the bucket's operator can do behind Object Lock's back (the filer API) is
    found, and the line names the object."""
    prefix, size = bucket.replicate(made.archive)
    store = bucket.store(prefix)
    tile = tiles_for_size(size)[0].path
    bundle = bundles_for_size(size)[0].path
    blob = blob_key(archive_entries(made.archive)[1][1])
    key = {
        "tile removed": tile,
        "tile altered": tile,
        "blob altered": blob,
        "bundle altered": bundle,
        "checkpoint signature": f"checkpoints/{size}",
    }[damage]
    full = f"{prefix}/{key}"
    if damage == "tile removed":
        bucket.server.operator_delete(bucket.name, full)
    else:
        data = store.get(key)
        assert data is not None
        at = {"bundle altered": 2 + 20, "checkpoint signature": len(data) - 10}.get(damage, 5)
        bucket.server.operator_rewrite(bucket.name, full, _flip(data, at))
    code, out, err = nocontact("verify", *bucket.source(prefix))
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0].startswith(f"{key}: "), out
    assert lines[-1] == "replica BAD"


def test_a_pinned_key_of_another_archive_fails_on_signing_pub(
    made: Made, bucket: Bucket, tmp_path: Path
) -> None:
    """--key of another archive: the replica's signing.pub is named, nothing more is trusted."""
    other = tmp_path / "other"
    ArchiveLog.open(other, segment_bytes=4096).close()
    prefix, _ = bucket.replicate(made.archive)
    key = (other / layout.VERIFIER_KEY).read_text().strip()
    code, out, _ = nocontact("verify", *bucket.source(prefix), "--key", key)
    assert code == 1
    assert out == "signing.pub: is not the key you gave (--key)\nreplica BAD\n"
    own = (made.archive / layout.VERIFIER_KEY).read_text().strip()
    assert nocontact("verify", *bucket.source(prefix), "--key", own)[0] == 0


def test_a_local_archive_must_be_one_log_with_the_replica(made: Made, bucket: Bucket) -> None:
    """An earlier copy (a prefix) passes, whichever of the two is ahead; a fork signed with
    the same key fails naming the first entry that differs."""
    prefix, _ = bucket.replicate(made.archive)
    code, out, _ = nocontact("verify", *bucket.source(prefix), "--archive", str(made.early))
    assert code == 0, out
    assert out.splitlines()[-1].endswith("one log with the replica (the smaller is a prefix)")
    early_prefix, _ = bucket.replicate(made.early)
    assert nocontact("verify", *bucket.source(early_prefix), "--archive", str(made.archive))[0] == 0
    code, out, _ = nocontact("verify", *bucket.source(prefix), "--archive", str(made.fork))
    assert code == 1
    # Both reopened the same copy at the same (test) time: their first checkpoint is the
    # same bytes (Ed25519 signatures are deterministic); the entries after it differ.
    first_forked = len(archive_entries(made.early)) + 1
    assert out.splitlines()[0] == (
        f"archive {made.fork}: entry {first_forked} differs from the replica's (a fork)"
    )


def test_restore_rebuilds_the_lost_archive_byte_for_byte(
    made: Made, bucket: Bucket, tmp_path: Path
) -> None:
    """The archive is lost; restore rebuilds it: it verifies with the same root, each
    segment holding entries is the lost one's bytes, and the contact opens every item."""
    prefix, _ = bucket.replicate(made.archive)
    lost = copy_archive(made.archive, tmp_path / "lost")  # kept only to compare
    target = tmp_path / "restored"
    code, out, err = nocontact("restore", *bucket.source(prefix), "--to", str(target))
    assert (code, err) == (0, ""), out
    assert nocontact("verify", "--archive", str(target))[1] == (
        f"archive OK, root {_root_of(lost)}\n"
    )
    for name in (layout.MANIFEST, layout.VERIFIER_KEY, layout.HEAD, layout.RECIPIENTS,
                 layout.CUSTODY_KEYS):  # fmt: skip
        assert (target / name).read_bytes() == (lost / name).read_bytes(), name
    assert not (target / layout.SIGNING_KEY).exists()
    restored = restored_segments(lost, target)
    assert len(restored) > 3  # entries rolled over, one record larger than a segment
    opened = open_archive(target, made.contact.identity)
    assert [item.payload for item in opened.items()] == made.held


def test_contacts_read_a_restored_archive_and_custody_is_recorded_beside_it(
    made: Made, bucket: Bucket, tmp_path: Path
) -> None:
    """With no signing.key the restored log takes no entry: `contact list` and `show`
    work, each look recorded first in the restored archive's own custody archive, which
    verifies; the restored archive is unchanged and still verifies."""
    prefix, _ = bucket.replicate(made.archive)
    target = tmp_path / "restored"
    assert nocontact("restore", *bucket.source(prefix), "--to", str(target))[0] == 0
    before = {p.name: p.read_bytes() for p in (target / layout.LOG_DIR).iterdir()}
    key = tmp_path / "dana.key"
    key.write_text(f"{made.contact.identity}\n")
    key.chmod(0o600)
    reading = ["--archive", str(target), "--identity", str(key)]
    code, out, err = nocontact("contact", "list", *reading)
    assert (code, err) == (0, "")
    rows = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert len(rows) == len(made.held)
    code, out, _ = nocontact("contact", "show", *reading, rows[-1])
    assert code == 0
    assert "third round 0 message 1" in out
    assert {p.name: p.read_bytes() for p in (target / layout.LOG_DIR).iterdir()} == before
    assert nocontact("verify", "--archive", str(target))[0] == 0
    custody = target / layout.RESTORED_CUSTODY
    assert nocontact("verify", "--archive", str(custody))[0] == 0
    records = open_archive(custody, made.contact.identity)
    list(records.items())
    assert [(r.action, r.items) for _, r in records.custody_read] == [
        ("list", tuple(int(row) for row in rows)),
        ("show", (int(rows[-1]),)),
    ]


def test_restore_refuses_a_non_empty_directory_and_bad_sources(
    made: Made, bucket: Bucket, tmp_path: Path
) -> None:
    """A non-empty target, an unreachable endpoint, a missing bucket, plain http off
    loopback: one line each, exit 2, nothing written."""
    prefix, _ = bucket.replicate(made.archive)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    code, _, err = nocontact("restore", *bucket.source(prefix), "--to", str(target))
    assert code == 2
    assert err == f"nocontact: {target} is not empty: restore writes only into a new directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]  # no temporary left
    dead = f"http://{HOST}:{free_port()}"
    for source in (
        ["--from", f"s3://{bucket.name}/{prefix}", "--endpoint", dead, "--credentials",
         str(bucket.credentials)],
        ["--from", f"s3://no-such-bucket/{prefix}", "--endpoint", bucket.server.endpoint,
         "--credentials", str(bucket.credentials)],
        ["--from", "http://example.org/replica"],
        ["--from", dead + "/replica"],
    ):  # fmt: skip
        code, out, err = nocontact("verify", *source)
        assert (code, out) == (2, ""), source
        assert len(err.splitlines()) == 1
        assert err.startswith("nocontact: ")
        assert "Traceback" not in err
