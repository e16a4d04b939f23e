"""What a contact sees of the held items, custody recorded first: for the CLI and the portal.

Rules this module keeps:
1. Custody first: `held_list` and `held_item` return what is to be shown only after
   the custody record of that look is durable and read back (recording.py). If it cannot
   be recorded, `CustodyProblem` is raised and nothing is returned.
2. Values out, no printing: `contact list/show` print them as text, the portal as HTML.
3. A row carries only what a listing shows (no payload): the originals are let go one by
   one as the listing is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from proxy.access.reading import AccessProblem, Selection, open_archive
from proxy.access.recording import record
from proxy.access.render import Part, parts, render, sender_as_written, summary


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One held item as a listing shows it."""

    sequence: int
    received_at: datetime
    channel: str
    sender: str
    first_line: str
    rule: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """The held items this key opens, and how many are sealed only to other contacts."""

    rows: tuple[Row, ...]
    unreadable: int
    selected: int = 0  # items the selection admits, shown or not (rows is one page of them)


def held_list(
    root: Path, identity: Any, selection: Selection | None = None, *, skip: int = 0,
    limit: int | None = None,
) -> Listing:  # fmt: skip
    """The rows of the held items `identity` opens that `selection` admits, after the first
    `skip` of them and at most `limit`; custody ("list") recorded first, for exactly the
    rows returned."""
    archive = open_archive(root, identity)
    rows: list[Row] = []
    selected = 0
    for item in archive.items(selection):
        selected += 1
        if selected <= skip or (limit is not None and len(rows) >= limit):
            continue  # counted, not shown: no custody for it, and no rendering either
        rows.append(Row(
            sequence=item.sequence, received_at=item.received_at, channel=item.channel,
            sender=sender_as_written(item.metadata, item.payload, item.sender),
            first_line=summary(item.metadata, item.payload), rule=item.rule_id or "-",
        ))  # fmt: skip
    record(root, identity, action="list", items=[row.sequence for row in rows])
    return Listing(rows=tuple(rows), unreadable=archive.unreadable, selected=selected)


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemView:
    """One held item as a page shows it: its safe rendering and its parts (attachments,
    MMS pictures, voicemail audio), numbered from 1 as `held_part` takes them."""

    text: str
    parts: tuple[Part, ...]


def held_view(root: Path, identity: Any, sequence: int) -> ItemView:
    """Item `sequence`'s rendering and parts; custody ("show") recorded first."""
    item = open_archive(root, identity).item(sequence)
    if item is None:
        raise AccessProblem(f"no held item {sequence} that this key opens (see `contact list`)")
    record(root, identity, action="show", items=[item.sequence])
    return ItemView(text=render(item.metadata, item.payload),
                    parts=tuple(parts(item.metadata, item.payload)))  # fmt: skip


def held_item(root: Path, identity: Any, sequence: int) -> str:
    """The safe text rendering of item `sequence`; custody ("show") recorded first."""
    return held_view(root, identity, sequence).text


def held_part(root: Path, identity: Any, sequence: int, number: int) -> Part:
    """Part `number` (from 1) of item `sequence`; custody ("show" of the item) recorded
    first, and only when there is such a part."""
    item = open_archive(root, identity).item(sequence)
    found = parts(item.metadata, item.payload) if item is not None else []
    if not 1 <= number <= len(found):
        raise AccessProblem(f"no part {number} of a held item {sequence} that this key opens")
    record(root, identity, action="show", items=[sequence])
    return found[number - 1]
