"""The archive under faults: crashes, torn writes, a second writer, full and missing disks.

Every test here uses the real archive on a real file system; the faults are real too
(SIGKILL, bytes written by hand, RLIMIT_FSIZE, a tiny tmpfs, an unprivileged user, a
deleted file). What each pins down is the rule the archive lives by: an acknowledged
entry is never lost, a fault tells the caller to retry (`RetryLater`), and damage inside
the signed log is never "repaired" away.

The child program is tests/archive_child.py; its output is one event a line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest

import proxy.archive
from proxy.archive import (
    Archive,
    ArchiveCorrupt,
    ArchiveFull,
    ArchiveLocked,
    ArchiveLog,
    ArchiveUnavailable,
    EntryKind,
    Receipt,
    VerifyFailure,
    layout,
    verify_archive,
)
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.records import HEADER_BYTES, LeafRule, encode
from proxy.archive.segments import create_segment, segment_name
from proxy.errors import RetryLater
from proxy.rules import decide
from tests.factories import email, make_rules

CHILD = Path(__file__).with_name("archive_child.py")
REPO = Path(__file__).resolve().parent.parent
SEGMENT = 256 << 10
SMALL_SEGMENT = 64 << 10
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NOBODY = 65534
RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())
CRASH_ROUNDS = 30
RULE = LeafRule.BODY_SHA256  # the leaf rule of the archives these tests make (version 3)


# -- helpers -----------------------------------------------------------------------------


def sha(body: bytes | memoryview) -> str:
    return hashlib.sha256(body).hexdigest()


def child_command(mode: str, path: Path, *options: str) -> list[str]:
    return [sys.executable, str(CHILD), mode, str(path), *options]


def child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_child(mode: str, path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        child_command(mode, path, *options),
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """What a child was told when an append returned: the body's sha256 and the leaf hash."""

    body_sha: str
    leaf_hash: str


def parse_output(text: str) -> tuple[dict[int, Ack], list[str]]:
    """(acknowledged index -> its Ack, every other line) from a child's stdout."""
    acks: dict[int, Ack] = {}
    events: list[str] = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # cut short by SIGKILL: never a complete acknowledgement
        words = line.split()
        if words and words[0] == "ack":
            index = int(words[1])
            assert index not in acks, f"index {index} acknowledged twice"
            acks[index] = Ack(body_sha=words[2], leaf_hash=words[3])
        else:
            events.append(line.rstrip("\n"))
    return acks, events


def error_class(line: str) -> type[BaseException]:
    """The archive error a child reported as `<Type>: <message>`."""
    name = line.split(":", 1)[0]
    found = getattr(proxy.archive, name, None)
    assert isinstance(found, type), f"not an archive error: {line!r}"
    assert issubclass(found, BaseException)
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """One record as it is on disk."""

    index: int
    kind: EntryKind
    body_sha: str
    leaf_hash: bytes
    segment: int
    offset: int
    length: int


def body_shas(acks: Mapping[int, Ack]) -> dict[int, str]:
    return {index: ack.body_sha for index, ack in acks.items()}


def stored(path: Path, bodies: Container[int] | None = None) -> list[Stored]:
    """Every record in the archive's log, in order; the indices must run 0, 1, 2, ...

    Bodies are hashed only for the indices in `bodies` (all if None); `body_sha` is empty
    for the others.
    """
    log_dir = path / layout.LOG_DIR
    found: list[Stored] = []
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                header = record.header
                wanted = bodies is None or header.index in bodies
                found.append(
                    Stored(
                        index=header.index,
                        kind=header.kind,
                        body_sha=sha(record.body) if wanted else "",
                        leaf_hash=record.stored_hash,
                        segment=number,
                        offset=record.offset,
                        length=header.length,
                    )
                )
                del record  # the body is a view into the mapping; let it unmap
    indices = [entry.index for entry in found]
    assert indices == list(range(len(found))), "indices are not 0..n-1, each once"
    return found


def items(path: Path) -> dict[int, str]:
    """Index -> body sha256 of every item entry in the log."""
    return {e.index: e.body_sha for e in stored(path) if e.kind is EntryKind.SEALED}


def assert_holds(path: Path, acked: dict[int, str], context: str = "") -> None:
    """Every acknowledged (index, body hash) is in the log, at that index."""
    present = items(path)
    lost = sorted(index for index, digest in acked.items() if present.get(index) != digest)
    assert not lost, f"{context}: acknowledged entries lost or changed: {lost[:10]}"


def log_end(path: Path) -> tuple[Path, int]:
    """The segment holding the last record, and the offset where its records end."""
    log_dir = path / layout.LOG_DIR
    end = (log_dir / segment_name(1), 0)
    for number in contiguous_segments(log_dir):
        segment = log_dir / segment_name(number)
        with mapped(segment) as buffer:
            scan = SegmentScan(number, buffer)
            if sum(1 for _ in scan):
                end = (segment, scan.end)
    return end


def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file in the archive but the lock (which holds the opener's pid)."""
    return {
        str(file.relative_to(path)): sha(file.read_bytes())
        for file in sorted(path.rglob("*"))
        if file.is_file() and file.name != layout.LOCK
    }


def flip(path: Path, entry: Stored, at: int) -> None:
    """Invert one byte of `entry`'s record, `at` bytes from its start."""
    with (path / layout.LOG_DIR / segment_name(entry.segment)).open("r+b") as handle:
        handle.seek(entry.offset + at)
        byte = handle.read(1)[0]
        handle.seek(entry.offset + at)
        handle.write(bytes([byte ^ 0xFF]))


def fill_log(path: Path, batches: int, *, segment_bytes: int = SEGMENT) -> dict[int, str]:
    """Create an archive holding `batches` signed batches of three items; closed after."""
    rng = random.Random(batches)
    acked: dict[int, str] = {}
    log = ArchiveLog.open(path, segment_bytes=segment_bytes)
    for _ in range(batches):
        bodies = [rng.randbytes(rng.randint(100, 3000)) for _ in range(3)]
        receipts = log.append([(EntryKind.SEALED, b) for b in bodies], checkpoint=True, now=NOW)
        acked |= {r.index: sha(b) for r, b in zip(receipts, bodies, strict=True)}
    log.close()
    return acked


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process (CPython ignores SIGXFSZ, so writes fail with EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to drop to nobody)")


# -- 1. crashes --------------------------------------------------------------------------


def wait_until_ready(output: Path, child: subprocess.Popen[bytes]) -> None:
    """Wait until the child has opened the archive (its first line), died, or 20 s passed."""
    deadline = time.monotonic() + 20
    while child.poll() is None and time.monotonic() < deadline:
        with output.open("rb") as handle:
            if handle.read(6) == b"ready\n":
                return
        time.sleep(0.005)


def test_sigkill_at_random_moments_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    """Killed at random moments, over and over, the archive recovers to a log that verifies
    and holds every entry it acknowledged, once, at its index, and never shrinks."""
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    path = tmp_path / "archive"
    # Created before the first kill: a kill during creation is another matter (see
    # test_creation_that_failed_on_a_full_disk_can_be_retried).
    ArchiveLog.open(path, segment_bytes=SEGMENT).close()
    acked: dict[int, Ack] = {}
    size = 0
    rounds_with_acks = 0
    for round_ in range(CRASH_ROUNDS):
        mode = ("crash-async", "crash-sync")[round_ % 2]
        context = f"seed {seed}, round {round_} ({mode})"
        output = tmp_path / f"round-{round_}.out"
        options = ("--seed", str(rng.randrange(1 << 32)), "--segment-bytes", str(SEGMENT))
        with output.open("wb") as sink:
            command = child_command(mode, path, *options)
            child = subprocess.Popen(command, stdout=sink, stderr=subprocess.PIPE, env=child_env())
            if round_ % 4 != 3:  # one round in four may die while starting or recovering
                wait_until_ready(output, child)
            time.sleep(rng.uniform(0.0, 0.35))
            child.send_signal(signal.SIGKILL)
            _, stderr = child.communicate(timeout=30)
        text = output.read_text()
        assert child.returncode == -signal.SIGKILL, (
            f"{context}: exit {child.returncode}: {text[-500:]} {stderr.decode()}"
        )
        new, _ = parse_output(text)
        assert not new.keys() & acked.keys(), f"{context}: an index was acknowledged twice"
        acked |= new
        rounds_with_acks += bool(new)

        log = ArchiveLog.open(path, segment_bytes=SEGMENT)  # recovery
        assert log.tree.size >= max(acked, default=-1) + 1, context
        assert log.tree.size >= size, f"{context}: the log shrank"
        log.close()
        try:
            size = verify_archive(path).entries  # re-hashes every body against its leaf hash
        except VerifyFailure as failure:
            pytest.fail(f"{context}: {failure}")
        # Every acknowledged leaf hash is where it was promised; this round's bodies are
        # hashed too (earlier rounds' bodies were, and verify ties each body to its leaf).
        entries = stored(path, bodies=new.keys())
        assert len(entries) == size, context
        for index, ack in acked.items():
            entry = entries[index]
            assert entry.kind is EntryKind.SEALED, f"{context}: entry {index}"
            assert entry.leaf_hash.hex() == ack.leaf_hash, f"{context}: entry {index} changed"
            if index in new:
                assert entry.body_sha == ack.body_sha, f"{context}: entry {index} body"
    assert rounds_with_acks >= CRASH_ROUNDS // 2, f"seed {seed}: most kills came too early"
    assert len({e.segment for e in stored(path, bodies=())}) > 3, "no rollover was exercised"


# -- 2. torn tails and damage ------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 4, 13, HEADER_BYTES - 1, HEADER_BYTES, 200, -1])
def test_torn_record_at_the_end_is_zeroed_and_the_rest_kept(tmp_path: Path, cut: int) -> None:
    """A record cut short at the end of the log is zeroed on open; every earlier entry stays
    and the archive verifies; the next entry takes the torn one's index."""
    path = tmp_path / "archive"
    acked = fill_log(path, 4)
    size = verify_archive(path).entries
    segment, end = log_end(path)
    record, _ = encode(EntryKind.SEALED, size, b"never acknowledged" * 30, rule=RULE)
    with segment.open("r+b") as handle:
        handle.seek(end)
        handle.write(record[:cut])
    with pytest.raises(VerifyFailure):  # the torn bytes are there before recovery
        verify_archive(path)

    log = ArchiveLog.open(path)
    assert log.tree.size == size + 1  # the torn record is gone; opening signed a checkpoint
    assert log.last_checkpoint == size
    with segment.open("rb") as handle:
        handle.seek(end)
        assert handle.read(HEADER_BYTES) != record[:HEADER_BYTES], "the torn bytes were kept"
    (receipt,) = log.append([(EntryKind.SEALED, b"next")], checkpoint=False, now=NOW)
    assert receipt.index == size + 1
    log.close()

    verify_archive(path)
    assert_holds(path, acked | {size + 1: sha(b"next")})


def test_complete_unsigned_record_at_the_end_is_kept_and_signed(tmp_path: Path) -> None:
    """A whole record after the last checkpoint (written, the writer died before replying)
    is kept on open and signed, never dropped."""
    path = tmp_path / "archive"
    acked = fill_log(path, 2)
    size = verify_archive(path).entries
    segment, end = log_end(path)
    body = b"written, not yet acknowledged" * 10
    record, _ = encode(EntryKind.SEALED, size, body, rule=RULE)
    with segment.open("r+b") as handle:
        handle.seek(end)
        handle.write(record)

    ArchiveLog.open(path).close()
    assert verify_archive(path).entries == size + 3  # the entry; opening and closing signed
    assert_holds(path, acked | {size: sha(body)})


def test_damaged_header_under_a_checkpoint_raises_corrupt_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """Broken framing inside the signed log makes open raise ArchiveCorrupt naming the entry,
    and leaves every byte as it was."""
    path = tmp_path / "archive"
    fill_log(path, 4)
    victim = stored(path)[5]
    flip(path, victim, 0)  # the magic
    before = snapshot(path)

    with pytest.raises(ArchiveCorrupt, match=f"entry {victim.index} "):
        ArchiveLog.open(path)
    assert snapshot(path) == before
    with pytest.raises(VerifyFailure, match=f"entry {victim.index}"):
        verify_archive(path)


def test_damaged_body_under_a_checkpoint_is_never_repaired(tmp_path: Path) -> None:
    """A changed byte inside a signed entry's body survives open and close untouched (nothing
    is repaired or dropped) and verify names the entry."""
    path = tmp_path / "archive"
    fill_log(path, 4)
    victim = stored(path)[6]
    flip(path, victim, HEADER_BYTES + victim.length // 2)
    segment, end = log_end(path)
    before = segment.read_bytes()[:end]

    with contextlib.suppress(ArchiveCorrupt):
        ArchiveLog.open(path).close()
    assert segment.read_bytes()[:end] == before  # only appended to (checkpoints), never changed
    with pytest.raises(VerifyFailure, match=f"entry {victim.index}: content"):
        verify_archive(path)


def test_damaged_entry_signed_in_the_log_after_a_crash_is_not_discarded(tmp_path: Path) -> None:
    """After a crash, damage in an entry that a later checkpoint in the log signed is reported
    (ArchiveCorrupt) and nothing is zeroed, even when the `checkpoint` file is older."""
    path = tmp_path / "archive"
    result = run_child("append-and-die", path, "--count", "4")
    assert result.returncode == 0, result.stderr
    acks, _ = parse_output(result.stdout)
    acked = body_shas(acks)
    entries = stored(path)
    victim = entries[5]
    assert victim.kind is EntryKind.SEALED
    assert any(e.kind is EntryKind.CHECKPOINT and e.index > victim.index for e in entries)
    flip(path, victim, 0)
    before = snapshot(path)

    with contextlib.suppress(ArchiveCorrupt):
        ArchiveLog.open(path).close()
    assert snapshot(path) == before, "signed, acknowledged entries were zeroed on open"
    flip(path, victim, 0)  # restored (from a backup, say): nothing at all was lost
    ArchiveLog.open(path).close()
    verify_archive(path)
    assert_holds(path, acked)


# -- 3. one writer -----------------------------------------------------------------------


def test_second_writer_in_the_same_process_is_locked_out(tmp_path: Path) -> None:
    """A second open of an archive already open raises ArchiveLocked naming the archive and
    the holder's pid; once the first closes, opening works."""
    path = tmp_path / "archive"
    first = ArchiveLog.open(path, segment_bytes=SEGMENT)
    try:
        with pytest.raises(ArchiveLocked) as caught:
            ArchiveLog.open(path)
        assert str(path) in str(caught.value)
        assert f"pid {os.getpid()})" in str(caught.value)
    finally:
        first.close()
    ArchiveLog.open(path).close()


def test_writer_in_another_process_locks_this_one_out(tmp_path: Path) -> None:
    """While another process holds the archive, open raises ArchiveLocked with that process's
    pid; after it closes, opening works."""
    path = tmp_path / "archive"
    child = subprocess.Popen(
        child_command("hold", path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "locked\n"
        with pytest.raises(ArchiveLocked) as caught:
            ArchiveLog.open(path)
        assert str(path) in str(caught.value)
        assert f"pid {child.pid})" in str(caught.value)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "closed\n"
    finally:
        _, stderr = child.communicate(timeout=30)
    assert child.returncode == 0, stderr
    ArchiveLog.open(path).close()
    verify_archive(path)


def test_this_writer_locks_out_another_process(tmp_path: Path) -> None:
    """Another process opening an archive this one holds gets one line, ArchiveLocked, with
    this process's pid, and no traceback."""
    path = tmp_path / "archive"
    log = ArchiveLog.open(path, segment_bytes=SEGMENT)
    try:
        result = run_child("open", path)
    finally:
        log.close()
    assert result.returncode == 1
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith("ArchiveLocked: ")
    assert str(path) in line
    assert f"pid {os.getpid()})" in line
    assert run_child("open", path).stdout == "closed\n"


# -- 4. full disk ------------------------------------------------------------------------


def test_file_size_limit_makes_rollover_fail_with_archive_full(tmp_path: Path) -> None:
    """When the next segment cannot be prepared (file-size limit), append raises ArchiveFull,
    a RetryLater; the acknowledged entries remain and verify after a normal reopen."""
    path = tmp_path / "archive"
    ArchiveLog.open(path, segment_bytes=SMALL_SEGMENT).close()  # segments 1 and 2 exist
    result = run_child("fill", path, "--file-size-limit", str(SMALL_SEGMENT - 1), "--count", "200")
    assert result.returncode == 0, result.stderr
    acks, events = parse_output(result.stdout)
    acked = body_shas(acks)
    assert events[0] == "ready"
    assert events[-1] == "closed"
    (refusal,) = events[1:-1]
    assert error_class(refusal) is ArchiveFull
    assert issubclass(ArchiveFull, RetryLater)
    assert "disk is full" in refusal
    log_dir = path / layout.LOG_DIR
    assert sorted(os.listdir(log_dir)) == [segment_name(1), segment_name(2)]  # no debris
    assert {e.segment for e in stored(path) if e.index in acked} == {1, 2}

    ArchiveLog.open(path).close()
    verify_archive(path)
    assert_holds(path, acked)


def test_create_segment_over_the_file_size_limit_is_full_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """Preparing a segment larger than the file-size limit raises ArchiveFull and leaves
    neither the segment nor its temporary file."""
    with file_size_limit(16 << 10), pytest.raises(ArchiveFull, match="preparing segment 7"):
        create_segment(tmp_path, 7, 64 << 10)
    assert os.listdir(tmp_path) == []
    assert create_segment(tmp_path, 7, 64 << 10).stat().st_size == 64 << 10


def append_until_refused(log: ArchiveLog, acked: dict[int, str]) -> RetryLater:
    """Append 8 KB items one at a time, a checkpoint after every fourth, until refused."""
    rng = random.Random(7)
    for count in range(1, 200):
        body = rng.randbytes(8000)
        try:
            (receipt,) = log.append([(EntryKind.SEALED, body)], checkpoint=False, now=NOW)
            acked[receipt.index] = sha(body)
            if count % 4 == 0:
                log.append([], checkpoint=True, now=NOW)
        except RetryLater as refusal:
            return refusal
    pytest.fail("the disk never filled up")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs with room for the archive's small files and two segments, no more."""
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    size = 2 * SEGMENT + (64 << 10)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_disk_refuses_at_rollover_and_resumes_when_space_returns(small_disk: Path) -> None:
    """On a disk with no room for the next segment, append raises ArchiveFull without harm:
    acknowledged entries stay, and the same writer resumes once space is freed."""
    path = small_disk / "archive"
    acked: dict[int, str] = {}
    log = ArchiveLog.open(path, segment_bytes=SEGMENT)
    try:
        refusal = append_until_refused(log, acked)
        assert isinstance(refusal, ArchiveFull)
        assert "disk is full (preparing segment 3)" in str(refusal)
        size = log.tree.size
        log_dir = path / layout.LOG_DIR
        assert sorted(os.listdir(log_dir)) == [segment_name(1), segment_name(2)]
        assert_holds(path, acked)
        with pytest.raises(ArchiveFull):
            log.append([(EntryKind.SEALED, b"still no room" * 1000)], checkpoint=False, now=NOW)
        assert log.tree.size == size

        subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
        body = b"room again" * 1000
        (receipt,) = log.append([(EntryKind.SEALED, body)], checkpoint=True, now=NOW)
        assert receipt.index == size
        acked[receipt.index] = sha(body)
    finally:
        log.close()
    verify_archive(path)
    assert_holds(path, acked)


def test_a_segment_without_room_is_refused_before_a_byte_is_written(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preparing a segment the disk has no room for raises ArchiveFull without filling the
    disk first, so other files on it (the checkpoint file) can still be written meanwhile."""
    (small_disk / "other").write_bytes(bytes(SEGMENT))
    free_before = os.statvfs(small_disk).f_bavail
    lowest = [free_before]
    write = os.write

    def watched_write(fd: int, data: bytes | memoryview) -> int:
        written = write(fd, data)
        lowest.append(os.statvfs(small_disk).f_bavail)
        return written

    monkeypatch.setattr(os, "write", watched_write)
    with pytest.raises(ArchiveFull):
        create_segment(small_disk, 2, 2 * SEGMENT)
    monkeypatch.undo()
    assert min(lowest) == free_before
    assert os.listdir(small_disk) == ["other"]


def test_creation_that_failed_on_a_full_disk_can_be_retried(tmp_path: Path) -> None:
    """Creating an archive on a full disk raises ArchiveFull (retry later), and retrying once
    there is room creates the archive."""
    path = tmp_path / "archive"
    result = run_child("open", path, "--file-size-limit", "4096")
    assert result.returncode == 1, result.stderr
    (line,) = result.stdout.splitlines()
    assert error_class(line) is ArchiveFull

    ArchiveLog.open(path).close()
    verify_archive(path)


def test_rollover_failure_inside_a_batch_keeps_later_entries(tmp_path: Path) -> None:
    """When a batch fails because its second entry needs a segment that cannot be made,
    nothing of the batch stays in the log and the entries acknowledged after it survive a
    reopen at their indices."""
    path = tmp_path / "archive"
    ArchiveLog.open(path, segment_bytes=SMALL_SEGMENT).close()  # segments 1 and 2 exist
    result = run_child("split", path, "--file-size-limit", str(SMALL_SEGMENT))
    assert result.returncode == 0, result.stderr
    acks, events = parse_output(result.stdout)
    acked = body_shas(acks)
    assert error_class(events[0]) is ArchiveFull
    assert len(acked) >= 1  # the first item; the last one too, unless the writer stopped

    ArchiveLog.open(path).close()
    verify_archive(path)
    assert_holds(path, acked)


# -- 5. unwritable and missing -----------------------------------------------------------


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory owned by root that anyone may enter and no one else may write."""
    with tempfile.TemporaryDirectory(prefix="nocontact-faults-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        yield directory


@needs_root
@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("unwritable", "Permission denied"),
        ("someone-elses", "Permission denied"),
        ("missing/archive", "does not exist"),
    ],
)
def test_unprivileged_open_where_it_cannot_write_is_unavailable(
    public_dir: Path, where: str, reason: str
) -> None:
    """Opening an archive where the user cannot write, or whose parent is missing, fails with
    one line naming the path (ArchiveUnavailable), no traceback, and changes nothing."""
    path = public_dir / where
    if where == "someone-elses":
        fill_log(path, 1)
    existed, before = path.exists(), snapshot(public_dir)

    result = run_child("open", path, "--user", str(NOBODY))
    assert result.stderr == ""
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert error_class(line) is ArchiveUnavailable
    assert str(path.parent if where.startswith("missing") else path) in line
    assert reason in line
    assert path.exists() == existed
    assert snapshot(public_dir) == before


def test_archive_path_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    """An archive path naming a regular file raises ArchiveUnavailable and leaves it alone."""
    path = tmp_path / "archive"
    path.write_bytes(b"not an archive")
    with pytest.raises(ArchiveUnavailable, match="is not a directory"):
        ArchiveLog.open(path)
    assert path.read_bytes() == b"not an archive"


def test_deleting_the_current_segment_makes_appends_unavailable(tmp_path: Path) -> None:
    """Once the segment being written is deleted under the writer, every append raises
    ArchiveUnavailable and the log's size does not move."""
    path = tmp_path / "archive"
    log = ArchiveLog.open(path, segment_bytes=SEGMENT)
    try:
        batch = [(EntryKind.SEALED, b"one"), (EntryKind.SEALED, b"two")]
        log.append(batch, checkpoint=True, now=NOW)
        size = log.tree.size
        (path / layout.LOG_DIR / segment_name(1)).unlink()
        for _ in range(2):
            with pytest.raises(ArchiveUnavailable, match="deleted"):
                log.append([(EntryKind.SEALED, b"three")], checkpoint=True, now=NOW)
            assert log.tree.size == size
    finally:
        log.close()


# -- 6. the asyncio writer ---------------------------------------------------------------


async def _acknowledge(archive: Archive, count: int) -> tuple[dict[int, str], list[Receipt]]:
    """`count` appends and one held email; (index -> body sha256, the hold's receipt)."""
    acked: dict[int, str] = {}
    for number in range(count):
        body = f"item {number} ".encode() * 800
        acked[(await archive.append(EntryKind.SEALED, body)).index] = sha(body)
    message = email("From: Mark Smith <mark.smith@gmail.com>\nSubject: hi", "call me")
    held = await archive.hold(message, decide(message, make_rules()))
    return acked, [held]


async def _fail_together(archive: Archive, count: int) -> list[BaseException]:
    """Start `count` appends at once; every one of them must fail."""
    results = await asyncio.gather(
        *(archive.append(EntryKind.SEALED, f"lost {n}".encode()) for n in range(count)),
        return_exceptions=True,
    )
    assert all(isinstance(r, BaseException) for r in results), "an append was acknowledged"
    return [r for r in results if isinstance(r, BaseException)]


def test_async_batch_after_the_segment_is_deleted_fails_whole(tmp_path: Path) -> None:
    """When the log raises under the asyncio writer, every pending append fails with a
    RetryLater, none is stored, and later appends keep failing until the archive is
    reopened."""
    path = tmp_path / "archive"
    segment = path / layout.LOG_DIR / segment_name(1)

    async def scenario() -> tuple[dict[int, str], list[Receipt]]:
        archive = await Archive.open(
            path, recipients=[RECIPIENT], segment_bytes=SEGMENT, checkpoint_every=0
        )
        acked, held = await _acknowledge(archive, 5)
        kept = segment.read_bytes()
        segment.unlink()
        failures = await _fail_together(archive, 8)
        assert all(isinstance(f, ArchiveUnavailable) for f in failures), failures
        with pytest.raises(RetryLater):
            await archive.append(EntryKind.SEALED, b"later")
        await archive.close()
        segment.write_bytes(kept)  # put the acknowledged entries back, as a restore would
        return acked, held

    acked, held = asyncio.run(scenario())
    ArchiveLog.open(path).close()
    verify_archive(path)
    assert_holds(path, acked)
    entries = stored(path)
    assert entries[held[0].index].leaf_hash == held[0].leaf_hash
    assert len([e for e in entries if e.kind is EntryKind.SEALED]) == len(acked) + 1


def test_async_writer_stays_poisoned_after_a_write_error(tmp_path: Path) -> None:
    """After a failed write (EFBIG) the asyncio writer fails every append of the batch with
    ArchiveFull and refuses every later one, even once the fault is gone, until reopened;
    after reopening, the acknowledged entries are intact and appends work."""
    path = tmp_path / "archive"

    async def scenario() -> dict[int, str]:
        archive = await Archive.open(
            path, recipients=[RECIPIENT], segment_bytes=SEGMENT, checkpoint_every=0
        )
        acked, _ = await _acknowledge(archive, 6)  # well past the first 16 KiB of segment 1
        with file_size_limit(16 << 10):
            failures = await _fail_together(archive, 8)
        assert all(isinstance(f, ArchiveFull) for f in failures), failures
        with pytest.raises(ArchiveUnavailable, match="stopped after a write error"):
            await archive.append(EntryKind.SEALED, b"the fault is gone")
        await archive.close()
        return acked

    acked = asyncio.run(scenario())
    size = verify_archive(path).entries

    async def reopened() -> Receipt:
        archive = await Archive.open(path, recipients=[RECIPIENT], segment_bytes=SEGMENT)
        try:
            return await archive.append(EntryKind.SEALED, b"after reopening")
        finally:
            await archive.close()

    receipt = asyncio.run(reopened())
    assert receipt.index == size + 1  # after opening's checkpoint
    verify_archive(path)
    assert_holds(path, acked | {receipt.index: sha(b"after reopening")})
