"""Benchmark: hostile messages against a benign one of the same size, with a probe running.

Run: .venv/bin/python bench/hostile.py [--repeats K] [--dir DIR]

One daemon (`python -m proxy run`, its own process group, a fresh archive and Maildir under
a scratch directory in DIR, default <repo>/var) takes, in turn, a benign message and each
hostile shape, every one from an ordinary sender (so its whole body must be read) and ending
with the blocked person's name half the time (so it must be found past every cap). Each is
sent K times (default 3) on a fresh connection; its time is connect to the reply after the
final dot, and the median is reported.

All the while a probe sends one small message every 50 ms on its own connection (MAIL, RCPT,
DATA, and the reply): its p50, p99 and max latency over the whole run tell whether any
hostile message stalled the other sessions.

Shapes (issue 20): lone surrogates (utf-7 subject and body), unclosed `<a ` (html.parser's
quadratic case), nested `<b>`, one 1 MB line, phone-like digits, many addresses, 1,000-deep
nested multiparts, 50,000 tiny parts, 100,000 encoded words in one header, 10 MB of headers.

Goals: every shape's median <= 3x the benign message of its size (1 MB; the 10 MB header
block against a benign 10 MB message); probe p99 <= 20 ms; no 4xx/5xx anywhere; peak RSS of
the daemon's process group < idle + 150 MB. Every held shape must be in the archive and
every allowed one in the Maildir (counted at the end).

The daemon runs with `reply_after_ms: 0`: by default every reply to DATA waits 10 ms (so its
timing says nothing of what became of the message); that constant delay is no stall, and
the probe would count it in every message.

Where the scratch directory is (--dir) matters to the probe: its every message is fsynced
into the Maildir, and on ext4 that fsync can wait behind the journal commit that carries
a 10 MB message's fsync. Measured here: p99 11-13 ms on tmpfs (/dev/shm), 20-29 ms on the
disk; the daemon's own stalls are the tmpfs figure. The default is the disk, as deployed.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.process
import os
import smtplib
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyrage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procs import Server, free_port, group_pids, scratch, stop
from bench.smtp import start
from proxy.archive import verify_archive
from proxy.archive.reader import item_digests
from tests.hostile_shapes import MIB, benign, shapes

HOST = "127.0.0.1"
FRIEND = "friend@example.org"
NAME = b"\r\nlove, Mark Smith\r\n"
PROBE = b"From: friend@example.org\r\nSubject: probe\r\n\r\nstill there?\r\n"
PROBE_EVERY = 0.05
WARM = 3
REPO = Path(__file__).resolve().parents[1]


@dataclass(slots=True)
class Probe:
    """One small message every 50 ms on one connection, timed MAIL to the DATA reply, from
    its own process: in this one, the sender's smtplib holds the GIL for tens of ms while
    it prepares a 10 MB message, which the probe would count as the daemon's delay."""

    port: int
    latencies: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # when each was sent (monotonic)
    failures: list[str] = field(default_factory=list)
    _process: multiprocessing.process.BaseProcess | None = None
    _stopping: Any = None
    _results: Any = None

    def start(self) -> None:
        context = multiprocessing.get_context("fork")
        self._stopping, (self._results, sending) = context.Event(), context.Pipe(duplex=False)
        self._process = context.Process(
            target=_probe, args=(self.port, self._stopping, sending), daemon=True
        )
        self._process.start()

    def finish(self) -> None:
        assert self._process is not None
        self._stopping.set()
        self.started, self.latencies, self.failures = self._results.recv()
        self._process.join()


def _probe(port: int, stopping: Any, results: Any) -> None:
    latencies: list[float] = []
    sent: list[float] = []
    failures: list[str] = []
    try:
        with smtplib.SMTP(HOST, port, timeout=60) as client:
            client.ehlo("probe.test")
            next_at = time.monotonic()
            while not stopping.is_set():
                started = time.monotonic()
                client.mail(FRIEND)
                client.rcpt("sam@home.example")
                code, _ = client.data(PROBE)
                latencies.append(time.monotonic() - started)
                sent.append(started)
                if code != 250:
                    failures.append(f"probe: {code}")
                next_at += PROBE_EVERY
                stopping.wait(max(0.0, next_at - time.monotonic()))
    except (smtplib.SMTPException, OSError) as error:
        failures.append(f"probe: {error}")
    results.send((sent, latencies, failures))


def on_the_wire(raw: bytes) -> bytes:
    """`raw` as DATA carries it: dots stuffed, CRLF at the end, then the end-of-data line.
    Made before the clock starts, so the client's own work is not counted as the daemon's
    (smtplib's line-ending and dot regexes cost tens of ms on 100,000 short lines)."""
    stuffed = (b"." + raw if raw.startswith(b".") else raw).replace(b"\r\n.", b"\r\n..")
    return stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def send(port: int, raw: bytes) -> tuple[float, int]:
    """Seconds from connect to the reply after the final dot, and the reply code."""
    wire = on_the_wire(raw)
    started = time.monotonic()
    with socket.create_connection((HOST, port), timeout=300) as connection:
        replies = connection.makefile("rb")
        _reply(replies)
        for command in (b"EHLO bench.test", b"MAIL FROM:<" + FRIEND.encode() + b">",
                        b"RCPT TO:<sam@home.example>", b"DATA"):  # fmt: skip
            connection.sendall(command + b"\r\n")
            _reply(replies)
        connection.sendall(wire)
        code = _reply(replies)
        connection.sendall(b"QUIT\r\n")
    return time.monotonic() - started, code


def _reply(replies: Any) -> int:
    """The code of one whole (possibly multi-line) reply."""
    line = replies.readline()
    while line[3:4] == b"-":
        line = replies.readline()
    return int(line[:3] or 0)


def rss_kib(pgid: int) -> int:
    """The resident memory of the whole process group now (the daemon and its children)."""
    total = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@dataclass(slots=True)
class Sampler:
    """The group's resident memory every 20 ms: its peak is what was resident at once
    (a sum of each process's own high-water mark would add peaks that never met)."""

    pgid: int
    peak: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pgid))


def start_daemon(work: Path) -> tuple[Server, Path, Path]:
    port = free_port()
    archive, mail, config = work / "archive", work / "mail", work / "nocontact.yaml"
    recipient = pyrage.x25519.Identity.generate().to_public()
    config.write_text(
        f"archive: {{path: {archive}}}\n"
        f"contacts: [{{name: Bench, role: lawyer, age_recipient: {recipient}}}]\n"
        "people: [{id: mark, name: Mark Smith, emails: [mark.smith@gmail.com]}]\n"
        "default_region: US\n"
        "channels:\n"
        "  smtp:\n"
        f"    listen: {HOST}:{port}\n"
        f"    deliver: maildir:{mail}\n"
        f"    max_message_bytes: {64 * MIB}\n"
        "    reply_after_ms: 0\n"  # the probe times stalls, not the deliberate reply delay
    )
    command = [sys.executable, "-m", "proxy", "run", "-c", str(config)]
    return start("nocontact", command, port, work / "nocontact.log"), archive, mail


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def percentile_ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass(slots=True)
class Measured:
    """What one run saw: every target's times, the probe, memory, and what was sent."""

    targets: list[tuple[str, bytes, str]]  # name, message, the benign peer it is judged by
    times: dict[str, list[float]]
    spans: list[tuple[float, float, str]]  # each send: from, to (monotonic), its name
    probe: Probe
    idle: int  # KiB resident before, the whole group
    peak: int  # KiB resident at most, sampled
    held: int = 0
    delivered: int = 0
    failures: list[str] = field(default_factory=list)


def measure(server: Server, repeats: int) -> Measured:
    """Warm the daemon, then send every target `repeats` times with the probe running."""
    for _ in range(WARM):  # imports, the reading children, the Maildir
        send(server.port, benign(64 << 10))
    time.sleep(1.0)
    targets = [
        ("benign 1 MB", benign(MIB), "benign 1 MB"),
        ("benign 10 MB", benign(10 * MIB), "benign 10 MB"),
    ]
    for name, raw in shapes().items():
        targets.append((name, raw, "benign 10 MB" if len(raw) > 5 * MIB else "benign 1 MB"))
    probe, sampler = Probe(server.port), Sampler(server.pid)
    seen = Measured(targets=targets, times={name: [] for name, _, _ in targets}, spans=[],
                    probe=probe, idle=rss_kib(server.pid), peak=0)  # fmt: skip
    watcher = threading.Thread(target=sampler.run, daemon=True)
    watcher.start()
    probe.start()
    for round_ in range(repeats):
        for name, raw, _ in targets:
            with_name = round_ % 2 == 1 and not name.startswith("benign")
            began = time.monotonic()
            elapsed, code = send(server.port, raw + NAME if with_name else raw)
            seen.times[name].append(elapsed)
            seen.spans.append((began, time.monotonic(), name))
            if code != 250:
                seen.failures.append(f"{name}: reply {code}")
            seen.held += with_name
            seen.delivered += not with_name
    probe.finish()
    sampler.stopping.set()
    watcher.join()
    seen.failures += probe.failures
    seen.peak = sampler.peak
    return seen


def slowest(seen: Measured, count: int = 3) -> str:
    """The slowest probes, each with what was being sent meanwhile (where to look)."""
    found = []
    pairs = sorted(zip(seen.probe.latencies, seen.probe.started, strict=True), reverse=True)
    for latency, started in pairs[:count]:
        during = [
            name for begin, end, name in seen.spans if begin <= started + latency and started <= end
        ]
        found.append(f"{latency * 1000:.1f} ms ({', '.join(during) or 'between sends'})")
    return "; ".join(found)


def report(seen: Measured, archive: Path, mail: Path) -> int:
    """Print the table and the goals; 0 if every goal passed."""
    print(f" {'message':32} {'MiB':>6} {'median ms':>10} {'runs ms':>15} {'x benign':>9}")
    worst = 0.0
    for name, raw, peer in seen.targets:
        times = seen.times[name]
        ratio = statistics.median(times) / statistics.median(seen.times[peer])
        if not name.startswith("benign"):
            worst = max(worst, ratio)
        runs = f"{min(times) * 1000:,.0f}-{max(times) * 1000:,.0f}"
        print(f" {name:32} {len(raw) / MIB:6.2f} {median_ms(times):10,.1f} {runs:>15} "
              f"{ratio:9.2f}")  # fmt: skip
    lat = seen.probe.latencies
    p99 = percentile_ms(lat, 0.99)
    print(f" probe: {len(lat)} messages, p50 {percentile_ms(lat, 0.5):.1f} ms, "
          f"p99 {p99:.1f} ms, max {max(lat) * 1000:.1f} ms")  # fmt: skip
    print(f" slowest probes: {slowest(seen)}")
    grown = (seen.peak - seen.idle) / 1024 * 1.048576  # MB
    print(f" memory: idle RSS {seen.idle / 1024:.0f} MiB, peak {seen.peak / 1024:.0f} MiB "
          f"(the daemon and its children together, sampled every 20 ms)")  # fmt: skip
    stored = len(list((mail / "new").iterdir())) if (mail / "new").exists() else 0
    verify_archive(archive)
    items = len(item_digests(archive / "log", 0))
    expected = WARM + seen.delivered + len(lat)
    print(f" delivered: {stored} in the Maildir (expected {expected}: warm-up, shapes, probes); "
          f"held: {items} sealed items for {seen.held} sent, archive verify OK")  # fmt: skip
    failures = list(seen.failures)
    if stored != expected:
        failures.append(f"maildir holds {stored}, expected {expected}")
    if items != seen.held:
        failures.append(f"archive holds {items} items, expected {seen.held}")
    goals = [
        (f"every shape <= 3x benign (worst {worst:.2f})", worst <= 3),
        (f"probe p99 <= 20 ms ({p99:.1f} ms)", p99 <= 20),
        (f"no 4xx/5xx, nothing lost ({'; '.join(failures) or 'none'})", not failures),
        (f"peak RSS < idle + 150 MB (+{grown:.0f} MB)", grown < 150),
    ]
    for text, ok in goals:
        print(f"goal: {text}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(ok for _, ok in goals) else 1


def run(repeats: int, work: Path) -> int:
    load = os.getloadavg()[0]
    server, archive, mail = start_daemon(work)
    try:
        seen = measure(server, repeats)
    finally:
        stop(server.process)
    print(f"bench/hostile.py: each shape {repeats} times, median; {os.cpu_count()} cpus, "
          f"load average before {load:.2f}")  # fmt: skip
    return report(seen, archive, mail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=REPO / "var")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    with scratch(args.dir, "bench-hostile-", keep=args.keep) as work:
        return run(args.repeats, work)


if __name__ == "__main__":
    sys.exit(main())
