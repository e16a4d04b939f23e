"""A file a worker thread writes and a response streams: the portal's exports leave as
they are made, not after.

Rules this module keeps:
1. Bounded: the writer hands over chunks of `CHUNK` bytes through a queue of at most
   `DEPTH` of them and waits while it is full, so a slow download slows the export rather
   than filling memory.
2. Not seekable: `tell` counts the bytes written (zipfile then writes its data
   descriptors instead of going back), `seek` refuses.
3. A download that stops (the browser gone, the connection cut) makes the writer's next
   write raise `BrokenPipeError`, so the export stops too; the queue is let go.
4. Progress is the caller's: `Progress` is a counter a page can read while it runs.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CHUNK = 256 * 1024
DEPTH = 8
_END = b""


class ResponseWriter(io.RawIOBase):
    """The worker thread's end (rules 1 to 3)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes]) -> None:
        super().__init__()
        self._loop = loop
        self._queue = queue
        self._buffer = bytearray()
        self._written = 0
        self.stopped = threading.Event()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        if self.stopped.is_set():
            raise BrokenPipeError("the download stopped")
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= CHUNK:
            self._hand_over(bytes(self._buffer[:CHUNK]))
            del self._buffer[:CHUNK]
        return len(view)

    def finish(self) -> None:
        """Hand over what is left, then the end."""
        if self._buffer:
            self._hand_over(bytes(self._buffer))
            self._buffer.clear()
        self._hand_over(_END)

    def _hand_over(self, chunk: bytes) -> None:
        future = asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop)
        while True:
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                if self.stopped.is_set():
                    future.cancel()
                    raise BrokenPipeError("the download stopped") from None


async def stream(
    response: web.StreamResponse, produce: Callable[[ResponseWriter], object]
) -> BaseException | None:
    """Run `produce` on a worker thread, sending what it writes as `response`'s body (the
    response is prepared already). Returns what `produce` raised, if anything: the body is
    then cut short, which the browser shows as a failed download."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=DEPTH)
    writer = ResponseWriter(asyncio.get_running_loop(), queue)

    worker = asyncio.ensure_future(asyncio.to_thread(_produce_all, produce, writer))
    worker.add_done_callback(_retrieved)  # if this handler is cancelled, nobody awaits it
    failure: BaseException | None = None
    try:
        while chunk := await queue.get():
            await response.write(chunk)
    except ConnectionError as error:  # the client went (aiohttp's reset is one)
        failure = error
    finally:
        writer.stopped.set()
        while not queue.empty():  # let a writer blocked on a full queue go
            queue.get_nowait()
    try:
        await worker
    except Exception as error:  # reported to the caller, who answers for it
        return failure or error
    return failure


def _retrieved(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


def _produce_all(produce: Callable[[ResponseWriter], object], writer: ResponseWriter) -> None:
    try:
        produce(writer)
    except BaseException:
        writer.stopped.set()
        asyncio.run_coroutine_threadsafe(writer._queue.put(_END), writer._loop)
        raise
    writer.finish()


@dataclass(slots=True)
class Progress:
    """How far one export has come (rule 4)."""

    total: int
    done: int = 0
    finished: bool = False
    failed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def advance(self, count: int) -> None:
        with self._lock:
            self.done += count

    def as_json(self) -> dict[str, object]:
        with self._lock:
            return {"total": self.total, "done": self.done, "finished": self.finished,
                    "failed": self.failed}  # fmt: skip
