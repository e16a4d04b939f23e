"""The daemon's side: every checkpoint the archive signs goes to each configured witness.

Rules this module keeps:
1. A task of its own on the event loop, apart from every channel: it reads the archive's
   newest signed checkpoint (`Archive.head`), never waits on the writer, and does its disk
   writes on worker threads, so the SMTP, IMAP and SMS paths never wait for a witness.
2. Each witness is asked once per new checkpoint note, with the size it last cosigned as
   the old size and the RFC 6962 consistency proof from there (`Archive.consistency`).
   A 409 names the witness's size: it is kept and the request made once more at once.
3. A witness that does not cosign (down, slow, refusing) is retried with backoff, from
   `FIRST_RETRY` doubling to `LAST_RETRY`; it is never an error for a sender and never
   stops the daemon. Witnesses are asked concurrently; one slow witness delays no other.
4. Cosignatures are kept only if they verify by the witness's configured key
   (client.py), in `witnessed/` beside the log (witnessed.py).
5. The log holds fixed events only ("a witness did not cosign; retrying later"): never a
   size, a root, a URL or a time, since a checkpoint's size counts held items.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from proxy.logs import get_logger
from proxy.witness.client import Conflict, Cosigned, ask
from proxy.witness.cosignature import WitnessKey
from proxy.witness.signed import Malformed, read_note
from proxy.witness.witnessed import Witnessed

_log = get_logger("witnessing")
POLL_SECONDS = 5.0
FIRST_RETRY = 30.0
LAST_RETRY = 15 * 60.0


class SignedLog(Protocol):
    """What the submitter needs of the archive."""

    def head(self) -> tuple[str, int]: ...
    def consistency(self, old_size: int, new_size: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessTarget:
    """One configured witness: where it answers, and the key its cosignatures carry."""

    url: str
    key: WitnessKey


@dataclass(slots=True)
class _Progress:
    done: bytes = b""  # the last note it cosigned
    due: float = 0.0  # when to ask again after a failure (monotonic)
    wait: float = FIRST_RETRY


class Submitter:
    """Asks every witness to cosign the archive's newest checkpoint (rules 2-3)."""

    def __init__(
        self, targets: Sequence[WitnessTarget], archive: SignedLog, root: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._targets = tuple(targets)
        self._archive = archive
        self._store = Witnessed(root)
        self._clock = clock
        self._progress = {target.key.encode(): _Progress() for target in self._targets}
        self._sizes: dict[str, int] = {}

    async def run(self, session: aiohttp.ClientSession, poll: float = POLL_SECONDS) -> None:
        """Forever: each poll, offer the newest checkpoint to every witness due."""
        self._sizes = await asyncio.to_thread(self._store.acknowledged)
        while True:
            await self.offer(session)
            await asyncio.sleep(poll)

    async def offer(self, session: aiohttp.ClientSession) -> None:
        """Offer the newest checkpoint, once, to every witness that is due (rule 2)."""
        text, _ = self._archive.head()
        note = text.encode()
        try:
            signed = read_note(note)
        except Malformed:
            return  # no checkpoint yet
        now = self._clock()
        due = [t for t in self._targets if self._is_due(t, note, now)]
        await asyncio.gather(*(self._submit(session, t, note, signed.body, signed.size)
                               for t in due))  # fmt: skip

    def _is_due(self, target: WitnessTarget, note: bytes, now: float) -> bool:
        progress = self._progress[target.key.encode()]
        return progress.done != note and progress.due <= now

    async def _submit(
        self, session: aiohttp.ClientSession, target: WitnessTarget,
        note: bytes, body: str, size: int,
    ) -> None:  # fmt: skip
        name = target.key.encode()
        progress = self._progress[name]
        for _ in range(2):  # rule 2: once more after a 409
            old = self._sizes.get(name, 0)
            if old > size:
                break  # it cosigned a larger tree than ours: nothing we can prove
            proof = self._archive.consistency(old, size) if 0 < old < size else []
            answer = await ask(session, target.url, target.key, note=note, body=body,
                               old_size=old, proof=proof)  # fmt: skip
            if isinstance(answer, Cosigned):
                await asyncio.to_thread(self._store.keep, size, note, answer.lines)
                await self._acknowledge(name, size)
                progress.done, progress.wait, progress.due = note, FIRST_RETRY, 0.0
                return
            if not isinstance(answer, Conflict) or answer.size == old:
                break
            await self._acknowledge(name, answer.size)
        _log.warning("a witness did not cosign; retrying later")
        progress.due = self._clock() + progress.wait
        progress.wait = min(progress.wait * 2, LAST_RETRY)

    async def _acknowledge(self, name: str, size: int) -> None:
        self._sizes[name] = size
        await asyncio.to_thread(self._store.acknowledge, dict(self._sizes))


async def witness_forever(targets: Sequence[WitnessTarget], archive: SignedLog, root: Path) -> None:
    """The daemon's witnessing task (rule 1): runs until cancelled, never raises else."""
    submitter = Submitter(targets, archive, root)
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await submitter.run(session)
            except (OSError, RuntimeError, ValueError):
                _log.warning("witnessing paused by a fault; resuming")
                await asyncio.sleep(FIRST_RETRY)
