"""`nocontact replicate -c FILE`: the replicator as its own process.

Rules this module keeps:
1. It needs the config's `replicate:` section and `archive.path`, the archive read-only
   and the S3 credentials: no contact key, and no signing key (it never opens
   `signing.key`, and takes no lock on the archive), so it may run as its own user.
2. A pass every `every` seconds (10), at fixed wall-clock ticks half an `every` past its
   multiples (the archive signs on multiples of `checkpoint_every`: a pass at the same
   instant would just miss the new checkpoint), so a signed checkpoint reaches the bucket
   within `every` / 2 to `every` and its upload, and the passes start at the same moments
   whatever they carry. After a failed pass it waits twice as long each time, up
   to 60 s (`MOST_WAIT`), and goes back to the ticks after a pass that succeeds.
3. Fixed log events only: "replicator started", "replica up to date" (the first pass
   that succeeds, and the first after a failure), "replica behind" with one of the fixed
   reasons of `REASONS` (when a pass fails after one that did not, or for another
   reason), "replicator stopped". Never a count, a size, a key or an S3 message: the
   bucket's shape is the log's shape, and a number would say how much was held.
4. SIGTERM and SIGINT stop it cleanly: a pass under way stops between two objects (the
   bucket stands at a whole checkpoint: replicator.py rule 2) and the process exits 0.
5. After each pass that leaves the bucket up to date, the state file (0600, in a 0700
   directory) records the size replicated and when the pass began (unix seconds: a tick
   of rule 2, so a pass that uploads much and one that uploads nothing record the same
   kind of time), for the lag
   (state.py; `nocontact health` reports it): a size is in the archive's own
   `checkpoint` file already.
6. `--once`: one pass, then exit 0 with "replica up to date", or one line: exit 1 when
   the archive does not verify (what verified was uploaded first), 2 for anything else.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from proxy import logs
from proxy.archive.verify import VerifyFailure
from proxy.config.model import Archive, Replicate
from proxy.processes import no_core_dumps
from proxy.replica.replicator import Outcome, ReplicaRefused, Replicator, Stopped
from proxy.replica.signed_archive import ArchiveSource, NotReplicable
from proxy.replica.state import write_state
from proxy.replica.store import BucketSettings, StoreError, open_store

MOST_WAIT = 60.0
UP_TO_DATE = "replica up to date"
REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (VerifyFailure, "archive does not verify"),
    (NotReplicable, "archive not replicable"),
    (ReplicaRefused, "bucket is not this archive's"),
    (StoreError, "bucket unavailable"),
    (OSError, "archive unreadable"),
)
_log = logs.get_logger("replica")


def bucket_settings(replicate: Replicate) -> BucketSettings:
    return BucketSettings(
        bucket=replicate.bucket,
        credentials_file=Path(replicate.credentials_file),
        retention_days=replicate.retention_days,
        endpoint=replicate.endpoint,
        region=replicate.region,
        prefix=replicate.prefix,
    )


def reason(error: BaseException) -> str:
    """The fixed words `error` is logged as (rule 3)."""
    return next((words for kind, words in REASONS if isinstance(error, kind)), "internal error")


class ReplicaProcess:
    """The replicator's passes, with the bucket opened when first reachable."""

    def __init__(
        self, archive: Archive, replicate: Replicate | None, stop: threading.Event
    ) -> None:
        if replicate is None:
            raise ReplicaRefused("the config has no replicate: section")
        self._replicate = replicate
        self._source = ArchiveSource(Path(archive.path))
        self._stop = stop
        self._replicator: Replicator | None = None

    def run_pass(self) -> Outcome:
        """One pass: the bucket opened (rule 3 of store.py) if it is not yet, then synced."""
        began = time.time()
        if self._replicator is None:
            store = open_store(bucket_settings(self._replicate))
            self._replicator = Replicator(self._source, store, stopping=self._stop.is_set)
        try:
            outcome = self._replicator.run_pass()
        except StoreError:
            self._replicator = None  # a fresh client and bucket check next time
            raise
        write_state(Path(self._replicate.state_file), outcome.size, began)
        return outcome

    def serve(self) -> int:
        """Passes until stopped (rules 2 to 4)."""
        _log.info("replicator started")
        every = float(self._replicate.every)
        wait, said = every, ""
        while not self._stop.is_set():
            try:
                self.run_pass()
            except Stopped:
                break
            except Exception as error:  # logged as fixed words (rule 3), retried
                words = reason(error)
                if words != said:
                    _log.warning("replica behind", error=words)
                said, wait = words, min(wait * 2, MOST_WAIT)
            else:
                if said != UP_TO_DATE:
                    _log.info(UP_TO_DATE)
                said, wait = UP_TO_DATE, every
            self._stop.wait(until_tick(time.time(), every) if said == UP_TO_DATE else wait)
        _log.info("replicator stopped")
        return 0


def until_tick(now: float, every: float) -> float:
    """Seconds from `now` to the next tick of rule 2: half an `every` past each multiple
    of it, so a pass never races the checkpoint the archive signs on its own multiples."""
    return every - (now - every / 2) % every


def _stopper(stop: threading.Event) -> Callable[[int, FrameType | None], None]:
    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    return handler


def run(archive: Archive, replicate: Replicate | None, *, once: bool) -> int:
    """`nocontact replicate` (rules 1 to 6); the exit code."""
    no_core_dumps()  # a core would hold the S3 secret
    stop = threading.Event()
    process = ReplicaProcess(archive, replicate, stop)
    if once:
        try:
            process.run_pass()
        except VerifyFailure as failure:
            print(
                f"replica NOT up to date: archive BAD: {failure} (what verified was uploaded)",
                file=sys.stderr,
            )
            return 1
        print(UP_TO_DATE)
        return 0
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stopper(stop))
    return process.serve()
