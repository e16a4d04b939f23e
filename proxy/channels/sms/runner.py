"""The SMS/voice channel as the daemon runs it: webhooks, outbox and reconciliation together.

Rules this module keeps:
1. Start-up order: ledger (settled against the archive) -> provider -> outbox -> listen ->
   first reconciliation pass in the background. A failure before listening stops the start.
2. `stop`: stop accepting webhooks, let those in progress finish (sealed or forwarded,
   then answered), stop reconciliation and the outbox (what is waiting stays on disk),
   close the provider and the ledger.
3. State: one journal (handled SIDs and the outbox) under `state_dir`, compacted at start.
4. `replace` applies a reloaded config's forward_to, greeting, ring tone, redaction and
   interval; the listen address, credentials and state directory need a restart.
5. The webhooks listen on `settings.listen`, or on the listening sockets systemd passed
   (`proxy.systemd.activation`, name `webhooks`) when there are any.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from proxy.archive import Archive
from proxy.channels.sms.journal import Journal
from proxy.channels.sms.ledger import Ledger
from proxy.channels.sms.line import LineSettings, TwilioLine
from proxy.channels.sms.outbox import Addresses, Outbox
from proxy.channels.sms.provider import Provider
from proxy.channels.sms.reconcile import Reconciler, Watching
from proxy.channels.sms.webhooks import Answering, Webhooks
from proxy.config.model import SmsChannel
from proxy.deliver.address import parse_listen
from proxy.errors import NocontactError
from proxy.pipeline import Pipeline

_DRAIN_SECONDS = 60.0
JOURNAL = "journal.jsonl"


class SmsStartError(NocontactError):
    """The SMS channel cannot start; the message says why in one line."""


def auth_token(settings: SmsChannel) -> str:
    if settings.auth_token_file is not None:
        try:
            token = Path(settings.auth_token_file).read_text().strip()
        except OSError as error:
            raise SmsStartError(
                f"cannot read {settings.auth_token_file}: {error.strerror}"
            ) from None
    else:
        token = os.environ.get("TWILIO_AUTH_TOKEN", "").strip()
    if not token:
        raise SmsStartError("no Twilio auth token (auth_token_file or TWILIO_AUTH_TOKEN)")
    return token


class SmsRunner:
    def __init__(
        self, settings: SmsChannel, pipeline: Pipeline, archive: Archive,
        default_region: str | None, sockets: Sequence[socket.socket] = (),
    ) -> None:  # fmt: skip
        self.settings = settings
        self._sockets = sockets  # passed by systemd (rule 5)
        self.default_region = default_region
        self._pipeline, self._archive = pipeline, archive
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    def replace(self, settings: SmsChannel, default_region: str | None) -> None:
        self.settings, self.default_region = settings, default_region

    async def start(self) -> None:
        settings = self.settings
        token = auth_token(settings)
        journal, entries = await asyncio.to_thread(Journal.open, Path(settings.state_dir) / JOURNAL)
        self.journal = journal
        archive, loop = self._archive, asyncio.get_running_loop()
        self.ledger = await asyncio.to_thread(
            Ledger.restore, journal, entries, sealed=archive.sealed, stored=archive.stored,
            adopt=lambda marks: asyncio.run_coroutine_threadsafe(
                archive.adopt(marks), loop).result(),
        )  # fmt: skip
        self.provider = Provider(account_sid=settings.account_sid, auth_token=token,
                                 api_base_url=settings.api_base_url)  # fmt: skip
        self.outbox = Outbox(
            journal, entries, self.provider,
            lambda: Addresses(number=self.settings.number, forward_to=self.settings.forward_to),
        )  # fmt: skip
        await asyncio.to_thread(journal.compact, [*self.ledger.lines(), *self.outbox.lines()])
        self.line = TwilioLine(
            ledger=self.ledger, outbox=self.outbox, provider=self.provider,
            settings=lambda: LineSettings(redact_at_provider=self.settings.redact_at_provider,
                                          default_region=self.default_region),
        )  # fmt: skip
        self.webhooks = webhooks = Webhooks(
            pipeline=self._pipeline, line=self.line, provider=self.provider, auth_token=token,
            answering=lambda: Answering(
                public_url=self.settings.public_url, forward_to=self.settings.forward_to,
                voicemail_greeting=self.settings.voicemail_greeting,
                ring_tone=self.settings.ring_tone,
            ),
        )  # fmt: skip
        self.reconciler = Reconciler(
            state_dir=settings.state_dir, pipeline=self._pipeline, line=self.line,
            provider=self.provider,
            watching=lambda: Watching(number=self.settings.number,
                                      redact_at_provider=self.settings.redact_at_provider),
        )  # fmt: skip
        self._runner = web.AppRunner(
            webhooks.app(), access_log=None, shutdown_timeout=_DRAIN_SECONDS
        )
        await self._runner.setup()
        try:
            await self._listen(self._runner)
        except OSError as error:
            await self.close()
            raise SmsStartError(f"cannot listen on {settings.listen}: {error.strerror}") from None
        self._tasks = [
            asyncio.create_task(self.outbox.run(), name="sms-outbox"),
            asyncio.create_task(
                self.reconciler.run(lambda: self.settings.reconcile_every), name="sms-reconcile"
            ),
        ]

    async def _listen(self, runner: web.AppRunner) -> None:
        if not self._sockets:
            host, port = parse_listen(self.settings.listen)
            await web.TCPSite(runner, host, port).start()
        for sock in self._sockets:
            await web.SockSite(runner, sock).start()

    async def close(self) -> None:
        """Stop listening, finish what is in progress, stop the background work."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.provider.close()
        await self.journal.aclose()
