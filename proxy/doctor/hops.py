"""Whether each next hop would take mail now: an SMTP or LMTP server answers EHLO or LHLO,
or a Maildir can be written.

Rules this module keeps:
1. The next hops are `channels.smtp.deliver` and each pull-mode IMAP account's `deliver`,
   each asked once however often it is named.
2. A server is asked only its greeting and EHLO (LHLO for LMTP), then QUIT: no transaction,
   no recipient, nothing that a log of the next hop could tie to a message.
3. A Maildir is writable when its directory (or, not made yet, the nearest one above it)
   and its `tmp`, `new` and `cur` are writable by this user; nothing is written to it.
4. Every failure is one short reason (`connection refused`, `no answer within 10 s`,
   `answered 421`), never a traceback; `timeout` bounds the whole conversation's each step.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from pathlib import Path

from proxy.config import Config
from proxy.deliver.address import Destination, Scheme, parse_destination
from proxy.doctor.findings import Finding, fail, ok
from proxy.doctor.reasons import why


def next_hops(config: Config) -> Iterator[str]:
    """Every configured `deliver`, once each (rule 1)."""
    written = []
    if config.channels.smtp is not None:
        written.append(config.channels.smtp.deliver)
    if config.channels.imap is not None:
        written += [a.deliver for a in config.channels.imap.accounts if a.deliver is not None]
    yield from dict.fromkeys(written)


def check_hops(config: Config, timeout: float) -> list[Finding]:
    hostname = config.channels.smtp.hostname if config.channels.smtp else "nocontact.local"
    found = []
    for written in next_hops(config):
        problem = hop_problem(written, hostname=hostname, timeout=timeout)
        kind = "is writable" if written.startswith("maildir:") else "answers"
        found.append(
            ok(f"next hop {written} {kind}") if problem is None
            else fail(f"next hop {written}", problem)
        )  # fmt: skip
    return found


def hop_problem(written: str, *, hostname: str, timeout: float) -> str | None:
    """Why the next hop `written` would not take mail now, or None (rules 2-4)."""
    try:
        destination = parse_destination(written)
    except ValueError as error:
        return str(error)
    if destination.scheme is Scheme.MAILDIR:
        return _maildir_problem(Path(destination.path))
    try:
        return _server_problem(destination, hostname=hostname, timeout=timeout)
    except (smtplib.SMTPException, OSError) as error:
        return why(error, timeout)


def _server_problem(destination: Destination, *, hostname: str, timeout: float) -> str | None:
    client: smtplib.SMTP
    if destination.scheme is Scheme.LMTP:
        client = smtplib.LMTP(local_hostname=hostname, timeout=timeout)
        code, _ = client.connect(destination.path or destination.host, destination.port or 24)
    else:
        client = smtplib.SMTP(local_hostname=hostname, timeout=timeout)
        code, _ = client.connect(destination.host, destination.port)
    try:
        if code != 220:
            return f"greeted with {code}"
        code, _ = client.ehlo()  # LHLO for smtplib.LMTP
        if code != 250:
            return f"answered {'LHLO' if destination.scheme is Scheme.LMTP else 'EHLO'} with {code}"
        return None
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _maildir_problem(root: Path) -> str | None:
    if root.exists():
        if not root.is_dir():
            return "not a directory"
        for path in (root, *(root / part for part in ("tmp", "new", "cur"))):
            if path.exists() and not os.access(path, os.W_OK | os.X_OK):
                return f"{path} is not writable by this user"
        return None
    place = root.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not os.access(place, os.W_OK | os.X_OK):
        return f"not made yet, and {place} is not writable by this user"
    return None
