"""When digests go out, and when quiet hours make the non-urgent tiers wait.

Rules this module keeps:
1. Times in config are local times of `alerts.timezone` (an IANA zone); everything here
   takes and returns aware UTC datetimes, converting through `zoneinfo`, so a change of
   daylight saving time moves nothing by an hour. A local time a DST jump skips is taken
   as the instant just after it (zoneinfo's fold=0 reading); one that occurs twice is
   taken at its first occurrence.
2. `next_digest(after)` is the first scheduled digest strictly after `after`: daily at
   `at`, or weekly on `weekday` at `at`; None when digests are off.
3. Quiet hours run from `start` to `end`, across midnight when `end` is not later than
   `start`. `after_quiet(t)` is `t` itself outside them, else the moment they end. Urgent
   alerts never ask (the service's rule).
4. Pure: no clock read here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from proxy.config.model import DigestSchedule, QuietHours

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _clock(written: str) -> time:
    hours, minutes = written.split(":")
    return time(int(hours), int(minutes))


def _at(day: date, moment: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local `moment` on `day` in `zone` (rule 1)."""
    return datetime.combine(day, moment, tzinfo=zone).astimezone(UTC)


def next_digest(after: datetime, schedule: DigestSchedule, zone: ZoneInfo) -> datetime | None:
    """The first digest time strictly after `after` (rule 2)."""
    if schedule.every == "off":
        return None
    moment = _clock(schedule.at)
    day = after.astimezone(zone).date()
    for offset in range(9):
        candidate = day + timedelta(days=offset)
        if schedule.every == "weekly" and _WEEKDAYS[candidate.weekday()] != schedule.weekday:
            continue
        at = _at(candidate, moment, zone)
        if at > after:
            return at
    raise AssertionError("a digest time is always found within 9 days")  # unreachable


def after_quiet(when: datetime, quiet: QuietHours | None, zone: ZoneInfo) -> datetime:
    """`when`, or the end of the quiet hours it falls in (rule 3)."""
    if quiet is None:
        return when
    start, end = _clock(quiet.start), _clock(quiet.end)
    if start == end:
        return when
    local = when.astimezone(zone)
    today = local.date()
    now = local.time().replace(tzinfo=None)
    if start < end:
        inside, ends_on = start <= now < end, today
    else:  # across midnight
        inside = now >= start or now < end
        ends_on = today + timedelta(days=1) if now >= start else today
    return _at(ends_on, end, zone) if inside else when
