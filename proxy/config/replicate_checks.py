"""The meaning of the `replicate:` section: where the off-site replica of the log goes.

Rules this module keeps:
1. An `http://` endpoint sends the objects and the signed requests in the clear: only for
   an S3 server on this machine (127.0.0.1, ::1, localhost), as for an IMAP account or
   the outbound relay. One line, at `endpoint`.
2. `credentials_file` is read relative to the config file's directory, must be a file
   that exists, and is refused if its group or others may read it (meaning.py rule 5):
   one line naming it and its mode, never what it holds. It is made absolute, and so is
   `state_file`. What the credentials file holds is read when the replicator starts
   (proxy/replica/store.py rule 5), so loading a config never loads boto3.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

from proxy.config import values
from proxy.config.load import Document
from proxy.config.model import Replicate
from proxy.errors import ConfigProblem

_KEY = ("replicate",)


def check_replicate(
    document: Document, replicate: Replicate | None
) -> tuple[Replicate | None, list[ConfigProblem]]:
    """The section with its files made absolute, and what is wrong (rules 1, 2)."""
    if replicate is None:
        return None, []
    problems: list[ConfigProblem] = []
    if replicate.endpoint is not None:
        parts = urllib.parse.urlsplit(replicate.endpoint)
        if parts.scheme != "https" and not values.loopback_host(parts.hostname or ""):
            problems.append(document.problem(
                (*_KEY, "endpoint"), "http sends every object in the clear: use https, or "
                f"an S3 server on this machine (127.0.0.1, ::1, localhost), not {parts.hostname}",
            ))  # fmt: skip
    path = _absolute(document.directory, replicate.credentials_file)
    where = (*_KEY, "credentials_file")
    if not os.path.isfile(path):
        problems.append(document.problem(where, f"no such file: {path}"))
    elif (mode := os.stat(path).st_mode & 0o777) & 0o077:
        problems.append(document.problem(
            where, f"{path} can be read by other users (mode {mode:04o}): make it 0600, "
            "owned by the user the replicator runs as",
        ))  # fmt: skip
    state = _absolute(document.directory, replicate.state_file)
    update = {"credentials_file": path, "state_file": state}
    return replicate.model_copy(update=update), problems


def _absolute(directory: Path, written: str) -> str:
    path = Path(os.path.expanduser(written))
    return os.path.normpath(path if path.is_absolute() else directory / path)
