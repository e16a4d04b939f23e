"""Logging in to an IMAP account with imapclient, TLS verified as configured."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

from imapclient import IMAPClient

from proxy.config.model import ImapAccount

_TIMEOUT = 60.0


def connect(account: ImapAccount, *, timeout: float = _TIMEOUT) -> IMAPClient:
    """A logged-in client for `account` (raises imapclient/socket errors as they come);
    `timeout` bounds each network step and the oauth2_command."""
    context = ssl.create_default_context(cafile=account.ca_file)
    implicit = account.tls == "implicit"
    port = account.port or (993 if implicit else 143)
    client = IMAPClient(
        account.host, port=port, ssl=implicit, ssl_context=context if implicit else None,
        timeout=timeout,
    )  # fmt: skip
    try:
        if account.tls == "starttls":
            client.starttls(context)
        if account.oauth2_command is not None:
            token = subprocess.run(
                account.oauth2_command, capture_output=True, text=True, check=True, timeout=timeout
            ).stdout.strip()
            client.oauth2_login(account.username, token)
        else:
            password = Path(account.password_file or "").read_text().strip()
            client.login(account.username, password)
    except BaseException:
        client.shutdown()
        raise
    return client


def default_folders(client: IMAPClient) -> list[str]:
    """INBOX and the server's Junk folder (special-use \\Junk), if it has one."""
    folders = ["INBOX"]
    junk = client.find_special_folder(b"\\Junk")
    if junk and junk not in folders:
        folders.append(junk)
    return folders
