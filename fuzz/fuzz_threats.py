"""Fuzz target: any text through the threat detection (proxy/alerts/threats.py) and the
child-logistics reading of a court order (proxy/alerts/logistics.py).

The input is UTF-8, read with errors replaced (as a message's text reaches it) and also
with surrogates kept (as a broken header's 8-bit bytes can). For each, with a profile
that has the config's own terms (children, places, extra terms), this checks that:
1. `assess` returns an `Assessment` (it never raises);
2. every reason is one of the fixed codes: never a word of the text (tiers.py rule 2);
3. `assess` says what `assess_folded` says of the folded text (the pipeline's path);
4. `read_order` returns a reading (it never raises) whose reasons are logistics codes and
   whose mark names the order's person, and whose card, if any, holds only the order's
   children, fixed labels and dates and times written out (logistics.py rule 7);
5. all of it takes under `fuzz.invariants.LIMIT_SECONDS`.

Run with `scripts/fuzz threats [SECONDS]`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from fuzz.invariants import InvariantBroken, guarded, timed
from proxy.alerts.card import Card
from proxy.alerts.logistics import EMERGENCY, THE_CHILDREN, card_labels, compile_order, read_order
from proxy.alerts.threats import assess, assess_folded, compile_profile
from proxy.config.model import Alerts, AlertTransport, CourtOrder, ExtraTerms
from proxy.fold import fold

PROFILE = compile_profile(Alerts(
    transports={"phone": AlertTransport(url="ntfy://ntfy.example/topic")},
    children=["Lily", "Noah"], places=["14 Elm Street", "Riverside Clinic"],
    extra_terms=ExtraTerms(urgent=["the lake house"], elevated=["your sister"]),
))  # fmt: skip
ORDER = compile_order(
    "mark",
    CourtOrder(
        children=["Lily", "Noah"], channels=["email"], relay="Dana", emergency_terms=["urgent care"]
    ),
)
RECEIVED_AT = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
LOGISTICS_CODES = frozenset(["child_emergency", "same_day_logistics", "child_logistics"])
WORDS = frozenset(["Lily", "Noah", THE_CHILDREN, EMERGENCY,
                   *(label for _, pairs in card_labels() for _, label in pairs)])  # fmt: skip
WRITTEN = re.compile(r"[A-Z][a-z]+day \d{1,2} [A-Z][a-z]+( \d{4})?|\d{2}:\d{2}")
CODES = frozenset(["threat", "weapon", "proximity", "surveillance", "children", "self_harm",
                   "term", "place"])  # fmt: skip


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one text."""
    with timed(len(data)):
        for text in (data.decode("utf-8", "replace"), data.decode("utf-8", "surrogateescape")):
            found = assess(text, PROFILE)
            if not {reason.code for reason in found.reasons} <= CODES:
                raise InvariantBroken(f"a reason that is not a fixed code: {found}")
            if assess_folded(fold(text), PROFILE) != found:
                raise InvariantBroken("assess and assess_folded disagree")
            reading = read_order(fold(text), text, ORDER, channel="sms", received_at=RECEIVED_AT)
            if not {r.code for r in reading.reasons} <= LOGISTICS_CODES:
                raise InvariantBroken(f"a logistics reason that is not a fixed code: {reading}")
            if reading.mark.person != "mark":
                raise InvariantBroken("the order mark names another person")
            if reading.card is not None and not _only_ours(reading.card):
                raise InvariantBroken("a card value that is not the config's or a fixed one")


def _only_ours(card: Card) -> bool:
    values = [v for field in (card.child, card.date, card.time, card.place, card.topic)
              for v in field.split(", ") if v]  # fmt: skip
    return all(v in WORDS or WRITTEN.fullmatch(v) for v in values)


test_one_input = guarded(check)
