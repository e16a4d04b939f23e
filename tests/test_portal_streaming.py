"""A worker thread's writes streamed as a response (proxy/portal/streaming.py): bounded,
in order, and stopped when the download stops."""

from __future__ import annotations

import asyncio
import threading
import zipfile
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.portal.streaming import CHUNK, DEPTH, ResponseWriter, stream


def _app(produce: Any, outcome: dict[str, Any]) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        outcome["failure"] = await stream(response, produce)
        if outcome["failure"] is None:
            await response.write_eof()
        elif request.transport is not None:
            request.transport.close()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    return app


def _serve(app: web.Application, body: Any) -> None:
    async def main() -> None:
        async with TestClient(TestServer(app)) as client:
            await body(client)

    asyncio.run(main())


def test_what_the_thread_writes_arrives_whole_and_in_order() -> None:
    """A zip written to the stream (it cannot seek) arrives whole and opens."""
    outcome: dict[str, Any] = {}
    names = [f"file-{i}.bin" for i in range(40)]

    def produce(file: ResponseWriter) -> None:
        with zipfile.ZipFile(file, "w") as out:
            for i, name in enumerate(names):
                out.writestr(name, bytes([i]) * 50_000)

    got: list[bytes] = []

    async def body(client: TestClient[web.Request, web.Application]) -> None:
        async with client.get("/") as response:
            got.append(await response.read())

    _serve(_app(produce, outcome), body)
    assert outcome["failure"] is None
    with zipfile.ZipFile(__import__("io").BytesIO(got[0])) as bundle:
        assert bundle.namelist() == names
        assert bundle.read("file-7.bin") == bytes([7]) * 50_000


def test_a_download_that_stops_stops_the_writer() -> None:
    """When the client goes after the first chunk, the writer's next write raises: the
    export stops rather than running on for nobody."""
    outcome: dict[str, Any] = {}
    stopped = threading.Event()
    written: list[int] = []

    def produce(file: ResponseWriter) -> None:
        try:
            for _ in range(10_000):  # 2.5 GiB if nothing stopped it
                file.write(bytes(CHUNK))
                written.append(1)
        except BrokenPipeError:
            stopped.set()
            raise

    async def body(client: TestClient[web.Request, web.Application]) -> None:
        async with client.get("/") as response:
            await response.content.readexactly(1000)
        for _ in range(200):
            if stopped.is_set():
                return
            await asyncio.sleep(0.05)

    _serve(_app(produce, outcome), body)
    assert stopped.is_set()
    assert len(written) < 10_000
    # the handler either saw the reset or was cancelled by the server as the client went
    assert isinstance(outcome.get("failure", ConnectionError()), ConnectionError)


def test_a_writer_that_fails_cuts_the_download_short() -> None:
    """What the thread raises is handed back, and the client sees an incomplete body."""
    outcome: dict[str, Any] = {}

    def produce(file: ResponseWriter) -> None:
        file.write(bytes(CHUNK * 2))
        raise OSError("disk gone")

    seen: list[str] = []

    async def body(client: TestClient[web.Request, web.Application]) -> None:
        async with client.get("/") as response:
            try:
                await response.read()
                seen.append("complete")
            except Exception as error:
                seen.append(type(error).__name__)

    _serve(_app(produce, outcome), body)
    assert isinstance(outcome["failure"], OSError)
    assert seen
    assert seen[0] != "complete"


def test_the_writer_waits_while_the_queue_is_full() -> None:
    """Memory is bounded: with nobody reading, the writer hands over at most DEPTH chunks
    and then waits (and stops when told)."""

    async def main() -> int:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=DEPTH)
        writer = ResponseWriter(asyncio.get_running_loop(), queue)
        handed = 0

        def produce() -> None:
            nonlocal handed
            try:
                for _ in range(DEPTH * 4):
                    writer.write(bytes(CHUNK))
                    handed += 1
            except BrokenPipeError:
                pass

        thread = threading.Thread(target=produce)
        thread.start()
        await asyncio.sleep(1.0)
        waiting = queue.qsize()
        writer.stopped.set()
        await asyncio.to_thread(thread.join, 5)
        assert not thread.is_alive()
        assert handed <= DEPTH + 1
        return waiting

    assert asyncio.run(main()) == DEPTH
