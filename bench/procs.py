"""Processes the benchmarks start: stopping a whole process group, and reading its CPU.

Rules this module keeps:
1. A server under test runs in its own session, so its process group is everything it
   started; `stop` leaves no member of it behind.
2. CPU is read from /proc (user + system ticks of every live member of the group).
3. Also here: a free loopback port, a scratch directory, and py-spy: recording a server
   (samples of whichever thread holds the GIL) and the summary of its profile.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Server:
    """A server process we started, leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def stop(
    process: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM, grace: float = 10
) -> None:
    """Send `first` to the process group, SIGKILL it after `grace` s; never leaves a member
    behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if group_pids(process.pid):  # a child that outlived its leader
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


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


@contextlib.contextmanager
def scratch(parent: Path, prefix: str, *, keep: bool = False) -> Iterator[Path]:
    """A new directory under `parent` (made if need be) for one run; removed afterwards
    unless `keep`, and `parent` too if this made it and nothing else is in it."""
    parent = parent.resolve()  # absolute: the servers started in it have other cwds
    made_parent = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        if not keep:
            shutil.rmtree(work)
            if made_parent:
                with contextlib.suppress(OSError):  # only if empty: someone else may use it
                    parent.rmdir()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def start_py_spy(spy: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording process `pid` into `out` (raw collapsed stacks, --gil), in its own
    session; give it about a second to attach before the part to profile. Stop it with
    `stop(process, signal.SIGINT, 30)`: SIGINT is what makes py-spy write its output."""
    command = [spy, "record", "--pid", str(pid), "--rate", "500", "--format", "raw",
               "--output", str(out), "--nonblocking", "--gil"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip


def top_frames(
    path: Path, profiled: re.Pattern[str], roots: re.Pattern[str], count: int = 12
) -> tuple[list[tuple[float, str]], ...]:
    """From py-spy's raw output: (share, frame) of the frames most often on top of the stack,
    and (share, function) of the functions matching `profiled` (and not `roots`, the entry
    points every sample passes through) most often anywhere in it (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit() or not stack:
            continue
        frames = stack.split(";")
        own[frames[-1]] += int(samples)
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames}:
            if profiled.search(function) and not roots.search(function):
                inclusive[function] += int(samples)
    total = sum(own.values()) or 1
    return tuple(
        [(n / total, frame) for frame, n in counter.most_common(count)]
        for counter in (own, inclusive)
    )
