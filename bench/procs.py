"""Processes the benchmarks start: stopping a whole process group, and reading its CPU.

Rules this module keeps:
1. A server under test runs in its own session, so its process group is everything it
   started; `stop` leaves no member of it behind.
2. CPU is read from /proc (user + system ticks of every live member of the group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


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
