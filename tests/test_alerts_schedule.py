"""Digest times and quiet hours in the configured time zone (proxy/alerts/schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from proxy.alerts.schedule import after_quiet, next_digest
from proxy.config.model import DigestSchedule, QuietHours

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("after", "zone", "expected"),
    [
        (_utc(2026, 3, 2, 12, 0), NEW_YORK, _utc(2026, 3, 2, 13, 0)),  # 08:00 EST = 13:00 UTC
        (_utc(2026, 3, 2, 14, 0), NEW_YORK, _utc(2026, 3, 3, 13, 0)),  # past it: the next day
        (_utc(2026, 3, 2, 13, 0), NEW_YORK, _utc(2026, 3, 3, 13, 0)),  # strictly after
        (_utc(2026, 3, 8, 11, 0), NEW_YORK, _utc(2026, 3, 8, 12, 0)),  # spring forward: EDT
        (_utc(2026, 7, 1, 0, 0), BERLIN, _utc(2026, 7, 1, 6, 0)),  # 08:00 CEST = 06:00 UTC
    ],
)
def test_daily_digest_at_local_time(after: datetime, zone: ZoneInfo, expected: datetime) -> None:
    """A daily digest goes out at 08:00 local time, DST included (rules 1-2)."""
    schedule = DigestSchedule(every="daily", at="08:00")
    assert next_digest(after, schedule, zone) == expected


def test_weekly_digest_on_its_weekday() -> None:
    """A weekly digest waits for its weekday (2026-03-02 is a Monday)."""
    schedule = DigestSchedule(every="weekly", at="18:30", weekday="friday")
    assert next_digest(_utc(2026, 3, 2, 9, 0), schedule, BERLIN) == _utc(2026, 3, 6, 17, 30)
    assert next_digest(_utc(2026, 3, 6, 17, 30), schedule, BERLIN) == _utc(2026, 3, 13, 17, 30)


def test_digest_off() -> None:
    """Digests off: none is ever due."""
    assert next_digest(_utc(2026, 3, 2), DigestSchedule(every="off"), BERLIN) is None


QUIET = QuietHours(start="22:00", end="07:00")


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (_utc(2026, 3, 2, 20, 0), _utc(2026, 3, 2, 20, 0)),  # 21:00 Berlin: not quiet
        (_utc(2026, 3, 2, 21, 0), _utc(2026, 3, 3, 6, 0)),  # 22:00 Berlin: until 07:00
        (_utc(2026, 3, 2, 23, 30), _utc(2026, 3, 3, 6, 0)),  # 00:30: the same night
        (_utc(2026, 3, 3, 5, 59), _utc(2026, 3, 3, 6, 0)),  # 06:59
        (_utc(2026, 3, 3, 6, 0), _utc(2026, 3, 3, 6, 0)),  # 07:00: over
    ],
)
def test_quiet_hours_across_midnight(when: datetime, expected: datetime) -> None:
    """Quiet from 22:00 to 07:00 Berlin time: inside, wait until 07:00 (rule 3)."""
    assert after_quiet(when, QUIET, BERLIN) == expected


def test_quiet_hours_within_a_day_and_none() -> None:
    """Quiet 13:00-14:00 New York time; no quiet hours at all waits for nothing."""
    lunch = QuietHours(start="13:00", end="14:00")
    assert after_quiet(_utc(2026, 3, 2, 18, 30), lunch, NEW_YORK) == _utc(2026, 3, 2, 19, 0)
    assert after_quiet(_utc(2026, 3, 2, 19, 0), lunch, NEW_YORK) == _utc(2026, 3, 2, 19, 0)
    assert after_quiet(_utc(2026, 3, 2, 18, 30), None, NEW_YORK) == _utc(2026, 3, 2, 18, 30)
