"""What the alerts tests share: local transports (a JSON webhook receiver, an SMTP server),
a clock to move by hand, and an alerts config around them.

Rules this module keeps:
1. Transports are real: apprise posts to an aiohttp server on loopback (`json://`) and
   speaks SMTP to aiosmtpd on loopback (`mailto://`). Nothing is faked but the clock.
2. The receiver can be told to fail (503), so retries are tested against a real refusal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from proxy.config import Config
from tests.factories import RECIPIENT, make_config

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, 13:00 in Berlin


@dataclass
class Clock:
    """The service's clock, moved by the test (no sleeping)."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Receiver:
    """A JSON webhook on loopback: every message apprise posted, by path."""

    port: int = 0
    failing: bool = False
    got: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def bodies(self, path: str) -> list[str]:
        return [str(m.get("message", "")) for m in self.got.get(path, [])]

    async def _take(self, request: web.Request) -> web.Response:
        if self.failing:
            return web.Response(status=503)
        body = await request.read()
        self.got.setdefault(request.match_info["path"], []).append(json.loads(body))
        self.arrived.set()
        return web.Response(text="ok")


@asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A `Receiver` listening on a loopback port for as long as the block runs."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{path}", receiver._take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    receiver.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield receiver
    finally:
        await runner.cleanup()


def alerts_config(archive: str, transports: dict[str, str], *, contacts: list[dict[str, Any]],
                  **alerts: Any) -> Config:  # fmt: skip
    """A config with an `alerts:` section of `transports` (name -> URL) and `contacts`
    (each a dict of name and alerts), sealed to the test recipient."""
    section = {"transports": {name: {"url": url} for name, url in transports.items()}, **alerts}
    people = [{"name": c["name"], "role": "contact", "age_recipient": RECIPIENT,
               "alerts": c["alerts"]} for c in contacts]  # fmt: skip
    return make_config(archive={"path": archive}, contacts=people, alerts=section)
