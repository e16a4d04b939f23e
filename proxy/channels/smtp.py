"""The SMTP channel: aiosmtpd on the wire, the pipeline behind it.

Rules this module keeps:
1. Thin: SMTP in, an `Arrival` to the pipeline, a reply string out. No policy here.
2. The reply comes last: 250 only after `Pipeline.receive` returned (sealed, or taken by
   the next hop). Any fault at all, ours or the next hop's, is 451 4.3.0: the sending
   MTA keeps the message and retries. An exception never becomes a 5xx (aiosmtpd's
   default), because a 5xx makes the sender drop the mail.
3. DATA is read into one growing buffer, not one object per line (aiosmtpd's own way
   costs ~4x a message's size in memory: +198 MiB for 50 MiB, measured). `_Server`
   overrides only `smtp_DATA`, keeping aiosmtpd's replies and checks; it relies on
   aiosmtpd 1.4's internal hooks, so pyproject pins aiosmtpd < 1.5.
4. Silent to the sender: held and delivered mail get the same reply, word for word; we
   never send a bounce, DSN or auto-reply. The only 5xx replies are the protocol's own
   (size over the limit: 552) and a next hop's permanent refusal of allowed mail, passed
   back as it was given.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from proxy.config.model import SmtpChannel
from proxy.deliver.address import parse_listen
from proxy.deliver.hops import DeliveryRefused
from proxy.logs import get_logger
from proxy.pipeline import Arrival, Pipeline

ACCEPTED = "250 2.0.0 Ok: queued"
RETRY = "451 4.3.0 Temporary failure, please try again later"

_log = get_logger("smtp")


class SmtpHandler:
    """aiosmtpd's handler: hands each message to the pipeline, answers when it is safe."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.in_flight += 1
        self.idle.clear()
        try:
            raw = envelope.original_content or b""
            arrival = Arrival(
                raw=raw if isinstance(raw, bytes) else raw.encode(),
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                peer=_peer(session),
                helo=session.host_name or "",
                options=tuple(
                    o for o in envelope.mail_options if not o.upper().startswith("SIZE=")
                ),
            )
            await self.pipeline.receive(arrival)
        except DeliveryRefused as refused:
            return f"{refused.code} {refused.text}"
        except Exception:  # any fault: the sender keeps the mail and retries
            # No error type or place: sealing faults only ever hit held mail and next-hop
            # faults only allowed mail, so either would tell a log reader which this was.
            _log.warning("message not accepted, sender told to retry")
            return RETRY
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        return ACCEPTED

    def __dir__(self) -> list[str]:
        # aiosmtpd looks its hooks up with dir() (and inspect.getmembers) per connection.
        return ["handle_DATA", "handle_exception"]

    async def handle_exception(self, error: Exception) -> str:
        _log.warning("smtp session fault", exc_info=error)
        return RETRY


# The names aiosmtpd looks for on itself with dir(): auth_* (AUTH mechanisms) and smtp_*
# (the commands it answers).
_OWN_NAMES = tuple(sorted(n for n in dir(SMTP) if n.startswith(("auth_", "smtp_"))))


class _Server(SMTP):
    """aiosmtpd's SMTP with a leaner DATA reader (rule 3); everything else is aiosmtpd's."""

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ runs inspect.getmembers(self) on every connection (~80 us) to
        # find its auth_* and smtp_* methods; naming exactly those gives the same answer.
        return list(_OWN_NAMES)

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command hook
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, limit = bytearray(), self.data_size_limit
        too_much = too_long = in_line = False
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as error:  # a line over the RFC 5321 limit
                too_long, content = True, bytearray()
                line = await self._reader.read(error.consumed)
            if not in_line and line == b".\r\n":
                break
            if not in_line and line.startswith(b"."):
                line = line[1:]  # RFC 5321 4.5.2: undo dot-stuffing
            in_line = not line.endswith(b"\r\n")
            if not (too_much or too_long):
                content += line
                if limit and len(content) > limit:
                    too_much, content = True, bytearray()
        if too_long or too_much:
            self._reset()
            await self.push(
                "500 Line too long (see RFC5321 4.5.3.1.6)" if too_long
                else "552 Error: Too much mail data"
            )  # fmt: skip
            return
        original = bytes(content)
        del content
        self.envelope.content = self.envelope.original_content = original
        status = await self._call_handler_hook("DATA")
        self._reset()
        await self.push("250 OK" if status is MISSING else status)

    def _reset(self) -> None:
        # aiosmtpd's own post-DATA reset (a fresh envelope); untyped there, so cast here.
        reset: Callable[[], None] = self._set_post_data_state
        reset()


def _peer(session: Session) -> str:
    peer: Any = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "unknown")


def tls_context(settings: SmtpChannel) -> ssl.SSLContext | None:
    """A server TLS context for STARTTLS when a certificate is configured."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


async def serve_smtp(settings: SmtpChannel, handler: SmtpHandler) -> asyncio.base_events.Server:
    """Start listening; returns the asyncio server (close it to stop accepting)."""
    host, port = parse_listen(settings.listen)
    context = tls_context(settings)

    def protocol() -> SMTP:
        return _Server(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname,
            ident="ESMTP",  # no product name: a sender learns nothing about the filter
            tls_context=context,
        )

    loop = asyncio.get_running_loop()
    return await loop.create_server(protocol, host, port, reuse_address=True)
