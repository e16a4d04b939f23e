"""Fuzz target: any text through the threat detection (proxy/alerts/threats.py).

The input is UTF-8, read with errors replaced (as a message's text reaches it) and also
with surrogates kept (as a broken header's 8-bit bytes can). For each, with a profile
that has the config's own terms (children, places, extra terms), this checks that:
1. `assess` returns an `Assessment` (it never raises);
2. every reason is one of the fixed codes: never a word of the text (tiers.py rule 2);
3. `assess` says what `assess_folded` says of the folded text (the pipeline's path);
4. all of it takes under `fuzz.invariants.LIMIT_SECONDS`.

Run with `scripts/fuzz threats [SECONDS]`.
"""

from __future__ import annotations

from fuzz.invariants import InvariantBroken, guarded, timed
from proxy.alerts.threats import assess, assess_folded, compile_profile
from proxy.config.model import Alerts, AlertTransport, ExtraTerms
from proxy.fold import fold

PROFILE = compile_profile(Alerts(
    transports={"phone": AlertTransport(url="ntfy://ntfy.example/topic")},
    children=["Lily", "Noah"], places=["14 Elm Street", "Riverside Clinic"],
    extra_terms=ExtraTerms(urgent=["the lake house"], elevated=["your sister"]),
))  # fmt: skip
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


test_one_input = guarded(check)
