"""Benchmark: the SMTP channel against a bare aiosmtpd sink and Postfix's smtp-sink.

Run: .venv/bin/python bench/smtp.py [--messages N] [--sessions S] [--rate R] [--seconds S]
     [--big-mib M] [--dir DIR] [--py-spy PATH]

Every server runs as its own process (its own process group), started and stopped here, on
free ports of 127.0.0.1; the archive lives in a temporary directory under DIR (default
<repo>/var, which git ignores: a real disk, since every hold is fsynced), removed at the end.
Postfix's smtp-source and smtp-sink must be installed (Debian package postfix).

Targets:
  (a) nocontact, every message held: sender mark@blocked.example, a blocked person.
  (b) nocontact, every message delivered: another sender, relayed to an smtp-sink.
  (c) a bare aiosmtpd Sink handler in a Controller, in a separate process: the floor any
      aiosmtpd-based filter stands on.
  (d) smtp-sink alone: the speed of light on this machine.

For each target:
  - throughput: `smtp-source -s 20 -m 2000 -l 10240 -f SENDER -t RCPT` (a new connection per
    message, 20 in parallel), msgs/s from its wall time, after a warm-up of 200 messages;
    also the server's CPU time per message (all processes of its group, /proc/PID/stat).
  - latency: one smtplib client, one ~10 KB message at a time on a fresh connection, paced
    at 20 msg/s for 10 s (open loop: a late message is sent at once). Latency is connect to
    the 250 after the final dot, p50 and p99; nocontact's added latency is its percentile
    minus the same percentile of (c).
  - memory: a fresh daemon, warmed with a few small messages, then ONE 50 MiB message from
    mark (a 37 MiB attachment, base64) is held; peak RSS is the daemon's VmHWM from
    /proc/PID/status afterwards, idle RSS its VmRSS before.
The archive is verified at the end (keyless, `verify_archive`) and smtp-sink's counter
checks that held mail was not relayed and relayed mail arrived.

Goals (issue 4): a/c >= 0.7; p99 added latency <= 15 ms at 20 msg/s; peak RSS while one
50 MB message is held < idle RSS + 150 MB.

--py-spy [EXE]: also record the daemon with py-spy during the throughput runs of (a) and
(b), keeping DIR/py-spy-smtp-held.txt and -relayed.txt (collapsed stacks, all threads) and
printing the frames most often on top of the stack.
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
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from pathlib import Path

import pyrage

REPO = Path(__file__).resolve().parent.parent
HELD_SENDER = "mark@blocked.example"
FRIEND_SENDER = "jordan.lee@friends.example"
RECIPIENT = "sam@home.example"
HOST = "127.0.0.1"
MESSAGE_BYTES = 10 * 1024
WARMUP_MESSAGES = 200
MAX_MESSAGE_BYTES = 100 << 20
GOAL_HELD_RATIO = 0.7
GOAL_ADDED_P99_MS = 15.0
GOAL_RSS_MIB = 150
START_TIMEOUT = 60.0
TICKS = os.sysconf("SC_CLK_TCK")


# -- processes -----------------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    """A server process we started, leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def start(name: str, command: list[str], port: int, log: Path) -> Server:
    """Start `command` in a new session (so its whole group can be stopped), wait for 220."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
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


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it after 10 s; never leaves a member behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # a child that outlived its leader would still be in the group
    if group_pids(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := proc_stat(int(entry))) and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of group `pgid`."""
    total = 0
    for pid in group_pids(pgid):
        if fields := proc_stat(pid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


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
    name: str
    sender: str
    rate: float = 0.0  # msgs/s under smtp-source
    wall: float = 0.0
    cpu_per_message: float = 0.0  # seconds of the server's CPU per message
    latencies: list[float] = field(default_factory=list)  # seconds, one client at 20/s
    relayed: int | None = None  # smtp-sink's count of what the row sent on

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
def recording(server: Server, spy: str | None, out: Path | None) -> Iterator[None]:
    """py-spy on `server` while the block runs (nothing if `spy` is None)."""
    if spy is None or out is None:
        yield
        return
    command = [spy, "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
               "--output", str(out), "--nonblocking", "--threads"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # fmt: skip
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop(process)


def measure(row: Row, server: Server, args: argparse.Namespace, *, sink: Server | None = None,
            profile: Path | None = None) -> Row:  # fmt: skip
    """Warm up, then latency at a paced rate, then smtp-source throughput, into `row`."""
    smtp_source(server.port, row.sender, messages=WARMUP_MESSAGES, sessions=args.sessions)
    row.latencies = paced_latencies(server.port, row.sender, rate=args.rate, seconds=args.seconds)
    before = sink_count(sink) if sink else 0
    with recording(server, args.py_spy, profile):
        cpu = cpu_seconds(server.pid)
        row.wall = smtp_source(server.port, row.sender, messages=args.messages,
                               sessions=args.sessions)  # fmt: skip
        row.cpu_per_message = (cpu_seconds(server.pid) - cpu) / args.messages
    row.rate = args.messages / row.wall
    if sink is not None:
        time.sleep(0.2)  # the counter is printed as the sink's sessions end
        row.relayed = sink_count(sink) - before
    return row


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
    idle_kib: int
    idle_hwm_kib: int
    peak_kib: int
    seconds: float
    size: int


def held_memory(server: Server, mib: int) -> Memory:
    """Idle RSS of a warmed daemon, then its VmHWM after holding one `mib` MiB message."""
    for index in range(10):
        send(server.port, HELD_SENDER, ten_kb_message(HELD_SENDER, index))
        send(server.port, FRIEND_SENDER, ten_kb_message(FRIEND_SENDER, index))
    time.sleep(1.0)
    idle, idle_hwm = status_kib(server.pid, "VmRSS"), status_kib(server.pid, "VmHWM")
    message = big_message(mib)
    started = time.perf_counter()
    send(server.port, HELD_SENDER, message, timeout=300)
    seconds = time.perf_counter() - started
    time.sleep(0.5)
    return Memory(idle_kib=idle, idle_hwm_kib=idle_hwm, peak_kib=status_kib(server.pid, "VmHWM"),
                  seconds=seconds, size=len(message))  # fmt: skip


def archive_entries(path: Path) -> str:
    from proxy.archive import VerifyFailure, verify_archive  # noqa: PLC0415 - after the run

    try:
        return f"{verify_archive(path).entries:,} entries, verified"
    except VerifyFailure as failure:
        return f"VERIFY FAILED: {failure}"


def top_functions(path: Path, count: int = 15) -> list[tuple[float, str]]:
    """(share of samples, frame) of the frames most often on top in py-spy's raw output."""
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        own[stack.split(";")[-1]] += int(samples)
        total += int(samples)
    return [(n / total, frame) for frame, n in own.most_common(count)] if total else []


# -- the run -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def run(args: argparse.Namespace, work: Path) -> None:
    servers: list[Server] = []
    try:
        sink = start_smtp_sink(work)
        servers.append(sink)
        bare = measure(Row(name="(d) smtp-sink alone", sender=FRIEND_SENDER), sink, args)

        aiosmtpd = start_aiosmtpd(work)
        servers.append(aiosmtpd)
        floor = measure(Row(name="(c) aiosmtpd Sink, own process", sender=FRIEND_SENDER),
                        aiosmtpd, args)  # fmt: skip
        stop(aiosmtpd.process)
        servers.remove(aiosmtpd)

        daemon, archive = start_nocontact(work, "load", sink)
        servers.append(daemon)
        profile = args.dir / "py-spy-smtp" if args.py_spy else None
        held = measure(
            Row(name="(a) nocontact, all held", sender=HELD_SENDER),
            daemon,
            args,
            sink=sink,
            profile=profile.with_name(profile.name + "-held.txt") if profile else None,
        )
        relayed = measure(Row(name="(b) nocontact, all relayed to smtp-sink",
                              sender=FRIEND_SENDER), daemon, args, sink=sink,
                          profile=profile.with_name(profile.name + "-relayed.txt")
                          if profile else None)  # fmt: skip
        stop(daemon.process)
        servers.remove(daemon)
        load_archive = archive_entries(archive)

        daemon, archive = start_nocontact(work, "memory", sink)
        servers.append(daemon)
        memory = held_memory(daemon, args.big_mib)
        stop(daemon.process)
        servers.remove(daemon)
        memory_archive = archive_entries(archive)
    finally:
        for server in reversed(servers):
            stop(server.process)

    report(args, [held, relayed, floor, bare], memory, (load_archive, memory_archive), profile)


def report(args: argparse.Namespace, rows: list[Row], memory: Memory,
           archives: tuple[str, str], profile: Path | None) -> None:  # fmt: skip
    held, relayed, floor, bare = rows
    print(
        f"bench/smtp.py: smtp-source -s {args.sessions} -m {args.messages:,} -l {MESSAGE_BYTES} "
        f"(after {WARMUP_MESSAGES} warm-up), {os.cpu_count()} cpus; latency: one smtplib "
        f"client, {args.rate:g} msg/s for {args.seconds:g} s, connect to 250 after DATA"
    )
    print(f"{'':<40} {'msgs/s':>8} {'wall s':>7} {'cpu ms/msg':>10} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'relayed':>8}")  # fmt: skip
    for row in rows:
        shown = "" if row.relayed is None else f"{row.relayed:,}"
        print(
            f"{row.name:<40} {row.rate:>8,.0f} {row.wall:>7.2f} "
            f"{row.cpu_per_message * 1e3:>10.3f} {row.percentile(0.5) * 1e3:>7.2f} "
            f"{row.percentile(0.99) * 1e3:>7.2f} {max(row.latencies) * 1e3:>7.2f} {shown:>8}"
        )
    print(f"  (cpu = the server's own processes; (b) relays to the smtp-sink of (d); "
          f"the archive of (a)+(b): {archives[0]})")  # fmt: skip
    held_ratio, relayed_ratio = held.rate / floor.rate, relayed.rate / floor.rate
    print(f"throughput: a/c = {held_ratio:.2f} (goal >= {GOAL_HELD_RATIO}: "
          f"{verdict(held_ratio >= GOAL_HELD_RATIO)}), b/c = {relayed_ratio:.2f}, "
          f"d/c = {bare.rate / floor.rate:.2f}")  # fmt: skip
    for row, what in ((held, "held"), (relayed, "relayed")):
        p50 = (row.percentile(0.5) - floor.percentile(0.5)) * 1e3
        p99 = (row.percentile(0.99) - floor.percentile(0.99)) * 1e3
        ok = verdict(p99 <= GOAL_ADDED_P99_MS)
        print(f"added latency over (c), {what:<7}: p50 {p50:+.2f} ms, p99 {p99:+.2f} ms "
              f"(goal p99 <= {GOAL_ADDED_P99_MS:g} ms: {ok})")  # fmt: skip
    growth = (memory.peak_kib - memory.idle_kib) / 1024
    print(
        f"one {memory.size / 2**20:.0f} MiB message held in {memory.seconds:.2f} s: idle RSS "
        f"{memory.idle_kib / 1024:,.0f} MiB (VmHWM {memory.idle_hwm_kib / 1024:,.0f}), peak "
        f"{memory.peak_kib / 1024:,.0f} MiB, +{growth:,.0f} MiB "
        f"(goal < +{GOAL_RSS_MIB} MiB: {verdict(growth < GOAL_RSS_MIB)}); archive {archives[1]}"
    )
    if profile is not None:
        for suffix in ("held", "relayed"):
            path = profile.with_name(f"{profile.name}-{suffix}.txt")
            if not path.exists():
                print(f"py-spy: no output for {suffix}")
                continue
            print(f"py-spy, {suffix}: top frames by own samples ({path})")
            for share, frame in top_functions(path):
                print(f"  {share:>6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2_000, help="smtp-source messages")
    parser.add_argument("--sessions", type=int, default=20, help="smtp-source parallel sessions")
    parser.add_argument("--rate", type=float, default=20.0, help="latency client, msgs/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency run per target")
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
    made_dir = not args.dir.exists()
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-smtp-", dir=args.dir))
    started = time.perf_counter()
    try:
        run(args, work)
    finally:
        shutil.rmtree(work)
        if made_dir:
            with contextlib.suppress(OSError):  # only if empty: someone else may use it
                args.dir.rmdir()
    print(f"whole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
