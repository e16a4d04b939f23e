"""Burst and first-contact detection (proxy/alerts/burst.py, proxy/alerts/history.py)."""

from __future__ import annotations

import math

import pytest

from proxy.alerts.burst import MIN_HISTORY_HOURS, is_burst, poisson_tail
from proxy.alerts.history import BURST, MAX_RECENT, NEW_CHANNEL, NEW_IDENTITY, History

HOUR = 3600.0
DAY = 24 * HOUR
KEY = b"k" * 32


@pytest.mark.parametrize(
    ("k", "mu", "expected"),
    [
        (0, 3.0, 1.0),
        (1, 2.0, 1 - math.exp(-2.0)),
        (3, 1.0, 1 - math.exp(-1.0) * (1 + 1 + 0.5)),
        (5, 0.0, 0.0),
    ],
)
def test_poisson_tail_matches_the_closed_form(k: int, mu: float, expected: float) -> None:
    """The upper tail equals 1 minus the CDF below k, computed by hand."""
    assert poisson_tail(k, mu) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_poisson_tail_is_exact_enough_far_out() -> None:
    """Large k and mu neither overflow nor lose the tail (log-space terms)."""
    assert 0 < poisson_tail(400, 100.0) < 1e-60
    assert poisson_tail(100, 100.0) == pytest.approx(0.5133, abs=1e-3)


def _history(times: list[float], *, channel: str = "sms", identity: str = "+15550100199"
             ) -> tuple[History, list[tuple[str, ...]]]:  # fmt: skip
    history, found = History(KEY), []
    for t in times:
        reasons = history.observe("mark", channel=channel, identity=identity, now=t)
        found.append(tuple(r.code for r in reasons))
    return history, found


def test_a_quiet_person_then_a_burst_is_elevated() -> None:
    """One item a week for four weeks, then five in half an hour: the burst is flagged."""
    quiet = [week * 7 * DAY for week in range(4)]
    burst = [quiet[-1] + 2 * DAY + minute * 360 for minute in range(5)]
    _, found = _history(quiet + burst)
    assert all("burst" not in codes for codes in found[:6])
    assert "burst" in found[-1]


def test_a_steady_high_rate_person_is_not_a_burst() -> None:
    """Twelve items a day, every two hours, for a month: his normal, never a burst."""
    steady = [n * 2 * HOUR for n in range(12 * 30)]
    _, found = _history(steady)
    assert not any("burst" in codes for codes in found)


def test_no_verdict_without_enough_history() -> None:
    """Ten items in his first hour: no baseline yet (rule 3), so no burst."""
    assert MIN_HISTORY_HOURS >= 24
    _, found = _history([60.0 * n for n in range(10)])
    assert not any("burst" in codes for codes in found)


def test_a_handful_is_never_a_burst() -> None:
    """Two items in an hour after months of silence stay under the window's minimum."""
    times = [0.0, 90 * DAY, 90 * DAY + 60]
    assert not is_burst(first_held=0.0, times=times[1:], before=1, now=times[-1])


def test_first_contact_on_a_new_channel_or_identity() -> None:
    """The first item on a channel, or from an identity, raises its reason once."""
    history = History(KEY)
    first = history.observe("mark", channel="sms", identity="+15550100199", now=0.0)
    assert set(first) == {NEW_CHANNEL, NEW_IDENTITY}
    assert history.observe("mark", channel="sms", identity="+15550100199", now=DAY) == ()
    assert history.observe("mark", channel="smtp", identity="+15550100199", now=2 * DAY) == (
        NEW_CHANNEL,
    )
    assert history.observe("mark", channel="smtp", identity="M@x.example", now=3 * DAY) == (
        NEW_IDENTITY,
    )
    assert history.observe("mark", channel="smtp", identity="m@X.example", now=4 * DAY) == ()
    assert history.observe(None, channel="imap", identity="x@y.example", now=5 * DAY) == ()
    assert BURST.tier == NEW_CHANNEL.tier


def test_history_round_trips_and_names_no_identity() -> None:
    """`dump` keeps identities only as keyed hashes; `load` restores what it dumped and
    ignores garbage."""
    history, _ = _history([0.0, HOUR], identity="+15550100199")
    dumped = history.dump()
    assert "15550100199" not in repr(dumped)
    again = History.load(KEY, dumped)
    assert again.dump() == dumped
    assert History.load(KEY, {"x": {"first": "no"}, "y": 3}).dump() == {}
    assert History.load(KEY, None).dump() == {}


def test_recent_times_are_bounded() -> None:
    """A flood keeps at most MAX_RECENT times; the rest are counted (rule 1)."""
    history, _ = _history([float(n) for n in range(MAX_RECENT + 50)])
    person = history.people["mark"]
    assert len(person.recent) == MAX_RECENT
    assert person.before + len(person.recent) == MAX_RECENT + 50
