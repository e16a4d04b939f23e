"""Which messages to fetch together: batches bounded by bytes, not only by count.

Rules this module keeps:
1. Pure: UIDs and the sizes the server announced (RFC822.SIZE) in, batches out.
2. Batches keep UID order, and every UID asked for is in exactly one batch.
3. A batch holds at most `most` messages and, by the announced sizes, at most `budget`
   bytes; a message larger than `budget` is fetched alone. A size the server did not
   announce (or announced as nonsense) counts as `budget`, so that message goes alone.
   The budget bounds memory only: a server that lies about sizes costs memory, never
   correctness, because what is handled is whatever the body fetch returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BUDGET = 16 << 20  # bytes of message bodies per FETCH
MOST = 200  # messages per FETCH: few round trips on a folder of small mail


def plan(
    uids: Iterable[int], sizes: Mapping[int, object], *, budget: int = BUDGET, most: int = MOST
) -> list[list[int]]:
    """`uids` in UID order, cut into batches of at most `most` and (by `sizes`) `budget`."""
    batches: list[list[int]] = []
    batch: list[int] = []
    used = 0
    for uid in sorted(set(uids)):
        size = _size(sizes.get(uid), budget)
        if batch and (len(batch) >= most or used + size > budget):
            batches.append(batch)
            batch, used = [], 0
        batch.append(uid)
        used += size
    if batch:
        batches.append(batch)
    return batches


def _size(announced: object, budget: int) -> int:
    """What a message counts for: its announced size, or `budget` if it gave none."""
    if isinstance(announced, int) and not isinstance(announced, bool) and announced >= 0:
        return announced
    return budget
