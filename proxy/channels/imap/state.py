"""What each watched folder has already been through: UIDVALIDITY and the last UID.

Rules this module keeps:
1. One JSON file per account, replaced atomically (write, fsync, rename, fsync the
   directory): a crash leaves the old state or the new, and the old state only means a
   few messages are looked at again.
2. Looking at a message again never seals it twice: the SHA-256 of every message this
   account sealed is remembered, so a re-scan (after a crash, or a UIDVALIDITY change)
   removes an already-sealed message without sealing it again. The hashes say nothing
   about content to anyone without the message itself.
3. Before sealed bytes are stored, they are noted as *pending* (message hash -> hash of
   the sealed bytes, and the archive's size then). After a crash, a pending note is
   settled against the archive itself: if an entry with exactly those sealed bytes was
   stored, the message counts as sealed; if not, it is sealed when it is seen again.
4. A message whose handling failed is never skipped for good: its UID is kept in its
   folder's `retry` list, written in the same replace as the `last_uid` that passed it,
   so later mail moves on while that message is still looked at again, after a restart too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
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
        self._sealed: set[str] = set()
        self._pending: dict[str, str] = {}  # message hash -> sealed bytes' hash
        self.pending_since = 0  # the archive's size when the oldest pending note was made
        if path.exists():
            data = json.loads(path.read_text())
            self._folders = {name: _folder_state(f) for name, f in data.get("folders", {}).items()}
            self._sealed = set(data.get("sealed", []))
            self._pending = dict(data.get("pending", {}))
            self.pending_since = int(data.get("pending_since", 0))

    def folder(self, name: str) -> FolderState | None:
        with self._lock:
            return self._folders.get(name)

    def was_sealed(self, digest: str) -> bool:
        with self._lock:
            return digest in self._sealed

    def pending(self) -> dict[str, str]:
        with self._lock:
            return dict(self._pending)

    def pend(self, notes: dict[str, str], since: int) -> None:
        """Note, durably, sealed bytes about to be stored (message hash -> bytes' hash)."""
        with self._lock:
            if not self._pending:
                self.pending_since = since
            self._pending.update(notes)
            self._write()

    def settle(self, stored: set[str]) -> None:
        """After a crash: pending notes whose sealed bytes are in the archive count as sealed."""
        with self._lock:
            self._sealed.update(d for d, c in self._pending.items() if c in stored)
            self._pending.clear()
            self._write()

    def record(self, name: str, state: FolderState, *, sealed: Iterable[str] = ()) -> None:
        """Remember a folder's progress (and newly sealed messages), durably."""
        with self._lock:
            self._folders[name] = state
            for digest in sealed:
                self._sealed.add(digest)
                self._pending.pop(digest, None)
            self._write()

    def _write(self) -> None:
        """Replace the state file (the caller holds the lock)."""
        data = {
            "folders": {
                n: {"uidvalidity": f.uidvalidity, "last_uid": f.last_uid, "retry": list(f.retry)}
                for n, f in sorted(self._folders.items())
            },
            "sealed": sorted(self._sealed),
            "pending": self._pending,
            "pending_since": self.pending_since,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(self.path, json.dumps(data).encode())  # 0600 from its creation
