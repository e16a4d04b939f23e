"""Which recipients a message already reached, when the next hop took it only in part.

An SMTP client gets one reply to DATA for all its recipients. When the next hop takes a
message for some of them and defers the rest, the only safe reply is a 4xx (nothing of it
may be lost), and the sender's retry then brings the whole message again.

Rules this module keeps:
1. A partial delivery is remembered: the message (SHA-256 of its bytes and envelope
   sender) -> the recipients that have it. Its retry goes only to the others; once none
   are left it is answered 250 without a delivery. So partial acceptance never makes a
   duplicate in anyone's mailbox.
2. Bounded: an entry lasts `KEEP_SECONDS` (5 days, as long as senders retry), at most
   `MOST` entries (the oldest go first). In memory only: after a restart a retry may
   reach a recipient twice, once; never is a recipient skipped who did not get it.
3. Free when unused: with nothing remembered, no message is hashed.
4. Only mail the rules let through is ever delivered, so nothing here concerns held mail.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

KEEP_SECONDS = 5 * 24 * 3600.0
MOST = 10_000


def _key(data: bytes, sender: str) -> bytes:
    digest = hashlib.sha256(data)
    digest.update(b"\0" + sender.encode("utf-8", "surrogateescape"))
    return digest.digest()


class Delivered:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reached: OrderedDict[bytes, tuple[frozenset[str], float]] = OrderedDict()

    def remaining(self, data: bytes, sender: str, recipients: Sequence[str]) -> list[str]:
        """The recipients this message has yet to reach (rule 1)."""
        if not self._reached:
            return list(recipients)
        known = self._reached.get(_key(data, sender))
        if known is None or known[1] < self._clock():
            return list(recipients)
        return [r for r in recipients if r not in known[0]]

    def reached(self, data: bytes, sender: str, recipients: Sequence[str]) -> None:
        """These recipients have the message now (a delivery in part, or a retry's rest)."""
        key = _key(data, sender)
        before = self._reached.pop(key, (frozenset(), 0.0))[0]
        self._reached[key] = (before | frozenset(recipients), self._clock() + KEEP_SECONDS)
        while len(self._reached) > MOST:
            self._reached.popitem(last=False)
