"""The court orders' profiles in the daemon's log: which order is in force, by its hash.

Rules this module keeps:
1. When a person's `court_order` profile is first loaded (at start) or changed (at a
   reload: any key of it, or the bytes of its `order_file`), one fixed event is logged:
   "court order profile loaded", with the person's config id and, when the order names a
   file, the file's SHA-256. A hash reveals nothing the file holds, and the survivor, who
   wrote the config, learns nothing of any held item from it.
2. A profile unchanged since it was last logged is not logged again; one removed is
   forgotten, so adding it back logs it again.
3. An order file that cannot be read (removed since the config was checked) is one
   warning naming the person, never a traceback; the profile is logged again once it can.
4. The file is read in blocks: its size costs time, never memory.
"""

from __future__ import annotations

import hashlib
import json

from proxy.config.model import Config
from proxy.logs import get_logger

_BLOCK = 1 << 20
_log = get_logger("orders")


class OrderFiles:
    """What was last logged of each person's order (rules 1-2)."""

    def __init__(self) -> None:
        self._logged: dict[str, tuple[str, str | None]] = {}

    def note(self, config: Config) -> None:
        """Log each order profile of `config` first loaded or changed since the last call."""
        seen: dict[str, tuple[str, str | None]] = {}
        for person in config.people:
            order = person.court_order
            if order is None:
                continue
            profile = json.dumps(order.model_dump(mode="json"), sort_keys=True)
            digest = None
            if order.order_file is not None:
                digest = file_sha256(order.order_file)
                if digest is None:
                    _log.warning("court order file cannot be read", order_person=person.id)
                    continue
            seen[person.id] = (profile, digest)
            if self._logged.get(person.id) != seen[person.id]:
                found = {"order_sha256": digest} if digest is not None else {}
                _log.info("court order profile loaded", order_person=person.id, **found)
        self._logged = seen


def file_sha256(path: str) -> str | None:
    """The hex SHA-256 of the file at `path`, or None if it cannot be read (rules 3-4)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as file:
            while block := file.read(_BLOCK):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
