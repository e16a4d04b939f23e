"""What each watched folder has already been through: UIDVALIDITY and the last UID.

Rules this module keeps:
1. One JSON file per account, replaced atomically (write, fsync, rename, fsync the
   directory): a crash leaves the old state or the new, and the old state only means a
   few messages are looked at again.
2. It records the same for every message, whatever became of it: nothing here says
   whether, how many or when messages were held. Which messages were sealed is the
   archive's to know (archive/once.py), so a re-scan never seals one twice.
3. Older versions kept the hashes of sealed messages here (`sealed`, `pending`):
   `legacy` hands them over once to the archive, and `forget_legacy` drops them.
4. A message whose handling failed is never skipped for good: its UID is kept in its
   folder's `retry` list, written in the same replace as the `last_uid` that passed it,
   so later mail moves on while that message is still looked at again, after a restart too.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.disk import replace_file


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderState:
    uidvalidity: int
    last_uid: int
    retry: tuple[int, ...] = ()  # UIDs up to last_uid whose handling failed: look again


def _folder_state(data: dict[str, Any]) -> FolderState:
    """One folder's entry in the state file (a file written before retries has none)."""
    return FolderState(
        uidvalidity=int(data["uidvalidity"]),
        last_uid=int(data["last_uid"]),
        retry=tuple(int(uid) for uid in data.get("retry", ())),
    )


class AccountState:
    """The persisted state of one account's folders; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._folders: dict[str, FolderState] = {}
        self._legacy: tuple[set[str], dict[str, str], int] = (set(), {}, 0)
        if path.exists():
            data = json.loads(path.read_text())
            self._folders = {name: _folder_state(f) for name, f in data.get("folders", {}).items()}
            self._legacy = (
                {str(d) for d in data.get("sealed", [])},
                {str(d): str(c) for d, c in dict(data.get("pending", {})).items()},
                int(data.get("pending_since", 0)),
            )

    def folder(self, name: str) -> FolderState | None:
        with self._lock:
            return self._folders.get(name)

    def legacy(self) -> tuple[set[str], dict[str, str], int]:
        """What an older version kept (rule 3): the hashes of messages it sealed, its
        pending notes (message hash -> sealed bytes' hash) and the archive size since which
        they were made."""
        with self._lock:
            sealed, pending, since = self._legacy
            return set(sealed), dict(pending), since

    def forget_legacy(self) -> None:
        """The archive has taken the legacy marks over: drop them from the file."""
        with self._lock:
            self._legacy = (set(), {}, 0)
            self._write()

    def record(self, name: str, state: FolderState) -> None:
        """Remember a folder's progress, durably."""
        with self._lock:
            self._folders[name] = state
            self._write()

    def _write(self) -> None:
        """Replace the state file (the caller holds the lock)."""
        data = {
            "folders": {
                n: {"uidvalidity": f.uidvalidity, "last_uid": f.last_uid, "retry": list(f.retry)}
                for n, f in sorted(self._folders.items())
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(self.path, json.dumps(data).encode())  # 0600 from its creation
