"""A stand-in for systemd in the tests (no pytest): a notify socket that records what it
hears, and a way to start `python -m proxy ...` with listening sockets passed as systemd
passes them (fds 3, 4, ... with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID = the child's
own pid)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from proxy.processes import ROOT

# Runs in the child: moves the given descriptors to 3, 4, ... (through high numbers, so a
# descriptor already at 3 or 4 is not overwritten before it is moved), sets LISTEN_PID to
# its own pid, and becomes `python -m proxy ARGS` (exec keeps the pid).
_WRAPPER = """\
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",") if fd]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for n, fd in enumerate(high):
    os.dup2(fd, 3 + n)
    os.close(fd)
if fds:
    os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "proxy", *sys.argv[2:]])
"""


def listening_socket() -> socket.socket:
    """A TCP socket listening on a free loopback port, as a .socket unit makes one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def port_of(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def start(
    args: Sequence[str], *, sockets: Sequence[tuple[str, socket.socket]] = (),
    env: dict[str, str] | None = None, **popen: Any,
) -> subprocess.Popen[str]:  # fmt: skip
    """`python -m proxy ARGS`, given `sockets` as systemd gives them, named in order."""
    environment = {**os.environ, **(env or {}), "PYTHONPATH": ROOT}  # this tree's proxy
    for name in ("LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID"):
        environment.pop(name, None)
    if sockets:
        environment["LISTEN_FDS"] = str(len(sockets))
        environment["LISTEN_FDNAMES"] = ":".join(name for name, _ in sockets)
    fds = [sock.fileno() for _, sock in sockets]
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, ",".join(map(str, fds)), *args],
        env=environment, pass_fds=fds, text=True, **streams,
    )  # fmt: skip


class Notices:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET: every notice it
    receives, with the monotonic time it arrived."""

    def __init__(self, path: Path) -> None:
        self.address = str(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.address)
        self._socket.settimeout(0.1)
        self.heard: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._done.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.heard.append((time.monotonic(), data.decode()))

    def notices(self) -> list[str]:
        with self._lock:
            return [notice for _, notice in self.heard]

    def wait_for(self, prefix: str, *, after: int = 0, timeout: float = 30) -> int:
        """The index of the first notice from `after` on that starts with `prefix`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index, notice in enumerate(self.notices()[after:], after):
                if notice.startswith(prefix):
                    return index
            time.sleep(0.01)
        raise AssertionError(f"no {prefix!r} notice; heard {self.notices()}")

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._socket.close()


@contextlib.contextmanager
def notify_socket(path: Path) -> Iterator[Notices]:
    notices = Notices(path)
    try:
        yield notices
    finally:
        notices.close()
