"""Which provider SIDs (texts, calls, voicemails) are already handled: each once, ever.

Rules this module keeps:
1. A SID counts as handled only once what became of it is durable: sealed in the archive,
   or its forward in the outbox. A replayed webhook, a reconciliation pass, or both at once
   then find it handled and do nothing again.
2. One append-only file of JSON lines. Before sealed bytes are stored, a *sealing* note
   (SID, SHA-256 of the sealed bytes, the archive's size then) is appended and fsynced;
   after the archive has them, a *handled* line follows (no fsync needed: the note
   settles it). At open, a note with no handled line is settled against the archive
   itself: if those exact sealed bytes are there, the SID was held; if not, it was never
   acknowledged and is handled again when it comes back (webhook retry or reconciliation).
3. Opening compacts the file to one line per handled SID.
4. `claim` serializes work on one SID inside this process: a webhook and a
   reconciliation pass racing on the same message handle it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from proxy.archive.layout import replace_file

FILE = "handled.jsonl"


class Ledger:
    """The handled SIDs of one phone number, persisted under `state_dir`."""

    def __init__(self, path: Path, handled: dict[str, bool]) -> None:
        self.path = path
        self._handled = handled  # sid -> held
        self._claims: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # sid -> lock, users
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    @classmethod
    def open(cls, state_dir: str, stored: Callable[[int], set[str]]) -> Ledger:
        """Read the ledger, settle notes a crash left, compact; `stored(since)` gives the
        SHA-256 of every archive item from entry `since` on."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / FILE
        handled: dict[str, bool] = {}
        sealing: dict[str, set[str]] = {}
        since: int | None = None
        if path.exists():
            for line in path.read_bytes().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # a line torn by a crash: its note was never relied on
                    continue
                sid = entry["sid"]
                if "sealed" in entry:
                    sealing.setdefault(sid, set()).add(entry["sealed"])
                    since = entry["at"] if since is None else min(since, entry["at"])
                else:
                    handled[sid] = bool(entry.get("held"))
        unsettled = {sid: digests for sid, digests in sealing.items() if sid not in handled}
        if unsettled and since is not None:
            found = stored(since)
            for sid, digests in unsettled.items():
                if digests & found:
                    handled[sid] = True
        lines = b"".join(_line(sid, held=held) for sid, held in handled.items())
        replace_file(path, lines)
        return cls(path, handled)

    def close(self) -> None:
        os.close(self._fd)

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

    async def sealing(self, sid: str, digest: str, archive_size: int) -> None:
        """Note durably that sealed bytes with this SHA-256 are about to be stored."""
        entry = {"sid": sid, "sealed": digest, "at": archive_size}
        await asyncio.to_thread(self._append, json.dumps(entry).encode() + b"\n", True)

    async def handled_now(self, sid: str, *, held: bool, durable: bool) -> None:
        """Record that `sid` is handled (fsynced if nothing else makes it durable)."""
        line = _line(sid, held=held)
        if durable:
            await asyncio.to_thread(self._append, line, True)
        else:
            self._append(line, False)
        self._handled[sid] = held

    def _append(self, line: bytes, sync: bool) -> None:
        os.write(self._fd, line)
        if sync:
            os.fdatasync(self._fd)


def _line(sid: str, *, held: bool) -> bytes:
    return json.dumps({"sid": sid, "held": held}).encode() + b"\n"
