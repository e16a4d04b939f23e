"""What a witness remembers: the latest checkpoint it cosigned for each log.

Rules this module keeps:
1. One file, `state.json` in the state directory (0700), mode 0600, replaced atomically and
   durably (proxy.disk): a crash leaves the old state or the new, never half of one.
2. A checkpoint is remembered before its cosignature is sent (`remember` returns only once
   it is on disk), so a restart never cosigns a checkpoint older than, or forked from, one
   it cosigned before. Callers run decide-then-remember one request at a time.
3. Reading is strict: a state file not exactly in format is a `StateError` with one line,
   never a best guess, because a witness that forgot would cosign a fork.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

from proxy.disk import replace_file
from proxy.witness.decision import Seen

STATE_FILE = "state.json"
_FORMAT = "nocontact-witness-state"
_MOST_BYTES = 64 * 1024 * 1024


class StateError(ValueError):
    """The witness's state file cannot be read or written; one line says why."""


class WitnessState:
    """The latest cosigned checkpoint per origin, kept in `directory`."""

    def __init__(self, directory: Path, known: dict[str, Seen]) -> None:
        self._path = directory / STATE_FILE
        self._known = known

    @classmethod
    def open(cls, directory: Path) -> WitnessState:
        """The state kept in `directory` (made 0700 if absent); StateError if unreadable."""
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            with (directory / STATE_FILE).open("rb") as handle:
                data = handle.read(_MOST_BYTES + 1)
        except FileNotFoundError:
            return cls(directory, {})
        except OSError as error:
            raise StateError(f"cannot read {directory / STATE_FILE}: {error.strerror}") from None
        return cls(directory, _parse(data, directory / STATE_FILE))

    @property
    def known(self) -> dict[str, Seen]:
        return dict(self._known)

    def remember(self, origin: str, seen: Seen) -> None:
        """Keep `seen` as the latest for `origin`, on disk before this returns (rule 2)."""
        known = {**self._known, origin: seen}
        try:
            replace_file(self._path, _encode(known))
        except OSError as error:
            raise StateError(f"cannot write {self._path}: {error.strerror}") from None
        self._known = known


def _encode(known: dict[str, Seen]) -> bytes:
    logs = {
        origin: {
            "size": seen.size,
            "root": base64.b64encode(seen.root).decode(),
            "note": seen.note.decode("utf-8"),
        }
        for origin, seen in sorted(known.items())
    }
    return json.dumps({"format": _FORMAT, "version": 1, "logs": logs}, indent=1).encode()


def _parse(data: bytes, path: os.PathLike[str]) -> dict[str, Seen]:
    bad = StateError(f"{os.fspath(path)} is not a witness state file")
    if len(data) > _MOST_BYTES:
        raise bad
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise bad from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise bad
    logs = document.get("logs")
    if document.get("version") != 1 or not isinstance(logs, dict):
        raise bad
    known: dict[str, Seen] = {}
    for origin, entry in logs.items():
        if not isinstance(entry, dict) or set(entry) != {"size", "root", "note"}:
            raise bad
        size, root, note = entry["size"], entry["root"], entry["note"]
        if type(size) is not int or size < 0 or not isinstance(root, str):
            raise bad
        if not isinstance(note, str):
            raise bad
        try:
            raw = base64.b64decode(root, validate=True)
            text = note.encode("utf-8")
        except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
            raise bad from None
        if len(raw) != 32:
            raise bad
        known[origin] = Seen(size=size, root=raw, note=text)
    return known
