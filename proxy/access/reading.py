"""Reading a verified archive with a contact's key: the one place held items are decrypted.

Rules this module keeps:
1. Nothing is read from an archive that does not verify: `open_archive` runs the keyless
   check first (this process's follower of the archive: the whole check the first time,
   then what was added since; archive/following.py) and refuses with its reason. Only
   entries covered by the latest signed checkpoint are read, each checked against the
   verified tree as it is read, so a change made after the check is caught too.
2. Decryption happens here and nowhere else, with the identity in memory only; what is
   decrypted is handed out as values (`HeldItem`, `CustodyEntry`) and never written.
3. A key that is not one of the archive's contacts (its published `recipients`) is
   refused before any item is looked at, with the same line whether the archive is
   empty or not: a self-made key must not tell one from the other. A key that opens
   none of the items is a wrong key too (one clear line). An item sealed before this
   contact was added cannot be opened by them; it is counted, not hidden.
   A seal that decrypts but is malformed is corruption, named by its sequence number.
4. Every entry a listing does not yield is accounted for (`left_out`: its index and why:
   a checkpoint, a custody record, sealed only to other contacts, outside the dates,
   about another person), so an export can say what it left out and why.
5. Each custody record's signature is checked against the custody keys published
   beside the archive (custody_keys.py): `CustodyEntry.signed` says "verified", or
   "unsigned (older version)" for a record written before records were signed (and the
   daemon's own), or why it does not verify. A bad one is shown, never hidden.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyrage

from proxy.archive import EntryKind, VerifyFailure, VerifyReport, layout
from proxy.archive.custody_keys import read_published, signature_verifies, signed_bytes
from proxy.archive.following import Entry, follower
from proxy.archive.metadata import SealedCustody, SealedItem, rfc3339
from proxy.archive.seal import SealedFormatError, open_sealed
from proxy.custody import CustodyProblem, sign_now
from proxy.errors import NocontactError

_UNKNOWN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
WRONG_KEY = "this key is not one of the archive's contacts: is it the right key file?"
VERIFIED, UNSIGNED = "verified", "unsigned (older version)"
CHECKPOINT, CUSTODY, OTHERS = "checkpoint", "custody record", "sealed only to other contacts"
BEFORE, AFTER, OTHER_PERSON = "before --since", "after --until", "about another person"
OTHER_CHANNEL = "from another channel"
NOT_VERIFIED = "the archive does not verify, so nothing is read"
_BATCH = 512  # entries read at once: bounded memory however large the archive


class AccessProblem(NocontactError):
    """The archive cannot be read as asked; the message says why in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldItem:
    """One held item, decrypted."""

    sequence: int  # its index in the archive's log
    sealed: bytes  # the stored entry body (age ciphertext): its leaf hash is in the tree
    leaf_hash: bytes
    metadata: SealedItem
    payload: bytes  # the original, byte for byte

    @property
    def received_at(self) -> datetime:
        """When it arrived; the epoch if its seal does not say (no version wrote one so),
        so that it sorts first rather than stopping a listing."""
        return self.metadata.received_at or _UNKNOWN_TIME

    @property
    def channel(self) -> str:
        channel = self.metadata.channel
        return "" if channel is None else channel.value

    @property
    def rule_id(self) -> str:
        return self.metadata.rule.id or ""

    @property
    def person(self) -> str | None:
        """The blocked person (or intermediary) the rule names."""
        parts = self.rule_id.split(".")
        if len(parts) >= 2 and parts[0] in ("people", "intermediaries"):
            return parts[1]
        return None

    @property
    def sender(self) -> str:
        return self.metadata.main_sender


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyEntry:
    sequence: int
    contact: str
    action: str
    items: tuple[int, ...]
    at: str
    reason: str
    nonce: str = ""
    signature: str = ""
    signed: str = UNSIGNED  # rule 5

    @classmethod
    def of(cls, sequence: int, record: SealedCustody, keys: dict[str, str]) -> CustodyEntry:
        return cls(sequence=sequence, contact=record.contact, action=record.action,
                   items=record.items, at=rfc3339(record.at) or "", reason=record.reason,
                   nonce=record.nonce, signature=record.signature,
                   signed=signature_status(record, keys))  # fmt: skip


def signature_status(record: SealedCustody, keys: dict[str, str]) -> str:
    """Whether a custody record is signed by its contact's published custody key (rule 5)."""
    if not record.signature:
        return UNSIGNED
    key = keys.get(record.contact)
    if key is None:
        return "no custody key is published for this contact"
    message = signed_bytes(contact=record.contact, action=record.action, items=record.items,
                           reason=record.reason, nonce=record.nonce)  # fmt: skip
    if not signature_verifies(key, message, record.signature):
        return "SIGNATURE DOES NOT VERIFY"
    return VERIFIED


class Selectable(Protocol):
    """What a selection looks at: a `HeldItem`, or a listing's row of one."""

    @property
    def received_at(self) -> datetime: ...
    @property
    def person(self) -> str | None: ...
    @property
    def channel(self) -> str: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """Which items: received on or after `since`, on or before `until` (whole days, UTC),
    about `person`, through `channel` (a `Channel` value: email, sms, voice)."""

    since: date | None = None
    until: date | None = None
    person: str | None = None
    channel: str | None = None

    def admits(self, item: Selectable) -> bool:
        return self.why_not(item) is None

    def why_not(self, item: Selectable) -> str | None:
        """Why `item` is left out, or None if it is selected."""
        moment = item.received_at
        if self.since and moment < datetime.combine(self.since, time(), UTC):
            return BEFORE
        if self.until and moment >= datetime.combine(self.until, time(), UTC) + timedelta(1):
            return AFTER
        if self.person is not None and item.person != self.person:
            return OTHER_PERSON
        if self.channel is not None and item.channel != self.channel:
            return OTHER_CHANNEL
        return None

    def to_json(self) -> dict[str, object]:
        since = None if self.since is None else self.since.isoformat()
        until = None if self.until is None else self.until.isoformat()
        return {"since": since, "until": until, "person": self.person, "channel": self.channel}


@dataclass(slots=True)
class OpenedArchive:
    root: Path
    report: VerifyReport
    identity: Any
    unreadable: int = 0  # items sealed to other contacts only
    left_out: list[tuple[int, str]] = field(default_factory=list)  # rule 4, by `items`
    opened: int = 0  # entries this key opened in the last `items`
    custody_read: list[tuple[int, SealedCustody]] = field(default_factory=list)  # by `items`

    @property
    def covered(self) -> int:
        """Entries covered by the latest checkpoint (the checkpoint's own size)."""
        return self.report.checkpoint.size

    def _records(
        self, *, checkpoints: bool = False, start: int = 0
    ) -> Iterator[tuple[EntryKind, int, bytes, bytes]]:
        """Entries from `start` up to the checkpoint, each checked against the verified
        tree as it is read (following.py rule 2), a batch at a time."""
        for first in range(start, self.covered, _BATCH):
            batch = self._entries(range(first, min(first + _BATCH, self.covered)))
            for entry in batch:
                if checkpoints or entry.kind is not EntryKind.CHECKPOINT:
                    yield entry.kind, entry.index, entry.body, entry.leaf_hash

    def _entries(self, indexes: range) -> list[Entry]:
        try:
            return follower(self.root).entries(indexes)
        except VerifyFailure as failure:
            raise AccessProblem(f"{NOT_VERIFIED}: {failure}") from None

    def _open(self, index: int, body: bytes) -> tuple[SealedItem | SealedCustody, bytes] | None:
        try:
            plaintext = pyrage.decrypt(body, [self.identity])
        except pyrage.DecryptError:
            return None
        try:
            return open_sealed(plaintext)
        except SealedFormatError as error:
            raise AccessProblem(f"entry {index} is corrupted: {error}") from None

    def items(
        self, selection: Selection | None = None, *, start: int = 0,
    ) -> Iterator[HeldItem]:  # fmt: skip
        """Every held item this key opens that `selection` admits, in log order; entries
        before `start` are skipped unread (a listing's index already holds them), and
        `unreadable` and `left_out` count only those read; the wrong-key check (rule 3)
        is then the caller's, over everything it has read. Each custody record opened on
        the way is kept in `custody_read` (with its index)."""
        selection = selection or Selection()
        self.unreadable = self.opened = 0
        self.left_out, self.custody_read = [], []
        for kind, index, body, leaf in self._records(checkpoints=True, start=start):
            if kind is EntryKind.CHECKPOINT:
                self.left_out.append((index, CHECKPOINT))
                continue
            opened = self._open(index, body)
            if opened is None:
                self.unreadable += 1
                self.left_out.append((index, OTHERS))
                continue
            self.opened += 1
            metadata, payload = opened
            if not isinstance(metadata, SealedItem):  # custody: an item outside the seal
                self.left_out.append((index, CUSTODY))
                self.custody_read.append((index, metadata))
                continue
            item = HeldItem(
                sequence=index, sealed=body, leaf_hash=leaf, metadata=metadata, payload=payload
            )
            why = selection.why_not(item)
            if why is None:
                yield item
            else:
                self.left_out.append((index, why))
        if self.unreadable and not self.opened and not start:
            raise AccessProblem(WRONG_KEY)

    def item(self, sequence: int) -> HeldItem | None:
        """The held item at `sequence`, if there is one and this key opens it (only that
        one is decrypted)."""
        if not 0 <= sequence < self.covered:
            return None
        (entry,) = self._entries(range(sequence, sequence + 1))
        if entry.kind is not EntryKind.SEALED:
            return None
        opened = self._open(sequence, entry.body)
        if opened is None or not isinstance(opened[0], SealedItem):
            return None
        return HeldItem(sequence=sequence, sealed=entry.body, leaf_hash=entry.leaf_hash,
                        metadata=opened[0], payload=opened[1])  # fmt: skip

    def stored(self, sequence: int) -> Entry | None:
        """Entry `sequence` exactly as stored, checked against the verified tree (for
        the bundle's sealed custody records and their proofs); None beyond the latest
        signed checkpoint."""
        if not 0 <= sequence < self.covered:
            return None
        (entry,) = self._entries(range(sequence, sequence + 1))
        return entry

    def custody(self) -> list[CustodyEntry]:
        """Every custody record this key opens, in log order."""
        found = []
        keys = self.custody_keys()
        for _, index, body, _ in self._records():
            opened = self._open(index, body)
            if opened is not None and isinstance(opened[0], SealedCustody):
                # (version 1 wrote custody as a kind of its own; its seal says so too)
                found.append(CustodyEntry.of(index, opened[0], keys))
        return found

    def custody_keys(self) -> dict[str, str]:
        """The contacts' custody keys published beside the archive (rule 5)."""
        try:
            return read_published(self.root)
        except OSError as error:
            raise AccessProblem(f"cannot read the contacts' custody keys: {error}") from None


def open_archive(root: str | os.PathLike[str], identity: Any) -> OpenedArchive:
    """The archive at `root`, verified, to be read with `identity` (a running daemon first
    signs what it stored since its last checkpoint)."""
    path = Path(root)
    try:
        sign_now(path)  # the daemon's newest items, under a checkpoint before reading
    except CustodyProblem as problem:
        raise AccessProblem(str(problem)) from None
    try:
        report = follower(path).refresh()
    except VerifyFailure as failure:
        raise AccessProblem(f"{NOT_VERIFIED}: {failure}") from None
    _one_of_the_contacts(path, identity)
    return OpenedArchive(root=path, report=report, identity=identity)


def _one_of_the_contacts(root: Path, identity: Any) -> None:
    """Refuse a key whose public half the archive does not seal to (rule 3)."""
    published = root / layout.RECIPIENTS
    to_public = getattr(identity, "to_public", None)
    if not published.exists() or to_public is None:
        return  # an archive from before the list was kept, or a key of another kind
    if str(to_public()) not in published.read_text(errors="replace").split():
        raise AccessProblem(WRONG_KEY)
