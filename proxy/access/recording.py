"""A contact's custody record: signed, stored, then read back and checked.

Rules this module keeps:
1. Every record is signed with the contact's custody key (keys.py rule 4) over its
   fields and a fresh random nonce (custody_keys.py rule 2); it carries no time: the
   archive's writer stamps it (writer.py rule 8).
2. Stored is not trusted: once told the entry's index, the tool decrypts that entry with
   its own identity and checks it is exactly the record it asked for (same contact,
   action, items, reason, nonce and signature) with a time the writer stamped within
   `_SKEW` of now. Anything else is `CustodyProblem`, and the action does not go ahead.
3. Decryption here is of the one entry just written, with the identity in memory only,
   read through the process's follower of the archive (archive/following.py), so it is
   checked against the signed log as it is read.
4. For an archive restored from its replica, the record is stored, and read back, in its
   own custody archive (proxy/custody.py rule 5).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage

from proxy.access.keys import custody_signing_key
from proxy.archive import EntryKind, VerifyFailure
from proxy.archive.custody_keys import CustodyRequest, request_bytes
from proxy.archive.following import follower
from proxy.archive.metadata import SealedCustody
from proxy.archive.seal import SealedFormatError, fingerprint, open_sealed
from proxy.custody import CustodyProblem, custody_log_of, record_custody, sign_now

_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """A custody record as stored and read back."""

    index: int
    record: SealedCustody


def signed_request(
    identity: Any, *, action: str, items: Sequence[int], reason: str
) -> CustodyRequest:
    """A custody request by `identity`'s contact, signed (rule 1)."""
    contact = fingerprint(str(identity.to_public()))
    unsigned = CustodyRequest(contact=contact, action=action, items=tuple(items),
                              reason=reason, nonce=secrets.token_hex(16))  # fmt: skip
    signature = custody_signing_key(identity).sign(request_bytes(unsigned))
    return CustodyRequest(contact=contact, action=action, items=unsigned.items, reason=reason,
                          nonce=unsigned.nonce,
                          signature=base64.b64encode(signature).decode())  # fmt: skip


def record(
    root: Path, identity: Any, *, action: str, items: Sequence[int], reason: str = ""
) -> Recorded:
    """Sign, store and read back one custody record (rules 1 and 2)."""
    request = signed_request(identity, action=action, items=items, reason=reason)
    index = record_custody(root, request)
    stored = _read_entry(custody_log_of(root), index, identity)  # a restored one's: rule 4
    now = datetime.now(UTC)
    if (
        stored is None
        or (stored.contact, stored.action, stored.items, stored.reason)
        != (request.contact, request.action, request.items, request.reason)
        or (stored.nonce, stored.signature) != (request.nonce, request.signature)
        or stored.at is None
        or abs(stored.at - now) > _SKEW
    ):
        raise CustodyProblem(
            f"the archive's entry {index} is not the custody record that was asked for: "
            "nothing is shown (is another program answering on the custody socket?)"
        )
    return Recorded(index=index, record=stored)


def _read_entry(root: Path, index: int, identity: Any) -> SealedCustody | None:
    """The custody record stored at `index`, decrypted with `identity`, once the archive's
    follower has checked the log up to it; None if there is none that this key opens."""
    archive = follower(root)
    try:
        if archive.refresh().checkpoint.size <= index:
            sign_now(root)  # a writer with no daemon signs at close: ask for it now
            archive.refresh()
        (entry,) = archive.entries(range(index, index + 1))
        if entry.kind is not EntryKind.SEALED:
            return None
        metadata, _ = open_sealed(pyrage.decrypt(entry.body, [identity]))
    except (OSError, ValueError, VerifyFailure, CustodyProblem, pyrage.DecryptError,
            SealedFormatError):  # fmt: skip
        return None
    return metadata if isinstance(metadata, SealedCustody) else None
