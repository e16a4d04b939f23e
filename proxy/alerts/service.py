"""The alerts service: held items in, content-free alerts and digests out, to the contacts.

Rules this module keeps:
1. Enqueue only on the held path: `held()` appends to a list in memory and wakes the
   service; it does no IO and never waits, so a held message is answered exactly as fast
   as with no alerts configured (invariant 5: the same answer at the same speed).
2. Everything else happens in `step()`, one at a time: take what was held (history.py
   adds burst and first-contact reasons to the item's assessment), open urgent alerts,
   escalate the unacknowledged, make the digest when it is due, save the state (vault.py:
   sealed, whole blocks, times following the checkpoints), then send what is due.
3. Tiers (tiers.py) and who hears what: a contact hears only the tiers in their
   `alerts.tiers`, through each of their transports. Elevated alerts and digests wait
   out the quiet hours; urgent ones never do. An urgent alert goes to the first urgent
   contact (config order); each `escalate_after` minutes without an acknowledgement it is
   sent again to everyone it reached and to the next urgent contact, until the last, and
   then again to all of them every `escalate_after`, until a contact acknowledges it
   (acks.py). An acknowledged alert's unsent repeats are dropped. With no contact taking
   urgent alerts, an urgent item goes at once, quiet hours or not, to those taking
   elevated ones (it is never less than elevated).
   An item urgent for child logistics (order_mark.py) from a person with a court order
   goes first to his order's `relay` contact, whatever tiers they take (relaying is their
   role), then down the ladder of the others as above.
4. Sends run on worker threads of the service's own (send.py is synchronous apprise),
   never on the event loop, and the state's writes on one more: a transport that hangs
   takes none of the threads the channels and the archive share (asyncio's default
   executor). A failed send is retried with backoff (outbox.py rule 1), from the saved
   state after a restart too.
5. Logs: "alerts started" at start, and "alerts: a digest could not be sent; retrying"
   when a digest fails (digests go out on a schedule whatever was held, so the line dates
   nothing). Never a line per alert or card, never a count, a code or a sequence number.
6. The clock is injected (`clock`); nothing here sleeps but `run`, between steps.
7. The state is saved at every change and at `close`, whatever happened, so the file's
   change time says no more than "the daemon stopped".
8. Nothing urgent waits silently (deadlines.py): an item urgent for child logistics
   under a court order also waits for a relay until `relay_within` minutes after it was
   taken. A relay custody record for it, stored through the daemon's custody socket
   (`recorded`, enqueue only, like `held`; proxy/custody.py rule 6), ends the wait and
   counts as acknowledging its alert. Past the deadline with no relay, her card goes
   (`auto_card`), or else, or when no channel can carry it, the alert escalates at once
   to the next contact on its ladder, reopened if a contact had acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from proxy.access import delivery
from proxy.access.relaying import RELAY
from proxy.alerts import deadlines
from proxy.alerts.acks import serve_acks
from proxy.alerts.held import Held
from proxy.alerts.order_mark import urgent_logistics
from proxy.alerts.outbox import Letter, State, Urgent, Waiting, backoff, new_code
from proxy.alerts.schedule import after_quiet, next_digest
from proxy.alerts.send import send, transport_url
from proxy.alerts.text import Alert, Digest, Where, alert_text, digest_text
from proxy.alerts.tiers import Assessment, Tier
from proxy.alerts.vault import PURPOSE, Vault
from proxy.archive import Archive
from proxy.config import Config
from proxy.config.model import Alerts, Contact, CourtOrder
from proxy.errors import NocontactError
from proxy.logs import get_logger
from proxy.pipeline import Pipeline

_HISTORY_PURPOSE = b"nocontact alerts history v1"
_MOST_IDLE = 15.0  # seconds between steps at most (checkpoints are followed this closely)
_SENDERS = 4  # sends at once
_CLOSE_WAIT = 30.0  # seconds a stop waits for sends in flight
_log = get_logger("alerts")
Sender = Callable[[str, str, str], bool]


class AlertsUnavailable(NocontactError):
    """The alerts cannot start (their state cannot be opened); the daemon does not start."""


def _now() -> datetime:
    return datetime.now(UTC)


class AlertService:
    """Tells the contacts (rules 1-7)."""

    def __init__(self, config: Config, archive: Archive, vault: Vault, state: State, *,
                 clock: Callable[[], datetime], sender: Sender,
                 courier: deadlines.Courier = delivery.deliver) -> None:  # fmt: skip
        self._config = config
        self._archive = archive
        self._vault = vault
        self.state = state
        self._clock = clock
        self._sender = sender
        self._courier = courier
        self._intake: list[Held] = []
        self._relayed: list[int] = []  # sequences a relay was recorded for (rule 8)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._one_step = asyncio.Lock()
        self._saving = asyncio.Lock()
        self._touched = -1
        self._closed = False
        self._acks: asyncio.AbstractServer | None = None
        self._running: asyncio.Task[None] | None = None
        self._sending = ThreadPoolExecutor(_SENDERS, thread_name_prefix="alerts-send")  # rule 4
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="alerts-state")

    async def _on_disk(self, work: Callable[..., object], *args: object) -> None:
        """Run blocking vault IO on the service's own thread (rule 4)."""
        await self._loop.run_in_executor(self._disk, work, *args)

    @classmethod
    async def open(cls, config: Config, archive: Archive, *,
                   clock: Callable[[], datetime] = _now, sender: Sender = send,
                   courier: deadlines.Courier = delivery.deliver) -> AlertService:  # fmt: skip
        """The service for `config` (which has an `alerts:` section), its state read back."""
        key = archive.derive_key(PURPOSE)
        try:
            vault, data = await asyncio.to_thread(Vault.open, Path(archive.path), key)
        except OSError as error:
            raise AlertsUnavailable(f"cannot open the alerts' state beside the archive: "
                                    f"{error.strerror or error}") from None  # fmt: skip
        await asyncio.to_thread(vault.touch, archive.head()[1])  # times follow from the start
        state = State.load(archive.derive_key(_HISTORY_PURPOSE), data)
        if not state.last_digest:
            state.last_digest = clock().timestamp()
        service = cls(config, archive, vault, state, clock=clock, sender=sender,
                      courier=courier)  # fmt: skip
        service._acks = await serve_acks(Path(archive.path), service.acknowledge)
        await service._save()
        _log.info("alerts started")
        return service

    @property
    def _alerts(self) -> Alerts:
        settings = self._config.alerts
        assert settings is not None  # the daemon starts the service only with one
        return settings

    def replace(self, config: Config) -> None:
        """A reload: new contacts, transports and schedule from the next step on."""
        if config.alerts is not None:
            self._config = config
            self._wake.set()

    def held(self, item: Held) -> None:
        """An item was held (rule 1: enqueue only, no IO, no waiting)."""
        self._intake.append(item)
        self._loop.call_soon_threadsafe(self._wake.set)

    def recorded(self, action: str, items: tuple[int, ...]) -> None:
        """A custody record was stored (rule 8): a relay ends its items' wait. Enqueue
        only, like `held`."""
        if action == RELAY and items:
            self._relayed.extend(items)
            self._loop.call_soon_threadsafe(self._wake.set)

    def _close(self, urgent: Urgent) -> None:
        self.state.urgent.remove(urgent)
        self.state.letters = [x for x in self.state.letters
                              if x.code != urgent.code or x.attempts]  # fmt: skip

    async def acknowledge(self, code: str) -> bool:
        """Close the open urgent alert with this code (acks.py); whether there was one."""
        async with self._one_step:
            for urgent in self.state.urgent:
                if hmac.compare_digest(urgent.code.encode(), code.encode()):
                    self._close(urgent)
                    await self._save()
                    return True
        return False

    # -- one step ---------------------------------------------------------------------

    async def step(self) -> None:
        """Do everything due now (rule 2)."""
        async with self._one_step:
            now = self._clock().timestamp()
            changed = self._take_held(now)
            changed |= self._take_relays()
            changed |= self._overdue(now)
            changed |= self._escalate(now)
            changed |= self._digest(now)
            if changed:
                await self._save()
            if await self._send_due(now):
                await self._save()
            if await self._send_cards(now):
                await self._save()
            signed_at = self._archive.head()[1]
            if signed_at != self._touched:
                self._touched = signed_at
                with contextlib.suppress(OSError):
                    await self._on_disk(self._vault.touch, signed_at)

    def _contacts(self, tier: Tier) -> list[Contact]:
        """The contacts who take `tier`, in config order (rule 3)."""
        return [c for c in self._config.contacts
                if c.alerts is not None and tier.label in c.alerts.tiers]  # fmt: skip

    def _ladder(self, first: str) -> list[Contact]:
        """The urgent contacts in the order an alert goes down them: `first` (a relay
        contact's name), if it is one who can be told, then the others (rule 3)."""
        ladder = self._contacts(Tier.URGENT)
        relay = [c for c in self._config.contacts if c.name == first and c.alerts is not None]
        return [*relay, *(c for c in ladder if c.name != first)] if relay else ladder

    def _order(self, item: Held, assessment: Assessment) -> CourtOrder | None:
        """The court order of the item's person, if the item is urgent for child logistics
        (rule 3); else None."""
        if not urgent_logistics(assessment):
            return None
        person = next((p for p in self._config.people if p.id == item.person), None)
        return person.court_order if person is not None else None

    def _relay(self, order: CourtOrder | None) -> str:
        """The relay contact of `order` (rule 3); else ""."""
        if order is None:
            return ""
        named = (c.name for c in self._config.contacts
                 if c.name.casefold() == order.relay.casefold())  # fmt: skip
        return next(named, "")

    def _post(self, contacts: list[Contact], due: float, **letter: object) -> None:
        for contact in contacts:
            assert contact.alerts is not None
            for transport in contact.alerts.transports:
                self.state.letters.append(
                    Letter(contact=contact.name, transport=transport, due=due, **letter)  # type: ignore[arg-type]
                )

    def _take_held(self, now: float) -> bool:
        taken, self._intake = self._intake, []
        places = {person.id: place for place, person in enumerate(self._config.people, 1)}
        zone, quiet = ZoneInfo(self._alerts.timezone), self._alerts.quiet_hours
        for item in taken:
            found = self.state.history.observe(
                item.person, channel=item.channel, identity=item.identity, now=now
            )
            assessment = Assessment.of((*item.assessment.reasons, *found))
            tier = max(assessment.tier, item.assessment.tier)
            self.state.count(item.channel, places.get(item.person or ""))
            reasons = tuple(str(reason) for reason in assessment.reasons)
            order = self._order(item, assessment)
            first = self._relay(order)
            if tier is Tier.URGENT and (ladder := self._ladder(first)):
                code = new_code()
                escalate = now + self._alerts.escalate_after * 60
                self.state.urgent.append(Urgent(code=code, sequence=item.sequence,
                                                reasons=reasons, reached=1, repeat=0,
                                                next=escalate, first=first))  # fmt: skip
                self._post(ladder[:1], now, tier=Tier.URGENT, sequence=item.sequence,
                           reasons=reasons, code=code)  # fmt: skip
                if order is not None and first:  # rule 8
                    deadlines.wait_for_relay(self.state, item, order, first=first,
                                             reasons=reasons, now=now)  # fmt: skip
            elif tier >= Tier.ELEVATED:  # urgent with no urgent contact: at once, to these
                waited = after_quiet(datetime.fromtimestamp(now, UTC), quiet, zone).timestamp()
                due = now if tier is Tier.URGENT else waited
                self._post(self._contacts(Tier.ELEVATED), due, tier=tier,
                           sequence=item.sequence, reasons=reasons)  # fmt: skip
        return bool(taken)

    def _take_relays(self) -> bool:
        """A relay ends its item's wait and closes its alert (rule 8)."""
        relayed, self._relayed = set(self._relayed), []
        if not relayed:
            return False
        deadlines.relayed(self.state, relayed)
        for urgent in [u for u in self.state.urgent if u.sequence in relayed]:
            self._close(urgent)
        return True

    def _overdue(self, now: float) -> bool:
        """Past its deadline with no card to send, an item's alert escalates now (rule 8)."""
        late = deadlines.overdue(self.state, now)
        for waiting in late:
            self._escalate_now(waiting, now)
        return bool(late)

    def _escalate_now(self, waiting: Waiting, now: float) -> None:
        """Its open alert escalates at the next step; reopened if it was acknowledged."""
        urgent = next((u for u in self.state.urgent if u.sequence == waiting.sequence), None)
        if urgent is not None:
            urgent.next = now
        else:
            self.state.urgent.append(Urgent(code=new_code(), sequence=waiting.sequence,
                                            reasons=waiting.reasons, reached=1, repeat=0,
                                            next=now, first=waiting.first))  # fmt: skip

    async def _send_cards(self, now: float) -> bool:
        """Deliver every card past its deadline (rule 8); whether the state changed."""
        changed, cannot = await deadlines.send_cards(
            self.state, self._config, self._archive, self._courier,
            now=datetime.fromtimestamp(now, UTC),
        )  # fmt: skip
        for waiting in cannot:
            self._escalate_now(waiting, now)
        return changed

    def _escalate(self, now: float) -> bool:
        changed = False
        for urgent in self.state.urgent:
            ladder = self._ladder(urgent.first)
            if urgent.next > now or not ladder:
                continue
            urgent.repeat += 1
            urgent.reached = min(urgent.reached + 1, len(ladder))
            urgent.next = now + self._alerts.escalate_after * 60
            self._post(ladder[: urgent.reached], now, tier=Tier.URGENT,
                       sequence=urgent.sequence, reasons=urgent.reasons, code=urgent.code,
                       repeat=urgent.repeat)  # fmt: skip
            changed = True
        return changed

    def _digest(self, now: float) -> bool:
        zone = ZoneInfo(self._alerts.timezone)
        last = datetime.fromtimestamp(self.state.last_digest, UTC)
        due = next_digest(last, self._alerts.digest, zone)
        if due is None or due.timestamp() > now:
            return False
        send_at = after_quiet(datetime.fromtimestamp(now, UTC), self._alerts.quiet_hours, zone)
        self._post(self._contacts(Tier.DIGEST), send_at.timestamp(), tier=Tier.DIGEST,
                   digest=True, since=self.state.last_digest, until=now,
                   by_channel=dict(self.state.by_channel),
                   by_person=dict(self.state.by_person))  # fmt: skip
        self.state.by_channel, self.state.by_person = {}, {}
        self.state.last_digest = now
        return True

    async def _send_due(self, now: float) -> bool:
        """Send every letter that is due (rule 4); whether any letter changed."""
        due = [x for x in self.state.letters if x.due <= now]
        if not due:
            return False
        note = self._archive.head()[0]
        results = await asyncio.gather(*(self._send_one(letter, note) for letter in due))
        digest_failed = False
        for letter, sent in zip(due, results, strict=True):
            if sent is None or sent:  # gone from the config, or taken by its transport
                self.state.letters.remove(letter)
            else:
                letter.attempts += 1
                letter.due = now + backoff(letter.attempts)
                digest_failed |= letter.digest
        if digest_failed:
            _log.warning("alerts: a digest could not be sent; retrying")  # rule 5
        return True

    async def _send_one(self, letter: Letter, note: str) -> bool | None:
        """Whether `letter`'s transport took it; None if its contact or transport is gone."""
        transport = self._alerts.transports.get(letter.transport)
        contact = next((c for c in self._config.contacts if c.name == letter.contact), None)
        if transport is None or contact is None or contact.alerts is None:
            return None
        if letter.transport not in contact.alerts.transports:
            return None
        url = transport_url(transport)
        if url is None:
            return False
        title, body = self._text(letter, note)
        return await self._loop.run_in_executor(self._sending, self._sender, url, title, body)

    def _text(self, letter: Letter, note: str) -> tuple[str, str]:
        portal = self._config.portal
        where = Where(portal=str(portal.public_url) if portal is not None else None,
                      archive=self._archive.path,
                      zone=ZoneInfo(self._alerts.timezone))  # fmt: skip
        if letter.digest:
            digest = Digest(since=datetime.fromtimestamp(letter.since, UTC),
                            until=datetime.fromtimestamp(letter.until, UTC),
                            by_channel=letter.by_channel,
                            by_person=letter.by_person)  # fmt: skip
            return digest_text(digest, where, note)
        alert = Alert(tier=letter.tier, sequence=letter.sequence, reasons=letter.reasons,
                      code=letter.code, repeat=letter.repeat)  # fmt: skip
        return alert_text(alert, where, note)

    async def _save(self) -> None:
        async with self._saving:
            data = self.state.dump()
            await self._on_disk(self._vault.save, data)

    # -- running ------------------------------------------------------------------------

    def _next_wake(self) -> float:
        """Seconds until something is due (at most `_MOST_IDLE`)."""
        now = self._clock().timestamp()
        times = [x.due for x in self.state.letters] + [u.next for u in self.state.urgent]
        times += [w.relay_by for w in self.state.waiting]
        zone = ZoneInfo(self._alerts.timezone)
        digest = next_digest(datetime.fromtimestamp(self.state.last_digest, UTC),
                             self._alerts.digest, zone)  # fmt: skip
        if digest is not None:
            times.append(digest.timestamp())
        return max(0.0, min([now + _MOST_IDLE, *times]) - now)

    async def run(self) -> None:
        """Step whenever something is held or due, until `close` (rule 6)."""
        while not self._closed:
            try:
                await self.step()
            except Exception as error:  # never stops: the state is saved again next step
                _log.error("alerts: a step failed", error=type(error).__name__)
            self._wake.clear()
            if self._intake:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wake())

    def start(self) -> None:
        """Run in the background until `close`."""
        self._running = self._loop.create_task(self.run())

    async def close(self) -> None:
        """Stop listening for acknowledgements; save the state, whatever happened (rule 7)."""
        self._closed = True
        self._wake.set()
        if self._running is not None:
            # a send in flight finishes within apprise's own timeouts
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._running, _CLOSE_WAIT)
        if self._acks is not None:
            self._acks.close()
        async with self._one_step:
            self._take_held(self._clock().timestamp())
            self._take_relays()
            await self._save()
        await self._on_disk(self._vault.close)
        self._disk.shutdown(wait=False)
        self._sending.shutdown(wait=False)


async def start_alerts(config: Config, archive: Archive, pipeline: Pipeline
                       ) -> AlertService | None:  # fmt: skip
    """The running service if `config` has an `alerts:` section (else None), hearing of
    what `pipeline` holds."""
    if config.alerts is None:
        return None
    service = await AlertService.open(config, archive)
    pipeline.alerts = service.held
    service.start()
    return service
