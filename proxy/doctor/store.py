"""The archive as doctor sees it: it verifies, the clock agrees with it, the disk has room.

Rules this module keeps:
1. Keyless and read-only: `proxy.archive.verify_archive`, nothing else reads the log.
2. Of the archive only "verifies" is said, or that it does not: never an entry, an index,
   a count or a time (`nocontact verify` is where a contact looks for the first bad entry).
3. The clock is sane when it says a year from 2025 on and is not behind the latest signed
   checkpoint by more than one grain (`TIME_GRAIN`, 10 minutes): a checkpoint from the
   future means the clock went back. Checkpoints come at a fixed cadence, so comparing
   with one dates nothing; the line never prints its time.
4. Free disk where the archive lives is at least two segments (128 MiB by default); the
   figure is printed only when it is too low, in whole MiB.
5. `clock_problem` and `disk_problem` are pure.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from proxy.archive import VerifyFailure, layout, verify_archive
from proxy.archive.errors import ArchiveCorrupt, ArchiveUnavailable
from proxy.archive.log import TIME_GRAIN
from proxy.doctor.findings import Finding, fail, ok

EARLIEST_YEAR = 2025
SEGMENTS_OF_ROOM = 2
_MIB = 1 << 20


def clock_problem(now: datetime, latest_checkpoint: datetime | None) -> str | None:
    """What is wrong with the clock reading `now` (rule 3), or None."""
    if now.year < EARLIEST_YEAR:
        return f"the system clock says {now.year}: set it (NTP)"
    if latest_checkpoint is not None and latest_checkpoint - now > timedelta(seconds=TIME_GRAIN):
        return (
            "the system clock is behind the archive's latest checkpoint: it went back; set it (NTP)"
        )
    return None


def disk_problem(free_bytes: int, segment_bytes: int) -> str | None:
    """Whether `free_bytes` is room for SEGMENTS_OF_ROOM segments (rule 4), or the problem."""
    needed = SEGMENTS_OF_ROOM * segment_bytes
    if free_bytes >= needed:
        return None
    return f"{free_bytes // _MIB} MiB free, at least {needed // _MIB} MiB needed (two segments)"


def check_store(archive: Path, now: datetime) -> list[Finding]:
    """Verify, clock, free disk: three findings."""
    latest = None
    if not (archive / layout.MANIFEST).is_file():
        verified = fail("archive verifies", f"{archive} holds no archive yet")
    else:
        try:
            latest = verify_archive(archive).checkpoint.time
            verified = ok("archive verifies")
        except VerifyFailure:
            verified = fail(
                "archive verifies",
                f"it does not: damaged or tampered with (a contact runs `nocontact verify "
                f"--archive {archive}` to see where)",
            )
    problem = clock_problem(now, latest)
    clock = ok("clock") if problem is None else fail("clock", problem)
    return [verified, clock, _room(archive)]


def _room(archive: Path) -> Finding:
    what = "free disk at the archive"
    try:
        segment_bytes = layout.read_manifest(archive).segment_bytes
    except ArchiveCorrupt:  # none yet: the size it will be made with
        try:
            segment_bytes = layout.new_segment_bytes()
        except ArchiveUnavailable:
            segment_bytes = layout.SEGMENT_BYTES
    place = archive
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError as error:
        return fail(what, f"cannot tell ({error.strerror})")
    problem = disk_problem(free, segment_bytes)
    needed = SEGMENTS_OF_ROOM * segment_bytes // _MIB
    return ok(f"{what} (at least {needed} MiB)") if problem is None else fail(what, problem)
