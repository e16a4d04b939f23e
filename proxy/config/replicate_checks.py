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

import urllib.parse

from proxy.config import values
from proxy.config.files import absolute, file_problem
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
    path = absolute(document.directory, replicate.credentials_file)
    problem = file_problem(document, (*_KEY, "credentials_file"), path, secret=True,
                           reader="the replicator")  # fmt: skip
    if problem is not None:
        problems.append(problem)
    state = absolute(document.directory, replicate.state_file)
    update = {"credentials_file": path, "state_file": state}
    return replicate.model_copy(update=update), problems
