"""Fuzz target: a text message (sender and body) through normalize_sms, decide and seal.

The input is UTF-8 (read with errors replaced, as the webhook's form parsing does): its
first line is the sender as the carrier reported it (a number in any form, or an
alphanumeric sender id), the rest is the text. For each input, in the default regions
US, GB and none, this checks that:
1. `normalize_sms` returns and `decide` returns a `Decision` (neither raises);
2. the forwarded texts (`forward_bodies`) are built without raising;
3. every string in the message, the decision and the forwards encodes as UTF-8;
4. each message seals, and the seal opens to the same metadata and bytes;
5. all of it takes under `fuzz.invariants.LIMIT_SECONDS`.

Run with `scripts/fuzz sms [SECONDS]`.
"""

from __future__ import annotations

from fuzz.invariants import RECEIVED_AT, assert_seals, assert_utf8, guarded, rulebook, timed
from proxy.channels.sms.line import forward_bodies
from proxy.normalize import normalize_sms
from proxy.rules import decide

RULES = rulebook()
_REGIONS = ("US", "GB", None)


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one sender and text."""
    sender, _, text = data.decode("utf-8", "replace").partition("\n")
    with timed(len(data)):
        for region in _REGIONS:
            message = normalize_sms(
                sender=sender,
                recipient="+15550100111",
                text=text,
                raw=data,
                received_at=RECEIVED_AT,
                default_region=region,
                provider_id="SM00000000000000000000000000000000",
            )
            decision = decide(message, RULES)
            assert_utf8(message, "message")
            assert_utf8(decision, "decision")
            assert_seals(message, decision)
        assert_utf8(forward_bodies(sender, text), "forwards")


test_one_input = guarded(check)
