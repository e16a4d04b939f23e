"""Reading DATA: the end is CRLF "." CRLF and nothing else, wherever the bytes split."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.channels import smtp
from tests.test_smtp import Service, maildir_messages

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One whole reply (every continuation line of it)."""
    lines = [await reader.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(await reader.readline())
    return b"".join(lines)


async def _transaction(port: int, writes: list[bytes]) -> list[bytes]:
    """Greeting, EHLO, MAIL, RCPT, DATA; then `writes` one at a time, then NOOP; the reply
    to the data and the next one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _reply(reader)
        for command in (b"EHLO client.test\r\n", b"MAIL FROM:<friend@example.org>\r\n",
                        b"RCPT TO:<sam@home.example>\r\n", b"DATA\r\n"):  # fmt: skip
            writer.write(command)
            await _reply(reader)
        for chunk in writes:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)  # each write its own TCP segment, as a slow link would
        replies = [await _reply(reader)]
        writer.write(b"NOOP\r\n")  # the session goes on: whatever came after the end, then this
        replies.append(await _reply(reader))
        return replies
    finally:
        writer.close()


def _delivered(
    tmp_path: Path, writes: list[bytes], after: bytes = b""
) -> tuple[list[bytes], bytes]:
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}")

    async def run() -> list[bytes]:
        async with service.running():
            return await _transaction(service.port, writes)

    replies = asyncio.run(run())
    (message,) = maildir_messages(tmp_path / "mail")
    return replies, message.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in message else message


BODY = b"Subject: dots\r\n\r\n..leading dot\r\nplain\r\n...two\r\n\r\nlast\r\n"
UNSTUFFED = b".leading dot\r\nplain\r\n..two\r\n\r\nlast\r\n"


@pytest.mark.parametrize("split", [1, 2, 3, 4, 5, 6, 7])
def test_the_end_is_found_however_the_bytes_are_split(tmp_path: Path, split: int) -> None:
    """The last `split` bytes arrive one by one: the end is still found, the dots undone."""
    data = BODY + b".\r\n"
    head, tail = data[:-split], data[-split:]
    replies, body = _delivered(tmp_path, [head, *(bytes([b]) for b in tail)])
    assert replies[0].startswith(b"250 ")
    assert body == UNSTUFFED


def test_an_empty_message_ends_at_once(tmp_path: Path) -> None:
    """A dot right after the 354 ends an empty message (the end line at the body's start)."""
    replies, _ = _delivered(tmp_path, [b".\r\n"])
    assert replies[0].startswith(b"250 ")


def test_a_bare_lf_before_a_dot_is_not_the_end(tmp_path: Path) -> None:
    """LF "." CRLF inside the data (SMTP smuggling) is data: the message goes on to the real end,
    and what was smuggled arrives as part of it, never as a second message."""
    smuggled = b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<other@example.org>\r\nmore\r\n"
    replies, body = _delivered(tmp_path, [smuggled + b".\r\n"])
    assert replies[0].startswith(b"250 ")
    assert body == b"hi\n.\r\nMAIL FROM:<other@example.org>\r\nmore\r\n"


def test_a_dot_line_after_a_bare_lf_dot_line_ends_the_message(tmp_path: Path) -> None:
    """After a bare-LF dot line the next line start is still watched for the end."""
    replies, body = _delivered(tmp_path, [b"Subject: x\r\n\r\nhi\n.\r\n.\r\n"])
    assert replies[0].startswith(b"250 ")
    assert body == b"hi\n.\r\n"


def test_a_command_pipelined_after_the_end_is_answered(tmp_path: Path) -> None:
    """Bytes after the end of data in the same write are the next command, not lost."""
    replies, body = _delivered(tmp_path, [b"Subject: x\r\n\r\nhi\r\n.\r\nNOOP\r\n"])
    assert replies[0].startswith(b"250 ")
    assert replies[1].startswith(b"250 ")
    assert body == b"hi\r\n"


def test_many_tiny_lines_arrive_byte_identical(tmp_path: Path) -> None:
    """100,000 short lines, and empty ones, are taken whole, in bulk."""
    lines = b"".join(b"%d\r\n\r\n" % i for i in range(100_000))
    replies, body = _delivered(tmp_path, [b"Subject: x\r\n\r\n" + lines + b".\r\n"])
    assert replies[0].startswith(b"250 ")
    assert body == lines


_PIECES = st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"..", b"\r\n.", b"a", b"xyzxyzxyz"])


@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_unstuffing_in_slices_is_unstuffing_whole(content: bytes) -> None:
    """Dot-stuffing undone a slice at a time (here 7 bytes) gives what one pass over the
    whole message would: a leading dot dropped, and the dot after every CRLF."""
    expected = content[1:] if content.startswith(b".") else content
    expected = expected.replace(b"\r\n.", b"\r\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(smtp, "_SLICE", 7)
        assert asyncio.run(smtp._unstuffed(content)) == expected
