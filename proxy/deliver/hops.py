"""Next hops: handing allowed mail on, and saying only when it was really taken.

Rules this module keeps:
1. `deliver` returns only when the next hop has taken responsibility for the message: an
   SMTP or LMTP server answered 2xx after DATA (for every recipient), or the Maildir file
   is fsync'd and renamed into new/ with the directory fsync'd.
2. Every failure is one of two typed errors: `DeliveryDeferred` (a RetryLater: down,
   timed out, 4xx; the sender must retry) or `DeliveryRefused` (5xx for every recipient:
   the next hop's own answer, passed back unchanged). Anything else is a defect.
3. The bytes handed on are exactly the bytes given: no re-encoding, no line-ending games
   beyond SMTP's own: dot-stuffing, which the server undoes, and a lone CR or LF sent as
   CRLF (as aiosmtplib and smtplib do: servers refuse bare line ends, RFC 5321 2.3.8).
   Envelope addresses go on byte for byte.
4. SMTP and LMTP connections are kept in a `Pool` and reused. A reused connection that
   fails at the transaction's first command (MAIL: refused with 421, closed, timed out)
   cannot have taken the message, so it is tried once more on a fresh connection; any
   failure after MAIL was accepted is DeliveryDeferred and never retried here: a message
   whose DATA may have been taken is never sent twice, and a 2xx is final. A connection
   goes back to the pool only after every answer was 2xx. `aclose` closes the pool.
5. SMTP transactions use aiosmtplib's command API (`execute_command`) and its protocol's
   reply reading; only the DATA bytes are prepared here (`wire_form`, the same bytes as
   aiosmtplib's own). A transaction has one deadline, `_TIMEOUT`, as a whole.
6. `verify` asks the next hop about one recipient as Postfix's address verification does:
   MAIL FROM:<>, RCPT TO, RSET, on a pooled connection, never completing a transaction.
   Its answer is remembered (a taken recipient for `VERIFIED_SECONDS`, one refused for
   good for `REFUSED_SECONDS`, a 4xx not at all). A next hop that refuses the null sender
   cannot be asked, and its recipients pass unchecked; one that is down gives None.
   Once a delivery or a question could not reach the hop, remembered answers are set
   aside and the hop is asked again until it answers: while it is down every sender gets
   the same 450 at RCPT, rather than his held mail 250 (sealed) and others' 451 at DATA.
7. A message the next hop took for some recipients and not others raises PartlyDelivered
   naming those that have it (a 4xx for the sender, whose retry the pipeline sends only to
   the rest: deliver/delivered.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import smtplib
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings

from proxy.deliver.address import Destination, Scheme
from proxy.deliver.pool import Link, Pool
from proxy.disk import fsync_directory, write_all
from proxy.errors import NocontactError, RetryLater

_TIMEOUT = 60.0
_CLOSING = 421  # the next hop is closing this connection (its own idle timeout, a restart)
POOL_SIZE = 20  # Postfix's default concurrency per destination
POOL_IDLE_SECONDS = 30.0  # well under Postfix's and Dovecot's own idle timeouts
POOL_CHECK_AFTER = 5.0
VERIFIED_SECONDS = 3600.0  # how long a recipient the next hop took is taken as good
REFUSED_SECONDS = 300.0  # and one it refused for good, as refused
VERIFIED_MOST = 10_000  # recipients remembered (a flood of made-up ones costs no memory)
Answer = tuple[int, str]  # a reply: its code and text
_NOT_CHECKED: Answer = (250, "not checked")


class DeliveryDeferred(RetryLater):
    """The next hop did not take the message now; it may later."""


class PartlyDelivered(DeliveryDeferred):
    """The next hop took the message for `delivered` only; the rest may be tried later."""

    def __init__(self, message: str, delivered: Sequence[str]) -> None:
        super().__init__(message)
        self.delivered = tuple(delivered)


class HopUnreachable(DeliveryDeferred):
    """The next hop could not be reached or dropped the connection."""


class DeliveryRefused(NocontactError):
    """The next hop refused the message for good; `code` and `text` are its answer."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class NextHop(Protocol):
    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str],
        *, trace: bytes = b"",
    ) -> None:  # fmt: skip
        """Hand on `trace` (our Received line) followed by `data` (rule 1)."""

    async def verify(self, recipient: str) -> Answer | None:
        """The next hop's answer to this recipient (rule 6); None if it cannot be asked."""

    async def aclose(self) -> None:
        """Close what is kept open (the pool's connections)."""


def open_next_hop(destination: Destination, *, hostname: str) -> NextHop:
    """The next hop a `Destination` names."""
    if destination.scheme is Scheme.MAILDIR:
        return Maildir(Path(destination.path), hostname=hostname)
    if destination.scheme is Scheme.SMTP:
        return SmtpHop(destination.host, destination.port, hostname=hostname)
    return LmtpHop(destination, hostname=hostname)


class Maildir:
    """Delivery into a Maildir (tmp/, fsync, rename to new/, fsync new/)."""

    _counter = itertools.count()

    def __init__(self, root: Path, *, hostname: str) -> None:
        self.root = root
        self.hostname = hostname.replace("/", "_").replace(":", "_")

    def _write(self, trace: bytes, data: bytes) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._counter)}.{self.hostname}"
        temporary, final = self.root / "tmp" / name, self.root / "new" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, trace)  # two writes: no joined copy of a large message
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, final)
        fsync_directory(self.root / "new")

    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str],
        *, trace: bytes = b"",
    ) -> None:  # fmt: skip
        try:
            await asyncio.to_thread(self._write, trace, data)
        except OSError as error:
            raise DeliveryDeferred(f"maildir delivery failed ({error.strerror})") from error

    async def verify(self, recipient: str) -> Answer | None:
        """A Maildir is one mailbox: every recipient reaches it."""
        return _NOT_CHECKED

    async def aclose(self) -> None:
        """Nothing is kept open."""


L = TypeVar("L", bound=Link)
T = TypeVar("T")


class _PooledHop(Generic[L]):
    """A next hop reached over pooled connections (rule 4): a subclass opens a link and
    runs one transaction on it; lending, retrying once and closing are done here."""

    def __init__(self) -> None:
        self.pool: Pool[L] = Pool(self._open, size=POOL_SIZE, idle_seconds=POOL_IDLE_SECONDS,
                                  check_after=POOL_CHECK_AFTER)  # fmt: skip
        self._verified: dict[str, tuple[Answer, float]] = {}  # recipient: (answer, until)
        self._down = False  # the last transaction could not reach the hop (rule 6)

    async def _open(self) -> L:
        raise NotImplementedError

    async def _transaction(
        self, link: L, data: bytes, sender: str, recipients: Sequence[str],
        options: Sequence[str],
    ) -> None:  # fmt: skip
        raise NotImplementedError

    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str],
        *, trace: bytes = b"",
    ) -> None:  # fmt: skip
        data = trace + data if trace else data

        async def transaction(link: L) -> None:
            await self._transaction(link, data, sender, recipients, options)

        try:
            await _lend(self.pool, transaction)
        except HopUnreachable:
            self._down = True
            raise
        self._down = False

    async def _probe(self, link: L, recipient: str) -> Answer:
        raise NotImplementedError

    async def verify(self, recipient: str) -> Answer | None:
        """The next hop's answer to RCPT TO:<recipient> (rule 6), or None if it cannot be
        asked now (it is down: its answer would be a guess)."""
        now = time.monotonic()
        known = self._verified.get(recipient)
        if known is not None and known[1] > now and not self._down:
            return known[0]

        async def probe(link: L) -> Answer:
            return await self._probe(link, recipient)

        try:
            answer = await _lend(self.pool, probe)
        except DeliveryDeferred as error:
            self._down = self._down or isinstance(error, HopUnreachable)
            return None
        self._down = False
        lasts = VERIFIED_SECONDS if answer[0] < 400 else REFUSED_SECONDS if answer[0] >= 500 else 0
        if lasts:
            self._verified.pop(recipient, None)
            self._verified[recipient] = (answer, now + lasts)
            while len(self._verified) > VERIFIED_MOST:
                self._verified.pop(next(iter(self._verified)))  # the oldest
        return answer

    async def aclose(self) -> None:
        await self.pool.aclose()


class SmtpHop(_PooledHop["_SmtpLink"]):
    """Relay to an SMTP server (e.g. Postfix's reinjection port) with aiosmtplib, over
    pooled connections (rule 4)."""

    def __init__(self, host: str, port: int, *, hostname: str) -> None:
        self.host, self.port, self.hostname = host, port, hostname
        super().__init__()

    async def _open(self) -> _SmtpLink:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, local_hostname=self.hostname,
            timeout=None, start_tls=False, use_tls=False,
        )  # fmt: skip
        try:
            async with asyncio.timeout(_TIMEOUT):
                await client.connect()
                await client.ehlo()
        except aiosmtplib.SMTPResponseException as error:
            client.close()
            raise DeliveryDeferred(f"next hop answered {error.code}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            client.close()
            raise HopUnreachable(f"next hop unreachable ({type(error).__name__})") from error
        return _SmtpLink(client)

    async def _transaction(
        self, link: _SmtpLink, data: bytes, sender: str, recipients: Sequence[str],
        options: Sequence[str],
    ) -> None:  # fmt: skip
        await _smtp_transaction(link.client, data, sender, recipients, options)

    async def _probe(self, link: _SmtpLink, recipient: str) -> Answer:
        client = link.client
        try:
            async with asyncio.timeout(_TIMEOUT):
                mail = await client.execute_command(b"MAIL", b"FROM:<>")
                if mail.code == _CLOSING:
                    raise _Unused(f"next hop answered {mail.code}")
                if mail.code != 250:  # it will not be asked with a null sender: not checked
                    await client.execute_command(b"RSET")
                    return _NOT_CHECKED
                rcpt = await client.execute_command(b"RCPT", b"TO:" + _path(recipient))
                reset = await client.execute_command(b"RSET")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise _Unused(f"next hop unreachable ({type(error).__name__})") from error
        if reset.code != 250:
            raise DeliveryDeferred(f"next hop answered {reset.code}")
        return rcpt.code, rcpt.message


class _SmtpLink:
    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client

    async def check(self) -> bool:
        try:
            async with asyncio.timeout(_TIMEOUT):
                await self.client.noop()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            return False
        return True

    async def quit(self) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            async with asyncio.timeout(_TIMEOUT):
                await self.client.quit()

    def close(self) -> None:
        self.client.close()


async def _smtp_transaction(
    client: aiosmtplib.SMTP,
    data: bytes,
    sender: str,
    recipients: Sequence[str],
    options: Sequence[str],
) -> None:
    """One transaction on an EHLO'd connection, with aiosmtplib's commands (rule 5)."""
    mail_options = _supported(options, client.supports_extension)
    if client.supports_extension("size"):
        mail_options.insert(0, f"SIZE={len(data)}")
    try:
        async with asyncio.timeout(_TIMEOUT):
            answer = await client.execute_command(
                b"MAIL", b"FROM:" + _path(sender), *(o.encode() for o in mail_options)
            )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise _Unused(f"next hop unreachable ({type(error).__name__})") from error
    if answer.code == _CLOSING:
        raise _Unused(f"next hop answered {answer.code}")
    if answer.code != 250:
        _answer(answer.code, answer.message.encode())
    try:
        async with asyncio.timeout(_TIMEOUT):
            taken, refusals = await _rcpt_each(client, recipients)
            if len(refusals) == len(recipients):
                _refused(refusals, len(recipients))
            answer = await client.execute_command(b"DATA")
            if answer.code != 354:
                _answer(answer.code, answer.message.encode())
            protocol = client.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            protocol.write(wire_form(data))
            answer = await protocol.read_response(timeout=None)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        raise HopUnreachable(f"next hop unreachable ({type(error).__name__})") from error
    if answer.code != 250:
        _answer(answer.code, answer.message.encode())
    if refusals:
        _refused(refusals, len(recipients), delivered=taken)


async def _rcpt_each(
    client: aiosmtplib.SMTP, recipients: Sequence[str]
) -> tuple[list[str], list[tuple[int, str]]]:
    """RCPT TO for each recipient: (those taken, the answers refusing the others)."""
    taken: list[str] = []
    refusals: list[tuple[int, str]] = []
    for recipient in recipients:
        answer = await client.execute_command(b"RCPT", b"TO:" + _path(recipient))
        if answer.code in (250, 251):
            taken.append(recipient)
        else:
            refusals.append((answer.code, answer.message))
    return taken, refusals


def _path(address: str) -> bytes:
    """A MAIL or RCPT path as the sender gave it: aiosmtpd has taken off its brackets, and
    kept its bytes (surrogate-escaped 8-bit, SMTPUTF8 or not), which go on unchanged."""
    if address in ("", "<>"):
        return b"<>"  # the null reverse-path of bounces
    return b"<" + address.encode("utf-8", errors="surrogateescape") + b">"


def wire_form(data: bytes) -> bytes:
    """The message as DATA sends it (RFC 5321 4.5.2): CRLF line endings (a lone CR or LF
    becomes CRLF, as aiosmtplib does), dot-stuffed, ending CRLF . CRLF.

    The same bytes as aiosmtplib's own DATA, at a fraction of the cost: its two regexes
    try every position of the message (~70 us for 10 KB, a quarter of a relay's cost),
    while most mail needs no line ending changed, which three C-level counts tell."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = normalize_message_line_endings(data)
    elif not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\n.", b"\n..") + b".\r\n"


class LmtpHop(_PooledHop["_LmtpLink"]):
    """Delivery over LMTP (e.g. Dovecot), TCP or a unix socket, with stdlib smtplib.LMTP,
    over pooled connections (rule 4).

    LMTP answers DATA once per recipient; smtplib reads only the first answer, so the
    others are read with `getreply`. Each transaction runs in a worker thread (smtplib
    blocks); the pool itself is used on the event loop.
    """

    def __init__(self, destination: Destination, *, hostname: str) -> None:
        self.destination, self.hostname = destination, hostname
        super().__init__()

    def _connect(self) -> smtplib.LMTP:
        where = self.destination
        client = smtplib.LMTP(where.path or where.host, where.port or 24,
                              local_hostname=self.hostname, timeout=_TIMEOUT)  # fmt: skip
        try:
            code, _ = client.ehlo()
        except BaseException:
            client.close()
            raise
        if code != 250:
            client.close()
            raise DeliveryDeferred(f"next hop answered {code}")
        return client

    async def _open(self) -> _LmtpLink:
        try:
            return _LmtpLink(await asyncio.to_thread(self._connect))
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            raise HopUnreachable(f"next hop unreachable ({type(error).__name__})") from error

    async def _transaction(
        self, link: _LmtpLink, data: bytes, sender: str, recipients: Sequence[str],
        options: Sequence[str],
    ) -> None:  # fmt: skip
        await asyncio.to_thread(_lmtp_transaction, link.client, data, sender, recipients,
                                options)  # fmt: skip

    async def _probe(self, link: _LmtpLink, recipient: str) -> Answer:
        return await asyncio.to_thread(_lmtp_probe, link.client, recipient)


def _lmtp_probe(client: smtplib.LMTP, recipient: str) -> Answer:
    try:
        code, _ = client.mail("")
        if code == _CLOSING:
            raise _Unused(f"next hop answered {code}")
        if code != 250:
            client.rset()
            return _NOT_CHECKED
        code, text = client.rcpt(recipient)
        reset, _ = client.rset()
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        raise _Unused(f"next hop unreachable ({type(error).__name__})") from error
    if reset != 250:
        raise DeliveryDeferred(f"next hop answered {reset}")
    return code, text.decode(errors="replace")


class _LmtpLink:
    def __init__(self, client: smtplib.LMTP) -> None:
        self.client = client

    def _noop(self) -> bool:
        try:
            return self.client.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _quit(self) -> None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            self.client.quit()

    async def check(self) -> bool:
        return await asyncio.to_thread(self._noop)

    async def quit(self) -> None:
        await asyncio.to_thread(self._quit)

    def close(self) -> None:
        self.client.close()


def _lmtp_transaction(
    client: smtplib.LMTP,
    data: bytes,
    sender: str,
    recipients: Sequence[str],
    options: Sequence[str],
) -> None:
    try:
        code, text = client.mail(sender, _supported(options, client.has_extn))
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        raise _Unused(f"next hop unreachable ({type(error).__name__})") from error
    if code == _CLOSING:
        raise _Unused(f"next hop answered {code}")
    try:
        if code != 250:
            _answer(code, text)
        accepted: list[tuple[int, bytes]] = []
        refusals: list[tuple[int, bytes]] = []
        taken: list[str] = []
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            (accepted if code in (250, 251) else refusals).append((code, text))
            if code in (250, 251):
                taken.append(recipient)
        if not accepted:
            _refused([(c, t.decode(errors="replace")) for c, t in refusals], len(recipients))
        answers = [client.data(data)]
        answers += [client.getreply() for _ in accepted[1:]]
    except (TimeoutError, smtplib.SMTPException, OSError) as error:
        if isinstance(error, smtplib.SMTPResponseException):  # DATA's 354 never came
            said = error.smtp_error
            _answer(error.smtp_code, said if isinstance(said, bytes) else said.encode())
        raise HopUnreachable(f"next hop unreachable ({type(error).__name__})") from error
    failed = [(c, t.decode(errors="replace")) for c, t in answers if c != 250]
    if refusals or failed:
        delivered = [r for r, (c, _) in zip(taken, answers, strict=True) if c == 250]
        answered = [(c, t.decode(errors="replace")) for c, t in refusals] + failed
        _refused(answered, len(recipients), delivered=delivered)


class _Unused(DeliveryDeferred):
    """The connection failed at the transaction's first command: nothing of the message
    can have been taken, so it may be tried once more on a fresh connection (rule 4)."""


async def _lend(pool: Pool[L], transaction: Callable[[L], Awaitable[T]]) -> T:
    """Run a transaction on a pooled connection, retrying once on a fresh one if a reused
    connection failed before anything was sent (rule 4); keep it only if all went well."""
    link, reused = await pool.take()
    while True:
        try:
            result = await transaction(link)
        except _Unused as unused:
            pool.discard(link)
            if not reused:
                raise DeliveryDeferred(str(unused)) from unused
            link, reused = await pool.fresh(), False
            continue
        except BaseException:
            pool.discard(link)
            raise
        pool.give_back(link)
        return result


def _supported(options: Sequence[str], has: Callable[[str], bool]) -> list[str]:
    """The sender's MAIL options the next hop advertises.

    SMTPUTF8 and BODY=8BITMIME only tell a server how to treat the bytes; a next hop that
    does not offer them (Dovecot's LMTP offers no SMTPUTF8) still stores the bytes as they
    are, while asking for them anyway would refuse the mail forever.
    """
    kept = []
    for option in options:
        keyword = option.split("=", 1)[0].upper()
        extension = "8bitmime" if keyword == "BODY" else keyword.lower()
        if has(extension):
            kept.append(option)
    return kept


def _answer(code: int, text: bytes) -> None:
    message = text.decode(errors="replace")
    if 500 <= code < 600:
        raise DeliveryRefused(code, message)
    raise DeliveryDeferred(f"next hop answered {code}")


def _refused(
    answers: list[tuple[int, str]], recipients: int, *, delivered: Sequence[str] = ()
) -> None:
    """Some recipients failed: permanent only if every recipient was refused for good;
    PartlyDelivered if some have it (rule 7)."""
    permanent = [(code, text) for code, text in answers if 500 <= code < 600]
    if len(permanent) == recipients:
        code, text = permanent[0]
        raise DeliveryRefused(code, text)
    failed = f"next hop did not take every recipient ({len(answers)} failed)"
    if delivered:
        raise PartlyDelivered(failed, delivered)
    raise DeliveryDeferred(failed)
