"""Files the config names: read relative to the config file, and secret ones private.

Rules this module keeps:
1. `absolute`: a path as written (`~` expanded), relative to the config file's directory,
   normalized. Written `${CREDENTIALS_DIRECTORY}/name` (expanded when the file is read),
   it is where systemd put the credential.
2. `file_problem`: the file must exist; a secret one must not be readable by its group or
   others. One line naming the file and its mode, never what it holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from proxy.config.load import Document, Loc
from proxy.errors import ConfigProblem


def absolute(directory: Path, written: str) -> str:
    """Rule 1."""
    path = Path(os.path.expanduser(written))
    return os.path.normpath(path if path.is_absolute() else directory / path)


def file_problem(
    document: Document, where: Loc, path: str, *, secret: bool, reader: str = "the daemon"
) -> ConfigProblem | None:
    """Rule 2: what is wrong with the file at `path` (named at `where`), if anything."""
    if not os.path.isfile(path):
        return document.problem(where, f"no such file: {path}")
    if secret and (mode := os.stat(path).st_mode & 0o777) & 0o077:
        return document.problem(
            where, f"{path} can be read by other users (mode {mode:04o}): make it 0600, "
            f"owned by the user {reader} runs as",
        )  # fmt: skip
    return None
