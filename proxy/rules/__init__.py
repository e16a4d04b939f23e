"""The pure rule engine: a config compiled to a `Rulebook`, and `decide` on a message."""

from __future__ import annotations

from proxy.rules.book import Rule, Rulebook, compile_rules
from proxy.rules.decide import assessed, decide, decide_direct, decide_not_direct

__all__ = [
    "Rule", "Rulebook", "assessed", "compile_rules", "decide", "decide_direct",
    "decide_not_direct",
]  # fmt: skip
