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
4. `ca_file` (public, any mode) is read relative to the config file's directory, must be a
   file that exists, and is made absolute; it must hold at least one PEM certificate.
"""

from __future__ import annotations

import ssl

from proxy.config import values
from proxy.config.files import absolute, file_problem
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
    update: dict[str, str] = {}
    if outbound.password_file is not None:
        path = absolute(document.directory, outbound.password_file)
        problem = file_problem(document, (*_KEY, "password_file"), path, secret=True)
        problems += [problem] if problem is not None else []
        update["password_file"] = path
    if outbound.ca_file is not None:
        path = absolute(document.directory, outbound.ca_file)
        problem = file_problem(document, (*_KEY, "ca_file"), path, secret=False)
        if problem is None and not _holds_certificates(path):
            problem = document.problem((*_KEY, "ca_file"), f"{path} holds no PEM certificate")
        problems += [problem] if problem is not None else []
        update["ca_file"] = path
    return outbound.model_copy(update=update), problems


def _holds_certificates(path: str) -> bool:
    """Whether `path` loads as a CA bundle (rule 4)."""
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError):
        return False
    return True
