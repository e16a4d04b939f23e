"""Whether each IMAP account logs in, the way the watcher does.

Rules this module keeps:
1. The watcher's own `connect` is used (TLS mode, CA file, password_file or
   oauth2_command as configured), with doctor's timeout; then LOGOUT. No folder is
   selected and nothing is read: the account's mail is none of doctor's business.
2. A refusal is one line: the server's own answer to LOGIN (e.g. `[AUTHENTICATIONFAILED]
   Authentication failed.`), a TLS failure's reason, or what kept the connection from
   being made. The password and token are never printed.
"""

from __future__ import annotations

import contextlib
import subprocess

from imapclient.exceptions import IMAPClientError

from proxy.channels.imap.connect import connect
from proxy.config import Config
from proxy.config.model import ImapAccount
from proxy.doctor.findings import Finding, fail, ok
from proxy.doctor.reasons import why


def check_mailboxes(config: Config, timeout: float) -> list[Finding]:
    if config.channels.imap is None:
        return []
    found = []
    for account in config.channels.imap.accounts:
        what = f"imap account {account.name} ({account.username} at {account.host})"
        problem = login_problem(account, timeout)
        found.append(ok(f"{what} logs in") if problem is None else fail(what, problem))
    return found


def login_problem(account: ImapAccount, timeout: float) -> str | None:
    """Why `account` cannot log in now, or None (rules 1 and 2)."""
    try:
        client = connect(account, timeout=timeout)
    except (IMAPClientError, OSError, subprocess.SubprocessError) as error:
        return why(error, timeout)
    with contextlib.suppress(IMAPClientError, OSError):
        client.logout()
    return None
