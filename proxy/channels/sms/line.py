"""The Twilio phone line as the pipeline uses it: claims, evidence, cleanup, forwards.

Rules this module keeps:
1. It implements `proxy.pipeline.PhoneLine`; the pipeline decides the order, this module
   only knows Twilio: the ledger of handled SIDs, the outbox, the REST API.
2. Held: cleanup tasks (redact_at_provider: delete the text's media and then its record,
   so neither its body nor his number nor its time stays in the provider's console; a
   voicemail's call record too; always: delete a voicemail's recording) go to the outbox
   in memory, never to the journal: a restart rebuilds them from the provider itself
   (reconcile.py rule 3), so no file holds a task that exists only for held items.
   Nothing is deleted at the provider before its seal is on disk. The handled line is
   the same as an allowed arrival's.
3. Allowed: a text is forwarded as "From <number>: <text>" with its media, split to stay
   within the provider's 1,600 characters. A voicemail left on an allowed call she did not
   pick up is forwarded as "Voicemail from <number> (<n> s)" with the recording as its
   media; no cleanup is queued for it (the forward's media is fetched from the provider).
   A call the daemon never saw live (found by reconciliation) becomes a "Missed call
   from <number>" text: nothing allowed is lost. Forwards are kept in memory, and the
   arrival is recorded handled once they are done (ledger.py rule 2): until then the
   provider's own record is what keeps it, and reconciliation finds it after a crash.
   So the journal holds the same line for every arrival, held or allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import assert_never

from proxy.channels.sms import ledger
from proxy.channels.sms.capture import ArrivalKind, Webhook, capture
from proxy.channels.sms.ledger import Ledger
from proxy.channels.sms.outbox import Outbox, Task, TaskKind
from proxy.channels.sms.provider import Media, Provider, ProviderRefused
from proxy.identity import e164
from proxy.pipeline import PhoneArrival

MAX_BODY = 1600
MediaRef = tuple[str, str, str]  # (media SID, content type, address at the provider)


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioArrival(PhoneArrival):
    kind: ArrivalKind
    webhook: Webhook | None = None
    record: Mapping[str, object] | None = None
    media: tuple[MediaRef, ...] | None = None  # None: ask the provider (reconciliation)
    call_sid: str = ""  # a voicemail's call
    live: bool = True  # from a webhook, not from reconciliation
    seconds: int = 0  # a voicemail's length, as the provider gave it


def forward_bodies(sender: str, text: str) -> list[str]:
    """The texts that carry `text` to the survivor, each within the provider's limit."""
    head = f"From {sender}: "
    if len(head) + len(text) <= MAX_BODY:
        return [head + text]
    room = MAX_BODY - len(head) - len("(99/99) ")
    chunks = [text[i : i + room] for i in range(0, len(text), room)]
    return [f"{head}({n}/{len(chunks)}) {chunk}" for n, chunk in enumerate(chunks, 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class LineSettings:
    redact_at_provider: bool
    default_region: str | None


class TwilioLine:
    def __init__(
        self, *, ledger: Ledger, outbox: Outbox, provider: Provider,
        settings: Callable[[], LineSettings],
    ) -> None:  # fmt: skip
        self.ledger, self.outbox, self.provider = ledger, outbox, provider
        self._settings = settings

    def claim(self, sid: str) -> contextlib.AbstractAsyncContextManager[bool]:
        return self.ledger.claim(sid)

    async def media_of(self, arrival: TwilioArrival) -> tuple[MediaRef, ...]:
        if arrival.media is not None:
            return arrival.media
        if arrival.kind is not ArrivalKind.TEXT:
            return ()
        return tuple(await self.provider.media_of(arrival.sid))

    async def evidence(self, arrival: TwilioArrival) -> bytes:
        pieces = await self.media_of(arrival)
        media: list[Media] = []
        if pieces:  # most texts have none: no gather's futures for them
            media = list(await asyncio.gather(*(self._download(*piece) for piece in pieces)))
        return capture(kind=arrival.kind, webhook=arrival.webhook, record=arrival.record,
                       media=media)  # fmt: skip

    async def _download(self, sid: str, content_type: str, address: str) -> Media:
        """A piece of media; one the provider no longer has (404) is sealed as missing,
        so the message itself is kept rather than retried forever."""
        try:
            return await self.provider.download(address, sid=sid, content_type=content_type)
        except ProviderRefused as refusal:
            if refusal.status != 404:
                raise
            return Media(sid=sid, content_type=content_type, data=b"",
                         missing="the provider no longer had it (HTTP 404)")  # fmt: skip

    def mark(self, sid: str) -> str:
        return ledger.mark(sid)

    def cleanup(self, arrival: TwilioArrival, media: tuple[MediaRef, ...]) -> list[Task]:
        """What to remove at the provider once `arrival` is sealed."""
        redact = self._settings().redact_at_provider
        match arrival.kind:
            case ArrivalKind.VOICEMAIL:
                tasks = [Task(kind=TaskKind.DELETE_RECORDING, sid=arrival.sid)]
                if redact and arrival.call_sid:
                    tasks.append(Task(kind=TaskKind.DELETE_CALL, sid=arrival.call_sid))
                return tasks
            case ArrivalKind.TEXT if redact:
                tasks = [Task(kind=TaskKind.DELETE_MEDIA, sid=arrival.sid, media_sid=m[0])
                         for m in media]  # fmt: skip
                return [*tasks, Task(kind=TaskKind.DELETE_TEXT, sid=arrival.sid)]
            case ArrivalKind.TEXT:
                return []
            case ArrivalKind.CALL:  # in progress: reconciliation removes it once it has ended
                return []
            case _:
                assert_never(arrival.kind)

    async def held(self, arrival: TwilioArrival) -> None:
        tasks = self.cleanup(arrival, await self.media_of(arrival))
        # Not synced: the arrival's mark in the archive stands for the handled line, and
        # cleanup lost in a crash is queued again from the provider (rule 2).
        await self.ledger.record(arrival.sid, durable=False)
        await self.outbox.add(tasks)

    async def passed(self, arrival: TwilioArrival) -> None:
        sender = e164(arrival.sender, self._settings().default_region) or arrival.sender
        match arrival.kind:
            case ArrivalKind.TEXT:
                media = await self.media_of(arrival)
                urls = tuple(self.provider.public_address(address) for _, _, address in media)
                bodies = forward_bodies(sender, arrival.text)
                tasks = [Task(kind=TaskKind.FORWARD, body=body) for body in bodies[:-1]]
                tasks.append(Task(kind=TaskKind.FORWARD, body=bodies[-1], media_urls=urls))
            case ArrivalKind.VOICEMAIL:
                media = await self.media_of(arrival)
                urls = tuple(self.provider.public_address(address) for _, _, address in media)
                body = f"Voicemail from {sender} ({arrival.seconds} s)"
                tasks = [Task(kind=TaskKind.FORWARD, body=body, media_urls=urls)]
            case ArrivalKind.CALL if not arrival.live:
                tasks = [Task(kind=TaskKind.FORWARD, body=f"Missed call from {sender}")]
            case ArrivalKind.CALL:  # put through live: she heard it ring
                tasks = []
            case _:
                assert_never(arrival.kind)
        if not tasks:  # a call put through: handled now, and durably (no forward to come)
            await self.ledger.record(arrival.sid, durable=True)
            return
        sid = arrival.sid
        self.ledger.forwarding(sid)  # handled once the forward is done (ledger.py rule 2)
        await self.outbox.add(tasks, then=lambda: self.ledger.record(sid, durable=False))
