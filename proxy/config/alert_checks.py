"""The meaning of the `alerts:` section and of each contact's `alerts:` (issue 23).

Rules this module keeps:
1. A contact's `alerts` needs an `alerts:` section, and names only transports it defines.
2. A transport's `url_file` is read relative to the config file's directory, must exist
   and, holding a secret (a password in the URL), must not be readable by others (0600),
   as every secret file (meaning.py rule 5). Its path is made absolute.
3. Each URL (written, or read from its file) must be one apprise knows how to send to;
   the problem says so without echoing the URL, which may hold a password.
4. `timezone` must be an IANA time zone the system knows (e.g. Europe/Berlin).
5. Never through her own mailbox or to her own phone: an email transport that logs in as,
   sends from or sends to one of her IMAP accounts (`channels.imap.accounts[].username`,
   compared as mailboxes) is refused, because her Sent folder or inbox would keep a copy
   she could read; so is any transport whose URL holds her phone number
   (`channels.sms.forward_to`). One line each, naming the transport.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy.alerts.send import parsed, transport_url
from proxy.config.files import absolute, file_problem
from proxy.config.load import Document
from proxy.config.model import Alerts, AlertTransport, Config
from proxy.errors import ConfigProblem
from proxy.identity import canonical_email

_OWN_MAILBOX = ("sends through her own mailbox ({what}): her mail would keep a copy she "
                "could read; use an email account of its own for alerts")  # fmt: skip


def check_alerts(document: Document, config: Config) -> tuple[Alerts | None, list[ConfigProblem]]:
    """The `alerts` section with its paths made absolute, and what is wrong (rules 1-5)."""
    problems = list(_contacts(document, config))
    alerts = config.alerts
    if alerts is None:
        return None, problems
    try:
        ZoneInfo(alerts.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(document.problem(("alerts", "timezone"), f"not a time zone this "
                        f"system knows: {alerts.timezone!r} (e.g. Europe/Berlin)"))  # fmt: skip
    transports: dict[str, AlertTransport] = {}
    for name, written in alerts.transports.items():
        key, transport = ("alerts", "transports", name), written
        if transport.url_file is not None:
            path = absolute(document.directory, transport.url_file)
            transport = transport.model_copy(update={"url_file": path})
            problem = file_problem(document, (*key, "url_file"), path, secret=True)
            if problem is not None:
                problems.append(problem)
            if not os.path.isfile(path):  # nothing to read a URL from
                transports[name] = transport
                continue
        transports[name] = transport
        url = transport_url(transport)
        where = (*key, "url" if transport.url is not None else "url_file")
        if url is None:
            problems.append(document.problem(where, "holds no apprise URL"))
            continue
        notifier = parsed(url)
        if notifier is None:
            problems.append(document.problem(where, "not an apprise URL apprise can send to "
                                             "(see apprise's list of services)"))  # fmt: skip
            continue
        problems += [document.problem(where, why) for why in _hers(notifier, url, config)]
    return alerts.model_copy(update={"transports": transports}), problems


def _contacts(document: Document, config: Config) -> Iterator[ConfigProblem]:
    """Rule 1."""
    defined = set(config.alerts.transports) if config.alerts is not None else set()
    for index, contact in enumerate(config.contacts):
        if contact.alerts is None:
            continue
        if config.alerts is None:
            yield document.problem(
                ("contacts", index, "alerts"),
                "needs an alerts: section (where transports are named)",
            )
            continue
        for place, name in enumerate(contact.alerts.transports):
            if name not in defined:
                yield document.problem(
                    ("contacts", index, "alerts", "transports", place),
                    f"no transport named {name!r} in alerts.transports",
                )


def _hers(notifier: object, url: str, config: Config) -> Iterator[str]:
    """Rule 5: why this transport would reach her, if it would."""
    imap = config.channels.imap
    mailboxes = {canonical_email(a.username) for a in imap.accounts if "@" in a.username} \
        if imap is not None else set()  # fmt: skip
    if mailboxes and type(notifier).__name__ == "NotifyEmail":
        user = str(getattr(notifier, "user", "") or "")
        host = str(getattr(notifier, "host", "") or "")
        login = user if "@" in user else f"{user}@{host}" if user else ""
        sender = getattr(notifier, "from_addr", None)
        targets = [t[1] for t in getattr(notifier, "targets", ()) if len(t) > 1]
        found = [("logs in as her account", login),
                 ("sends from her address", sender[1] if sender else ""),
                 *(("sends to her address", target) for target in targets)]  # fmt: skip
        for what, address in found:
            if address and "@" in address and canonical_email(address) in mailboxes:
                yield _OWN_MAILBOX.format(what=what)
                break
    sms = config.channels.sms
    if sms is not None:
        hers = re.sub(r"\D", "", sms.forward_to)[-9:]
        runs = (re.sub(r"\D", "", run) for run in re.findall(r"[\d\-.() ]{7,}", unquote(url)))
        if len(hers) >= 7 and any(run.endswith(hers) for run in runs):
            yield "sends to her own phone (channels.sms.forward_to): alerts are for contacts"
