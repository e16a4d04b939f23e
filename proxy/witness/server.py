"""`nocontact witness -c FILE`: a C2SP tlog-witness on aiohttp, until SIGTERM.

Rules this module keeps:
1. One route, POST <prefix>/add-checkpoint; the answer is `decision.decide`'s, and the
   wire work here is only: read at most `MOST_REQUEST_BYTES` (more is 413), answer 200
   with the cosignature line, 409 with the known size as `text/x.tlog.size`, any other
   refusal with its fixed reason as text/plain.
2. Decide, remember and cosign happen under one lock, one request at a time, and the
   checkpoint is on disk before its cosignature is sent (tlog-witness: "check and
   persist atomically"), so two racing requests can never roll a log back.
3. A fault while remembering is 500 and nothing is cosigned.
4. The log holds fixed events only: listening, stopped, and a refused checkpoint by its
   fixed kind; never an origin, a size, a root or a note.
5. The process dumps no core: its memory holds the witness's signing key.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from aiohttp import web

from proxy.deliver.address import parse_listen
from proxy.errors import InputError
from proxy.logs import get_logger
from proxy.processes import no_core_dumps
from proxy.witness.config import WitnessConfig, load_witness_config
from proxy.witness.cosignature import Cosigner
from proxy.witness.decision import Cosign, Status, decide
from proxy.witness.keyfile import KeyFileError, cosigner
from proxy.witness.request import MOST_REQUEST_BYTES, SIZE_TYPE
from proxy.witness.state import StateError, WitnessState

_log = get_logger("witness")
_REFUSED = {
    Status.BAD_REQUEST: "checkpoint refused: not in format",
    Status.FORBIDDEN: "checkpoint refused: not signed by the log's key",
    Status.UNKNOWN_LOG: "checkpoint refused: unknown log",
    Status.CONFLICT: "checkpoint refused: old size or tree conflicts",
    Status.TOO_LARGE: "checkpoint refused: too large",
    Status.INCONSISTENT: "checkpoint refused: inconsistent (a fork, or a bad proof)",
}


class _Witness:
    """The request handler: config, state, key and the one lock (rule 2)."""

    def __init__(self, config: WitnessConfig, state: WitnessState, key: Cosigner) -> None:
        self._logs = config.log_keys()
        self._state = state
        self._key = key
        self._lock = asyncio.Lock()

    async def add_checkpoint(self, request: web.Request) -> web.Response:
        try:
            data = await request.read()  # at most client_max_size, else 413 (rule 1)
        except web.HTTPRequestEntityTooLarge:
            return _refused(Status.TOO_LARGE, "the request is too large")
        async with self._lock:
            answer = decide(data, self._logs, self._state.known)
            if not isinstance(answer, Cosign):
                if answer.status == Status.CONFLICT and answer.known_size is not None:
                    _log.warning(_REFUSED[answer.status])
                    return web.Response(status=409, body=f"{answer.known_size}\n".encode(),
                                        content_type=SIZE_TYPE)  # fmt: skip
                return _refused(answer.status, answer.reason)
            try:
                await asyncio.to_thread(self._state.remember, answer.origin, answer.seen)
            except StateError:
                _log.error("cannot remember a checkpoint: nothing cosigned")
                return web.Response(status=500, text="cannot store the checkpoint\n")
            line = self._key.cosign(answer.body, int(time.time()))
        return web.Response(status=200, text=line)


def _refused(status: Status, reason: str) -> web.Response:
    _log.warning(_REFUSED[status])
    return web.Response(status=int(status), text=f"{reason}\n")


def witness_app(config: WitnessConfig, state: WitnessState, key: Cosigner) -> web.Application:
    """The aiohttp application serving add-checkpoint (rule 1)."""
    witness = _Witness(config, state, key)
    app = web.Application(client_max_size=MOST_REQUEST_BYTES)
    app.router.add_post("/add-checkpoint", witness.add_checkpoint)
    return app


def witness_key(config: WitnessConfig) -> Cosigner:
    """The witness's signing key, made if absent; one line if it cannot be."""
    try:
        return cosigner(Path(config.key_file), config.name)
    except KeyFileError as error:
        raise InputError(str(error)) from None


async def _run(config: WitnessConfig, state: WitnessState, key: Cosigner) -> int:
    runner = web.AppRunner(witness_app(config, state, key), access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        host, port = parse_listen(config.listen)
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as error:
            raise InputError(f"cannot listen on {config.listen}: {error.strerror}") from None
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        _log.info("witness listening", listen=config.listen)
        await stop.wait()
    finally:
        await runner.cleanup()
    _log.info("witness stopped")
    return 0


def serve(config_path: str) -> int:
    """Run the witness of the config at `config_path` until SIGTERM or SIGINT."""
    no_core_dumps()  # rule 5: a core would hold the witness's signing key
    config = load_witness_config(config_path)
    key = witness_key(config)
    try:
        state = WitnessState.open(Path(config.state_dir))
    except StateError as error:
        raise InputError(str(error)) from None
    return asyncio.run(_run(config, state, key))
