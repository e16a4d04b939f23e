"""The IMAP channel as the daemon runs it: one thread per account, decisions on the loop.

Rules this module keeps:
1. Thin: a fetched message goes to `Pipeline.receive_stored` on the daemon's event loop;
   the watcher thread waits for the answer (durably sealed or not) before it removes
   anything. A batch's messages are decided concurrently, so the held ones share one
   archive sync (the writer's group commit).
2. Each message of a batch is decided on its own: one that raises is answered None (the
   watcher leaves it and tries it again later) and never fails the others.
3. `stop` returns when every watcher thread has left its folder.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from proxy.archive import Archive
from proxy.channels.imap.state import AccountState
from proxy.channels.imap.watch import AccountWatcher, FolderWatcher, Found, Judged
from proxy.config.model import ImapChannel
from proxy.deliver.address import parse_destination
from proxy.deliver.hops import NextHop, open_next_hop
from proxy.pipeline import Pipeline
from proxy.progress import ProgressBar


class _ArchiveForWatchers:
    """The archive as the watcher threads see it (they run off the event loop)."""

    def __init__(self, archive: Archive, loop: asyncio.AbstractEventLoop) -> None:
        self._archive, self._loop = archive, loop

    def sealed(self, mark: str) -> bool:
        return self._archive.sealed(mark)  # a set lookup: safe from a watcher thread

    def adopt(self, marks: list[str]) -> None:
        """Remember marks of messages an older version sealed; wait for it."""
        asyncio.run_coroutine_threadsafe(self._archive.adopt(marks), self._loop).result()

    def stored(self, since: int) -> set[str]:
        """SHA-256 of every item's sealed bytes from entry `since` on (read from disk)."""
        return self._archive.stored(since)


class ImapRunner:
    def __init__(
        self, settings: ImapChannel, pipeline: Pipeline, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._pipeline = pipeline
        self._loop = loop
        self._stop = threading.Event()
        state_dir = Path(settings.state_dir)
        self._pull: dict[str, tuple[NextHop, str]] = {
            account.name: (
                open_next_hop(parse_destination(account.deliver), hostname="nocontact.local"),
                account.deliver_recipient or account.username,
            )
            for account in settings.accounts
            if account.mode == "pull" and account.deliver is not None
        }
        self._archive = _ArchiveForWatchers(pipeline.archive, loop)
        self._accounts = [
            AccountWatcher(
                account,
                AccountState(state_dir / f"{account.name}.json"),
                self._handle,
                self._archive,
                self._stop,
            )
            for account in settings.accounts
        ]

    def _handle(self, batch: list[Found]) -> list[Judged]:
        """Decide (and seal durably) a batch on the event loop; wait for every answer.

        A message whose decision raises is answered None (rule 2); its error is not
        logged, since what failed on a message could say what the message was.
        """

        async def one(raw: bytes, received_at: datetime, origin: str) -> Judged:
            try:
                return await self._pipeline.receive_stored(
                    raw, received_at=received_at, origin=origin,
                    deliver_to=self._pull.get(origin.split("/", 1)[0]),
                )  # fmt: skip
            except Exception:
                return None

        async def all_of() -> list[Judged]:
            return list(await asyncio.gather(*(one(*found) for found in batch)))

        return asyncio.run_coroutine_threadsafe(all_of(), self._loop).result()

    def sweep(self, bar: Callable[[str, int], ProgressBar]) -> None:
        """One pass over every folder of every account (call from a worker thread)."""
        for account in self._accounts:
            account.settle()
            for folder in account.folder_names():
                watcher = FolderWatcher(
                    account.account,
                    folder,
                    account.state,
                    handle=self._handle,
                    archive=self._archive,
                    stop=self._stop,
                )
                progress = bar(f"{account.account.name}/{folder}", watcher.count_new())
                watcher.progress = progress.advance
                try:
                    watcher.sweep()
                finally:
                    progress.close()

    def start(self) -> None:
        for account in self._accounts:
            account.start()

    def stop(self) -> None:
        """Ask every watcher to stop and wait for them (call from a worker thread)."""
        self._stop.set()
        for account in self._accounts:
            account.join()
