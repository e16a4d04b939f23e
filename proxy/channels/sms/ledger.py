"""Which provider SIDs (texts, calls, voicemails) are already handled: each once, ever.

Rules this module keeps:
1. A SID counts as handled once what became of it is durable: stored in the archive
   with its mark (`twilio:<SID>`, archive/once.py), or its forward in the outbox. A
   replayed webhook, a reconciliation pass, or both at once then find it handled and do
   nothing again.
2. The journal records a handled SID the same way whatever became of it: `{"sid": ...}`,
   and nothing else about it. Whether it was held is the archive's to know (`sealed`),
   never the journal's. A held SID's line is not synced: its mark in the archive stands
   for it. An allowed text's line is written once its forward is done (outbox.py rule
   1); meanwhile the SID is *forwarding*: not handled (reconciliation holds its
   checkpoint back for it), and not handed to the pipeline a second time.
3. Older versions wrote `"held": true` and sealing notes here: `restore` hands the marks
   they stand for to the archive once (`adopt`), settling sealing notes against the log.
4. At start the journal keeps one line per handled SID (`lines`).
5. `claim` serializes work on one SID inside this process: a webhook and a
   reconciliation pass racing on the same message handle it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from proxy.channels.sms.journal import Entry, Journal

MARK = "twilio:"


def mark(sid: str) -> str:
    """A SID's mark in the archive."""
    return MARK + sid


class Ledger:
    """The handled SIDs of one phone number."""

    def __init__(self, journal: Journal, handled: set[str], sealed: Callable[[str], bool]) -> None:
        self._journal = journal
        self._handled = handled
        self._forwarding: set[str] = set()  # allowed, its forward not yet done (rule 2)
        self._sealed = sealed  # whether the archive holds a mark
        self._claims: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # sid -> lock, users

    @classmethod
    def restore(
        cls, journal: Journal, entries: Iterable[Entry], *, sealed: Callable[[str], bool],
        stored: Callable[[int], set[str]], adopt: Callable[[list[str]], None],
    ) -> Ledger:  # fmt: skip
        """The ledger from the journal's entries. `stored(since)` gives the SHA-256 of every
        sealed entry from index `since` on; `adopt` hands older versions' marks to the
        archive (rule 3)."""
        handled: set[str] = set()
        held: set[str] = set()
        notes: dict[str, set[str]] = {}
        since: int | None = None
        for entry in entries:
            sid = entry.get("sid")
            if not isinstance(sid, str):
                continue
            if "sealed" in entry:  # an older version's sealing note
                notes.setdefault(sid, set()).add(str(entry["sealed"]))
                at = int(entry.get("at", 0))
                since = at if since is None else min(since, at)
                continue
            handled.add(sid)
            if entry.get("held"):
                held.add(sid)
        unsettled = {sid: digests for sid, digests in notes.items() if sid not in handled}
        if unsettled and since is not None:
            found = stored(since)
            held.update(sid for sid, digests in unsettled.items() if digests & found)
        if held:
            adopt(sorted(mark(sid) for sid in held))
        return cls(journal, handled | held, sealed)

    def lines(self) -> list[Entry]:
        """The compact form of the ledger, for the journal's rewrite at start."""
        return [{"sid": sid} for sid in self._handled]

    def handled(self, sid: str) -> bool:
        return sid in self._handled or self._sealed(mark(sid))

    def held(self, sid: str) -> bool:
        """Whether the archive holds this SID's evidence."""
        return self._sealed(mark(sid))

    @contextlib.asynccontextmanager
    async def claim(self, sid: str) -> AsyncIterator[bool]:
        """Work on `sid` alone; yields whether the line has yet to record it handled."""
        lock, users = self._claims.setdefault(sid, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield sid not in self._handled and sid not in self._forwarding
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._claims[sid]

    def forwarding(self, sid: str) -> None:
        """`sid` is allowed and its forward is under way (rule 2)."""
        self._forwarding.add(sid)

    async def record(self, sid: str, *, durable: bool) -> None:
        """`sid` is handled: its line goes to the journal (synced if `durable`)."""
        await self._journal.append([{"sid": sid}], durable=durable)
        self._handled.add(sid)
        self._forwarding.discard(sid)
