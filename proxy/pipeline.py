"""The one orchestrator: the whole life of a message, in the order the invariants demand.

Rules this module keeps:
1. normalize -> decide -> (seal into the archive | hand to the next hop) -> return.
   Mail from a blocked person is decided on its headers (direct rules); only other mail
   has its body read for the passive rules (`proxy.readers.read_email`).
   The caller acknowledges upstream only after `receive` returns; if it raises, nothing
   was acknowledged and the sender must retry (RetryLater) or is refused (DeliveryRefused,
   only ever for mail the rules let through: the next hop's own answer).
2. Held and delivered mail leave no trace that differs: the same log line, no outcome.
   Nothing about a held message (who, what, that it was held) is logged.
3. Delivered mail is byte-identical to what arrived, with one `Received:` line prepended.
4. Rules can be replaced at any time (SIGHUP); a message is decided by the rules in force
   when it arrived, in one piece.
5. An email is read by `proxy.readers`: small ones here, larger ones in a child process
   within a budget, so no message, however large or crafted, stalls the other sessions.
   Without `readers` (one-shot commands, tests) every email is read here.
6. Sealed once, the same protocol for every channel that can meet an arrival twice:
   the channel names the arrival's *mark* (`imap:<SHA-256>`, `twilio:<SID>`); one the
   archive already holds is not decided or sealed again; a held one is stored with its
   mark (the archive notes it before the entry, archive/once.py), and only after that
   does the channel act upstream (remove it, clean up at the provider). So a crash at any
   point neither loses an arrival nor seals it twice, and no channel's state records
   what was held.
7. Texts, calls and voicemails (`receive_phone`): each provider SID is handled once, under
   the line's claim. Held: the evidence (webhook or record, media downloaded) is sealed
   and stored with its mark; then the line records it handled and cleans up at the
   provider. Allowed: the line forwards it durably (or lets the call through). A voicemail
   left on a held call is held whatever the rules say now; one left on an allowed call
   that rang unanswered (`call_allowed`, which the channel must have from the provider's
   signed word) is decided by the rules in force when it is ready, like a text.
8. An allowed email the next hop took for some recipients only is answered 4xx, and its
   retry goes only to the recipients it has yet to reach (deliver/delivered.py): partial
   acceptance never leaves a duplicate in a mailbox.
9. Once a held item is stored, the alerts hear of it (`alerts`, set by the daemon when
   `alerts:` is configured): `_tell` only enqueues (alerts/service.py rule 1), so the
   sender's answer waits for nothing more than it did. The item's assessment is the one its
   decision carries (the threat detection, proxy/alerts/threats.py, run as it was held).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Protocol, TypeVar

from proxy.alerts.held import Held, held
from proxy.archive import Archive, EntryKind
from proxy.deliver.delivered import Delivered
from proxy.deliver.hops import NextHop, PartlyDelivered
from proxy.message import Action, Channel, Decision, InboundMessage, Kind
from proxy.normalize import normalize_sms
from proxy.normalize.valid import valid_text
from proxy.readers import Postmark, Readers, read_email
from proxy.rules import Rulebook, assessed, decide
from proxy.traffic import Traffic


class Fate(enum.Enum):
    """What became of a message found in a mailbox."""

    HELD = "held"  # sealed: remove it upstream
    DELIVERED = "delivered"  # pull mode: handed to the local next hop; remove it upstream
    KEPT = "kept"  # watch mode, allowed: leave it exactly as it is


@dataclass(frozen=True, slots=True, kw_only=True)
class Arrival:
    """One email as the SMTP channel received it."""

    raw: bytes
    sender: str
    recipients: tuple[str, ...]
    peer: str
    helo: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneArrival:
    """One text, call or voicemail as a phone channel received it (channels extend it)."""

    sid: str  # the provider's id: handled once, ever
    channel: Channel  # SMS or VOICE
    sender: str
    recipient: str
    text: str
    received_at: datetime
    voicemail: bool = False
    call_allowed: bool = False  # a voicemail: its call was let through first (rule 6)


A = TypeVar("A", bound=PhoneArrival)
A_contra = TypeVar("A_contra", bound=PhoneArrival, contravariant=True)


class PhoneLine(Protocol[A_contra]):
    """What a phone channel does for the pipeline, in the order the pipeline asks."""

    def claim(self, sid: str) -> contextlib.AbstractAsyncContextManager[bool]:
        """Work on `sid` alone; True if it still needs handling."""

    async def evidence(self, arrival: A_contra) -> bytes:
        """Everything to seal about a held arrival (its media downloaded)."""

    def mark(self, sid: str) -> str:
        """The arrival's mark in the archive (rule 6)."""

    async def held(self, arrival: A_contra) -> None:
        """The arrival is stored: record it handled (as `passed` does); clean up at the
        provider."""

    async def passed(self, arrival: A_contra) -> None:
        """The arrival is allowed: forward it durably; record it handled."""


_VOICEMAIL = Decision(
    action=Action.HOLD, kind=Kind.DIRECT, rule_id=None,
    reason="a voicemail left on a call that was held",
)  # fmt: skip


def received_line(*, helo: str, peer: str, hostname: str, received_at: datetime) -> bytes:
    """The `Received:` line delivered mail carries (rule 3); a released item carries the
    same, as it would have had it been allowed (proxy/access/delivery.py)."""
    helo = "".join(c for c in helo if c.isprintable() and c not in "()")[:255]
    line = (
        f"Received: from {helo or 'unknown'} ({peer})\r\n"
        f"\tby {hostname} (nocontact) with ESMTP;\r\n"
        f"\t{format_datetime(received_at)}\r\n"
    )
    return line.encode("ascii", errors="replace")


class Pipeline:
    """Holds or delivers each message; shared by every channel session."""

    def __init__(
        self,
        *,
        rules: Rulebook,
        archive: Archive,
        next_hop: NextHop,
        hostname: str,
        default_region: str | None,
        readers: Readers | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rules = rules
        self.readers = readers
        self.archive = archive
        self.next_hop = next_hop
        self.hostname = hostname
        self.default_region = default_region
        self._clock = clock
        self.traffic = Traffic()  # totals of every message, never per message
        self._delivered = Delivered()  # recipients a message reached when others failed
        self.alerts: Callable[[Held], None] | None = None  # the alerts' intake (rule 9)

    def _tell(self, message: InboundMessage, decision: Decision, sequence: int,
              imap: str | None = None) -> None:  # fmt: skip
        """A held item is stored at `sequence`: the alerts hear of it (rule 9: enqueue only)."""
        if self.alerts is not None:
            self.alerts(held(message, decision, sequence, decision.assessment, imap=imap))

    def replace(self, *, rules: Rulebook, next_hop: NextHop, default_region: str | None) -> None:
        """Swap in new rules (a reload); messages already being decided keep the old ones."""
        self.rules, self.next_hop, self.default_region = rules, next_hop, default_region

    async def _decide(
        self, raw: bytes, rules: Rulebook, *, sender: str, recipients: tuple[str, ...],
        received_at: datetime,
    ) -> tuple[InboundMessage, Decision]:  # fmt: skip
        postmark = Postmark(
            sender=sender, recipients=recipients, received_at=received_at,
            default_region=self.default_region,
        )  # fmt: skip
        if self.readers is None:
            return read_email(raw, postmark, rules)
        return await self.readers.read(raw, postmark, rules)

    async def receive_stored(
        self,
        raw: bytes,
        *,
        received_at: datetime,
        origin: str,
        deliver_to: tuple[NextHop, str] | None,
    ) -> Fate:
        """Decide on a message found in a mailbox; seal it durably if held, or (pull mode)
        deliver it if allowed. A message the archive already holds (looked at again after
        a crash, or restored into the mailbox) is HELD again without being sealed twice
        (rule 6): the caller removes it.
        """
        mark = "imap:" + hashlib.sha256(raw).hexdigest()
        if self.archive.sealed(mark):
            return Fate.HELD
        message, decision = await self._decide(
            raw, self.rules, sender="", recipients=(), received_at=received_at
        )
        self.traffic.count("imap")
        if decision.held:
            sealed = await self.archive.seal(message, decision, extras={"imap": origin})
            receipt = await self.archive.append(EntryKind.SEALED, sealed, once=mark)
            self._tell(message, decision, receipt.index, origin)
            return Fate.HELD
        if deliver_to is not None:
            hop, recipient = deliver_to
            await hop.deliver(raw, "", (recipient,), ())
            return Fate.DELIVERED
        return Fate.KEPT

    async def receive(self, arrival: Arrival) -> None:
        """Seal or deliver one email; returns once it is durably one or the other."""
        rules, next_hop = self.rules, self.next_hop
        received_at = self._clock()
        message, decision = await self._decide(
            arrival.raw, rules, sender=arrival.sender, recipients=arrival.recipients,
            received_at=received_at,
        )  # fmt: skip
        if decision.held:
            extras = {"peer": valid_text(arrival.peer), "helo": valid_text(arrival.helo)}
            receipt = await self.archive.hold(message, decision, extras=extras)
            self._tell(message, decision, receipt.index)
        else:
            await self._deliver(arrival, next_hop, received_at)
        self.traffic.count("smtp")

    async def _deliver(self, arrival: Arrival, next_hop: NextHop, received_at: datetime) -> None:
        """Hand an allowed email on, to the recipients it has yet to reach (rule 8)."""
        recipients = self._delivered.remaining(arrival.raw, arrival.sender, arrival.recipients)
        if not recipients:
            return  # a retry after a delivery in part: every recipient has it now
        trace = self._received(arrival, received_at)
        try:
            await next_hop.deliver(arrival.raw, arrival.sender, recipients, arrival.options,
                                   trace=trace)  # fmt: skip
        except PartlyDelivered as partly:
            self._delivered.reached(arrival.raw, arrival.sender, partly.delivered)
            raise
        if len(recipients) < len(arrival.recipients):
            self._delivered.reached(arrival.raw, arrival.sender, recipients)

    def _received(self, arrival: Arrival, received_at: datetime) -> bytes:
        return received_line(helo=arrival.helo, peer=arrival.peer, hostname=self.hostname,
                             received_at=received_at)  # fmt: skip

    def decide_phone(self, arrival: PhoneArrival) -> tuple[InboundMessage, Decision]:
        """What the rules in force say of a text, call or voicemail (pure: no effect)."""
        message = normalize_sms(
            sender=arrival.sender, recipient=arrival.recipient, text=arrival.text, raw=b"",
            received_at=arrival.received_at, default_region=self.default_region,
            provider_id=arrival.sid, channel=arrival.channel,
        )  # fmt: skip
        decision = decide(message, self.rules)
        if arrival.voicemail and not arrival.call_allowed and not decision.held:
            decision = assessed(_VOICEMAIL, message, self.rules)
        return message, decision

    async def receive_phone(self, arrival: A, line: PhoneLine[A]) -> Decision:
        """Seal or pass on one text, call or voicemail; returns once that is durable.

        The decision is returned for the channel's answer (a call is put through, or rings
        and reaches voicemail); a SID already handled is decided again, with no effect, so
        a replayed webhook gets the same answer.
        """
        message, decision = self.decide_phone(arrival)
        mark = line.mark(arrival.sid)
        async with line.claim(arrival.sid) as fresh:
            if fresh and self.archive.sealed(mark):  # stored before a crash: settle it
                await line.held(arrival)
            elif fresh and decision.held:
                message = dataclasses.replace(message, raw=await line.evidence(arrival))
                extras = {"provider": "twilio", "voicemail": arrival.voicemail}
                sealed = await self.archive.seal(message, decision, extras=extras)
                receipt = await self.archive.append(EntryKind.SEALED, sealed, once=mark)
                self._tell(message, decision, receipt.index)
                await line.held(arrival)
            elif fresh:
                await line.passed(arrival)
        self.traffic.count("sms")
        return decision
