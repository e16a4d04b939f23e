"""The daemon's channels, listening: on the sockets systemd passed, or on their addresses.

Rules this module keeps:
1. The sockets systemd passed are claimed for the daemon's listeners (`smtp`,
   `webhooks`: `proxy.systemd.activation` rule 2) once the config is read, before the
   archive or anything else is opened: a socket the daemon cannot use stops the start.
2. A channel listens on every socket passed under its name, or else binds its configured
   address; an address it cannot bind stops the start with one line.
3. The log says where each channel listens (its address, or that systemd passed it),
   nothing else.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from proxy.archive import Archive
from proxy.channels.sms.runner import SmsRunner
from proxy.channels.smtp import SmtpHandler, serve_smtp
from proxy.config import Config
from proxy.config.model import SmtpChannel
from proxy.errors import NocontactError
from proxy.logs import get_logger
from proxy.pipeline import Pipeline
from proxy.systemd.activation import take_sockets

_log = get_logger("daemon")
PASSED = "sockets passed by systemd"


class ListenError(NocontactError):
    """A channel cannot listen; the message says why in one line."""


def claim_sockets(config: Config) -> dict[str, list[socket.socket]]:
    """The sockets systemd passed, by listener name (rule 1)."""
    channels = config.channels
    return take_sockets(
        {"smtp": ("channels.smtp", channels.smtp is not None),
         "webhooks": ("channels.sms", channels.sms is not None)},
        "nocontact run",
    )  # fmt: skip


async def listen_smtp(
    settings: SmtpChannel | None, handler: SmtpHandler, passed: Sequence[socket.socket]
) -> list[asyncio.AbstractServer]:
    """The SMTP servers: one on each socket systemd passed, or one on `listen` (rule 2);
    none without an SMTP channel."""
    if settings is None:
        return []
    if passed:
        servers: list[asyncio.AbstractServer] = [
            await serve_smtp(settings, handler, sock) for sock in passed
        ]
        _log.info("smtp listening", listen=PASSED)
        return servers
    try:
        server = await serve_smtp(settings, handler)
    except OSError as error:
        raise ListenError(f"cannot listen on {settings.listen}: {error.strerror}") from error
    _log.info("smtp listening", listen=settings.listen)
    return [server]


async def listen_sms(
    config: Config, pipeline: Pipeline, archive: Archive, passed: Sequence[socket.socket]
) -> SmsRunner | None:
    """The SMS channel, listening, if one is configured."""
    sms = config.channels.sms
    if sms is None:
        return None
    phone = SmsRunner(sms, pipeline, archive, config.default_region, passed)
    await phone.start()
    where = sms.listen if not passed else PASSED
    _log.info("sms listening", listen=where, archive=config.archive.path)
    return phone
