"""The watchdog: pings from the event loop itself, so a stuck loop is restarted.

Rules this module keeps:
1. Pings are sent only when the service manager asks for them: `WATCHDOG_USEC` set to a
   positive whole number, and `WATCHDOG_PID` unset or our own pid (else they are meant
   for another process). Both variables are read once and removed from the environment.
2. The pinger is a task on the event loop the service runs on, sending `WATCHDOG=1` every
   half of `WATCHDOG_USEC` (as sd_watchdog_enabled(3) advises). It is never a thread: a
   loop that is blocked or spinning runs no task, the pings stop, and systemd restarts the
   service after `WatchdogSec=`.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping

from proxy.systemd.notify import WATCHDOG, Notifier


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half the manager's timeout), or None for no pings (rule 1)."""
    usec, owner = environ.pop("WATCHDOG_USEC", ""), environ.pop("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000 / 2


async def keep_alive(notifier: Notifier, interval: float) -> None:
    """Ping every `interval` seconds until cancelled (rule 2)."""
    while True:
        notifier.send(WATCHDOG)
        await asyncio.sleep(interval)
