"""The SMTP channel: aiosmtpd on the wire, the pipeline behind it.

Rules this module keeps:
1. Thin: SMTP in, an `Arrival` to the pipeline, a reply string out. No policy here.
2. The reply comes last: 250 only after `Pipeline.receive` returned (sealed, or taken by
   the next hop). Any fault at all, ours or the next hop's, is 451 4.3.0: the sending
   MTA keeps the message and retries. An exception never becomes a 5xx (aiosmtpd's
   default), because a 5xx makes the sender drop the mail.
3. DATA is read into one growing buffer, handed over whole at the end (never copied),
   not one object per line (aiosmtpd's own way costs ~4x a message's size in memory:
   +198 MiB for 50 MiB, measured), in bulk: the
   reader is searched for the end of data in C, never drained line by line (100,000 tiny
   lines were 100,000 trips through the reader, holding the event loop). The end is CRLF
   "." CRLF only: a bare LF before a dot is data (no SMTP smuggling). A line may be of any
   length (a 1 MB line is taken whole, as Postfix takes it): a refusal would be a bounce.
   Only the size limit refuses (552), before any decision. `_Server` overrides only
   `connection_made`/`connection_lost`/`data_received` (rules 5 and 6) and `smtp_DATA`,
   keeping aiosmtpd's replies and checks; it relies on aiosmtpd 1.4's internal hooks, so
   pyproject pins aiosmtpd < 1.5.
4. Silent to the sender: held and delivered mail get the same reply, word for word; we
   never send a bounce, DSN or auto-reply. The only 5xx replies are the protocol's own
   (size over the limit: 552) and a next hop's permanent refusal of allowed mail, passed
   back as it was given.
5. An idle client is cut off after `idle_timeout_seconds` (RFC 5321 4.5.3.2): between
   commands (aiosmtpd's timer) and inside DATA (no bytes for that long). While we work on
   a message the timer is stopped: the server's own time never cuts off a sender.
6. Connection limits, as Postfix's: at most `max_connections` sessions, and at most
   `max_connections_per_client` from one address. Beyond either, the new connection gets
   421 4.7.0 (try later, never 5xx) and is closed before any greeting. The limits look
   only at the client's address, never at who the sender is.
7. A MAIL or RCPT address holding a control character (C0 or DEL) is refused with 501, as
   Postfix refuses it, before any decision and whoever it names: no next hop would take
   it (aiosmtplib refuses to send it), and a 451 for ever would bounce later.
8. The reply to DATA is sent no sooner than `reply_after_ms` after the data ended,
   whatever became of the message: sealing and relaying take different times (held
   ~2.8 ms, relayed ~2.3 ms at the median in bench/smtp.py), and a sender timing many
   replies would learn which his met. Both finish well inside the default 10 ms, so both
   are answered at 10 ms.
9. A recipient is checked at RCPT, whoever the sender: the next hop is asked as Postfix's
   `reject_unverified_recipient` asks it (`NextHop.verify`). One it refuses for good gets
   550 at RCPT, one it cannot answer for now 450; so a made-up recipient gets the same
   answer from his mail as from anyone's (before, 250 and sealed if held, 550 at DATA if
   allowed), and a message never reaches DATA with a recipient the next hop would refuse.
10. The server listens on the configured address, or on a listening socket systemd
    passed (`proxy.systemd.activation`): the same server either way.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from proxy.config.model import SmtpChannel
from proxy.deliver.address import parse_listen
from proxy.deliver.hops import DeliveryRefused
from proxy.logs import get_logger
from proxy.normalize.valid import valid_text
from proxy.pipeline import Arrival, Pipeline

ACCEPTED = "250 2.0.0 Ok: queued"
RETRY = "451 4.3.0 Temporary failure, please try again later"
TOO_MANY = "421 4.7.0 Too many connections, please try again later"
BAD_SENDER = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "501 5.1.3 Bad recipient address syntax"
UNVERIFIED = "450 4.1.1 Recipient address cannot be checked now, please try again later"
_CONTROLS = str.maketrans("", "", "".join(map(chr, [*range(32), 127])))
_REFUSALS_LOGGED_EVERY = 60.0
_YIELD_EVERY = 256  # pieces of DATA read before other sessions get a turn
_SLICE = 1 << 20  # bytes of DATA un-stuffed before other sessions get a turn

_log = get_logger("smtp")


class SmtpHandler:
    """aiosmtpd's handler: hands each message to the pipeline, answers when it is safe."""

    def __init__(self, pipeline: Pipeline, *, reply_after: float = 0.0) -> None:
        self.pipeline = pipeline
        self.reply_after = reply_after  # seconds: rule 8
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.in_flight += 1
        self.idle.clear()
        ended = asyncio.get_running_loop().time()
        try:
            raw = envelope.original_content or b""
            arrival = Arrival(
                raw=raw if isinstance(raw, bytes) else raw.encode(),
                sender=envelope.mail_from or "",
                recipients=tuple(envelope.rcpt_tos),
                peer=_address(session.peer),
                helo=session.host_name or "",
                options=tuple(
                    o for o in envelope.mail_options if not o.upper().startswith("SIZE=")
                ),
            )
            await self.pipeline.receive(arrival)
        except DeliveryRefused as refused:
            await self._not_before(ended)
            return f"{refused.code} {refused.text}"
        except Exception:  # any fault: the sender keeps the mail and retries
            # No error type or place: sealing faults only ever hit held mail and next-hop
            # faults only allowed mail, so either would tell a log reader which this was.
            _log.warning("message not accepted, sender told to retry")
            await self._not_before(ended)
            return RETRY
        else:
            await self._not_before(ended)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()
        return ACCEPTED

    async def _not_before(self, ended: float) -> None:
        """Wait until `reply_after` has passed since the data ended (rule 8)."""
        left = ended + self.reply_after - asyncio.get_running_loop().time()
        if left > 0:
            await asyncio.sleep(left)

    # MAIL and RCPT: only the refusal of rule 7; MISSING lets aiosmtpd take the address
    # (and answer 250) as it does without a hook.
    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> object:  # fmt: skip
        return BAD_SENDER if _has_control(address) else MISSING

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> object:  # fmt: skip
        if _has_control(address):
            return BAD_RECIPIENT
        answer = await self.pipeline.next_hop.verify(address)  # rule 9
        if answer is None:
            return UNVERIFIED
        code, text = answer
        if code >= 500:
            first = text.splitlines()[0] if text else ""
            return f"550 5.1.1 Recipient address rejected: {valid_text(first)[:200]}".rstrip()
        if code >= 400:
            return UNVERIFIED
        return MISSING

    def __dir__(self) -> list[str]:
        # aiosmtpd looks its hooks up with dir() (and inspect.getmembers) per connection.
        return ["handle_DATA", "handle_MAIL", "handle_RCPT", "handle_exception"]

    async def handle_exception(self, error: Exception) -> str:
        _log.warning("smtp session fault", exc_info=error)
        return RETRY


def _has_control(address: str) -> bool:
    return len(address.translate(_CONTROLS)) != len(address)


class Admission:
    """Open sessions, counted in total and per client address (rule 6)."""

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.refused = 0
        self._logged_at = -_REFUSALS_LOGGED_EVERY

    def admit(self, address: str) -> bool:
        """Count a new session in, or say no (and count the refusal)."""
        if self.open >= self.total or self.by_address.get(address, 0) >= self.per_client:
            self.refused += 1
            now = time.monotonic()
            if now - self._logged_at >= _REFUSALS_LOGGED_EVERY:  # a flood is not a log flood
                self._logged_at = now
                _log.warning("smtp connection limit reached", refused=self.refused)
            return False
        self.open += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        left = self.by_address[address] - 1
        if left:
            self.by_address[address] = left
        else:
            del self.by_address[address]


# The names aiosmtpd looks for on itself with dir(): auth_* (AUTH mechanisms) and smtp_*
# (the commands it answers).
_OWN_NAMES = tuple(sorted(n for n in dir(SMTP) if n.startswith(("auth_", "smtp_"))))


class _Server(SMTP):
    """aiosmtpd's SMTP with a leaner DATA reader (rule 3) and connection limits (rule 6)."""

    def __init__(self, handler: SmtpHandler, admission: Admission, **settings: Any) -> None:
        super().__init__(handler, **settings)
        self._admission = admission
        self._admitted: str | None = None  # the address counted in, until the session ends
        self._turned_away = False
        self._heard = 0.0  # the loop's time of the last bytes received

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # the TCP connection (STARTTLS calls this once more)
            address = _address(transport.get_extra_info("peername"))
            if not self._admission.admit(address):
                self._turned_away = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(TOO_MANY.encode() + b"\r\n")
                transport.close()  # sends the 421 first
                return
            self._admitted = address
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._turned_away:
            return
        if self._admitted is not None:
            self._admission.release(self._admitted)
            self._admitted = None
        super().connection_lost(error)

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
        try:
            original = await self._read_data()
        except asyncio.IncompleteReadError:  # the client left mid-message: nothing to answer
            self._reset()
            return
        if original is None:
            self._reset()
            await self.push("552 Error: Too much mail data")
            return
        self.envelope.content = self.envelope.original_content = original
        self._stop_timeout()  # our work is not the client's idleness (rule 5)
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self._reset_timeout()
        self._reset()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> bytes | None:
        """The message up to the end-of-data line, dots unstuffed; None if it is larger than
        `data_size_limit` (the rest is read and dropped). IncompleteReadError if the client
        leaves first.

        The end is CRLF "." CRLF and nothing else (a bare LF before the dot is not one: the
        SMTP smuggling of CVE-2023-51764). The reader is searched, never drained line by
        line: `readuntil` finds LF "." CRLF in C, and the CR before it is checked here; a
        line start whose CRLF was already taken (the first line, and the line after such a
        bare LF) is read to its CR first. Cost is a few calls per message, not per line.
        """
        reader, limit = self._reader, self.data_size_limit
        content, kept, last = io.BytesIO(), True, b""
        at_line_start = True  # the body begins at a line start, its CRLF already read
        for turn in itertools.count(1):
            if turn % _YIELD_EVERY == 0:  # many short pieces (LF "." CRLF over and over):
                await asyncio.sleep(0)  # readuntil never waits while bytes are buffered
            if at_line_start:
                piece = await _read_until(reader, b"\r")
                if piece == b".\r":
                    following = await reader.readexactly(1)
                    if following == b"\n":
                        break  # the end-of-data line
                    piece += following
                at_line_start = False
            else:
                piece = await _read_until(reader, b"\n.\r\n")
                ended = piece.endswith(b"\r\n.\r\n") or (
                    piece == b"\n.\r\n" and last == b"\r"  # its CR came before
                )
                if ended:
                    content.write(piece[:-3])  # keep the last line's CRLF, drop ".\r\n"
                    break
                at_line_start = piece.endswith(b"\n.\r\n")  # a bare LF: not the end
            content.write(piece)
            last = piece[-1:] or last
            if limit and content.tell() > limit:
                kept = False
                content = io.BytesIO()  # the rest is read to find the end, and dropped
        if not kept:
            return None
        # getvalue hands over the buffer itself: no copy of the message (a fresh 10 MB
        # costs the event loop ~4 ms of page faults and copying).
        return await _unstuffed(content.getvalue())

    def data_received(self, data: bytes) -> None:
        self._heard = self.loop.time()  # idle means no bytes for that long (rule 5)
        super().data_received(data)

    def _timeout_cb(self) -> None:
        # The timer is not re-armed for every chunk of bytes (a timer each costs more than
        # the chunk); when it fires, it waits on if bytes came meanwhile.
        quiet = self.loop.time() - self._heard
        if quiet < self._timeout_duration:
            self._reset_timeout(self._timeout_duration - quiet)
            return
        hang_up: Callable[[], None] = super()._timeout_cb  # untyped in aiosmtpd
        hang_up()

    def _stop_timeout(self) -> None:
        handle: asyncio.TimerHandle | None = self._timeout_handle
        if handle is not None:
            handle.cancel()

    def _reset(self) -> None:
        # aiosmtpd's own post-DATA reset (a fresh envelope); untyped there, so cast here.
        reset: Callable[[], None] = self._set_post_data_state
        reset()


async def _unstuffed(content: bytes) -> bytes:
    """`content` with dot-stuffing undone (RFC 5321 4.5.2: a line's leading "." dropped).

    Searched in slices of `_SLICE` bytes, other sessions getting a turn between two: one
    search of 10 MB for CRLF "." held the event loop ~10 ms. Each slice but the first
    begins at a CR, so no CRLF "." spans two; a slice with no CR past its first `_SLICE`
    bytes is searched only that far (nothing past it can begin a CRLF "."). A message with
    nothing to undo (most: base64 never starts a line with a dot) is not copied at all.
    """
    first = 1 if content.startswith(b".") else 0
    slices, start = [], first
    while start < len(content):
        if start > first:
            await asyncio.sleep(0)
        cut = content.find(b"\r", start + _SLICE)
        end = len(content) if cut == -1 else cut
        searched = end if cut != -1 else min(end, start + _SLICE + 2)
        slices.append((start, searched, end, content.find(b"\r\n.", start, searched) != -1))
        start = end
    if not any(stuffed for *_, stuffed in slices):
        return content[first:] if first else content
    undone = io.BytesIO()  # its buffer is handed over whole: no joining copy at the end
    with memoryview(content) as view:
        for start, searched, end, stuffed in slices:
            part = view[start:searched]
            undone.write(bytes(part).replace(b"\r\n.", b"\r\n") if stuffed else part)
            undone.write(view[searched:end])
            await asyncio.sleep(0)
    return undone.getvalue()


async def _read_until(reader: asyncio.StreamReader, separator: bytes) -> bytes:
    """Up to and including `separator`, or as much as the reader's limit allows."""
    try:
        return await reader.readuntil(separator)
    except asyncio.LimitOverrunError as error:  # a long stretch: take what is there
        return await reader.readexactly(error.consumed)


def _address(peer: object) -> str:
    """The client's address from a peername (a tuple for IP, a string for a unix socket)."""
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


async def serve_smtp(
    settings: SmtpChannel, handler: SmtpHandler, sock: socket.socket | None = None
) -> asyncio.base_events.Server:
    """Start listening, on `sock` if systemd passed one (rule 10), else on the configured
    address; returns the asyncio server (close it to stop accepting)."""
    context = tls_context(settings)
    admission = Admission(total=settings.max_connections,
                          per_client=settings.max_connections_per_client)  # fmt: skip

    def protocol() -> SMTP:
        return _Server(
            handler,
            admission,
            timeout=settings.idle_timeout_seconds,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=settings.hostname,
            ident="ESMTP",  # no product name: a sender learns nothing about the filter
            tls_context=context,
        )

    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(protocol, sock=sock)
    host, port = parse_listen(settings.listen)
    return await loop.create_server(protocol, host, port, reuse_address=True)
