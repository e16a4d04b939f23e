"""The sealed archive: age-encrypted entries in an append-only, signed Merkle log.

Modules, each with one job: `records` (entry framing), `segments` (zero-filled storage),
`reader` (scanning), `merkle` (RFC 6962), `note` (C2SP signed checkpoints), `layout` (the
directory), `log` (the single durable writer), `seal` (age encryption of items and
custody), `writer` (asyncio group commit), `verify` (the keyless check), `following` (the
same, kept up by a long-running reader), `continuation` (whether the archive continues a
checkpoint kept off the server).
"""

from __future__ import annotations

from proxy.archive.errors import ArchiveCorrupt, ArchiveFull, ArchiveLocked, ArchiveUnavailable
from proxy.archive.log import ArchiveLog, Receipt
from proxy.archive.records import EntryKind
from proxy.archive.seal import CustodyRecord, Recipients
from proxy.archive.verify import VerifyFailure, VerifyReport, verify_archive
from proxy.archive.writer import Archive

__all__ = [
    "Archive",
    "ArchiveCorrupt",
    "ArchiveFull",
    "ArchiveLocked",
    "ArchiveLog",
    "ArchiveUnavailable",
    "CustodyRecord",
    "EntryKind",
    "Receipt",
    "Recipients",
    "VerifyFailure",
    "VerifyReport",
    "verify_archive",
]
