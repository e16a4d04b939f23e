"""The durable outbox: what nocontact still has to ask of the provider, until it is done.

Rules this module keeps:
1. A task is a file (written, fsynced, renamed, directory fsynced) before `add` returns,
   and is removed only after the provider accepted it. A restart picks every file up
   again; nothing is lost, and an accepted task is not repeated (except in the instant
   between the provider's answer and the unlink).
2. Two kinds of work: forwarding an allowed text to the survivor's phone, and cleaning a
   held item out of the provider's logs (blank a text, delete media, a recording, a call).
   Who the forward goes to is read at sending time, so fixing `forward_to` (and SIGHUP)
   delivers what was waiting.
3. An outage (ProviderUnavailable) pauses the whole outbox with backoff (1 s doubling to
   5 min). A refusal (4xx) backs off that task alone (up to an hour) and keeps it.
4. Silence: no log line names a task, its kind or its number. An outage is logged once
   when it starts and once when it ends; only a refused *forward* is logged, because the
   survivor must learn that her texts are not reaching her (and it says nothing held).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from proxy.channels.sms.provider import Provider, ProviderRefused, ProviderUnavailable
from proxy.logs import get_logger

_log = get_logger("sms.outbox")
_FIRST_BACKOFF = 1.0
_OUTAGE_BACKOFF = 300.0
_REFUSED_BACKOFF = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One request to make of the provider."""

    kind: str  # forward | blank_text | delete_media | delete_recording | delete_call
    sid: str = ""
    media_sid: str = ""
    body: str = ""
    media_urls: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps({
            "kind": self.kind, "sid": self.sid, "media_sid": self.media_sid,
            "body": self.body, "media_urls": list(self.media_urls),
        }).encode()  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> Task:
        raw = json.loads(data)
        return cls(kind=raw["kind"], sid=raw["sid"], media_sid=raw["media_sid"],
                   body=raw["body"], media_urls=tuple(raw["media_urls"]))  # fmt: skip


@dataclass(slots=True)
class _Waiting:
    task: Task
    due: float = 0.0
    backoff: float = field(default=_FIRST_BACKOFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class Addresses:
    """Who a forward is from (the public number) and to (the survivor's phone)."""

    number: str
    forward_to: str


class Outbox:
    def __init__(
        self, directory: str | os.PathLike[str], provider: Provider,
        addresses: Callable[[], Addresses],
    ) -> None:  # fmt: skip
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._provider = provider
        self._addresses = addresses
        self._waiting: dict[str, _Waiting] = {}
        for path in sorted(self.directory.glob("*.json")):
            try:
                self._waiting[path.name] = _Waiting(Task.from_json(path.read_bytes()))
            except (ValueError, KeyError, TypeError):
                # A torn file from a crash before its rename cannot exist (tmp names are
                # skipped), so this is foreign: leave it for a human, never delete it.
                _log.error("unreadable outbox file left in place", file=path.name)
        for stale in self.directory.glob("*.tmp"):
            stale.unlink()
        self._wake = asyncio.Event()
        self._outage = False
        self._pause_until = 0.0
        self._outage_backoff = _FIRST_BACKOFF

    def __len__(self) -> int:
        return len(self._waiting)

    async def add(self, tasks: Sequence[Task], *, unique: bool = False) -> None:
        """Store `tasks` durably; they are sent in the background. `unique`: skip any
        task already waiting (reconciliation asks again for cleanup in progress)."""
        if unique:
            waiting = {w.task for w in self._waiting.values()}
            tasks = [task for task in tasks if task not in waiting]
            if not tasks:
                return
        names = await asyncio.to_thread(self._write, tasks)
        for name, task in zip(names, tasks, strict=True):
            self._waiting[name] = _Waiting(task)
        self._wake.set()

    def _write(self, tasks: Sequence[Task]) -> list[str]:
        names = []
        for task in tasks:
            name = f"{time.time_ns():020d}-{secrets.token_hex(4)}.json"
            temporary = self.directory / (name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, task.to_json())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, self.directory / name)
            names.append(name)
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return names

    async def run(self) -> None:
        """Send waiting tasks until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            await self._round(loop.time())
            due = [w.due for w in self._waiting.values()]
            due.append(self._pause_until)
            delay = max(0.0, min(due) - loop.time()) if self._waiting else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _round(self, now: float) -> None:
        if now < self._pause_until:
            return
        for name in sorted(self._waiting):
            waiting = self._waiting[name]
            if waiting.due > now:
                continue
            try:
                await self._send(waiting.task)
            except ProviderUnavailable:
                if not self._outage:
                    _log.warning("the provider is unreachable; the outbox will retry")
                self._outage = True
                self._pause_until = now + self._outage_backoff
                self._outage_backoff = min(self._outage_backoff * 2, _OUTAGE_BACKOFF)
                return
            except ProviderRefused as error:
                if waiting.task.kind == "forward":
                    _log.error("the provider refused to forward a text; it is kept and "
                               "retried", status=error.status, code=error.code)  # fmt: skip
                waiting.due = now + waiting.backoff
                waiting.backoff = min(waiting.backoff * 2, _REFUSED_BACKOFF)
                continue
            if self._outage:
                _log.info("the provider is reachable again")
            self._outage, self._outage_backoff = False, _FIRST_BACKOFF
            await asyncio.to_thread((self.directory / name).unlink, missing_ok=True)
            del self._waiting[name]

    async def _send(self, task: Task) -> None:
        provider = self._provider
        if task.kind == "forward":
            addresses = self._addresses()
            await provider.send_text(to=addresses.forward_to, sender=addresses.number,
                                     body=task.body, media_urls=task.media_urls)  # fmt: skip
        elif task.kind == "blank_text":
            await provider.blank_text(task.sid)
        elif task.kind == "delete_media":
            await provider.delete_media(task.sid, task.media_sid)
        elif task.kind == "delete_recording":
            await provider.delete_recording(task.sid)
        elif task.kind == "delete_call":
            await provider.delete_call(task.sid)
        else:
            raise ProviderRefused(400, None)
