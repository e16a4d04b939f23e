"""Each contact's last-seen checkpoint: the portal refuses an archive that does not
continue what the contact was shown before (a rollback or a rewritten history).

Rules this module keeps:
1. One record per contact under `portal.state_dir` (`seen/<record_name>.json`, store.py
   rules), holding the signed checkpoint note the portal last checked the archive
   against for them, exactly as the archive signed it.
2. `witness` is given the archive's report (the process's follower, just refreshed) and
   checks it continues the contact's seen checkpoint (archive/continuation.py: signed by
   the archive's key, for its origin, an RFC 9162 consistency proof). If it does not,
   `NotContinued` carries the seen checkpoint and why, and nothing else is done: the
   record is kept as it was, so every later look is refused too until someone who can
   act on it (the contacts' tech person) has looked.
3. The record only moves forward: it is replaced when the archive's latest signed
   checkpoint is larger than the seen one (and continues it). The first look records
   the archive as it is then (there is nothing earlier to hold it to).
4. One witness at a time (a lock): two pages at once cannot move the record backwards.
5. Nothing here logs; a record that cannot be read is `PortalProblem` naming its file.
"""

from __future__ import annotations

import threading

from proxy.archive import VerifyReport
from proxy.archive.continuation import NotACheckpoint, NotAContinuation, checked, continues, kept
from proxy.archive.note import Checkpoint
from proxy.portal.refusals import PortalProblem
from proxy.portal.store import Store, record_name

_DIR = "seen"


class NotContinued(Exception):
    """The archive does not continue what this contact saw last (rule 2)."""

    def __init__(self, seen: Checkpoint | None, problem: NotAContinuation) -> None:
        super().__init__(str(problem))
        self.seen = seen  # None when the seen note is not this archive's at all
        self.kind = problem.kind


class SeenCheckpoints:
    """The seen checkpoints of the portal's contacts (rules 1 to 4)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()

    def witness(self, contact: str, report: VerifyReport) -> Checkpoint:
        """The archive's latest signed checkpoint, once checked to continue the one
        `contact` saw last; that becomes the seen one if larger (rule 3)."""
        with self._lock:
            name = f"{_DIR}/{record_name(contact)}.json"
            record = self._store.read(name)
            if record is not None:
                note = record.get("note")
                if not isinstance(note, str):
                    raise PortalProblem(f"{self._store.root / name} is not a seen checkpoint")
                seen = self._check(note.encode(), report, name)
                if report.checkpoint.size <= seen.size:
                    return report.checkpoint
            self._store.write(name, {"note": report.note.decode()})
            return report.checkpoint

    def _check(self, note: bytes, report: VerifyReport, name: str) -> Checkpoint:
        try:
            given = kept(note)
        except NotACheckpoint:
            raise PortalProblem(f"{self._store.root / name} is not a seen checkpoint") from None
        seen: Checkpoint | None = None
        try:
            seen = checked(given, report.verifier, report.checkpoint.origin)
            continues(seen, report)
        except NotAContinuation as problem:
            raise NotContinued(seen, problem) from None
        return seen
