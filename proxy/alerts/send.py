"""Handing one alert to one transport: an apprise URL, sent synchronously on a worker thread.

Rules this module keeps:
1. apprise is the library for every transport (email, ntfy, Signal, Matrix, SMS, JSON
   webhooks): nocontact writes no protocol of its own here. `send` blocks; the service
   calls it on a worker thread, never on the event loop.
2. apprise keeps nothing on disk (`PersistentStoreMode.MEMORY`: no cache file dating an
   alert) and logs nothing: its logger is silenced, because a line per send would date
   every alert (no log line per alert, docs/what-files-tell.md).
3. A transport's URL is read when it is used: from `url`, or from `url_file` (a secret,
   0600, checked at config load: config/alert_checks.py). Anything that goes wrong, an
   unreadable file, a bad URL, a refused or failed send, is `False`: the outbox retries.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time config imports this module (config/alert_checks.py)
    from proxy.config.model import AlertTransport

_MAX_URL_FILE = 16 << 10
logging.getLogger("apprise").disabled = True  # rule 2


@functools.cache
def _apprise() -> tuple[Any, Any]:
    """apprise and its settings, imported at first use: ~90 ms that every config load
    and command would pay otherwise, with or without alerts."""
    import apprise  # noqa: PLC0415 - see the docstring
    from apprise.common import PersistentStoreMode  # noqa: PLC0415

    return apprise, apprise.AppriseAsset(storage_mode=PersistentStoreMode.MEMORY)  # rule 2


def transport_url(transport: AlertTransport) -> str | None:
    """The transport's apprise URL, or None if its file cannot be read (rule 3)."""
    if transport.url is not None:
        return transport.url
    if transport.url_file is None:
        return None
    try:
        with Path(transport.url_file).open("rb") as file:
            written = file.read(_MAX_URL_FILE + 1)
    except OSError:
        return None
    if len(written) > _MAX_URL_FILE:
        return None
    text = written.decode("utf-8", "replace").strip()
    return text or None


def parsed(url: str) -> object | None:
    """apprise's reading of `url` (its plugin object), or None if it knows no such service
    (config checks: config/alert_checks.py)."""
    apprise, asset = _apprise()
    try:
        found: object | None = apprise.Apprise.instantiate(
            url, asset=asset, suppress_exceptions=True
        )
        return found or None
    except Exception:  # a URL apprise chokes on is one it cannot send to
        return None


def send(url: str, title: str, body: str) -> bool:
    """Send one message through `url`; whether the transport took it (blocking, rule 1)."""
    apprise, asset = _apprise()
    notifier = apprise.Apprise(asset=asset)
    try:
        if not notifier.add(url):
            return False
        return bool(notifier.notify(title=title, body=body))
    except Exception:  # any library failure is a failed send: the outbox retries
        return False
