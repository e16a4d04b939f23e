"""The sealed archive: what is kept, what shows on disk, and that any tampering is caught."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.archive import (
    Archive,
    ArchiveLog,
    CustodyRecord,
    EntryKind,
    VerifyFailure,
    layout,
    verify_archive,
)
from proxy.archive.errors import ArchiveUnavailable
from proxy.archive.log import TIME_GRAIN
from proxy.archive.merkle import leaf_hash as merkle_leaf
from proxy.archive.merkle import verify_inclusion
from proxy.archive.note import Verifier, parse_checkpoint
from proxy.archive.once import SealedMarks
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.records import (
    HEADER_BYTES,
    OVERHEAD,
    TILE_ENTRY_BYTES,
    LeafRule,
    entry_hash,
    tile_entry,
)
from proxy.archive.seal import parse_sealed
from proxy.archive.segments import segment_name
from proxy.rules import decide
from tests.factories import email, make_rules, sms
from tests.old_archives import VERSION_2, copy_version_2, created_as

IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SMALL_SEGMENTS = 16 * 1024


def _entries(root: Path) -> Iterator[tuple[EntryKind, int, bytes]]:
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                yield record.header.kind, record.header.index, bytes(record.body)
                del record


def _hold_all(root: Path, messages: list[tuple[str, str]], **options: object) -> None:
    rules = make_rules()

    async def run() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT], **options)  # type: ignore[arg-type]
        for headers, body in messages:
            message = email(headers, body)
            await archive.hold(message, decide(message, rules))
        await archive.close()

    asyncio.run(run())


def test_held_items_are_sealed_and_read_back_whole(tmp_path: Path) -> None:
    """A held item decrypts, with the contact's key only, to its metadata and original bytes."""
    root = tmp_path / "archive"
    message = email("From: Mark <mark.smith@gmail.com>\nSubject: hello", "it's me\n")
    decision = decide(message, make_rules())

    async def run() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT], clock=lambda: NOW)
        receipt = await archive.hold(message, decision, extras={"note": "x"})
        assert receipt.index == 1  # entry 0 is the archive's first checkpoint
        await archive.close()

    asyncio.run(run())
    items = [body for kind, _, body in _entries(root) if kind is EntryKind.SEALED]
    assert len(items) == 1
    metadata, original = parse_sealed(pyrage.decrypt(items[0], [IDENTITY]))
    assert original == message.raw
    assert metadata["channel"] == "email"
    assert metadata["subject"] == "hello"
    assert metadata["rule"] == {
        "id": "people.mark.emails",
        "kind": "direct",
        "reason": "from address is mark",
    }
    assert {"kind": "email", "value": "marksmith@gmail.com", "source": "from"} in metadata[
        "senders"
    ]
    assert metadata["received_at"] == "2026-03-01T12:00:00Z"
    assert metadata["sealed_at"] == "2026-03-01T12:00:00Z"
    assert metadata["note"] == "x"
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(items[0], [pyrage.x25519.Identity.generate()])


def test_nothing_readable_on_disk(tmp_path: Path) -> None:
    """No sender, subject, body, channel or rule name of a held message appears on disk."""
    root = tmp_path / "archive"
    canaries = ["CANARYSUBJECT", "CANARYBODY", "marksmith", "mark.smith", "gmail", "email",
                "people.mark", "direct", "Mark"]  # fmt: skip
    _hold_all(
        root,
        [("From: Mark <mark.smith@gmail.com>\nSubject: CANARYSUBJECT", "CANARYBODY " * 200)] * 5,
        segment_bytes=SMALL_SEGMENTS,
    )
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(path.name, c) for c in canaries if c.encode() in data]
    assert found == []


def test_custody_records_look_like_items_and_are_signed_at_once(tmp_path: Path) -> None:
    """Outside the seal a custody record is a sealed entry like any item (only its sealed
    metadata says what it is), and a checkpoint follows it at once, for the contact's
    tools, which read only what a checkpoint covers."""
    root = tmp_path / "archive"

    async def run() -> int:
        archive = await Archive.open(root, recipients=[RECIPIENT])
        receipt = await archive.record_custody(
            CustodyRecord(contact="SHA256:abc", action="export", items=(1, 2), at=NOW,
                          reason="for the hearing")
        )  # fmt: skip
        await archive.close()
        return receipt.index

    index = asyncio.run(run())
    entries = list(_entries(root))
    assert {kind for kind, _, _ in entries} == {EntryKind.SEALED, EntryKind.CHECKPOINT}
    kind, _, body = entries[index]
    assert kind is EntryKind.SEALED
    assert entries[index + 1][0] is EntryKind.CHECKPOINT
    metadata, _ = parse_sealed(pyrage.decrypt(body, [IDENTITY]))
    assert metadata["kind"] == "custody"
    assert metadata["action"] == "export"
    assert metadata["reason"] == "for the hearing"
    verify_archive(root)


def test_checkpoints_come_on_a_fixed_cadence_with_coarse_times(tmp_path: Path) -> None:
    """Checkpoints are signed at every tick whether or not anything arrived; their times are
    rounded down to the grain, and the segment's modification time is the latest
    checkpoint's, not the latest entry's."""
    root = tmp_path / "archive"

    async def run() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT], checkpoint_every=0.1)
        await asyncio.sleep(0.55)  # idle: ticks all the same
        await archive.append(EntryKind.SEALED, b"sealed bytes")
        await archive.close()

    asyncio.run(run())
    entries = list(_entries(root))
    checkpoints = [body for kind, _, body in entries if kind is EntryKind.CHECKPOINT]
    assert len(checkpoints) >= 5  # creation, open, ticks while idle, close
    verifier = Verifier.decode((root / layout.VERIFIER_KEY).read_text())
    for note in checkpoints:
        moment = parse_checkpoint(verifier.open(note)).time
        assert moment.timestamp() % TIME_GRAIN == 0
    mtime = (root / layout.LOG_DIR / "00000001.seg").stat().st_mtime
    assert mtime % TIME_GRAIN == 0
    assert mtime == parse_checkpoint(verifier.open(checkpoints[-1])).time.timestamp()


def test_opening_and_closing_always_sign(tmp_path: Path) -> None:
    """Whether or not anything came since the last checkpoint, opening and closing add one:
    the number of checkpoints never says that something arrived."""
    quiet, busy = tmp_path / "quiet", tmp_path / "busy"
    for root, entries in ((quiet, 0), (busy, 1)):
        log = ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS)
        log.append([(EntryKind.SEALED, b"x")] * entries, checkpoint=False, now=NOW)
        log.close(now=NOW)
        ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS).close(now=NOW)
    kinds = [[kind for kind, _, _ in _entries(root)] for root in (quiet, busy)]
    assert kinds[0] == [EntryKind.CHECKPOINT] * 4  # created, closed, opened, closed
    assert kinds[1] == [EntryKind.CHECKPOINT, EntryKind.SEALED] + [EntryKind.CHECKPOINT] * 3


def test_a_version_1_archive_is_read_and_upgraded_to_2_never_3(tmp_path: Path) -> None:
    """Custody entries of kind 2 from version 1 stay valid; opening the archive makes
    archive.json version 2 (the same leaf rule), never 3, and verify accepts both forms."""
    root = tmp_path / "archive"
    with created_as(1):
        log = ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS)
    log.append([(EntryKind.CUSTODY, b"an old custody record")], checkpoint=True, now=NOW)
    log.close(now=NOW)
    assert layout.read_manifest(root).version == 1
    verify_archive(root)
    ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS).close(now=NOW)
    assert layout.read_manifest(root).version == 2
    assert verify_archive(root).version == 2
    assert EntryKind.CUSTODY in {kind for kind, _, _ in _entries(root)}
    assert all(stored == _leaf_v2(kind, index, body) for kind, index, body, stored in _stored(root))


def _stored(root: Path) -> list[tuple[EntryKind, int, bytes, bytes]]:
    found = []
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                header = record.header
                found.append((header.kind, header.index, bytes(record.body), record.stored_hash))
                del record
    return found


def _leaf_v2(kind: EntryKind, index: int, body: bytes) -> bytes:
    """Versions 1 and 2: RFC 6962's leaf hash of kind || index || body (written out)."""
    return hashlib.sha256(b"\x00" + bytes([kind]) + index.to_bytes(8, "big") + body).digest()


def _leaf_v3(kind: EntryKind, index: int, body: bytes) -> bytes:
    """Version 3: RFC 6962's leaf hash of kind || index || SHA-256(body) (written out)."""
    entry = bytes([kind]) + index.to_bytes(8, "big") + hashlib.sha256(body).digest()
    return hashlib.sha256(b"\x00" + entry).digest()


def _flip_body(root: Path, index: int) -> None:
    """Flip one byte in the middle of entry `index`'s body, on disk."""
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        path = log_dir / segment_name(number)
        with mapped(path) as buffer:
            found = [(r.offset, r.header.length) for r in SegmentScan(number, buffer)
                     if r.header.index == index]  # fmt: skip
        if found:
            offset, length = found[0]
            data = bytearray(path.read_bytes())
            data[offset + HEADER_BYTES + length // 2] ^= 0x01
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"no entry {index}")


def test_a_new_archive_is_version_3_with_leaves_over_the_bodies_hashes(tmp_path: Path) -> None:
    """A new archive says version 3; every leaf is the RFC 6962 leaf hash of the 41-byte
    tile entry; it verifies, and reopened and appended to it stays version 3."""
    root = tmp_path / "archive"
    _hold_all(root, [("From: mark.smith@gmail.com\nSubject: hi", "it's me\n")])
    assert layout.read_manifest(root).version == layout.VERSION == 3
    log = ArchiveLog.open(root)
    log.append([(EntryKind.SEALED, os.urandom(70_000))], checkpoint=True, now=NOW)
    log.close(now=NOW)
    assert layout.read_manifest(root).version == 3
    report = verify_archive(root)
    assert report.version == 3
    stored = _stored(root)
    assert any(len(body) > 65_535 for _, _, body, _ in stored)  # too big for a tile entry itself
    for kind, index, body, leaf in stored:
        assert leaf == _leaf_v3(kind, index, body) == report.tree.leaf(index)
        assert leaf == merkle_leaf(tile_entry(kind, index, body))


def test_a_flipped_byte_in_a_version_3_body_fails_verify(tmp_path: Path) -> None:
    """The leaf binds the body through its SHA-256: one flipped bit is caught by verify."""
    root = tmp_path / "archive"
    _hold_all(root, [("From: mark.smith@gmail.com\nSubject: hi", "it's me\n")])
    sealed = next(index for kind, index, _ in _entries(root) if kind is EntryKind.SEALED)
    _flip_body(root, sealed)
    with pytest.raises(VerifyFailure, match=f"entry {sealed}: content does not match its hash"):
        verify_archive(root)


def test_a_version_2_archive_stays_version_2_and_keeps_its_leaves(tmp_path: Path) -> None:
    """The version 2 writer's own archive verifies; reopened and appended to, it is still
    version 2, its old bytes untouched and its new leaves over the whole body, and it
    verifies again; a flipped byte in its body fails."""
    root = copy_version_2(tmp_path / "archive")
    before = (root / layout.LOG_DIR / "00000001.seg").read_bytes()
    old = _stored(root)
    assert verify_archive(root).version == 2
    assert all(leaf == _leaf_v2(kind, index, body) for kind, index, body, leaf in old)
    log = ArchiveLog.open(root)
    log.append([(EntryKind.SEALED, b"held after the upgrade")], checkpoint=True, now=NOW)
    log.close(now=NOW)
    assert layout.read_manifest(root).version == 2
    assert (root / layout.MANIFEST).read_bytes() == (VERSION_2 / layout.MANIFEST).read_bytes()
    report = verify_archive(root)
    assert report.version == 2
    stored = _stored(root)
    assert stored[: len(old)] == old
    used = sum(OVERHEAD + len(body) for _, _, body, _ in old)
    assert (root / layout.LOG_DIR / "00000001.seg").read_bytes()[:used] == before[:used]
    for kind, index, body, leaf in stored:
        assert leaf == _leaf_v2(kind, index, body) == report.tree.leaf(index)
    assert any(body == b"held after the upgrade" for _, _, body, _ in stored)
    _flip_body(root, 1)
    with pytest.raises(VerifyFailure, match="entry 1: content does not match its hash"):
        verify_archive(root)


def test_a_version_2_archive_written_through_the_daemons_writer_stays_version_2(
    tmp_path: Path,
) -> None:
    """Items held through the asyncio writer into a version 2 archive get version 2
    leaves; the archive stays version 2 and verifies."""
    root = copy_version_2(tmp_path / "archive")
    _hold_all(root, [("From: mark.smith@gmail.com\nSubject: hi", "it's me\n")])
    assert verify_archive(root).version == layout.read_manifest(root).version == 2
    assert all(leaf == _leaf_v2(k, i, body) for k, i, body, leaf in _stored(root))


def test_an_arrival_is_sealed_once_across_restarts_and_unsettled_notes(tmp_path: Path) -> None:
    """Marks stored with their entries survive a restart; a note whose sealed bytes never
    reached the log (a crash between note and store) is dropped, a stored one kept."""
    root = tmp_path / "archive"

    async def first() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT])
        assert not archive.sealed("imap:one")
        await archive.append(EntryKind.SEALED, b"sealed one", once="imap:one")
        assert archive.sealed("imap:one")
        await archive.close()

    asyncio.run(first())
    assert b"imap:one" not in (root / "sealed").read_bytes()  # marks are keyed hashes
    log = ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS)  # a crash, by hand:
    marks = SealedMarks.open(root, log.derive_key(b"nocontact sealed marks v1"), lambda _: set())
    marks.note([("imap:stored", b"sealed stored"), ("imap:lost", b"sealed lost")], log.tree.size)
    log.append([(EntryKind.SEALED, b"sealed stored")], checkpoint=False, now=NOW)
    marks.close()
    log.close(now=NOW)

    async def second() -> list[bool]:
        archive = await Archive.open(root, recipients=[RECIPIENT])
        found = [archive.sealed(m) for m in ("imap:one", "imap:stored", "imap:lost")]
        await archive.close()
        return found

    assert asyncio.run(second()) == [True, True, False]


def test_group_commit_shares_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sixteen concurrent producers get distinct entries, sharing fsyncs (fewer than items)."""
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    root = tmp_path / "archive"
    messages = [sms("+1 555 010 0199", f"text {i}") for i in range(160)]
    decision = decide(messages[0], make_rules())

    async def run() -> list[int]:
        archive = await Archive.open(root, recipients=[RECIPIENT])
        calls.clear()

        async def producer(chunk: list[int]) -> list[int]:
            return [(await archive.hold(messages[i], decision)).index for i in chunk]

        results = await asyncio.gather(*(producer(list(range(k, 160, 16))) for k in range(16)))
        await archive.close()
        return sorted(i for r in results for i in r)

    indices = asyncio.run(run())
    assert len(set(indices)) == 160
    assert len(calls) < 160 / 2
    verify_archive(root)


def test_idle_archive_signs_its_tail(tmp_path: Path) -> None:
    """Entries are under a signed checkpoint at the next tick, even with no more traffic."""
    root = tmp_path / "archive"

    async def run() -> int:
        archive = await Archive.open(root, recipients=[RECIPIENT], checkpoint_every=0.05)
        await asyncio.sleep(0.1)
        await archive.append(EntryKind.SEALED, b"sealed bytes")
        await archive.append(EntryKind.SEALED, b"more sealed bytes")
        await asyncio.sleep(0.3)
        verifier = Verifier.decode((root / layout.VERIFIER_KEY).read_text())
        signed = layout.read_head_size(root, verifier)
        await archive.close()
        return signed

    assert asyncio.run(run()) >= 3


def test_inclusion_proof_against_the_signed_head(tmp_path: Path) -> None:
    """Every entry has an inclusion proof to the root in the signed checkpoint file."""
    root = tmp_path / "archive"
    log = ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS)
    for i in range(20):
        log.append([(EntryKind.SEALED, os.urandom(100 + i))], checkpoint=i % 7 == 0, now=NOW)
    log.close()
    report = verify_archive(root)
    reopened = ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS)
    size = report.checkpoint.size
    for index in range(size):
        proof = reopened.tree.inclusion_proof(index, size)
        leaf = reopened.tree.leaf(index)
        assert verify_inclusion(leaf, index, size, proof, report.checkpoint.root)
    reopened.close()


# -- tampering ---------------------------------------------------------------------------


def _build(root: Path) -> None:
    log = ArchiveLog.open(root, segment_bytes=4096)
    for i in range(12):
        body = bytes([i]) * (300 + 97 * i)
        log.append([(EntryKind.SEALED, body)], checkpoint=i % 4 == 3, now=NOW)
    log.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "archive"
    _build(root)
    return root


def _copy(pristine: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(pristine, target)
    return target


def _verified_files(root: Path) -> list[Path]:
    """Every file verify reads (the lock and the private signing key are not evidence)."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.name not in (layout.LOCK, layout.SIGNING_KEY)
    )  # fmt: skip


def _records(root: Path) -> list[tuple[int, int, int]]:
    """(segment number, offset, size) of every record."""
    found = []
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                found.append((number, record.offset, record.header.size))
                del record
    return found


def test_untouched_archive_verifies(pristine: Path) -> None:
    """A freshly written archive verifies and reports its size and signed root."""
    report = verify_archive(pristine)
    assert report.entries == len(_records(pristine))


TAMPER = settings(max_examples=int(os.environ.get("TAMPER_EXAMPLES", "60")), deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


@TAMPER
@given(data=st.data())
def test_any_byte_change_is_caught(pristine: Path, tmp_path: Path, data: st.DataObject) -> None:
    """Flipping any bit of any byte of any file verify reads makes verify fail."""
    root = _copy(pristine, tmp_path / "copy")
    path = data.draw(st.sampled_from(_verified_files(root)))
    content = bytearray(path.read_bytes())
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] ^= data.draw(st.sampled_from([0x01, 0x80, 0xFF]))
    path.write_bytes(bytes(content))
    with pytest.raises(VerifyFailure):
        verify_archive(root)


@TAMPER
@given(data=st.data())
def test_any_truncation_is_caught(pristine: Path, tmp_path: Path, data: st.DataObject) -> None:
    """Cutting any verified file short, anywhere, makes verify fail."""
    root = _copy(pristine, tmp_path / "copy")
    path = data.draw(st.sampled_from(_verified_files(root)))
    size = path.stat().st_size
    os.truncate(path, data.draw(st.integers(0, size - 1)))
    with pytest.raises(VerifyFailure):
        verify_archive(root)


def _rewrite(root: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    """Re-lay every record after `edit` reorders, drops or copies them (zero-padded)."""
    records = _records(root)
    log_dir = root / layout.LOG_DIR
    blobs = []
    for number, offset, size in records:
        with (log_dir / segment_name(number)).open("rb") as handle:
            handle.seek(offset)
            blobs.append(handle.read(size))
    edited = edit(blobs)
    numbers = contiguous_segments(log_dir)
    capacity = {n: (log_dir / segment_name(n)).stat().st_size for n in numbers}
    images = {n: bytearray(capacity[n]) for n in numbers}
    number, offset = 1, 0
    for blob in edited:
        while offset + len(blob) > capacity[number]:
            number, offset = number + 1, 0
            if number not in images:
                images[number] = bytearray(max(4096, len(blob)))
                capacity[number] = len(images[number])
        images[number][offset : offset + len(blob)] = blob
        offset += len(blob)
    for n, image in images.items():
        (log_dir / segment_name(n)).write_bytes(bytes(image))


EDITS: list[tuple[str, Callable[[list[bytes], int, int], list[bytes]]]] = [
    ("delete", lambda b, i, _: b[:i] + b[i + 1 :]),
    ("duplicate", lambda b, i, _: [*b[: i + 1], b[i], *b[i + 1 :]]),
    ("swap", lambda b, i, j: [b[j] if k == i else b[i] if k == j else x for k, x in enumerate(b)]),
    ("drop the tail", lambda b, i, _: b[: max(i, 1)]),
]


@TAMPER
@given(data=st.data())
def test_entry_edits_are_caught(pristine: Path, tmp_path: Path, data: st.DataObject) -> None:
    """Deleting, duplicating or swapping entries anywhere, or dropping the tail, fails verify."""
    root = _copy(pristine, tmp_path / "copy")
    count = len(_records(root))
    _, edit = data.draw(st.sampled_from(EDITS))
    i = data.draw(st.integers(0, count - 1))
    j = data.draw(st.integers(0, count - 1).filter(lambda k: k != i))
    _rewrite(root, lambda blobs: edit(blobs, i, j))
    with pytest.raises(VerifyFailure):
        verify_archive(root)


def test_removed_head_or_segment_is_caught(pristine: Path, tmp_path: Path) -> None:
    """A missing checkpoint file or segment file fails verify with a clear reason."""
    root = _copy(pristine, tmp_path / "a")
    (root / layout.HEAD).unlink()
    with pytest.raises(VerifyFailure, match="checkpoint file is missing"):
        verify_archive(root)
    root = _copy(pristine, tmp_path / "b")
    (root / layout.LOG_DIR / segment_name(2)).unlink()
    with pytest.raises(VerifyFailure, match="missing"):
        verify_archive(root)


# -- the command -------------------------------------------------------------------------


def _verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "verify", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_verify_command_ok_and_bad(pristine: Path, tmp_path: Path) -> None:
    """verify exits 0 with 'archive OK, root <hex>' (no count: it would tell how many items
    were held), and 1 naming the bad entry."""
    result = _verify_cli("--archive", str(pristine))
    report = verify_archive(pristine)
    assert result.returncode == 0
    assert result.stdout == (f"archive OK, root {report.checkpoint.root.hex()}\n")
    root = _copy(pristine, tmp_path / "bad")
    number, offset, _ = _records(root)[5]
    path = root / layout.LOG_DIR / segment_name(number)
    content = bytearray(path.read_bytes())
    content[offset + HEADER_BYTES + 3] ^= 0x20
    path.write_bytes(bytes(content))
    result = _verify_cli("--archive", str(root))
    assert result.returncode == 1
    assert result.stdout.startswith("archive BAD: entry 5: ")
    assert "Traceback" not in result.stderr


def test_verify_pins_the_key(pristine: Path, tmp_path: Path) -> None:
    """With --key, an archive signed by any other key fails."""
    key = (pristine / layout.VERIFIER_KEY).read_text().strip()
    assert _verify_cli("--archive", str(pristine), "--key", key).returncode == 0
    other = tmp_path / "other"
    _build(other)
    result = _verify_cli("--archive", str(other), "--key", key)
    assert result.returncode == 1
    assert "archive BAD" in result.stdout


def test_every_file_of_the_archive_is_made_private(tmp_path: Path) -> None:
    """Every file in the archive directory is 0600 and every directory 0700, whatever the
    umask, from its creation (the public ones too: the directory is the daemon's)."""
    root = tmp_path / "archive"
    old = os.umask(0o022)
    try:

        async def run() -> None:
            archive = await Archive.open(root, recipients=[RECIPIENT], segment_bytes=4096)
            await archive.append(EntryKind.SEALED, b"x" * 5000, once="imap:one")
            await archive.record_custody(
                CustodyRecord(contact="SHA256:abc", action="list", items=(), at=NOW, reason="")
            )
            await archive.close()

        asyncio.run(run())
    finally:
        os.umask(old)
    modes = {
        str(path.relative_to(root)): path.stat().st_mode & 0o777
        for path in [root, *root.rglob("*")]
    }
    assert {name: mode for name, mode in modes.items() if mode not in (0o600, 0o700)} == {}
    assert modes["."] == modes["log"] == 0o700
    assert {"archive.json", "checkpoint", "recipients", "signing.pub", "sealed"} <= set(modes)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [(None, 64 << 20), ("", 64 << 20), ("1", 1 << 20), ("1024", 1 << 30)],
)
def test_new_archives_take_the_segment_size_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, expected: int
) -> None:
    """NOCONTACT_SEGMENT_MIB sets a new archive's segment size (layout.py rule 4); the
    archive keeps it in archive.json, whatever the environment says when it is reopened."""
    if setting is None:
        monkeypatch.delenv(layout.SEGMENT_ENV, raising=False)
    else:
        monkeypatch.setenv(layout.SEGMENT_ENV, setting)
    assert layout.new_segment_bytes() == expected
    if expected > 1 << 20:
        return  # the sizes are read right; only a small archive is made
    root = tmp_path / "archive"
    ArchiveLog.open(root).close()
    assert layout.read_manifest(root).segment_bytes == expected
    assert (root / layout.LOG_DIR / segment_name(1)).stat().st_size == expected
    monkeypatch.setenv(layout.SEGMENT_ENV, "2")
    ArchiveLog.open(root).close()
    assert layout.read_manifest(root).segment_bytes == expected


@pytest.mark.parametrize("setting", ["0", "1025", "-1", "64MiB", "1.5", "٣", "9" * 400])
def test_a_bad_segment_size_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    """Anything but a whole number of MiB from 1 to 1024 is refused in one line, and no
    archive is made."""
    monkeypatch.setenv(layout.SEGMENT_ENV, setting)
    with pytest.raises(ArchiveUnavailable, match="NOCONTACT_SEGMENT_MIB must be a whole"):
        ArchiveLog.open(tmp_path / "archive")
    assert not (tmp_path / "archive" / layout.MANIFEST).exists()


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(EntryKind)),
    index=st.integers(min_value=0, max_value=(1 << 64) - 1),
    body=st.binary(max_size=4096),
)
def test_leaf_rules_are_rfc_6962_leaf_hashes(kind: EntryKind, index: int, body: bytes) -> None:
    """A version 3 leaf is RFC 6962's leaf hash of the 41-byte tile entry kind || index ||
    SHA-256(body); a version 1 and 2 leaf is that of kind || index || body."""
    entry = tile_entry(kind, index, body)
    assert len(entry) == TILE_ENTRY_BYTES == 41
    assert entry == bytes([kind]) + index.to_bytes(8, "big") + hashlib.sha256(body).digest()
    assert entry_hash(kind, index, body, rule=LeafRule.BODY_SHA256) == merkle_leaf(entry)
    assert entry_hash(kind, index, memoryview(body), rule=LeafRule.BODY_SHA256) == merkle_leaf(
        entry
    )
    old = merkle_leaf(bytes([kind]) + index.to_bytes(8, "big") + body)
    assert entry_hash(kind, index, body, rule=LeafRule.BODY) == old
    assert layout.leaf_rule(3) is LeafRule.BODY_SHA256
    assert layout.leaf_rule(1) is layout.leaf_rule(2) is LeafRule.BODY
