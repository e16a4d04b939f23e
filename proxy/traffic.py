"""Traffic totals for whoever runs the daemon: how much came in, never what became of it.

Rules this module keeps:
1. Every message is counted, by channel, whatever its fate: held, delivered, kept, or
   refused by the next hop. Nothing here knows what a decision was.
2. No line per message: matched against the mail she received, one line per message
   named exactly the held ones (their times are the lines with no delivered message).
3. Totals are logged once per `PERIOD_SECONDS` (an hour), coarse: "under 100", "100 to 999",
   "1000 or more" a channel. A household mailbox stays in the first bucket, so a total
   cannot be set against what she received to count what was held; a line at every
   period, busy or not, says the daemon is alive.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from proxy.logs import get_logger

PERIOD_SECONDS = 3600.0
_BUCKETS = ((100, "under 100"), (1000, "100 to 999"))
_MOST = "1000 or more"

_log = get_logger("traffic")


def bucket(count: int) -> str:
    """The coarse name of a total (rule 3)."""
    for bound, name in _BUCKETS:
        if count < bound:
            return name
    return _MOST


class Traffic:
    """Messages counted per channel since the last report."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, channel: str) -> None:
        self._counts[channel] += 1

    def report(self, channels: tuple[str, ...]) -> dict[str, str]:
        """Each channel's bucket since the last report; the counts start again."""
        counts, self._counts = self._counts, Counter()
        return {channel: bucket(counts[channel]) for channel in channels}

    async def log_every(self, channels: tuple[str, ...], period: float = PERIOD_SECONDS) -> None:
        """Log the totals of `channels` once a period until cancelled (rule 3)."""
        while True:
            await asyncio.sleep(period)
            _log.info("traffic", period_seconds=int(period), **self.report(channels))
