"""Fuzz target: an email, as the SMTP and IMAP channels receive it: normalize, decide, seal.

The input is the whole message, bytes as they came off the wire. For each input this
checks that:
1. `normalize_email` returns (never raises), both on the whole message and with
   `headers_only` (the orchestrator's cheap first look), with and without an envelope sender;
2. `decide` returns a `Decision` for each, with the rulebook of `fuzz.invariants`;
3. every string in the messages and decisions encodes as UTF-8 (no lone surrogates);
4. each message seals as the archive seals it, and the seal opens to the same metadata and
   the message's exact bytes;
5. all of it takes under `fuzz.invariants.LIMIT_SECONDS`.

Seeds: CPython's email test messages, the hostile seeds in fuzz/seeds/email. Run with
`scripts/fuzz email [SECONDS]`.
"""

from __future__ import annotations

from fuzz.invariants import RECEIVED_AT, assert_seals, assert_utf8, guarded, rulebook, timed
from proxy.normalize import normalize_email
from proxy.rules import decide

RULES = rulebook()


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one message."""
    with timed(len(data)):
        for headers_only, envelope_sender in ((False, ""), (True, "friend@example.org")):
            message = normalize_email(
                data,
                envelope_sender=envelope_sender,
                received_at=RECEIVED_AT,
                default_region="US",
                headers_only=headers_only,
            )
            decision = decide(message, RULES)
            assert_utf8(message, "message")
            assert_utf8(decision, "decision")
            assert_seals(message, decision)


test_one_input = guarded(check)
