"""Releasing a wrongly held item: who may, which items, and whether it was released already.

Rules this module keeps:
1. Only a trusted contact (config role `contact`) may release; a lawyer reads, reports
   and exports (`LAWYER`). Someone the config no longer names may not either.
2. Only a *passive* hold may be released: the seal's rule kind must be `passive`. A direct
   hold (he wrote; or a voicemail left on a call that was held) never can be, nor an item
   whose seal names no rule kind (an older or damaged seal: it stays held). Nor one the
   rules in force now hold as direct (an address of his added since): it is decided
   again as the daemon would decide it today (`blocked_now`).
3. Only what a channel can carry late: an email or a text. A call cannot ring late, and
   a voicemail's recording is deleted at the provider once it is sealed, so a text has
   nothing to carry; the contact can download the recording from the item page.
4. Whether an item was released is read from the custody log, from nothing else: the
   last release record about it decides (`last_release`). "release" (recorded before
   delivery) means released; "release-failed" (recorded after a delivery failed) means
   it may be tried again. An attempt cut off between the two (the portal stopped while
   delivering) counts as released: a release reaches her at most once.
5. `prepare` (on a worker thread) verifies the archive, brings the session's index up to
   date (viewing.py rule 4: it keeps the release records) and decrypts the one item. It
   records nothing: the caller records the release (recording.py) before delivering.
6. Pure but for `prepare`: values in, values out; every refusal is one line fit to show.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.access.reading import AccessProblem, HeldItem, open_archive
from proxy.access.render import phone_words
from proxy.access.viewing import HeldIndex
from proxy.archive.metadata import SealedCustody, SealedItem
from proxy.config import Config
from proxy.message import Channel, Kind
from proxy.normalize import normalize_sms
from proxy.readers import Postmark, read_email
from proxy.rules import Rulebook, decide

RELEASE, RELEASE_FAILED = "release", "release-failed"
LAWYER = "Only a trusted contact can release an item: lawyers read, report and export."
NOT_NAMED = "Your name is not among the contacts in the config: nothing can be released."
DIRECT = ("This item was held by a direct rule (it came from a blocked person): it can "
          "never be released.")  # fmt: skip
NOT_PASSIVE = "This item's seal does not say a passive rule held it, so it stays held."
BLOCKED_NOW = ("The rules in force now hold this item as direct (its sender is one of a "
               "blocked person's identities): it stays held.")  # fmt: skip
CALL = "A call cannot be released: it cannot ring late."
VOICEMAIL = (
    "A voicemail cannot be released: its recording was deleted at the provider when it "
    "was sealed, and a text can carry only what the provider holds. Download the "
    "recording from this page if she should hear it."
)  # fmt: skip
UNKNOWN_CHANNEL = "This item's seal names no channel that can carry it, so it stays held."


def role_of(config: Config, contact: str) -> str | None:
    """The config role (`contact` or `lawyer`) of the contact named `contact`, if any."""
    return next((c.role for c in config.contacts if c.name == contact), None)


def role_refusal(role: str | None) -> str | None:
    """Why someone of this config role may release nothing (rule 1), or None."""
    if role is None:
        return NOT_NAMED
    return None if role == "contact" else LAWYER


def refusal(role: str | None, metadata: SealedItem, payload: bytes) -> str | None:
    """Why this contact may not release this item (rules 1 to 3), or None if they may."""
    refused = role_refusal(role)
    if refused is not None:
        return refused
    if metadata.rule.kind is not Kind.PASSIVE:
        return DIRECT if metadata.rule.kind is Kind.DIRECT else NOT_PASSIVE
    if metadata.channel is Channel.EMAIL:
        return None
    words = phone_words(payload)
    if words is None or metadata.channel is None:
        return UNKNOWN_CHANNEL
    return {"text": None, "voicemail": VOICEMAIL}.get(words.kind, CALL)


def blocked_now(item: HeldItem, rules: Rulebook, default_region: str | None) -> bool:
    """Whether the rules in force would hold `item` as direct today (rule 2)."""
    metadata = item.metadata
    received_at = item.received_at
    if metadata.channel is Channel.EMAIL:
        postmark = Postmark(sender=metadata.envelope.sender,
                            recipients=metadata.envelope.recipients,
                            received_at=received_at, default_region=default_region)  # fmt: skip
        _, decision = read_email(item.payload, postmark, rules)
        return decision.kind is Kind.DIRECT
    words = phone_words(item.payload)
    if words is None:
        return True  # nothing to decide on: it stays held
    message = normalize_sms(sender=words.sender, recipient=words.recipient, text=words.text,
                            raw=b"", received_at=received_at,
                            default_region=default_region)  # fmt: skip
    return decide(message, rules).kind is Kind.DIRECT


def last_release(
    records: Iterable[tuple[int, SealedCustody]], sequence: int
) -> SealedCustody | None:
    """The release record that says item `sequence` was released, if the log says so
    (rule 4): the last "release" about it with no "release-failed" after it."""
    found: SealedCustody | None = None
    for _, record in sorted(records, key=lambda pair: pair[0]):
        if sequence in record.items:
            found = record if record.action == RELEASE else None
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A held item a contact asks to release, and the record saying it was, if one does."""

    item: HeldItem
    released: SealedCustody | None


def prepare(root: Path, identity: Any, sequence: int, index: HeldIndex | None = None) -> Candidate:
    """Item `sequence` and its release state from the custody log (rule 5)."""
    index = index if index is not None else HeldIndex()
    opened = open_archive(root, identity)
    with index._lock:
        index.catch_up(opened)
        records = list(index.releases)
    item = opened.item(sequence)
    if item is None:
        raise AccessProblem(f"no held item {sequence} that this key opens")
    return Candidate(item=item, released=last_release(records, sequence))
