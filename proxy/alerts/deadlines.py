"""Nothing urgent waits silently: an urgent logistics item waits for a relay, until its
deadline; then her automatic card goes, or its alert goes on to the next contact.

Rules this module keeps:
1. An item urgent for child logistics under a court order, whose alert the service opened
   (service.py rule 3), waits for a relay (`outbox.Waiting`) until `relay_within` minutes
   after it was taken. With the order's `auto_card`, the wait keeps the item's card and
   the way it came (card.py, read when it was held); without, neither.
2. A relay custody record for its sequence (heard through the daemon's custody socket,
   proxy/custody.py rule 6) ends the wait. Acknowledging its alert does not: only a relay.
3. Past the deadline with no card, the item is handed back to the service to escalate at
   once (`overdue`). With a card, the card goes to her the way a relay would
   (access/delivery.py rule 7: a new email to the next hop, or a text to her phone), its
   custody record stored first (card.py rule 6: the daemon's own, naming the item, with
   exactly the text she receives; once, whatever the tries); if it cannot be stored,
   nothing is sent and it is tried again. A delivery that fails in any way is tried again
   `outbox.backoff(attempts)` later, forever, from the saved state after a restart too. A
   card no configured channel can carry is handed back to escalate instead.
4. Deliveries run on the event loop (the next hop and the provider are asyncio clients),
   each bounded by `_CARD_WAIT`. Nothing here logs (service.py rule 5): not a card, an
   item, a failure or a count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from proxy.access import delivery
from proxy.alerts.card import CARD, DAEMON, HEADER, card_text
from proxy.alerts.held import Held
from proxy.alerts.outbox import State, Waiting, backoff
from proxy.archive import Archive, CustodyRecord
from proxy.config import Config
from proxy.config.model import CourtOrder
from proxy.errors import NocontactError

_CARD_WAIT = 120.0  # seconds a card's delivery may take before it counts as failed
Courier = Callable[[delivery.Route], Awaitable[None]]


def wait_for_relay(state: State, item: Held, order: CourtOrder, *, first: str,
                   reasons: tuple[str, ...], now: float) -> None:  # fmt: skip
    """`item` waits for a relay (rule 1)."""
    card = item.card if order.auto_card and item.way is not None else None
    state.waiting.append(Waiting(
        sequence=item.sequence, relay_by=now + order.relay_within * 60, first=first,
        reasons=reasons, card=card, way=item.way if card is not None else None,
    ))  # fmt: skip


def relayed(state: State, sequences: set[int]) -> None:
    """Relays for `sequences` end their waits (rule 2)."""
    state.waiting = [w for w in state.waiting if w.sequence not in sequences]


def overdue(state: State, now: float) -> list[Waiting]:
    """The waits past their deadline with no card, ended: to escalate (rule 3)."""
    late = [w for w in state.waiting if w.relay_by <= now and w.card is None]
    state.waiting = [w for w in state.waiting if w not in late]
    return late


async def send_cards(state: State, config: Config, archive: Archive, courier: Courier, *,
                     now: datetime) -> tuple[bool, list[Waiting]]:  # fmt: skip
    """Deliver every card past its deadline (rule 3): whether the state changed, and the
    waits ended for want of a channel, to escalate."""
    moment = now.timestamp()
    due = [w for w in state.waiting if w.card is not None and w.relay_by <= moment]
    if not due:
        return False, []
    results = await asyncio.gather(*(_send(w, config, archive, courier, now) for w in due))
    cannot: list[Waiting] = []
    for waiting, sent in zip(due, results, strict=True):
        if sent is None or sent:
            state.waiting.remove(waiting)
            if sent is None:
                cannot.append(waiting)
        else:
            waiting.attempts += 1
            waiting.relay_by = moment + backoff(waiting.attempts)
    return True, cannot


async def _send(waiting: Waiting, config: Config, archive: Archive, courier: Courier,
                now: datetime) -> bool | None:  # fmt: skip
    """Whether the card was delivered; None if no channel can carry it."""
    if waiting.card is None or waiting.way is None:
        return None
    text = card_text(waiting.card)
    try:
        route = delivery.plan_note(config, waiting.way, HEADER, text, now)
    except delivery.CannotDeliver:
        return None
    if not waiting.recorded:  # custody first (card.py rule 6)
        record = CustodyRecord(contact=DAEMON, action=CARD, items=(waiting.sequence,), at=now,
                               reason=text)  # fmt: skip
        try:
            await archive.record_custody(record)
        except (NocontactError, OSError):
            return False
        waiting.recorded = True
    try:
        await asyncio.wait_for(courier(route), _CARD_WAIT)
    except Exception:  # any failure is one more try later, never a stopped service
        return False
    return True
