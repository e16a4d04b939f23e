"""The cosignatures the archive's checkpoints got, kept beside the log in `witnessed/`.

Rules this module keeps:
1. One file per tree size, `witnessed/<size>`: the newest checkpoint note signed at that
   size with every cosignature it got appended, so the file is itself a C2SP signed note
   any stock verifier reads. A newer note at the same size (the fixed cadence signs one
   every 10 minutes, whatever arrived) replaces the older and its cosignatures.
2. `acknowledged.json` holds, per witness key, the size it last cosigned: the old size
   of the next request to it.
3. Every write is an atomic, durable replace of a 0600 file (proxy.disk), made on a
   worker thread by the caller, never on the event loop; the directory is 0700.
4. Reading is forgiving where forgetting is harmless: an unreadable `acknowledged.json`
   reads as empty (the witness's 409 says its size again), and an unreadable size file
   is replaced by the new note.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from proxy.disk import replace_file

DIRECTORY = "witnessed"
ACKNOWLEDGED = "acknowledged.json"
_MOST_BYTES = 1024 * 1024


class Witnessed:
    """The `witnessed/` directory of one archive."""

    def __init__(self, archive_root: Path) -> None:
        self.directory = archive_root / DIRECTORY

    def acknowledged(self) -> dict[str, int]:
        """The size each witness (by its encoded key) last cosigned (rule 2, rule 4)."""
        try:
            with (self.directory / ACKNOWLEDGED).open("rb") as handle:
                document = json.loads(handle.read(_MOST_BYTES))
        except (OSError, ValueError, RecursionError):
            return {}
        if not isinstance(document, dict):
            return {}
        return {k: v for k, v in document.items() if type(v) is int and v >= 0}

    def acknowledge(self, sizes: dict[str, int]) -> None:
        """Keep the size each witness last cosigned (rule 2)."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        data = json.dumps(dict(sorted(sizes.items())), indent=1).encode()
        replace_file(self.directory / ACKNOWLEDGED, data)

    def keep(self, size: int, note: bytes, lines: Sequence[str]) -> None:
        """Add cosignature `lines` to the note kept for `size` (rule 1)."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        path = self.directory / str(size)
        try:
            with path.open("rb") as handle:
                kept = handle.read(_MOST_BYTES)
        except OSError:
            kept = b""
        if not kept.startswith(note):
            kept = note
        have = set(kept[len(note) :].decode("utf-8", "replace").splitlines(keepends=True))
        fresh = [line for line in lines if line not in have]
        if fresh or kept == note:
            replace_file(path, kept + "".join(fresh).encode())

    def note(self, size: int) -> bytes | None:
        """The cosigned note kept for `size`, if any."""
        try:
            with (self.directory / str(size)).open("rb") as handle:
                return handle.read(_MOST_BYTES)
        except OSError:
            return None
