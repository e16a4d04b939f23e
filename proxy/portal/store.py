"""The portal's state directory: small JSON records and wrapped keys, private and atomic.

Rules this module keeps:
1. Directories are made 0700 and files 0600 from their creation (`proxy.disk`).
2. Every write is an atomic, durable replacement (`proxy.disk.replace_file`): a crash leaves
   the old record or the new one, never half of either.
3. A record is a JSON object; one that cannot be read as one is `PortalProblem`, naming the
   file, never echoing what it holds.
4. Names are chosen by the portal, never by a user: `record_name` hashes a contact's name.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from proxy.disk import replace_file
from proxy.portal.refusals import PortalProblem


def record_name(contact: str) -> str:
    """A file name for a contact's records, whatever their name holds (rule 4)."""
    return hashlib.sha256(contact.casefold().encode()).hexdigest()[:32]


class Store:
    """The files under `portal.state_dir`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def read(self, name: str) -> dict[str, Any] | None:
        """The record `name` (a path relative to the root), or None if there is none."""
        data = self.read_bytes(name)
        if data is None:
            return None
        try:
            record = json.loads(data)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise PortalProblem(f"{self.root / name} is not a portal record (damaged?)")
        return record

    def write(self, name: str, record: dict[str, Any]) -> None:
        """Replace the record `name` (rules 1, 2)."""
        self.write_bytes(name, json.dumps(record, sort_keys=True).encode())

    def read_bytes(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise PortalProblem(f"cannot read {self.root / name}: {error.strerror}") from None

    def write_bytes(self, name: str, data: bytes) -> None:
        path = self.root / name
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            replace_file(path, data)
        except OSError as error:
            raise PortalProblem(f"cannot write {path}: {error.strerror}") from None
