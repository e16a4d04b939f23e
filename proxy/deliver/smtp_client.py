"""A small SMTP client for the next hop: one connection, one transaction at a time.

Rules this module keeps:
1. The bytes sent are the message's bytes, dot-stuffed (RFC 5321 4.5.2: a dot after every
   line feed, as smtplib does, so a bare LF cannot end the data early at a lenient server)
   and, when they do not end with CRLF, given one before the final dot. Nothing else.
2. With PIPELINING offered (RFC 2920), MAIL, every RCPT and DATA go out in one write and
   their replies are read in order; the message itself only after a 354.
3. Replies are read whole (multi-line) and returned as `Reply` values; what an answer
   means for the message is decided by the caller (`hops`), not here.
4. Anything that leaves the connection unusable (refused, reset, EOF, a timeout, a reply
   that is not SMTP) raises `Lost`, with how many replies of the call were read first.
5. Command arguments come from aiosmtpd's parsing of one line; a CR or LF in one is
   refused here all the same (ValueError), so no command can be smuggled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

_LINE_LIMIT = 1 << 16
CLOSING = 421  # the server is closing this connection (RFC 5321 3.8)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    code: int
    text: str


class Lost(Exception):
    """The connection cannot be used any more; `answered` replies of the call came first."""

    def __init__(self, why: str, *, answered: int = 0) -> None:
        super().__init__(why)
        self.answered = answered


class SmtpSession:
    """An open connection that has been greeted and said EHLO (or HELO)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        extensions: frozenset[str],
        timeout: float,
    ) -> None:
        self._reader, self._writer = reader, writer
        self.extensions, self.timeout = extensions, timeout

    @classmethod
    async def open(cls, host: str, port: int, *, hostname: str, timeout: float) -> SmtpSession:
        """Connect, read the greeting, say EHLO (HELO if EHLO is refused)."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=_LINE_LIMIT)
        except (OSError, TimeoutError) as error:
            raise Lost(f"next hop unreachable ({type(error).__name__})") from error
        session = cls(reader, writer, frozenset(), timeout)
        try:
            async with asyncio.timeout(timeout):
                hello = await session._hello(hostname)
        except (OSError, TimeoutError) as error:
            session.close()
            raise Lost(f"next hop unreachable ({type(error).__name__})") from error
        except BaseException:
            session.close()
            raise
        lines = hello.text.split("\n")[1:] if hello.code == 250 else []
        session.extensions = frozenset(line.split(" ", 1)[0].lower() for line in lines if line)
        return session

    async def _hello(self, hostname: str) -> Reply:
        greeting = await self._reply()
        if greeting.code != 220:
            raise Lost(f"next hop greeted {greeting.code}")
        self._write(_command(b"EHLO ", hostname))
        hello = await self._reply()
        if hello.code != 250:
            self._write(_command(b"HELO ", hostname))
            if (await self._reply()).code != 250:
                raise Lost("next hop refused HELO")
        return hello

    def has(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    async def envelope(
        self, sender: str, recipients: Sequence[str], options: Sequence[str]
    ) -> list[Reply]:
        """MAIL, RCPT for each recipient, DATA: their replies in order (rule 2), up to a
        421 (the server is closing the connection). Without PIPELINING it also stops at
        a refused MAIL or when every RCPT was refused."""
        mail = _command(b"MAIL FROM:", f"<{sender}>", *options)
        rcpts = [_command(b"RCPT TO:", f"<{recipient}>") for recipient in recipients]
        data = b"DATA\r\n"
        replies: list[Reply] = []
        try:
            async with asyncio.timeout(self.timeout):
                if self.has("pipelining"):
                    self._write(b"".join((mail, *rcpts, data)))
                    for _ in range(len(rcpts) + 2):
                        replies.append(await self._reply())
                        if replies[-1].code == CLOSING:
                            break
                    return replies
                self._write(mail)
                replies.append(await self._reply())
                if replies[0].code != 250:
                    return replies
                for rcpt in rcpts:
                    self._write(rcpt)
                    replies.append(await self._reply())
                    if replies[-1].code == CLOSING:
                        return replies
                if all(reply.code not in (250, 251) for reply in replies[1:]):
                    return replies
                self._write(data)
                replies.append(await self._reply())
                return replies
        except Lost as lost:
            raise Lost(str(lost), answered=len(replies)) from lost
        except (OSError, TimeoutError) as error:
            why = f"next hop unreachable ({type(error).__name__})"
            raise Lost(why, answered=len(replies)) from error

    async def message(self, data: bytes) -> Reply:
        """After 354: the message, dot-stuffed, and the final dot; the reply to it."""
        stuffed = data.replace(b"\n.", b"\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        ending = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
        return await self._exchange(stuffed + ending)

    async def noop(self) -> Reply:
        return await self._exchange(b"NOOP\r\n")

    async def quit(self) -> None:
        with contextlib.suppress(Lost):
            await self._exchange(b"QUIT\r\n")
        self.close()

    def close(self) -> None:
        self._writer.close()

    async def _exchange(self, out: bytes) -> Reply:
        try:
            async with asyncio.timeout(self.timeout):
                self._write(out)
                await self._writer.drain()
                return await self._reply()
        except (OSError, TimeoutError) as error:
            raise Lost(f"next hop unreachable ({type(error).__name__})") from error

    def _write(self, out: bytes) -> None:
        if self._writer.is_closing():
            raise Lost("connection closed")
        self._writer.write(out)

    async def _reply(self) -> Reply:
        """One reply, every line of it (code, then the texts joined by newlines)."""
        texts: list[str] = []
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as error:
                raise Lost("next hop closed the connection") from error
            except asyncio.LimitOverrunError as error:
                raise Lost("next hop sent an overlong reply") from error
            code = line[:3]
            if not code.isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                raise Lost("next hop sent something that is not an SMTP reply")
            texts.append(line[4:].rstrip(b"\r\n").decode(errors="replace"))
            if line[3:4] != b"-":
                return Reply(code=int(code), text="\n".join(texts))


def _command(verb: bytes, *words: str) -> bytes:
    """One command line; addresses keep their exact bytes (aiosmtpd's surrogateescape)."""
    line = verb + b" ".join(word.encode("utf-8", "surrogateescape") for word in words)
    if b"\r" in line or b"\n" in line:
        raise ValueError("a line break inside an SMTP command")
    return line + b"\r\n"
