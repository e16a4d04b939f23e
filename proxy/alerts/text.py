"""What an alert or a digest says: the tier, where to look, and the signed checkpoint.

Rules this module keeps:
1. Content-free: a title and body made only of fixed words, the tier, the reasons' fixed
   codes (tiers.py rule 2), sequence numbers, counts (digests), times, the acknowledgement
   code, the portal's address or the archive's path, and the checkpoint note. Never a
   name, an address, a number, a subject or a word of any message: the values this
   module is given cannot carry them (an `Alert` has no field for content).
2. People appear in a digest as "person N", their place in the config's `people` list:
   a transport (a shared ntfy topic, a phone's lock screen) must not show his name; the
   portal's report says who N is.
3. Where to look: with a portal, `<public_url>/items/<sequence>` (and, for an urgent
   alert, `<public_url>/alerts/<code>` to acknowledge it, logged in); without one, the
   `nocontact contact show` command for that item and `nocontact alerts ack`.
4. Every alert and digest ends with the archive's latest signed checkpoint, the C2SP
   signed note as in the `checkpoint` file, so each contact keeps a copy of the log's
   history off the server (`nocontact verify --checkpoint` checks one).
5. Pure: values in, text out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from proxy.alerts.tiers import Tier


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert about one held item (rule 1: no field for content)."""

    tier: Tier
    sequence: int
    reasons: tuple[str, ...]  # fixed codes, e.g. "urgent:threat"
    code: str = ""  # an urgent alert's acknowledgement code
    repeat: int = 0  # how many times it was sent unacknowledged before


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """Counts since the last digest (rule 2)."""

    since: datetime
    until: datetime
    by_channel: Mapping[str, int]
    by_person: Mapping[int, int]  # place in config's people (1-based) -> count


@dataclass(frozen=True, slots=True, kw_only=True)
class Where:
    """Where a contact looks: the portal, or the archive for the CLI (rule 3)."""

    portal: str | None
    archive: str
    zone: ZoneInfo


def alert_text(alert: Alert, where: Where, checkpoint: str) -> tuple[str, str]:
    """(title, body) of an alert."""
    label = alert.tier.label
    again = f" (repeated: not acknowledged, {alert.repeat})" if alert.repeat else ""
    lines = [f"A held item is {label}{again}."]
    if alert.reasons:
        lines.append("Why: " + ", ".join(alert.reasons))
    if where.portal is not None:
        base = where.portal.rstrip("/")
        lines.append(f"Open it: {base}/items/{alert.sequence}")
        if alert.code:
            lines.append(f"Acknowledge (logged in): {base}/alerts/{alert.code}")
    else:
        lines.append(f"Open it: nocontact contact show --archive {where.archive} "
                     f"--identity YOUR-KEY {alert.sequence}")  # fmt: skip
        if alert.code:
            lines.append(f"Acknowledge: nocontact alerts ack --archive {where.archive} "
                         f"{alert.code}")  # fmt: skip
    if alert.code:
        lines.append(f"Acknowledgement code: {alert.code}")
    return f"nocontact: {label}", _with_checkpoint(lines, checkpoint)


def digest_text(digest: Digest, where: Where, checkpoint: str) -> tuple[str, str]:
    """(title, body) of a digest."""
    since = digest.since.astimezone(where.zone).strftime("%Y-%m-%d %H:%M %Z")
    total = sum(digest.by_channel.values())
    lines = [f"Held since {since}: {total}."]
    if total:
        lines.append("By channel: " + ", ".join(
            f"{channel} {count}" for channel, count in sorted(digest.by_channel.items())
        ))  # fmt: skip
    if digest.by_person:
        lines.append("By person: " + ", ".join(
            f"person {place} {count}" for place, count in sorted(digest.by_person.items())
        ))  # fmt: skip
    if where.portal is not None:
        lines.append(f"The portal: {where.portal.rstrip('/')}/items")
    else:
        lines.append(f"List them: nocontact contact list --archive {where.archive} "
                     "--identity YOUR-KEY")  # fmt: skip
    return "nocontact: digest", _with_checkpoint(lines, checkpoint)


def _with_checkpoint(lines: list[str], checkpoint: str) -> str:
    if checkpoint:
        lines += ["", "The archive's signed checkpoint (keep it: it proves what the "
                  "archive held):", checkpoint.rstrip("\n")]  # fmt: skip
    return "\n".join(lines) + "\n"
