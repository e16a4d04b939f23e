"""What a contact sees of the held items, custody recorded first: for the CLI and the portal.

Rules this module keeps:
1. Custody first: `held_list` and `held_item` return what is to be shown only after
   the custody record of that look is durable and read back (recording.py). If it cannot
   be recorded, `CustodyProblem` is raised and nothing is returned.
2. Values out, no printing: `contact list/show` print them as text, the portal as HTML.
3. A row carries only what a listing shows (no payload): the originals are let go one by
   one as the listing is read.
4. A `HeldIndex` keeps the rows a key opens between listings (the portal keeps one per
   session, in memory only): each listing still verifies the archive first, then reads
   and decrypts only the entries its latest checkpoint covers beyond those indexed, and
   only if the verified log still begins with the tree the index was built from (else the
   index is rebuilt from the first entry). Filters and pages then work on the rows, and
   the custody log on the custody records it met on the way; among them the release
   records (custody actions "release" and "release-failed"), so a release can tell from
   the log whether an item was released already (release.py) without reading it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from proxy.access.reading import (
    WRONG_KEY,
    AccessProblem,
    CustodyEntry,
    OpenedArchive,
    Selection,
    open_archive,
)
from proxy.access.recording import record
from proxy.access.render import Part, parts, render, sender_as_written, summary
from proxy.archive.metadata import SealedCustody, SealedItem

RELEASE_ACTIONS = frozenset({"release", "release-failed"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One held item as a listing shows it (and `person`, which a selection looks at)."""

    sequence: int
    received_at: datetime
    channel: str
    sender: str
    first_line: str
    rule: str
    person: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """The held items this key opens, and how many are sealed only to other contacts."""

    rows: tuple[Row, ...]
    unreadable: int
    selected: int = 0  # items the selection admits, shown or not (rows is one page of them)


@dataclass(slots=True)
class HeldIndex:
    """The rows of every held item one key opens, in log order, up to `size` entries of
    the log (rule 4). Safe to share between threads: one listing reads it at a time."""

    rows: list[Row] = field(default_factory=list)
    size: int = 0  # log entries read so far (the checkpoint size they were read up to)
    tree_root: bytes = b""  # the verified tree's root over those `size` entries
    unreadable: int = 0
    opened: int = 0  # entries this key opened (items and custody records)
    custody: list[tuple[int, SealedCustody]] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # entries not rows, and why
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def releases(self) -> list[tuple[int, SealedCustody]]:
        """The release records among the custody records (rule 4), in log order."""
        return [(i, entry) for i, entry in self.custody if entry.action in RELEASE_ACTIONS]

    def catch_up(self, archive: OpenedArchive) -> None:
        """Read the entries `archive` (just verified) covers beyond those indexed."""
        tree = archive.report.tree
        if self.size > archive.covered or tree.root(self.size) != self.tree_root:
            self.rows, self.size, self.unreadable, self.opened = [], 0, 0, 0  # another log
            self.custody, self.skipped = [], []
        new: list[Row] = []  # kept only once all are read: a failure leaves the index as it was
        for item in archive.items(start=self.size):
            new.append(Row(
                sequence=item.sequence, received_at=item.received_at, channel=item.channel,
                sender=sender_as_written(item.metadata, item.payload, item.sender),
                first_line=summary(item.metadata, item.payload), rule=item.rule_id or "-",
                person=item.person,
            ))  # fmt: skip
        if (self.unreadable or archive.unreadable) and not (self.opened or archive.opened):
            raise AccessProblem(WRONG_KEY)  # reading.py rule 3, over every entry read
        self.rows.extend(new)
        self.custody.extend(archive.custody_read)
        self.skipped.extend(archive.left_out)
        self.unreadable += archive.unreadable
        self.opened += archive.opened
        self.size = archive.covered
        self.tree_root = tree.root(self.size)


def held_list(
    root: Path, identity: Any, selection: Selection | None = None, *, skip: int = 0,
    limit: int | None = None, index: HeldIndex | None = None,
) -> Listing:  # fmt: skip
    """The rows of the held items `identity` opens that `selection` admits, after the first
    `skip` of them and at most `limit`; custody ("list") recorded first, for exactly the
    rows returned. `index` (rule 4) is brought up to date and kept; without one, every
    item is read for this listing only."""
    index = index if index is not None else HeldIndex()
    selection = selection or Selection()
    with index._lock:
        index.catch_up(open_archive(root, identity))
        chosen = [row for row in index.rows if selection.admits(row)]
        unreadable = index.unreadable
    rows = chosen[skip:] if limit is None else chosen[skip : skip + limit]
    record(root, identity, action="list", items=[row.sequence for row in rows])
    return Listing(rows=tuple(rows), unreadable=unreadable, selected=len(chosen))


def custody_log(root: Path, identity: Any, *, index: HeldIndex | None = None) -> list[CustodyEntry]:
    """Every custody record `identity` opens, in log order, with its signature checked;
    the look itself ("custody") recorded first. `index` (rule 4) is brought up to date."""
    index = index if index is not None else HeldIndex()
    record(root, identity, action="custody", items=[])
    with index._lock:
        archive = open_archive(root, identity)
        index.catch_up(archive)
        found = list(index.custody)
    keys = archive.custody_keys()
    return [CustodyEntry.of(sequence, entry, keys) for sequence, entry in found]


@dataclass(frozen=True, slots=True, kw_only=True)
class Contents:
    """What a bundle holds beside its items: the entries left out and why, the custody
    records (the export's own last) and the index of the export's own record."""

    left_out: list[tuple[int, str]]
    custody: list[CustodyEntry]
    own: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """An export whose custody is recorded before its first byte is written (a stream):
    the items, fixed from an index of the log, and the bundle's other contents."""

    sequences: tuple[int, ...]
    contents: Contents


def planned_export(
    root: Path, identity: Any, selection: Selection, *, reason: str, index: HeldIndex
) -> tuple[OpenedArchive, Planned]:
    """An export of the items `selection` admits, fixed from `index` (rule 4) and its
    custody ("export", with `reason`) recorded, before any of it is written: for a bundle
    streamed as it is made (bundle.py rule 4)."""
    with index._lock:
        archive = open_archive(root, identity)
        index.catch_up(archive)
        rows, skipped, custody = list(index.rows), list(index.skipped), list(index.custody)
    chosen: list[int] = []
    for row in rows:
        why = selection.why_not(row)
        if why is None:
            chosen.append(row.sequence)
        else:
            skipped.append((row.sequence, why))
    own = record(root, identity, action="export", items=chosen, reason=reason)
    keys = archive.custody_keys()
    entries = [CustodyEntry.of(sequence, entry, keys) for sequence, entry in custody]
    entries.append(CustodyEntry.of(own.index, own.record, keys))
    contents = Contents(left_out=sorted(skipped), custody=entries, own=own.index)
    return archive, Planned(sequences=tuple(chosen), contents=contents)


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemView:
    """One held item as a page shows it: its safe rendering and its parts (attachments,
    MMS pictures, voicemail audio), numbered from 1 as `held_part` takes them; and what
    its seal says (the page offers a release by it: release.py)."""

    text: str
    parts: tuple[Part, ...]
    metadata: SealedItem = field(repr=False)
    payload: bytes = field(repr=False)


def held_view(root: Path, identity: Any, sequence: int) -> ItemView:
    """Item `sequence`'s rendering and parts; custody ("show") recorded first."""
    item = open_archive(root, identity).item(sequence)
    if item is None:
        raise AccessProblem(f"no held item {sequence} that this key opens (see `contact list`)")
    record(root, identity, action="show", items=[item.sequence])
    return ItemView(text=render(item.metadata, item.payload),
                    parts=tuple(parts(item.metadata, item.payload)), metadata=item.metadata,
                    payload=item.payload)  # fmt: skip


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
