"""The replicator's state file: the size it last replicated and when the bucket was last
found up to date, for the lag.

Rules this module keeps:
1. Written atomically, 0600, in a 0700 directory, after each pass that leaves the bucket
   up to date, whether or not the pass wrote anything: so its time says when the
   replicator last looked, never when anything arrived.
2. The size is for the replicator alone (it is in the archive's own `checkpoint` file
   already); what reads the file for others (`nocontact health`) takes only the time.
3. Light: no S3 library, so `nocontact health` can read it without loading boto3.
"""

from __future__ import annotations

import json
from pathlib import Path

from proxy import disk


def write_state(path: Path, size: int, at: float) -> None:
    """Rule 1: the size replicated and when (unix seconds), atomically, 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps({"replicated_size": size, "up_to_date_at": int(at)}) + "\n"
    disk.replace_file(path, data.encode())


def lag_seconds(path: Path, now: float) -> float | None:
    """Seconds since the bucket was last found up to date (None: never, or unreadable)."""
    try:
        at = json.loads(path.read_text())["up_to_date_at"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return max(0.0, now - at) if isinstance(at, int) and not isinstance(at, bool) else None
