"""The meaning of the `outbound:` section: the SMTP relay a contact's reply to him leaves by.

Rules this module keeps:
1. `tls: none` sends the login and the reply in the clear: only for a relay on this
   machine (127.0.0.1, ::1, localhost), as for an IMAP account (meaning.py rule 6). One
   line, at `tls`.
2. `password_file` is read relative to the config file's directory, must be a file that
   exists, and is refused if its group or others may read it (meaning.py rule 5): one line
   naming it and its mode, never what it holds. It is made absolute. Written
   `${CREDENTIALS_DIRECTORY}/name`, it is read where systemd put the credential.
3. A username without a password file, or the other way round, is refused where the
   section is read (model.py); what the file holds is read only when a reply is sent.
"""

from __future__ import annotations

import os
from pathlib import Path

from proxy.config import values
from proxy.config.load import Document
from proxy.config.model import Outbound
from proxy.errors import ConfigProblem

_KEY = ("outbound",)


def check_outbound(
    document: Document, outbound: Outbound | None
) -> tuple[Outbound | None, list[ConfigProblem]]:
    """The section with its password file made absolute, and what is wrong (rules 1, 2)."""
    if outbound is None:
        return None, []
    problems: list[ConfigProblem] = []
    if outbound.tls == "none" and not values.loopback_host(outbound.host):
        problems.append(document.problem(
            (*_KEY, "tls"), "none sends the password and the reply in the clear: only for "
            f"a relay on this machine (127.0.0.1, ::1, localhost), not {outbound.host}",
        ))  # fmt: skip
    if outbound.password_file is None:
        return outbound, problems
    path = _absolute(document.directory, outbound.password_file)
    where = (*_KEY, "password_file")
    if not os.path.isfile(path):
        problems.append(document.problem(where, f"no such file: {path}"))
    elif (mode := os.stat(path).st_mode & 0o777) & 0o077:
        problems.append(document.problem(
            where, f"{path} can be read by other users (mode {mode:04o}): make it 0600, "
            "owned by the user the daemon runs as",
        ))  # fmt: skip
    return outbound.model_copy(update={"password_file": path}), problems


def _absolute(directory: Path, written: str) -> str:
    path = Path(os.path.expanduser(written))
    return os.path.normpath(path if path.is_absolute() else directory / path)
