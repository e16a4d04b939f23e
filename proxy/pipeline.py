"""The one orchestrator: the whole life of a message, in the order the invariants demand.

Rules this module keeps:
1. normalize -> decide -> (seal into the archive | hand to the next hop) -> return.
   Mail from a blocked person is decided on its headers (direct rules); only other mail
   has its body read for the passive rules.
   The caller acknowledges upstream only after `receive` returns; if it raises, nothing
   was acknowledged and the sender must retry (RetryLater) or is refused (DeliveryRefused,
   only ever for mail the rules let through: the next hop's own answer).
2. Held and delivered mail leave no trace that differs: the same log line, no outcome.
   Nothing about a held message (who, what, that it was held) is logged.
3. Delivered mail is byte-identical to what arrived, with one `Received:` line prepended.
4. Rules can be replaced at any time (SIGHUP); a message is decided by the rules in force
   when it arrived, in one piece.
5. Heavy CPU work on large messages (parsing) runs in a worker thread, so one 50 MB
   message never stalls the other sessions.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import partial

from proxy.archive import Archive
from proxy.deliver.hops import NextHop
from proxy.logs import get_logger
from proxy.message import Decision, InboundMessage
from proxy.normalize import normalize_email
from proxy.rules import Rulebook, decide, decide_direct

_THREAD_PARSE_BYTES = 1 << 20
_log = get_logger("pipeline")


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.rules = rules
        self.archive = archive
        self.next_hop = next_hop
        self.hostname = hostname
        self.default_region = default_region
        self._clock = clock

    def replace(self, *, rules: Rulebook, next_hop: NextHop, default_region: str | None) -> None:
        """Swap in new rules (a reload); messages already being decided keep the old ones."""
        self.rules, self.next_hop, self.default_region = rules, next_hop, default_region

    async def _decide(
        self, raw: bytes, rules: Rulebook, *, sender: str, recipients: tuple[str, ...],
        received_at: datetime,
    ) -> tuple[InboundMessage, Decision]:  # fmt: skip
        normalize = partial(
            normalize_email, envelope_sender=sender, recipients=recipients,
            received_at=received_at, default_region=self.default_region,
        )  # fmt: skip
        # His mail is decided from its headers alone: the body is sealed, never parsed.
        message = normalize(raw, headers_only=True)
        decision = decide_direct(message, rules)
        if decision is None:
            if len(raw) < _THREAD_PARSE_BYTES:
                message = normalize(raw)
            else:
                message = await asyncio.to_thread(normalize, raw)
            decision = decide(message, rules)
        return message, decision

    async def receive_stored(
        self,
        raw: bytes,
        *,
        received_at: datetime,
        origin: str,
        deliver_to: tuple[NextHop, str] | None,
    ) -> tuple[Fate, bytes | None]:
        """Decide on a message found in a mailbox; (pull mode) deliver it if allowed.

        Returns what becomes of it and, if HELD, its sealed bytes: NOT yet stored. The IMAP
        watcher first notes durably which sealed bytes it is about to store, then stores
        them (`Archive.append`), then removes the message upstream; so a crash at any point
        neither loses the message nor, on restart, seals it twice.
        """
        message, decision = await self._decide(
            raw, self.rules, sender="", recipients=(), received_at=received_at
        )
        _log.info("message handled", channel="imap")
        if decision.held:
            return Fate.HELD, await self.archive.seal(message, decision, extras={"imap": origin})
        if deliver_to is not None:
            hop, recipient = deliver_to
            await hop.deliver(raw, "", (recipient,), ())
            return Fate.DELIVERED, None
        return Fate.KEPT, None

    async def receive(self, arrival: Arrival) -> None:
        """Seal or deliver one email; returns once it is durably one or the other."""
        rules, next_hop = self.rules, self.next_hop
        received_at = self._clock()
        message, decision = await self._decide(
            arrival.raw, rules, sender=arrival.sender, recipients=arrival.recipients,
            received_at=received_at,
        )  # fmt: skip
        if decision.held:
            await self.archive.hold(message, decision, extras={"peer": arrival.peer,
                                                               "helo": arrival.helo})  # fmt: skip
        else:
            trace = self._received(arrival, received_at)
            await next_hop.deliver(trace + arrival.raw, arrival.sender, arrival.recipients,
                                   arrival.options)  # fmt: skip
        _log.info("message handled", channel="smtp")

    def _received(self, arrival: Arrival, received_at: datetime) -> bytes:
        helo = "".join(c for c in arrival.helo if c.isprintable() and c not in "()")[:255]
        line = (
            f"Received: from {helo or 'unknown'} ({arrival.peer})\r\n"
            f"\tby {self.hostname} (nocontact) with ESMTP;\r\n"
            f"\t{format_datetime(received_at)}\r\n"
        )
        return line.encode("ascii", errors="replace")
