"""Sealing in a child process: age encryption runs beside the event loop, not on it.

Rules this module keeps:
1. pyrage holds the GIL for the whole encryption (~60 us per contact for a text), so in
   the daemon's process every seal stops every channel. Children
   (`python -m proxy.archive.sealer age1...`; one by default, `processes` for more, each
   job to the one with the fewest waiting) do it on another core. They are given only
   the contacts' public keys, which open nothing: they can seal, never read.
2. One pipe each way. A request is a job number and the pickle of (metadata, payload);
   an answer is the job number, whether it worked, and the sealed bytes or the name of
   the error (never its text, which could quote the item). The parent never unpickles.
   The child reads whatever is waiting, seals it all and writes every answer in one go,
   so a burst costs a few system calls, not two per item.
3. A daemon starts its children at its own start (`Sealer.start`); otherwise a child is
   started on first use. If it exits, every job in flight there fails with
   ArchiveUnavailable (a RetryLater: the sender retries, nothing was acknowledged), and
   the next seal it is given starts a new one. A child writes nothing but answers; its
   stderr is discarded, since a traceback is no place for an item. It gets only the
   environment Python needs and dumps no core (`proxy.processes`).
4. `close` ends their input; each child finishes what it has, answers, and exits.
5. When the channel is quiet, a small item is sealed here, on the event loop: at most one
   such seal every `INLINE_EVERY` seconds (a few per cent of the loop at any load), none
   while a child has work waiting, none above `INLINE_BYTES`. A seal costs the loop
   ~0.1-0.4 ms of GIL, a round trip to the child costs the item one more scheduling hop
   (2-3 ms at 50 texts/s on a machine with CPU steal). Under load the child takes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import pickle
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from typing import cast

from proxy.archive.errors import ArchiveUnavailable
from proxy.archive.seal import Recipients, seal
from proxy.disk import write_all
from proxy.futures import fail
from proxy.processes import child_environment, no_core_dumps

_REQUEST = struct.Struct("!QQ")  # job, length of the pickle
_ANSWER = struct.Struct("!QBQ")  # job, 1 if sealed, length of what follows
_READ_BYTES = 1 << 20
_CLOSE_SECONDS = 30.0
INLINE_EVERY = 0.005  # seconds between two seals on the event loop (rule 5); None: never
INLINE_BYTES = 64 << 10
PROCESSES = 1  # on 2 cores a second child cost more (wake-ups, smaller batches) than it won


def _failed(name: str) -> ArchiveUnavailable:
    """A seal that failed, named by its error's type only (rule 2)."""
    return ArchiveUnavailable(f"sealing failed ({name})")


class _Pipe(asyncio.SubprocessProtocol):
    """The parent's end: answers in, futures resolved."""

    def __init__(self, jobs: dict[int, asyncio.Future[bytes]]) -> None:
        self._jobs = jobs
        self._buffer = bytearray()
        self.exited = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= _ANSWER.size:
            job, ok, length = _ANSWER.unpack_from(buffer, offset)
            start = offset + _ANSWER.size
            if len(buffer) < start + length:
                break
            body = bytes(buffer[start : start + length])
            offset = start + length
            future = self._jobs.pop(job, None)
            if future is None or future.done():
                continue
            if ok:
                future.set_result(body)
            else:
                future.set_exception(_failed(body.decode()))
        del buffer[:offset]

    def process_exited(self) -> None:
        fail(self._jobs.values(), ArchiveUnavailable("the sealing process stopped"))
        self._jobs.clear()
        if not self.exited.done():
            self.exited.set_result(None)


class _Child:
    """One sealing process: started on first use, replaced if it dies."""

    def __init__(self, recipients: list[str]) -> None:
        self._recipients = recipients
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipe: _Pipe | None = None
        self.jobs: dict[int, asyncio.Future[bytes]] = {}
        self.waiting = 0  # seals asked of this child and not yet answered
        self._outgoing: list[bytes] = []
        self._starting = asyncio.Lock()
        self._closed = False

    @property
    def pid(self) -> int | None:
        transport = self._transport
        if transport is None or transport.get_returncode() is not None:
            return None
        return transport.get_pid()

    async def seal(self, job: int, request: bytes) -> bytes:
        self.waiting += 1
        try:
            transport = self._transport
            if not transport or transport.is_closing() or transport.get_returncode() is not None:
                await self._start()
            future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            self.jobs[job] = future
            if not self._outgoing:
                asyncio.get_running_loop().call_soon(self._send)
            self._outgoing += (_REQUEST.pack(job, len(request)), request)
            return await future
        finally:
            self.waiting -= 1

    def _send(self) -> None:
        """Everything asked of this child in one turn of the event loop, in one write."""
        outgoing, self._outgoing = self._outgoing, []
        transport = self._transport
        if transport is not None and (stdin := transport.get_pipe_transport(0)) is not None:
            cast(asyncio.WriteTransport, stdin).write(b"".join(outgoing))

    async def start(self) -> None:
        """Start the child if it is not running."""
        await self._start()

    async def _start(self) -> None:
        async with self._starting:
            if self._closed:
                raise ArchiveUnavailable("the archive is closing")
            transport = self._transport
            if transport and transport.get_returncode() is None and not transport.is_closing():
                return
            self.jobs = {}
            loop = asyncio.get_running_loop()
            environment = child_environment()
            try:
                self._transport, self._pipe = await loop.subprocess_exec(
                    lambda: _Pipe(self.jobs), sys.executable, "-m", "proxy.archive.sealer",
                    *self._recipients, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                    env=environment,
                )  # fmt: skip
            except OSError as error:
                raise ArchiveUnavailable(
                    f"cannot start the sealing process: {error.strerror}"
                ) from None

    async def close(self) -> None:
        """Let the child finish what it was given, then stop it."""
        self._closed = True
        async with self._starting:
            transport, pipe = self._transport, self._pipe
            if transport is None or pipe is None:
                return
            stdin = transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
            try:
                await asyncio.wait_for(asyncio.shield(pipe.exited), _CLOSE_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    transport.kill()
                await pipe.exited
            transport.close()
            self._transport = self._pipe = None


class Sealer:
    """Seals (metadata, payload) to the contacts in child processes, or here when quiet;
    see the rules above."""

    def __init__(
        self, recipients: Sequence[str], *, processes: int = PROCESSES,
        inline_every: float | None = INLINE_EVERY,
    ) -> None:  # fmt: skip
        self._parsed = Recipients.parse(recipients)  # a bad key fails here, not in a child
        keys = [r.strip() for r in recipients]
        self._children = [_Child(keys) for _ in range(max(1, processes))]
        self._next_job = 0
        self._inline_every = inline_every
        self._last_inline = -math.inf
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The running children's process ids."""
        return [pid for child in self._children if (pid := child.pid) is not None]

    async def start(self) -> None:
        """Start every child now (a daemon does, at its start): one first appearing in `ps`
        at the first held item would date it."""
        await asyncio.gather(*(child.start() for child in self._children))

    async def seal(self, metadata: Mapping[str, object], payload: bytes) -> bytes:
        """The age ciphertext of the sealed format of (metadata, payload)."""
        if self._quiet(len(payload)):
            try:
                return seal(metadata, payload, self._parsed)
            except Exception as error:  # as the child says it: the name only (rule 2)
                raise _failed(type(error).__name__) from None
        request = pickle.dumps((dict(metadata), payload), protocol=pickle.HIGHEST_PROTOCOL)
        self._next_job += 1
        child = min(self._children, key=lambda c: c.waiting)  # the least busy
        return await child.seal(self._next_job, request)

    def _quiet(self, size: int) -> bool:
        """Whether this seal runs here (rule 5); if so, it counts as the latest."""
        if self._inline_every is None or self._closed or size > INLINE_BYTES:
            return False
        now = time.monotonic()
        if now - self._last_inline < self._inline_every:
            return False
        if any(child.waiting for child in self._children):
            return False
        self._last_inline = now
        return True

    async def close(self) -> None:
        """Let every child finish what it was given, then stop it."""
        self._closed = True
        await asyncio.gather(*(child.close() for child in self._children))


# -- the child ---------------------------------------------------------------------------


def _answer(job: int, request: memoryview, recipients: Recipients) -> list[bytes]:
    try:
        metadata, payload = pickle.loads(request)  # noqa: S301 (only the parent writes here)
        sealed = seal(metadata, payload, recipients)
    except Exception as error:  # the name only: an error's text could quote the item
        name = type(error).__name__.encode()
        return [_ANSWER.pack(job, 0, len(name)), name]
    return [_ANSWER.pack(job, 1, len(sealed)), sealed]


def main(arguments: Sequence[str]) -> int:
    no_core_dumps()  # its memory holds what it seals
    recipients = Recipients.parse(list(arguments))
    buffer = bytearray()
    while chunk := os.read(0, _READ_BYTES):
        buffer += chunk
        answers: list[bytes] = []
        offset = 0
        view = memoryview(buffer)
        while len(buffer) - offset >= _REQUEST.size:
            job, length = _REQUEST.unpack_from(buffer, offset)
            start = offset + _REQUEST.size
            if len(buffer) < start + length:
                break
            answers += _answer(job, view[start : start + length], recipients)
            offset = start + length
        view.release()
        del buffer[:offset]
        if answers:
            write_all(1, b"".join(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
