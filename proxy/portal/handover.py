"""Sending something from the portal (a released item or a relayed summary to her, a
reply to him): custody first, then delivery, and a failed delivery recorded too.

Rules this module keeps:
1. Custody first: the action's custody record is stored and read back before anything is
   sent (recording.py); if it cannot be, `hand_over` raises and nothing is sent.
2. A delivery that fails is recorded as `<action>-failed` with the reason (bounded to a
   custody reason's length), so the log shows the attempt did not reach her; whether that
   second record could be made is returned, for the page to say what the log now says.
3. Recording runs on a worker thread (decryption, fsync); delivery is the channel's own
   code (access/delivery.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.access import delivery
from proxy.access.keys import IdentityProblem
from proxy.access.reading import AccessProblem
from proxy.access.recording import record
from proxy.archive.custody_keys import MAX_REASON
from proxy.custody import CustodyProblem

PROBLEMS = (AccessProblem, CustodyProblem, IdentityProblem)


@dataclass(frozen=True, slots=True)
class NotSent:
    """A delivery that failed (rule 2): why, and whether the failure is in the log."""

    failure: delivery.NotDelivered
    recorded: bool


async def hand_over(
    root: Path, identity: Any, sequence: int, route: delivery.Route, *, action: str,
    reason: str,
) -> NotSent | None:  # fmt: skip
    """Record `action` for item `sequence`, then deliver `route`: None once delivered,
    `NotSent` if the delivery failed; one of `PROBLEMS` (nothing sent) if the custody
    record could not be made (rule 1)."""
    await asyncio.to_thread(_record, root, identity, action, sequence, reason)
    try:
        await delivery.deliver(route)
    except delivery.NotDelivered as failed:
        try:
            await asyncio.to_thread(_record, root, identity, f"{action}-failed", sequence,
                                    str(failed)[:MAX_REASON])  # fmt: skip
        except PROBLEMS:
            return NotSent(failed, recorded=False)
        return NotSent(failed, recorded=True)
    return None


def _record(root: Path, identity: Any, action: str, sequence: int, reason: str) -> None:
    record(root, identity, action=action, items=[sequence], reason=reason)
