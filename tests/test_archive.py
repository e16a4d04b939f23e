"""The sealed archive: what is kept, what shows on disk, and that any tampering is caught."""

from __future__ import annotations

import asyncio
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
from proxy.archive.merkle import verify_inclusion
from proxy.archive.note import Verifier, parse_checkpoint
from proxy.archive.once import SealedMarks
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.records import HEADER_BYTES
from proxy.archive.seal import parse_sealed
from proxy.archive.segments import segment_name
from proxy.rules import decide
from tests.factories import email, make_rules, sms

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


def test_a_version_1_archive_is_read_and_upgraded(tmp_path: Path) -> None:
    """Custody entries of kind 2 from version 1 stay valid; opening the archive upgrades
    archive.json, and verify accepts both forms."""
    root = tmp_path / "archive"
    log = ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS)
    log.append([(EntryKind.CUSTODY, b"an old custody record")], checkpoint=True, now=NOW)
    log.close(now=NOW)
    manifest = layout.read_manifest(root)
    old = layout.Manifest(origin=manifest.origin, segment_bytes=manifest.segment_bytes, version=1)
    (root / layout.MANIFEST).write_bytes(layout.manifest_bytes(old))
    verify_archive(root)
    ArchiveLog.open(root, segment_bytes=SMALL_SEGMENTS).close(now=NOW)
    assert layout.read_manifest(root).version == layout.VERSION == 2
    verify_archive(root)
    assert EntryKind.CUSTODY in {kind for kind, _, _ in _entries(root)}


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
