"""The held-items list's query: dates, person, channel, page and time zone, checked.

Rules this module keeps:
1. Pure: query values in, a `ListQuery` or a `FilterProblem` out. No clock, no disk.
2. Every value is checked before the archive is opened: a bad one is one clear line for
   the page (never a 500), naming the field and what it takes, and nothing is listed.
3. Dates are whole days in UTC (as `Selection` keeps them); `tz` only changes how
   received times are shown.
4. A message never echoes more than a short prefix of what was given.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy.access.reading import Selection
from proxy.errors import NocontactError
from proxy.message import Channel

PAGE_SIZE = 100
MAX_PAGE = 100_000
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
UTC_ZONE = ZoneInfo("UTC")


class FilterProblem(NocontactError):
    """A filter value the list cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ListQuery:
    """What the list shows: which items, which page of them, in which time zone."""

    selection: Selection = field(default_factory=Selection)
    page: int = 1
    tz: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    @property
    def skip(self) -> int:
        return (self.page - 1) * PAGE_SIZE

    def link(self, page: int) -> str:
        """The list's query string for `page` with the same filters."""
        chosen = self.selection
        values = {"since": chosen.since, "until": chosen.until, "person": chosen.person,
                  "channel": chosen.channel, "tz": None if self.tz == "UTC" else self.tz,
                  "page": page}  # fmt: skip
        return "?" + urlencode({k: str(v) for k, v in values.items() if v is not None})


def _short(value: str) -> str:
    return repr(value[:40])


def _day(query: Mapping[str, str], name: str) -> date | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise FilterProblem(f"{name}: {_short(value)} is not a date like 2026-03-01") from None


def parse_query(query: Mapping[str, str], *, people: Collection[str]) -> ListQuery:
    """The list's query from the request's query parameters (rule 2); `people` are the
    config's person ids."""
    since, until = _day(query, "since"), _day(query, "until")
    if since and until and since > until:
        raise FilterProblem("since is after until: no day is both")
    person = query.get("person", "").strip() or None
    if person is not None and person not in people:
        raise FilterProblem(f"person: {_short(person)} is not a person in the config")
    channel = query.get("channel", "").strip() or None
    if channel is not None and channel not in {c.value for c in Channel}:
        choices = ", ".join(c.value for c in Channel)
        raise FilterProblem(f"channel: {_short(channel)} is not one of {choices}")
    page_text = query.get("page", "").strip() or "1"
    whole = page_text.isascii() and page_text.isdigit() and len(page_text) <= len(str(MAX_PAGE))
    if not whole or not 1 <= int(page_text) <= MAX_PAGE:
        raise FilterProblem(f"page: {_short(page_text)} is not a page number (1, 2, …)")
    tz = query.get("tz", "").strip() or "UTC"
    if not _ZONE.fullmatch(tz) or len(tz) > 64:
        raise FilterProblem(f"tz: {_short(tz)} is not a time zone like Europe/Berlin")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise FilterProblem(f"tz: {_short(tz)} is not a time zone like Europe/Berlin") from None
    selection = Selection(since=since, until=until, person=person, channel=channel)
    return ListQuery(selection=selection, page=int(page_text), tz=tz)
