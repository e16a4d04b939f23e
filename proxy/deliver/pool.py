"""A few open connections to the next hop, kept for the next message.

Rules this module keeps:
1. A connection is lent to one delivery at a time. It comes back (`give_back`) only after
   a transaction that ended cleanly; after anything else the borrower `discard`s it.
2. At most `size` connections wait; one more given back is closed. A connection waiting
   longer than `idle_seconds` is closed (a timer sweeps them), so the next hop's own
   idle timeout (Postfix: 300 s) rarely gets there first.
3. One that waited longer than `check_after` seconds is checked (NOOP) before it is lent
   again; one that fails the check is closed and the next is tried. `take` says whether
   the connection was used before, so the borrower knows a failure at its first command
   may only mean the next hop closed it meanwhile (see `hops`, rule 4).
4. After `aclose` nothing waits: the waiting connections are closed (QUIT, briefly
   waited for) and each lent one is closed when it comes back. A delivery that still
   comes (one that took the old next hop just before a reload) gets a fresh connection,
   closed after it, rather than a fault.
5. Used on the event loop only; not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar


class Link(Protocol):
    """An open, greeted connection to the next hop."""

    async def check(self) -> bool:
        """NOOP: True if the next hop still answers 250."""
        ...

    async def quit(self) -> None:
        """QUIT politely (errors ignored), then close."""
        ...

    def close(self) -> None:
        """Close at once, without a word."""
        ...


L = TypeVar("L", bound=Link)

_QUIT_SECONDS = 2.0


class Pool(Generic[L]):
    """Connections to one next hop, opened by `open` and kept per the module's rules."""

    def __init__(
        self,
        open_link: Callable[[], Awaitable[L]],
        *,
        size: int,
        idle_seconds: float,
        check_after: float,
    ) -> None:
        self._open = open_link
        self.size, self.idle_seconds, self.check_after = size, idle_seconds, check_after
        self._waiting: deque[tuple[float, L]] = deque()  # (given back at, link), oldest first
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def take(self) -> tuple[L, bool]:
        """A connection to use, and whether it was used before (rule 3)."""
        while self._waiting:
            since, link = self._waiting.pop()  # the most recent: the likeliest still open
            idle = time.monotonic() - since
            if idle > self.idle_seconds:
                link.close()
                continue
            if idle > self.check_after and not await link.check():
                link.close()
                continue
            return link, True
        return await self.fresh(), False

    async def fresh(self) -> L:
        """A new connection, never one used before."""
        return await self._open()

    def give_back(self, link: L) -> None:
        """Keep a connection whose last transaction ended cleanly (rule 1)."""
        if self.closed or len(self._waiting) >= self.size:
            link.close()
            return
        self._waiting.append((time.monotonic(), link))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self.idle_seconds, self._expire)

    def discard(self, link: L) -> None:
        """Close a connection that must not be used again."""
        link.close()

    def _expire(self) -> None:
        self._sweep = None
        deadline = time.monotonic() - self.idle_seconds
        while self._waiting and self._waiting[0][0] <= deadline:
            self._waiting.popleft()[1].close()
        if self._waiting:
            wait = self._waiting[0][0] - deadline
            self._sweep = asyncio.get_running_loop().call_later(wait, self._expire)

    async def aclose(self) -> None:
        """Close every waiting connection; lent ones close when they come back (rule 4)."""
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        links = [link for _, link in self._waiting]
        self._waiting.clear()
        if links:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(link.quit() for link in links), return_exceptions=True),
                    _QUIT_SECONDS,
                )
        for link in links:
            link.close()
