"""The archive's typed errors.

Rules this module keeps:
1. `ArchiveFull` and `ArchiveUnavailable` are `RetryLater`: nothing was stored, nothing may
   be acknowledged, and the sender is told to try again (SMTP 451, HTTP 503).
2. `ArchiveCorrupt` and `ArchiveLocked` stop the daemon from starting: they need a person.
3. No message names an entry's content; at most its index.
"""

from __future__ import annotations

from proxy.errors import NocontactError, RetryLater


class ArchiveFull(RetryLater):
    """The archive's disk (or the file-size limit) has no room for this entry."""


class ArchiveUnavailable(RetryLater):
    """The archive cannot be written now: missing, unwritable, or closed."""


class ArchiveLocked(NocontactError):
    """Another process is writing this archive."""


class ArchiveCorrupt(NocontactError):
    """The archive's stored entries fail their own checks; nothing was discarded."""
