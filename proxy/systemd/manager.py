"""One process's dealings with its service manager: the notices and the watchdog together.

Rules this module keeps:
1. Made once, at start, before anything listens: it takes `NOTIFY_SOCKET`, `WATCHDOG_USEC`
   and `WATCHDOG_PID` from the environment (notify.py rule 2, watchdog.py rule 1).
2. `ready` says READY=1 only when the caller has every listener listening; the first one
   starts the watchdog's pinger on the running loop (systemd's watchdog runs from the end
   of start-up). `reloading` then `ready` frame a reload; `stopping` is said as the stop
   begins; `close` stops the pinger for good.
3. Without a service manager every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import MutableMapping

from proxy.systemd.notify import STOPPING, Notifier, ready, reloading
from proxy.systemd.watchdog import keep_alive, watchdog_interval

LISTENING = "listening"


class ServiceManager:
    def __init__(self, notifier: Notifier, watchdog: float | None) -> None:
        self._notifier = notifier
        self._interval = watchdog if notifier.active else None
        self._pinger: asyncio.Task[None] | None = None

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] = os.environ) -> ServiceManager:
        notifier = Notifier.from_environment(environ)
        return cls(notifier, watchdog_interval(environ, os.getpid()))

    def ready(self, status: str = LISTENING) -> None:
        self._notifier.send(ready(status))
        if self._interval is not None and self._pinger is None:
            self._pinger = asyncio.get_running_loop().create_task(
                keep_alive(self._notifier, self._interval), name="watchdog"
            )

    def reloading(self) -> None:
        self._notifier.send(reloading())

    def stopping(self) -> None:
        self._notifier.send(STOPPING)

    def close(self) -> None:
        """Stop the pinger for good (a late `ready` starts none) and close the socket."""
        self._interval = None
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        self._notifier.close()
