"""`nocontact portal -c FILE`: the portal's process, listening until SIGTERM.

Rules this module keeps:
1. The process dumps no core: a contact's unwrapped identity is in its memory.
2. It listens on `portal.listen`, or on the listening sockets systemd passed named
   `portal` (`proxy.systemd.activation`); a passed socket with any other name stops the
   start with one line. TLS, when configured, is the same either way.
3. Under systemd it sends READY=1 once it listens (and pings the watchdog from its event
   loop from then on), STOPPING=1 at SIGTERM or SIGINT, then stops accepting and lets
   requests in progress finish (up to a minute). It reloads nothing: SIGHUP is answered
   RELOADING=1 then READY=1 (so `Type=notify-reload` never waits) and a log line says
   that a new config needs a restart. Without systemd none of the notices is sent.
4. The log says it listens and it stops, nothing else about itself; no item data.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
from collections.abc import Sequence

from aiohttp import web

from proxy.config import Config, load_config
from proxy.deliver.address import parse_listen
from proxy.errors import InputError
from proxy.logs import get_logger
from proxy.portal.web import portal_app
from proxy.processes import no_core_dumps
from proxy.systemd.activation import take_sockets
from proxy.systemd.manager import ServiceManager

_log = get_logger("portal")
_DRAIN_SECONDS = 60.0


def _tls(config: Config) -> ssl.SSLContext | None:
    settings = config.portal
    if settings is None or settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def _listen(runner: web.AppRunner, config: Config, passed: Sequence[socket.socket]) -> None:
    """Listen on each passed socket, or on `portal.listen` (rule 2)."""
    assert config.portal is not None  # serve() checked
    context = _tls(config)
    if not passed:
        host, port = parse_listen(config.portal.listen)
        try:
            await web.TCPSite(runner, host, port, ssl_context=context).start()
        except OSError as error:
            raise InputError(f"cannot listen on {config.portal.listen}: {error.strerror}") from None
        _log.info("portal listening", listen=config.portal.listen)
        return
    for sock in passed:
        await web.SockSite(runner, sock, ssl_context=context).start()
    _log.info("portal listening", listen="sockets passed by systemd")


async def _run(config: Config, manager: ServiceManager) -> int:
    passed = take_sockets({"portal": ("portal", True)}, "nocontact portal")
    runner = web.AppRunner(portal_app(config), access_log=None, shutdown_timeout=_DRAIN_SECONDS)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        await _listen(runner, config, passed.get("portal", []))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _hangup(manager))
        manager.ready()
        await stop.wait()
        manager.stopping()
    finally:
        manager.close()
        await runner.cleanup()
    _log.info("portal stopped")
    return 0


def _hangup(manager: ServiceManager) -> None:
    """SIGHUP: nothing to reload, said to systemd and in the log (rule 3)."""
    manager.reloading()
    _log.warning("the portal reloads nothing: restart it to apply a new config")
    manager.ready()


def serve(config_path: str) -> int:
    """Run the portal for the config at `config_path` until stopped (SIGINT/SIGTERM)."""
    no_core_dumps()  # rule 1
    manager = ServiceManager.from_environment()
    config = load_config(config_path)
    if config.portal is None:
        raise InputError(f"{config_path} has no portal: section")
    return asyncio.run(_run(config, manager))
