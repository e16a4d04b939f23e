"""Fuzz target for testing the fuzz harness itself: it breaks on any input holding b"canary".

tests/test_fuzz.py seeds it with such an input and checks that `fuzz.run` reports the
finding, the input's file and the exception: a harness that missed it would let every
other target pass whatever they did.
"""

from __future__ import annotations

from fuzz.invariants import InvariantBroken, guarded


def check(data: bytes) -> None:
    """Raise on the canary, and only on it."""
    if b"canary" in data:
        raise InvariantBroken("the canary was found")


test_one_input = guarded(check)
