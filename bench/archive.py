"""Benchmark: durable sealed holds per second against the disk's own fsync rate, and verify.

Run: .venv/bin/python bench/archive.py [--seconds S] [--dir DIR] [--entries N]

Everything runs on one disk: a temporary directory under DIR (default <repo>/var, which
git ignores; never a tmpfs, where fsync is free), removed at the end. One 10 KB email from
a blocked person, held by the rules, is the message throughout.

1. raw: a plain loop of os.write + os.fsync of one sealed item's bytes, appending to a new
   file. This is the physical limit a durable append is compared with (the issue's peer,
   a store that fsyncs every message). For reference: the same loop with os.fdatasync,
   and pwrite + fdatasync into a zero-filled file (what the log does per batch, alone).
2. nocontact, 1 producer: `await archive.hold(message, decision)` in a loop; each call
   seals with age and returns once the entry is on disk. For reference, `append` of the
   pre-sealed bytes from one producer: the storage path without the seal.
3. nocontact, 16 producers: 16 asyncio tasks each looping `hold` (group commit).
   Holds run with 1 and with 2 contact recipients (age does one X25519 per recipient),
   each row in a fresh archive; every row has latency percentiles of one call.
4. verify: an archive of N sealed items (one item sealed once, appended N times through
   the blocking ArchiveLog in batches of 32 with a checkpoint about every 1,000 entries,
   as the daemon writes under load), then `verify_archive` timed in a child process with
   that process's peak RSS: once with the log in the page cache (just written), once with
   its pages dropped first (posix_fadvise), so the disk read is timed too.

Goals (issue 3): one producer >= 0.8x the raw fsync rate; 16 producers above the raw
fsync rate; verify >= 100,000 entries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyrage

from proxy.archive import Archive, ArchiveLog, EntryKind, Recipients, verify_archive
from proxy.archive.layout import LOG_DIR, SEGMENT_BYTES
from proxy.archive.records import OVERHEAD
from proxy.archive.seal import seal_item
from proxy.config.model import Config
from proxy.message import Decision, InboundMessage
from proxy.normalize import normalize_email
from proxy.rules import compile_rules, decide

REPO = Path(__file__).resolve().parent.parent
MESSAGE_BYTES = 10 * 1024
PRODUCERS = 16
BATCH = 32
CHECKPOINT_ENTRIES = 1_000
GOAL_SINGLE_RATIO = 0.8
GOAL_VERIFY_RATE = 100_000
WORDS = ("you cannot keep me away from my own kids I will be at the school on saturday "
         "and you know what happens if you call the police again answer your phone "
         "I know where you are staying now").split()  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    name: str
    rate: float  # completed appends per second
    latencies: list[float]  # seconds per call, in completion order

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the message ---------------------------------------------------------------------------


def held_email(recipient: str) -> tuple[InboundMessage, Decision]:
    """A 10 KB email from a blocked person and the rules' decision to hold it."""
    config = Config.model_validate(
        {
            "archive": {"path": "/tmp/bench-archive"},
            "contacts": [{"name": "Bench Lawyer", "role": "lawyer", "age_recipient": recipient}],
            "people": [{"id": "mark", "name": "Mark Smith", "emails": ["mark@smith.example"]}],
            "default_region": "US",
        },
        context={"default_region": "US"},
    )
    headers = (
        "From: Mark Smith <mark@smith.example>\r\nTo: Sam <sam@home.example>\r\n"
        "Subject: Saturday\r\nMessage-ID: <bench@smith.example>\r\n"
        "Authentication-Results: mx.home.example; spf=pass smtp.mailfrom=smith.example\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body, index = "", 0
    while len(headers) + len(body) < MESSAGE_BYTES:
        body += WORDS[index % len(WORDS)] + ("\r\n" if index % 12 == 11 else " ")
        index += 1
    raw = (headers + body).encode()[:MESSAGE_BYTES]
    message = normalize_email(
        raw, envelope_sender="mark@smith.example", received_at=datetime(2026, 1, 1, tzinfo=UTC),
        default_region="US",
    )  # fmt: skip
    decision = decide(message, compile_rules(config))
    assert decision.held, "the benchmark email must be held"
    return message, decision


def new_recipient() -> str:
    return str(pyrage.x25519.Identity.generate().to_public())


# -- raw disk loops ------------------------------------------------------------------------


def timed_loop(action: Callable[[], None], seconds: float) -> tuple[int, float, list[float]]:
    """(calls, elapsed, per-call latencies) of `action` repeated for `seconds`."""
    latencies: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        action()
        latencies.append(time.perf_counter() - now)
    return len(latencies), time.perf_counter() - start, latencies


def raw_append(directory: Path, record: bytes, sync: Callable[[int], None], seconds: float) -> Row:
    """os.write + `sync` per record, appending to a new file (it grows: metadata too)."""
    path = directory / f"raw-{sync.__name__}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    try:

        def once() -> None:
            os.write(fd, record)
            sync(fd)

        calls, elapsed, latencies = timed_loop(once, seconds)
    finally:
        os.close(fd)
        path.unlink()
    return Row(name=f"raw write+{sync.__name__}, new file", rate=calls / elapsed,
               latencies=latencies)  # fmt: skip


def raw_zero_filled(directory: Path, record: bytes, size: int, seconds: float) -> Row:
    """pwrite + fdatasync into a file zero-filled beforehand (wrapping round at its end)."""
    path = directory / "raw-zero-filled"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        zeros = bytes(1 << 20)
        for _ in range(size // len(zeros)):
            os.write(fd, zeros)
        os.fsync(fd)
        offset = 0

        def once() -> None:
            nonlocal offset
            if offset + len(record) > size:
                offset = 0
            os.pwrite(fd, record, offset)
            os.fdatasync(fd)
            offset += len(record)

        calls, elapsed, latencies = timed_loop(once, seconds)
    finally:
        os.close(fd)
        path.unlink()
    return Row(name="raw pwrite+fdatasync, zero-filled", rate=calls / elapsed,
               latencies=latencies)  # fmt: skip


# -- nocontact holds -----------------------------------------------------------------------


async def producers(
    root: Path, recipients: list[str], *, count: int, seconds: float, segment_bytes: int,
    call: Callable[[Archive], Awaitable[object]],
) -> tuple[float, list[float]]:  # fmt: skip
    """(rate, latencies) of `count` tasks each looping `call(archive)` in a fresh archive."""
    archive = await Archive.open(root, recipients=recipients, segment_bytes=segment_bytes)
    latencies: list[float] = []
    try:
        await asyncio.gather(*(call(archive) for _ in range(count)))  # warm up

        async def producer(deadline: float) -> None:
            while (now := time.perf_counter()) < deadline:
                await call(archive)
                latencies.append(time.perf_counter() - now)

        start = time.perf_counter()
        await asyncio.gather(*(producer(start + seconds) for _ in range(count)))
        elapsed = time.perf_counter() - start
    finally:
        await archive.close()
        shutil.rmtree(root)
    return len(latencies) / elapsed, latencies


def holds(
    root: Path, message: InboundMessage, decision: Decision, *, recipients: list[str],
    count: int, seconds: float, segment_bytes: int,
) -> Row:  # fmt: skip
    """`await archive.hold(message, decision)`: seal, append, fdatasync, from `count` tasks."""
    rate, latencies = asyncio.run(
        producers(root, recipients, count=count, seconds=seconds, segment_bytes=segment_bytes,
                  call=lambda archive: archive.hold(message, decision))
    )  # fmt: skip
    tasks = f"{count} producer{'s' if count > 1 else ''}"
    keys = f"{len(recipients)} recipient{'s' if len(recipients) > 1 else ''}"
    return Row(name=f"nocontact hold, {tasks}, {keys}", rate=rate, latencies=latencies)


def presealed(root: Path, sealed: bytes, *, recipients: list[str], seconds: float,
              segment_bytes: int) -> Row:  # fmt: skip
    """`await archive.append(ITEM, sealed)` from one task: the storage path without sealing."""
    rate, latencies = asyncio.run(
        producers(root, recipients, count=1, seconds=seconds, segment_bytes=segment_bytes,
                  call=lambda archive: archive.append(EntryKind.SEALED, sealed))
    )  # fmt: skip
    return Row(name="nocontact append, 1 producer, pre-sealed", rate=rate, latencies=latencies)


# -- verify --------------------------------------------------------------------------------


def build_archive(root: Path, sealed: bytes, entries: int, segment_bytes: int) -> float:
    """Append `sealed` `entries` times in batches, checkpointing ~every 1,000; seconds taken."""
    start = time.perf_counter()
    log = ArchiveLog.open(root, segment_bytes=segment_bytes)
    try:
        since_checkpoint, done = 0, 0
        while done < entries:
            count = min(BATCH, entries - done)
            since_checkpoint += count
            checkpoint = since_checkpoint >= CHECKPOINT_ENTRIES
            log.append([(EntryKind.SEALED, sealed)] * count, checkpoint=checkpoint,
                       now=datetime.now(UTC))  # fmt: skip
            if checkpoint:
                log.publish_head()
                since_checkpoint = 0
            done += count
    finally:
        log.close()
    return time.perf_counter() - start


def verify_child(path: str, cold: bool) -> None:
    """In a child process: verify `path`, print seconds, entries and peak RSS as JSON."""
    if cold:
        for segment in sorted((Path(path) / LOG_DIR).iterdir()):
            fd = os.open(segment, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    report = verify_archive(path)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "entries": report.entries,
                      "rss_before_kib": before, "rss_after_kib": after}))  # fmt: skip


def timed_verify(path: Path, *, cold: bool) -> dict[str, float]:
    """Run `verify_child` in a fresh interpreter, so its peak RSS is the verify's alone."""
    command = [sys.executable, __file__, "--verify-child", str(path)]
    output = subprocess.run(
        [*command, "--cold"] if cold else command, check=True, capture_output=True, text=True
    ).stdout
    result: dict[str, float] = json.loads(output)
    return result


# -- the run -------------------------------------------------------------------------------


def print_rows(rows: list[Row]) -> None:
    print(f"{'':<44} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'count':>8}")
    for row in rows:
        print(
            f"{row.name:<44} {row.rate:>10,.0f} {row.percentile(0.5) * 1e3:>8.2f} "
            f"{row.percentile(0.99) * 1e3:>8.2f} {len(row.latencies):>8,}"
        )


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    parser.add_argument("--dir", type=Path, default=REPO / "var",
                        help="where to make the temporary directory (a real disk)")  # fmt: skip
    parser.add_argument("--entries", type=int, default=100_000, help="items in the verify run")
    parser.add_argument("--segment-mib", type=int, default=SEGMENT_BYTES >> 20,
                        help="segment size of the archives")  # fmt: skip
    parser.add_argument("--verify-child", help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_child:
        verify_child(args.verify_child, args.cold)
        return

    segment_bytes = args.segment_mib << 20
    contacts = [new_recipient(), new_recipient()]
    message, decision = held_email(contacts[0])
    sealed = seal_item(message, decision, Recipients.parse(contacts[:1]),
                       sealed_at=datetime.now(UTC))  # fmt: skip
    made_dir = not args.dir.exists()
    args.dir.mkdir(parents=True, exist_ok=True)
    same_disk = os.stat(args.dir).st_dev == os.stat(REPO).st_dev
    work = Path(tempfile.mkdtemp(prefix="bench-archive-", dir=args.dir))
    try:
        raw = [
            raw_append(work, sealed, os.fsync, args.seconds),
            raw_append(work, sealed, os.fdatasync, args.seconds),
            raw_zero_filled(work, sealed, segment_bytes, args.seconds),
        ]
        stored = presealed(work / "presealed", sealed, recipients=contacts[:1],
                           seconds=args.seconds, segment_bytes=segment_bytes)  # fmt: skip
        held: dict[tuple[int, int], Row] = {}
        for keys in (1, 2):
            for count in (1, PRODUCERS):
                held[count, keys] = holds(
                    work / f"holds-{count}-{keys}", message, decision, recipients=contacts[:keys],
                    count=count, seconds=args.seconds, segment_bytes=segment_bytes,
                )  # fmt: skip
        build_seconds = build_archive(work / "verify", sealed, args.entries, segment_bytes)
        warm = timed_verify(work / "verify", cold=False)
        cold = timed_verify(work / "verify", cold=True)
    finally:
        shutil.rmtree(work)
        if made_dir:
            with contextlib.suppress(OSError):  # only if empty: someone else may use it
                args.dir.rmdir()

    print(
        f"bench/archive.py: one {len(message.raw):,}-byte email, sealed {len(sealed):,} bytes "
        f"(1 recipient), {args.seconds:g} s per row, {os.cpu_count()} cpus"
    )
    disk = "the repo's filesystem" if same_disk else "NOT the repo's filesystem"
    print(f"every file in a temporary directory under {args.dir} ({disk}), removed after")
    print_rows([*raw, stored, *(held[c, k] for k in (1, 2) for c in (1, PRODUCERS))])
    fsync_rate = raw[0].rate
    print(f"against raw write+fsync ({fsync_rate:,.0f}/s), goals of issue 3:")
    for keys in (1, 2):
        single = held[1, keys].rate / fsync_rate
        many = held[PRODUCERS, keys].rate / fsync_rate
        print(
            f"  {keys} recipient{'s' if keys > 1 else ''}: 1 producer {single:.2f}x "
            f"(goal >= {GOAL_SINGLE_RATIO}: {verdict(single >= GOAL_SINGLE_RATIO)}), "
            f"{PRODUCERS} producers {many:.2f}x (goal > 1: {verdict(many > 1)})"
        )
    mib = args.entries * (len(sealed) + OVERHEAD) / 2**20
    print(f"verify: {warm['entries']:,.0f} entries, {mib:,.0f} MiB of log, built in "
          f"{build_seconds:.1f} s; goal >= {GOAL_VERIFY_RATE:,} entries/s")  # fmt: skip
    for name, result in (("warm page cache", warm), ("cold (pages dropped)", cold)):
        rate = result["entries"] / result["seconds"]
        print(
            f"  {name:<21} {result['seconds']:>6.2f} s {rate:>10,.0f} entries/s "
            f"{verdict(rate >= GOAL_VERIFY_RATE):<7} peak RSS {result['rss_after_kib'] / 1024:,.0f}"
            f" MiB ({result['rss_before_kib'] / 1024:,.0f} before verify)"
        )
    print("  (peak RSS includes the mapped pages of the segment being read, and the tree)")


if __name__ == "__main__":
    main()
