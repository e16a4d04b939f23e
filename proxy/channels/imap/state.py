"""What each watched folder has already been through: UIDVALIDITY and the last UID.

Rules this module keeps:
1. One JSON file per account, replaced atomically (write, fsync, rename, fsync the
   directory): a crash leaves the old state or the new, and the old state only means a
   few messages are looked at again.
2. Looking at a message again never seals it twice: the SHA-256 of every message this
   account sealed is remembered, so a re-scan (after a crash, or a UIDVALIDITY change)
   removes an already-sealed message without sealing it again. The hashes say nothing
   about content to anyone without the message itself.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from proxy.archive.layout import replace_file


@dataclass(frozen=True, slots=True, kw_only=True)
class FolderState:
    uidvalidity: int
    last_uid: int


class AccountState:
    """The persisted state of one account's folders; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._folders: dict[str, FolderState] = {}
        self._sealed: set[str] = set()
        if path.exists():
            data = json.loads(path.read_text())
            self._folders = {
                name: FolderState(uidvalidity=f["uidvalidity"], last_uid=f["last_uid"])
                for name, f in data.get("folders", {}).items()
            }
            self._sealed = set(data.get("sealed", []))

    def folder(self, name: str) -> FolderState | None:
        with self._lock:
            return self._folders.get(name)

    def was_sealed(self, digest: str) -> bool:
        with self._lock:
            return digest in self._sealed

    def record(self, name: str, state: FolderState, *, sealed: Iterable[str] = ()) -> None:
        """Remember a folder's progress (and newly sealed messages), durably."""
        with self._lock:
            self._folders[name] = state
            self._sealed.update(sealed)
            data = {
                "folders": {
                    n: {"uidvalidity": f.uidvalidity, "last_uid": f.last_uid}
                    for n, f in sorted(self._folders.items())
                },
                "sealed": sorted(self._sealed),
            }
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            replace_file(self.path, json.dumps(data).encode())
            os.chmod(self.path, 0o600)
