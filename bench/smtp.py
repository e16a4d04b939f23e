"""Benchmark: the SMTP channel against a bare aiosmtpd sink and Postfix's smtp-sink.

Run: .venv/bin/python bench/smtp.py [--messages N] [--sessions S] [--repeats K] [--rate R]
     [--seconds S] [--big-mib M] [--dir DIR] [--py-spy [EXE]]

Every server runs as its own process (its own process group), started and stopped here, on
free ports of 127.0.0.1; the archive lives in a temporary directory under DIR (default
<repo>/var, which git ignores: a real disk, since every hold is fsynced), removed at the end.
Postfix's smtp-source and smtp-sink must be installed (Debian package postfix).

Targets:
  (a) nocontact, every message held: sender mark@blocked.example, a blocked person.
  (b) nocontact, every message delivered: another sender, relayed to the smtp-sink of (d).
  (c) a bare aiosmtpd Sink handler in a Controller, in a separate process: the floor any
      aiosmtpd-based filter stands on.
  (d) smtp-sink alone: the speed of light on this machine.

For each target:
  - throughput: `smtp-source -s 20 -m 2000 -l 10240 -f SENDER -t RCPT` (a new connection per
    message, 20 in parallel), msgs/s from its wall time, the median of 3 runs after a warm-up
    of 200 messages. All four servers are up together and the runs go a, b, c, d, a, b, ...
    so a drift in whatever else the machine does skews every row alike. Also the server's
    CPU time per message (user + system, all processes of its group, /proc/PID/stat) and
    msgs/s x that, the cores it kept busy: ~1.0 means bound by one core (the GIL).
  - latency: one smtplib client, one ~10 KB message at a time on a fresh connection, paced
    at 20 msg/s for 10 s (open loop: a late message is sent at once). Latency is connect to
    the 250 after the final dot, p50 and p99; nocontact's added latency is its percentile
    minus the same percentile of (c).
  - memory: a fresh daemon, warmed with a few small messages, then ONE 50 MiB message from
    mark (a 37 MiB attachment, base64) is held; peak RSS is the daemon's VmHWM from
    /proc/PID/status afterwards, idle RSS its VmRSS before. The same message to (c), for
    reference: what aiosmtpd's own DATA handling costs.
The archive is verified at the end (keyless, `verify_archive`) and smtp-sink's counter
checks that held mail was not relayed and relayed mail arrived.

Goals (issue 4): a/c >= 0.7; p99 added latency <= 15 ms at 20 msg/s; peak RSS while one
50 MB message is held < idle RSS + 150 MB.

--py-spy [EXE]: after the timed runs of (a) and (b), one more smtp-source run each with
py-spy recording the daemon (--gil: whichever thread holds the GIL), keeping
DIR/py-spy-smtp-held.txt and -relayed.txt (collapsed stacks) and printing the frames most
often on top of the stack and the pipeline's functions by inclusive share.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from pathlib import Path

import pyrage

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/smtp.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from bench.procs import (  # noqa: E402
    Server,
    cpu_seconds,
    free_port,
    scratch,
    start_py_spy,
    stop,
    top_frames,
)

HELD_SENDER = "mark@blocked.example"
FRIEND_SENDER = "jordan.lee@friends.example"
RECIPIENT = "sam@home.example"
HOST = "127.0.0.1"
MESSAGE_BYTES = 10 * 1024
WARMUP_MESSAGES = 200
MAX_MESSAGE_BYTES = 100 << 20
GOAL_HELD_RATIO = 0.7
GOAL_ADDED_P99_MS = 15.0
GOAL_RSS_MIB = 150e6 / 2**20  # 150 MB
START_TIMEOUT = 60.0
ROOTS = re.compile(r"\(proxy/(__main__|cli|daemon)\.py\)$|^SMTP\._handle_client ")
PROFILED = re.compile(r"\((proxy|aiosmtpd|aiosmtplib)/")


# -- processes -----------------------------------------------------------------------------


def start(name: str, command: list[str], port: int, log: Path) -> Server:
    """Start `command` in a new session (so its whole group can be stopped), wait for 220."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    server = Server(name=name, process=process, port=port, log=log)
    try:
        wait_for_greeting(server)
    except BaseException:
        stop(server.process)
        raise
    return server


def wait_for_greeting(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n"
                               f"{tail(server.log)}")  # fmt: skip
        try:
            with socket.create_connection((HOST, server.port), timeout=2) as connection:
                if connection.recv(512).startswith(b"220"):
                    connection.sendall(b"QUIT\r\n")
                    with contextlib.suppress(OSError):
                        connection.recv(512)
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not greet on port {server.port}:\n{tail(server.log)}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# -- servers -------------------------------------------------------------------------------


def start_smtp_sink(work: Path) -> Server:
    """smtp-sink with a running counter on stdout (mesg=N), so relayed mail can be counted."""
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    command = ["smtp-sink", *user, "-c", f"{HOST}:{port}", "256"]
    return start("smtp-sink", command, port, work / f"smtp-sink-{port}.log")


def sink_count(sink: Server) -> int:
    found = re.findall(rb"mesg=(\d+)", sink.log.read_bytes()[-4096:])
    return int(found[-1]) if found else 0


def start_aiosmtpd(work: Path) -> Server:
    port = free_port()
    command = [sys.executable, __file__, "--sink-child", str(port)]
    return start("aiosmtpd Sink", command, port, work / "aiosmtpd.log")


def sink_child(port: int) -> None:
    """In a child process: a bare aiosmtpd Sink in a Controller until SIGTERM."""
    from aiosmtpd.controller import Controller  # noqa: PLC0415 - only the child needs it
    from aiosmtpd.handlers import Sink  # noqa: PLC0415

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    controller = Controller(Sink(), hostname=HOST, port=port, ready_timeout=30,
                            data_size_limit=MAX_MESSAGE_BYTES)  # fmt: skip
    controller.start()
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        controller.stop()


def start_nocontact(work: Path, name: str, next_hop: Server) -> tuple[Server, Path]:
    """A daemon with a fresh archive, relaying allowed mail to `next_hop`."""
    port = free_port()
    archive = work / f"archive-{name}"
    config = work / f"nocontact-{name}.yaml"
    recipient = pyrage.x25519.Identity.generate().to_public()
    config.write_text(
        f"archive: {{path: {archive}}}\n"
        f"contacts: [{{name: Bench, role: lawyer, age_recipient: {recipient}}}]\n"
        f"people: [{{id: mark, name: Mark Smith, emails: [{HELD_SENDER}]}}]\n"
        "default_region: US\n"
        "channels:\n"
        "  smtp:\n"
        f"    listen: {HOST}:{port}\n"
        f"    deliver: smtp://{HOST}:{next_hop.port}\n"
        f"    max_message_bytes: {MAX_MESSAGE_BYTES}\n"
    )
    command = [sys.executable, "-m", "proxy", "run", "-c", str(config)]
    return start(f"nocontact ({name})", command, port, work / f"nocontact-{name}.log"), archive


# -- load and latency ----------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One target: its server, who sends to it, and what was measured."""

    name: str
    server: Server
    sender: str
    sink: Server | None = None  # the next hop whose counter says what was relayed
    messages: int = 0  # per smtp-source run
    walls: list[float] = field(default_factory=list)  # seconds per smtp-source run
    cpus: list[float] = field(default_factory=list)  # server CPU seconds per message, per run
    relayed: list[int] = field(default_factory=list)  # what the sink received, per run
    latencies: list[float] = field(default_factory=list)  # seconds, one client at 20/s

    @property
    def rate(self) -> float:
        """msgs/s of the median smtp-source run."""
        return self.messages / statistics.median(self.walls)

    @property
    def cpu_per_message(self) -> float:
        return statistics.median(self.cpus)

    @property
    def relayed_text(self) -> str:
        if not self.relayed:
            return ""
        low, high = min(self.relayed), max(self.relayed)
        return f"{low:,}" if low == high else f"{low:,}-{high:,}"

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def smtp_source(port: int, sender: str, *, messages: int, sessions: int) -> float:
    """Wall seconds of one smtp-source run; raises if any reply was not the expected one."""
    command = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l",
               str(MESSAGE_BYTES), "-f", sender, "-t", RECIPIENT, f"{HOST}:{port}"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({done.returncode}): "
                           f"{done.stdout.decode()} {done.stderr.decode()}")  # fmt: skip
    return elapsed


def ten_kb_message(sender: str, index: int) -> bytes:
    """A message shaped like smtp-source's: headers and ~10 KB of 80-column lines."""
    headers = (
        f"From: <{sender}>\r\nTo: <{RECIPIENT}>\r\nSubject: bench {index}\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='bench.example')}\r\n\r\n"
    )
    line = f"{index:>8} " + "x" * 69 + "\r\n"
    return headers.encode() + line.encode() * (MESSAGE_BYTES // len(line))


def send(port: int, sender: str, message: bytes, timeout: float = 30) -> None:
    # local_hostname: smtplib would otherwise resolve this host's FQDN for EHLO each time
    with smtplib.SMTP(HOST, port, local_hostname="bench.localhost", timeout=timeout) as client:
        client.sendmail(sender, [RECIPIENT], message)


def paced_latencies(port: int, sender: str, *, rate: float, seconds: float) -> list[float]:
    """One message at a time on a fresh connection, at `rate`/s; connect .. 250 after DATA."""
    count = max(1, round(rate * seconds))
    messages = [ten_kb_message(sender, i) for i in range(count)]
    latencies = []
    due = time.perf_counter()
    for message in messages:
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        started = time.perf_counter()
        with smtplib.SMTP(HOST, port, local_hostname="bench.localhost", timeout=30) as client:
            client.sendmail(sender, [RECIPIENT], message)
            latencies.append(time.perf_counter() - started)
        due += 1 / rate
    return latencies


@contextlib.contextmanager
def recording(server: Server, spy: str, out: Path) -> Iterator[None]:
    """py-spy on `server` while the block runs: samples of whichever thread holds the GIL."""
    process = start_py_spy(spy, server.pid, out)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        stop(process, signal.SIGINT, 30)  # py-spy writes its output on SIGINT


def warm_up_and_latency(row: Row, args: argparse.Namespace) -> None:
    """smtp-source warm-up, then the paced single-client latency run."""
    port = row.server.port
    smtp_source(port, row.sender, messages=WARMUP_MESSAGES, sessions=args.sessions)
    row.latencies = paced_latencies(port, row.sender, rate=args.rate, seconds=args.seconds)


def timed_run(row: Row, args: argparse.Namespace) -> None:
    """One smtp-source run: its wall time, the server's CPU per message, what was relayed."""
    before, cpu = sink_count(row.sink) if row.sink else 0, cpu_seconds(row.server.pid)
    row.walls.append(smtp_source(row.server.port, row.sender, messages=args.messages,
                                 sessions=args.sessions))  # fmt: skip
    row.cpus.append((cpu_seconds(row.server.pid) - cpu) / args.messages)
    row.messages = args.messages
    if row.sink is not None:
        time.sleep(0.2)  # the counter is printed as the sink's sessions end
        row.relayed.append(sink_count(row.sink) - before)


def profiled_run(row: Row, args: argparse.Namespace, out: Path) -> None:
    """One more smtp-source run with py-spy recording the server, outside the numbers."""
    with recording(row.server, args.py_spy, out):
        smtp_source(row.server.port, row.sender, messages=args.messages, sessions=args.sessions)


def big_message(mib: int) -> bytes:
    """One `mib` MiB email from mark: a short text part and a base64 attachment."""
    boundary = "bench-boundary-4f9a"
    head = (
        f"From: Mark Smith <{HELD_SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: the photos\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='blocked.example')}\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "You cannot keep them from me. Look at these.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: application/pdf; name=photos.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=photos.pdf\r\n\r\n"
    ).encode()
    end = f"\r\n--{boundary}--\r\n".encode()
    lines = ((mib << 20) - len(head) - len(end)) // 78  # 57 bytes -> 76 characters + CRLF
    encoded = base64.encodebytes(random.Random(4).randbytes(57 * lines))
    return head + encoded.replace(b"\n", b"\r\n").rstrip(b"\r\n") + end


@dataclass(slots=True)
class Memory:
    idle_kib: int  # VmRSS, warmed and idle
    peak_kib: int  # VmHWM after the big message
    after_kib: int  # VmRSS half a second after it
    seconds: float  # to send the big message (connect .. 250)
    size: int
    relayed: int | None  # what the next hop received of it (held: must be 0)

    @property
    def growth_mib(self) -> float:
        return (self.peak_kib - self.idle_kib) / 1024


def big_message_memory(server: Server, big: bytes, sink: Server | None = None) -> Memory:
    """Idle RSS of a warmed server, then its VmHWM after taking `big` from mark."""
    for index in range(10):
        send(server.port, HELD_SENDER, ten_kb_message(HELD_SENDER, index))
        send(server.port, FRIEND_SENDER, ten_kb_message(FRIEND_SENDER, index))
    time.sleep(1.0)
    idle, before = status_kib(server.pid, "VmRSS"), sink_count(sink) if sink else 0
    started = time.perf_counter()
    send(server.port, HELD_SENDER, big, timeout=300)
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    return Memory(
        idle_kib=idle, peak_kib=status_kib(server.pid, "VmHWM"),
        after_kib=status_kib(server.pid, "VmRSS"), seconds=seconds, size=len(big),
        relayed=sink_count(sink) - before if sink else None,
    )  # fmt: skip


def archive_entries(path: Path) -> str:
    from proxy.archive import VerifyFailure, verify_archive  # noqa: PLC0415 - after the run

    try:
        return f"{verify_archive(path).entries:,} entries, verified"
    except VerifyFailure as failure:
        return f"VERIFY FAILED: {failure}"


# -- the run -------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    rows: list[Row]  # a, b, c, d
    memory: Memory  # nocontact
    floor_memory: Memory  # the bare aiosmtpd Sink, same message
    archives: tuple[str, str]  # verify of the load archive and the memory archive
    profiles: list[Path]
    load: float  # 1-minute load average at the start: other work on the machine skews it all


def run(args: argparse.Namespace, work: Path) -> Results:
    load = os.getloadavg()[0]
    profiles = [args.dir / f"py-spy-smtp-{what}.txt" for what in ("held", "relayed")]
    big = big_message(args.big_mib)
    servers: list[Server] = []

    def launch(server: Server) -> Server:
        servers.append(server)
        return server

    def finish(server: Server) -> None:
        stop(server.process)
        servers.remove(server)

    try:
        # all four targets up at once, so their timed runs can be interleaved: a drift in
        # what else the machine does then skews every row alike, not one of them
        sink = launch(start_smtp_sink(work))
        aiosmtpd = launch(start_aiosmtpd(work))
        daemon, archive = start_nocontact(work, "load", sink)
        launch(daemon)
        rows = [
            Row(name="(a) nocontact, all held", server=daemon, sender=HELD_SENDER, sink=sink),
            Row(name="(b) nocontact, all relayed to (d)", server=daemon, sender=FRIEND_SENDER,
                sink=sink),
            Row(name="(c) aiosmtpd Sink, own process", server=aiosmtpd, sender=FRIEND_SENDER),
            Row(name="(d) smtp-sink alone", server=sink, sender=FRIEND_SENDER),
        ]  # fmt: skip
        for row in rows:
            warm_up_and_latency(row, args)
        for _ in range(args.repeats):
            for row in rows:
                timed_run(row, args)
        if args.py_spy:
            for row, out in zip(rows[:2], profiles, strict=True):
                profiled_run(row, args, out)
        floor_memory = big_message_memory(aiosmtpd, big)
        finish(aiosmtpd)
        finish(daemon)
        load_archive = archive_entries(archive)

        daemon, archive = start_nocontact(work, "memory", sink)
        launch(daemon)
        memory = big_message_memory(daemon, big, sink)
        finish(daemon)
        memory_archive = archive_entries(archive)
    finally:
        for server in reversed(servers):
            stop(server.process)
    return Results(rows=rows, memory=memory, floor_memory=floor_memory,
                   archives=(load_archive, memory_archive),
                   profiles=profiles if args.py_spy else [], load=load)  # fmt: skip


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(args: argparse.Namespace, results: Results) -> None:
    held, relayed, floor, bare = results.rows
    print(
        f"bench/smtp.py: smtp-source -s {args.sessions} -m {args.messages:,} -l {MESSAGE_BYTES} "
        f"(after {WARMUP_MESSAGES} warm-up), {os.cpu_count()} cpus; latency: one smtplib "
        f"client, {args.rate:g} msg/s for {args.seconds:g} s, connect to 250 after DATA; "
        f"load average before {results.load:.2f}"
    )
    print(f"{'':<36} {'msgs/s':>8} {'runs':>13} {'cpu ms/msg':>10} {'cores':>5} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'relayed':>8}")  # fmt: skip
    for row in results.rows:
        rates = sorted(row.messages / wall for wall in row.walls)
        spread = f"{rates[0]:,.0f}-{rates[-1]:,.0f}"
        print(
            f"{row.name:<36} {row.rate:>8,.0f} {spread:>13} "
            f"{row.cpu_per_message * 1e3:>10.3f} {row.rate * row.cpu_per_message:>5.2f} "
            f"{row.percentile(0.5) * 1e3:>7.2f} "
            f"{row.percentile(0.99) * 1e3:>7.2f} {max(row.latencies) * 1e3:>7.2f} "
            f"{row.relayed_text:>8}"
        )
    print(f"  msgs/s, cpu: median of {args.repeats} smtp-source runs per target, interleaved "
          f"(runs: slowest-fastest); cpu: the server's own processes, user + system; cores: "
          f"msgs/s x cpu")  # fmt: skip
    print("  relayed: what (d) received during each run of the row; latency columns: the "
          "paced client")  # fmt: skip
    print(f"  archive after (a)+(b): {results.archives[0]}")
    held_ratio, relayed_ratio = held.rate / floor.rate, relayed.rate / floor.rate
    print(f"throughput: a/c = {held_ratio:.2f} (goal >= {GOAL_HELD_RATIO}: "
          f"{verdict(held_ratio >= GOAL_HELD_RATIO)}), b/c = {relayed_ratio:.2f}, "
          f"d/c = {bare.rate / floor.rate:.2f}")  # fmt: skip
    print(f"  by CPU per message instead (the same ratio where both use ~1 core; less noisy): "
          f"a/c = {floor.cpu_per_message / held.cpu_per_message:.2f}, "
          f"b/c = {floor.cpu_per_message / relayed.cpu_per_message:.2f}")  # fmt: skip
    for row, what in ((held, "held"), (relayed, "relayed")):
        p50 = (row.percentile(0.5) - floor.percentile(0.5)) * 1e3
        p99 = (row.percentile(0.99) - floor.percentile(0.99)) * 1e3
        ok = verdict(p99 <= GOAL_ADDED_P99_MS)
        print(f"added latency over (c), {what:<7}: p50 {p50:+.2f} ms, p99 {p99:+.2f} ms "
              f"(goal p99 <= {GOAL_ADDED_P99_MS:g} ms: {ok})")  # fmt: skip
    memory, floor_memory = results.memory, results.floor_memory
    print(f"one {memory.size / 2**20:.0f} MiB message from mark (base64 attachment), "
          f"idle RSS -> peak RSS (VmHWM); nocontact is a fresh daemon:")  # fmt: skip
    for name, taken, note in (
        ("nocontact, held", memory, f"(goal < +150 MB = {GOAL_RSS_MIB:.0f} MiB: "
         f"{verdict(memory.growth_mib < GOAL_RSS_MIB)})"),
        ("bare aiosmtpd Sink", floor_memory, "(for reference)"),
    ):  # fmt: skip
        print(f"  {name:<19} {taken.idle_kib / 1024:>5,.0f} -> {taken.peak_kib / 1024:>5,.0f} "
              f"MiB, +{taken.growth_mib:,.0f} MiB {note}; {taken.seconds:.2f} s to 250, RSS "
              f"{taken.after_kib / 1024:,.0f} MiB after")  # fmt: skip
    print(f"  relayed of it: {memory.relayed}; archive after: {results.archives[1]}")
    for path in results.profiles:
        if not path.exists():
            print(f"py-spy: no output ({path})")
            continue
        own, inclusive = top_frames(path, PROFILED, ROOTS)
        print(f"py-spy --gil, one more smtp-source run ({path}): top frames, own samples")
        for share, frame in own:
            print(f"  {share:>6.1%}  {frame}")
        print("  inclusive, functions of proxy/, aiosmtpd, aiosmtplib:")
        for share, frame in inclusive:
            print(f"  {share:>6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000, help="smtp-source messages")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source parallel sessions")
    parser.add_argument("--rate", type=float, default=20.0, help="latency client, msgs/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run per target")
    parser.add_argument("--repeats", type=int, default=3, help="smtp-source runs (median)")
    parser.add_argument("--big-mib", type=int, default=50, help="size of the one big message")
    parser.add_argument("--dir", type=Path, default=REPO / "var",
                        help="where to make the temporary directory (a real disk)")  # fmt: skip
    parser.add_argument("--py-spy", nargs="?", const="py-spy", default=None, metavar="EXE",
                        help="profile the loaded daemon with py-spy (this executable)")  # fmt: skip
    parser.add_argument("--sink-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink_child:
        sink_child(args.sink_child)
        return
    for tool in ("smtp-source", "smtp-sink"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} not found: install Postfix (apt-get install postfix)")
    if args.py_spy and shutil.which(args.py_spy) is None:
        parser.error(f"{args.py_spy} not found (pip install py-spy, e.g. in a separate venv)")
    started = time.perf_counter()
    with scratch(args.dir, "bench-smtp-") as work:
        results = run(args, work)
    report(args, results)
    print(f"whole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
