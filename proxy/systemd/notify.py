"""sd_notify: tell the service manager when we are ready, reloading, stopping, alive.

Rules this module keeps:
1. The protocol is systemd's `sd_notify(3)`: one datagram of `KEY=value` lines to the
   unix socket named by `NOTIFY_SOCKET` (a path, or an abstract name with a leading
   '@'). It is written here, in a few lines, rather than taken from a library: the pure
   Python one (`sdnotify`) was last released in 2017 and swallows every error with a bare
   `except:`, the official binding (`systemd-python`) is a C extension needing
   libsystemd's headers and a compiler at install, and systemd documents the protocol as
   stable and meant to be reimplemented this way.
2. No `NOTIFY_SOCKET`, nothing is sent and nothing fails: the same process runs in a
   terminal. The variable is read once and removed from the environment, so no child
   process speaks for us.
3. A notice never stops or stalls the service: the socket is non-blocking, and a notice
   that cannot be sent (manager gone, queue full) is dropped with one fixed log line the
   first time.
4. What is said is fixed text: `STATUS=` says what the service is doing ("listening",
   "reloading", "stopping"), never anything about a message, held or delivered, nor a
   count or a time that could date one.
5. A reload follows `Type=notify-reload`: `RELOADING=1` with `MONOTONIC_USEC=` (the
   monotonic clock in microseconds, which systemd requires with it) when it starts, and
   `READY=1` when it is done; the same notices suit plain `Type=notify`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping

from proxy.logs import get_logger

_log = get_logger("systemd")


def notify_address(value: str) -> bytes | None:
    """The socket address `NOTIFY_SOCKET` names (rule 1); None for none we can use."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


def ready(status: str) -> str:
    return f"READY=1\nSTATUS={status}"


def reloading(monotonic_usec: int | None = None) -> str:
    """The notice a reload starts with (rule 5)."""
    if monotonic_usec is None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading"


STOPPING = "STOPPING=1\nSTATUS=stopping"
WATCHDOG = "WATCHDOG=1"


class Notifier:
    """The notices of one process to its service manager (a no-op without one)."""

    def __init__(self, address: bytes | None) -> None:
        self._address = address
        self._socket: socket.socket | None = None
        self._dropped = False
        if address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> Notifier:
        """The notifier `NOTIFY_SOCKET` asks for, taking the variable away (rule 2)."""
        value = environ.pop("NOTIFY_SOCKET", "")
        address = notify_address(value)
        if value and address is None:
            _log.warning("NOTIFY_SOCKET is not a unix socket path or @name: no notices sent")
        return cls(address)

    @property
    def active(self) -> bool:
        return self._socket is not None

    def send(self, notice: str) -> None:
        """Send one notice (`KEY=value` lines); never raises (rule 3)."""
        if self._socket is None or self._address is None:
            return
        try:
            self._socket.sendto(notice.encode(), self._address)
        except OSError:
            if not self._dropped:
                self._dropped = True
                _log.warning("a notice to the service manager could not be sent")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
