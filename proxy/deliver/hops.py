"""Next hops: handing allowed mail on, and saying only when it was really taken.

Rules this module keeps:
1. `deliver` returns only when the next hop has taken responsibility for the message: an
   SMTP or LMTP server answered 2xx after DATA (for every recipient), or the Maildir file
   is fsync'd and renamed into new/ with the directory fsync'd.
2. Every failure is one of two typed errors: `DeliveryDeferred` (a RetryLater: down,
   timed out, 4xx; the sender must retry) or `DeliveryRefused` (5xx for every recipient:
   the next hop's own answer, passed back unchanged). Anything else is a defect.
3. The bytes handed on are exactly the bytes given: no re-encoding, no line-ending games
   beyond SMTP's own dot-stuffing, which the client libraries do and the server undoes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import smtplib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import aiosmtplib

from proxy.deliver.address import Destination, Scheme
from proxy.disk import write_all
from proxy.errors import NocontactError, RetryLater

_TIMEOUT = 60.0


class DeliveryDeferred(RetryLater):
    """The next hop did not take the message now; it may later."""


class DeliveryRefused(NocontactError):
    """The next hop refused the message for good; `code` and `text` are its answer."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class NextHop(Protocol):
    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str]
    ) -> None: ...


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

    def _write(self, data: bytes) -> None:
        for sub in ("tmp", "new", "cur"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(self._counter)}.{self.hostname}"
        temporary, final = self.root / "tmp" / name, self.root / "new" / name
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, final)
        directory = os.open(self.root / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str]
    ) -> None:
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as error:
            raise DeliveryDeferred(f"maildir delivery failed ({error.strerror})") from error


class SmtpHop:
    """Relay to an SMTP server (e.g. Postfix's reinjection port) with aiosmtplib."""

    def __init__(self, host: str, port: int, *, hostname: str) -> None:
        self.host, self.port, self.hostname = host, port, hostname

    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str]
    ) -> None:
        client = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, local_hostname=self.hostname,
            timeout=_TIMEOUT, start_tls=False, use_tls=False,
        )  # fmt: skip
        try:
            await client.connect()
            await client.ehlo()
            errors, _ = await client.sendmail(
                sender, list(recipients), data,
                mail_options=_supported(options, client.supports_extension),
            )  # fmt: skip
        except aiosmtplib.SMTPRecipientsRefused as refused:
            _refused(
                [(r.code, r.message) for r in refused.recipients], len(recipients)
            )  # fmt: skip
        except aiosmtplib.SMTPResponseException as error:
            if 500 <= error.code < 600:
                raise DeliveryRefused(error.code, error.message) from error
            raise DeliveryDeferred(f"next hop answered {error.code}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise DeliveryDeferred(f"next hop unreachable ({type(error).__name__})") from error
        finally:
            client.close()
        if errors:
            _refused([(e.code, e.message) for e in errors.values()], len(recipients))


class LmtpHop:
    """Delivery over LMTP (e.g. Dovecot), TCP or a unix socket, with stdlib smtplib.LMTP.

    LMTP answers DATA once per recipient; smtplib reads only the first answer, so the
    others are read with `getreply`. Runs in a worker thread (smtplib blocks).
    """

    def __init__(self, destination: Destination, *, hostname: str) -> None:
        self.destination, self.hostname = destination, hostname

    def _send(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str]
    ) -> None:
        where = self.destination
        host = where.path or where.host
        with smtplib.LMTP(host, where.port or 24, local_hostname=self.hostname,
                          timeout=_TIMEOUT) as client:  # fmt: skip
            client.ehlo()
            code, text = client.mail(sender, _supported(options, client.has_extn))
            if code != 250:
                _answer(code, text)
            accepted: list[tuple[int, bytes]] = []
            refusals: list[tuple[int, bytes]] = []
            for recipient in recipients:
                code, text = client.rcpt(recipient)
                (accepted if code in (250, 251) else refusals).append((code, text))
            if not accepted:
                client.rset()
                _refused([(c, t.decode(errors="replace")) for c, t in refusals], len(recipients))
            answers = [client.data(data)]
            answers += [client.getreply() for _ in accepted[1:]]
            failed = [(c, t.decode(errors="replace")) for c, t in answers if c != 250]
            if refusals or failed:
                _refused(
                    [(c, t.decode(errors="replace")) for c, t in refusals] + failed,
                    len(recipients),
                )

    async def deliver(
        self, data: bytes, sender: str, recipients: Sequence[str], options: Sequence[str]
    ) -> None:
        try:
            await asyncio.to_thread(self._send, data, sender, recipients, options)
        except (DeliveryDeferred, DeliveryRefused):
            raise
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            raise DeliveryDeferred(f"next hop unreachable ({type(error).__name__})") from error


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


def _refused(answers: list[tuple[int, str]], recipients: int) -> None:
    """Some recipients failed: permanent only if every recipient was refused for good."""
    permanent = [(code, text) for code, text in answers if 500 <= code < 600]
    if len(permanent) == recipients:
        code, text = permanent[0]
        raise DeliveryRefused(code, text)
    raise DeliveryDeferred(f"next hop did not take every recipient ({len(answers)} failed)")
