"""A burst: a person holding far more items now than his own long-run rate explains.

Rules this module keeps:
1. The model: held items from one person arrive as a Poisson process with a rate of his
   own, λ per hour. His baseline is estimated from the history *before* the window being
   judged (a burst must not raise its own baseline): λ = max(n, 1) / t, where n items were
   held in the t hours from his first held item to the window's start. The max(n, 1)
   floor keeps a silent history from making any single item a burst.
2. The test: for each window w (`WINDOWS`: the last hour and the last day), with k items
   held in it and μ = λ·w expected, the upper tail P(X ≥ k | μ) of the Poisson law. A
   window is a burst when that tail is below `ALPHA` (1 in 1,000) and k is at least the
   window's minimum count (3 in an hour, 6 in a day): a handful is never a burst, however
   quiet he was. The tail is summed in log space (lgamma), so large k and μ are exact
   enough and never overflow.
3. Minimum history: with less than `MIN_HISTORY_HOURS` (72 h) before the window, there is
   no baseline and no verdict (his first items are flagged as first contact instead).
4. Pure: timestamps and `now` in, a verdict out. No clock, no IO.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 1e-3
MIN_HISTORY_HOURS = 72.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    hours: float
    minimum: int  # fewer held items than this in the window is never a burst (rule 2)


WINDOWS = (Window(hours=1.0, minimum=3), Window(hours=24.0, minimum=6))


def poisson_tail(k: int, mu: float) -> float:
    """P(X ≥ k) for X ~ Poisson(mu) (rule 2)."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    log_mu, total, i = math.log(mu), 0.0, k
    while True:
        term = math.exp(-mu + i * log_mu - math.lgamma(i + 1))
        total += term
        i += 1
        if i > mu and term < total * 1e-12:  # past the mode the terms only shrink
            return min(1.0, total)


def is_burst(*, first_held: float, times: Sequence[float], before: int, now: float) -> bool:
    """Whether the items held at `times` (seconds since the epoch; those of the last day at
    least) are a burst against the rate of his history. `first_held` is when his first
    item was held, and `before` how many of his items were held before the last day."""
    for window in WINDOWS:
        start = now - window.hours * 3600
        k = sum(1 for t in times if t > start)
        history_hours = (start - first_held) / 3600
        if k < window.minimum or history_hours < MIN_HISTORY_HOURS:
            continue
        n = before + sum(1 for t in times if t <= start)
        rate = max(n, 1) / history_hours
        if poisson_tail(k, rate * window.hours) < ALPHA:
            return True
    return False
