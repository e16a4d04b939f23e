"""Asking one witness to cosign one checkpoint (the client side of C2SP tlog-witness).

Rules this module keeps:
1. One POST to <url>/add-checkpoint with `request.format_request`'s body; the answer is a
   value, never an exception: `Cosigned` (the lines that verify by the configured witness
   key, at least one), `Conflict` (the size the witness last cosigned, from a 409), or
   `Unanswered` (anything else: a refusal, a fault, a timeout, a reply not in format).
2. The witness's reply is untrusted: at most `MOST_RESPONSE_BYTES` are read, lines by
   other keys are dropped, and a line by the configured key that does not verify makes
   the whole answer `Unanswered`.
3. Every request has a deadline (`TIMEOUT_SECONDS`); nothing here waits longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from proxy.witness.cosignature import CosignatureError, WitnessKey
from proxy.witness.request import (
    MOST_RESPONSE_BYTES,
    SIZE_TYPE,
    format_request,
    read_cosignatures,
    read_size,
)
from proxy.witness.signed import Malformed

TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class Cosigned:
    """The witness cosigned: its verified signature lines, each ending in a newline."""

    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    """The witness last cosigned this size, not the old size we sent."""

    size: int


@dataclass(frozen=True, slots=True)
class Unanswered:
    """No cosignature; `why` is a fixed phrase or the HTTP status."""

    why: str


Answer = Cosigned | Conflict | Unanswered


def checked(lines: Sequence[str], body: str, key: WitnessKey) -> Answer:
    """The lines by `key` that verify over `body` (rule 2)."""
    kept: list[str] = []
    for line in lines:
        try:
            cosigned = key.check(line, body)
        except CosignatureError:
            return Unanswered("a cosignature that does not verify")
        if cosigned is not None:
            kept.append(line + "\n")
    return Cosigned(tuple(kept)) if kept else Unanswered("no cosignature by the witness's key")


async def _bounded(stream: aiohttp.StreamReader, most: int) -> bytes:
    """The body, or its first `most` bytes if it is longer (rule 2)."""
    data = bytearray()
    while len(data) < most:
        chunk = await stream.read(most - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def ask(
    session: aiohttp.ClientSession, url: str, key: WitnessKey, *,
    note: bytes, body: str, old_size: int, proof: Sequence[bytes],
) -> Answer:  # fmt: skip
    """Submit `note` (whose text is `body`) to the witness at `url` (rule 1)."""
    target = url.rstrip("/") + "/add-checkpoint"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with session.post(
            target, data=format_request(old_size, proof, note), timeout=timeout
        ) as response:
            data = await _bounded(response.content, MOST_RESPONSE_BYTES + 1)
            if response.status == 409 and response.content_type == SIZE_TYPE:
                return Conflict(read_size(data))
            if response.status != 200:
                return Unanswered(f"HTTP {response.status}")
            return checked(read_cosignatures(data), body, key)
    except Malformed:
        return Unanswered("a reply not in format")
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
        return Unanswered("unreachable")
