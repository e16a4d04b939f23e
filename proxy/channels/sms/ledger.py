"""Which provider SIDs (texts, calls, voicemails) are already handled: each once, ever.

Rules this module keeps:
1. A SID counts as handled only once what became of it is durable: sealed in the archive,
   or its forward in the outbox. A replayed webhook, a reconciliation pass, or both at once
   then find it handled and do nothing again.
2. Its lines live in the line's journal. Before sealed bytes are stored, a *sealing* note
   (SID, SHA-256 of the sealed bytes, the archive's size then) is written, and it must be
   on disk before they are: `sealing` returns the journal's `sync_now`, which the archive
   runs on its writer thread just before storing them (one fdatasync for the batch, no
   extra wait). After the archive has them, a *handled* line follows (not synced: the
   note stands for it).
   At start, a note with no handled line is settled against the archive itself: if those
   exact sealed bytes are there, the SID was held; if not, it was never acknowledged and
   is handled again when it comes back (webhook retry or reconciliation).
3. At start the journal keeps one line per handled SID (`lines`).
4. `claim` serializes work on one SID inside this process: a webhook and a
   reconciliation pass racing on the same message handle it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from proxy.channels.sms.journal import Entry, Journal


class Ledger:
    """The handled SIDs of one phone number."""

    def __init__(self, journal: Journal, handled: dict[str, bool]) -> None:
        self._journal = journal
        self._handled = handled  # sid -> held
        self._claims: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # sid -> lock, users

    @classmethod
    def restore(
        cls, journal: Journal, entries: Iterable[Entry], stored: Callable[[int], set[str]]
    ) -> Ledger:
        """The ledger from the journal's entries, notes a crash left settled; `stored(since)`
        gives the SHA-256 of every archive item from entry `since` on."""
        handled: dict[str, bool] = {}
        sealing: dict[str, set[str]] = {}
        since: int | None = None
        for entry in entries:
            sid = entry.get("sid")
            if not isinstance(sid, str):
                continue
            if "sealed" in entry:
                sealing.setdefault(sid, set()).add(str(entry["sealed"]))
                at = int(entry.get("at", 0))
                since = at if since is None else min(since, at)
            else:
                handled[sid] = bool(entry.get("held"))
        unsettled = {sid: digests for sid, digests in sealing.items() if sid not in handled}
        if unsettled and since is not None:
            found = stored(since)
            for sid, digests in unsettled.items():
                if digests & found:
                    handled[sid] = True
        return cls(journal, handled)

    def lines(self) -> list[Entry]:
        """The compact form of the ledger, for the journal's rewrite at start."""
        return [{"sid": sid, "held": held} for sid, held in self._handled.items()]

    def handled(self, sid: str) -> bool:
        return sid in self._handled

    def held(self, sid: str) -> bool:
        return self._handled.get(sid, False)

    @contextlib.asynccontextmanager
    async def claim(self, sid: str) -> AsyncIterator[bool]:
        """Work on `sid` alone; yields whether it still needs handling."""
        lock, users = self._claims.setdefault(sid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield sid not in self._handled
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._claims[sid]

    def sealing(self, sid: str, digest: str, archive_size: int) -> Callable[[], None]:
        """Note that sealed bytes with this SHA-256 are about to be stored; returns what puts
        the note on disk, to be run before they are."""
        self._journal.write([{"sid": sid, "sealed": digest, "at": archive_size}])
        return self._journal.sync_now

    @staticmethod
    def handled_line(sid: str, *, held: bool) -> Entry:
        """The journal line that records `sid` as handled (the caller appends it)."""
        return {"sid": sid, "held": held}

    def mark(self, sid: str, *, held: bool) -> None:
        """`sid` is handled: its line is in the journal (durably, or after a sealing note)."""
        self._handled[sid] = held
