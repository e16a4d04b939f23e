"""The SMTP next hop's transaction: the DATA bytes and the envelope as they go on the wire."""

from __future__ import annotations

import asyncio

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from proxy.deliver.hops import SmtpHop, wire_form
from tests.test_deliver_pool import Mailbox, next_hop_server

# Messages made of the pieces that matter to DATA: line ends of every kind, and dots.
_PIECES = st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"a", b" ", b"\xc3\xa9", b"\r\n."])
_MESSAGES = st.lists(_PIECES, max_size=40).map(b"".join)


@given(_MESSAGES)
def test_wire_form_is_what_aiosmtplib_itself_would_send(message: bytes) -> None:
    """`wire_form` gives the bytes aiosmtplib's own DATA writes (its two regexes)."""
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
    assert wire_form(message) == expected


def _relay(message: bytes, sender: str, recipients: list[str], options: list[str]) -> Mailbox:
    async def run() -> Mailbox:
        async with next_hop_server() as (port, mailbox):
            hop = SmtpHop("127.0.0.1", port, hostname="test")
            await hop.deliver(message, sender, recipients, options)
            await hop.aclose()
        return mailbox

    return asyncio.run(run())


def test_dots_and_line_ends_arrive_as_sent() -> None:
    """Lines that begin with dots arrive unstuffed; a lone LF or CR arrives as CRLF."""
    message = b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\nfour\rfive"
    mailbox = _relay(message, "friend@example.org", ["sam@home.example"], [])
    assert mailbox.messages == [b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nfour\r\nfive\r\n"]


def test_envelope_goes_on_byte_for_byte() -> None:
    """The null reverse-path of a bounce, a quoted local part and an SMTPUTF8 address reach
    the next hop as the sender wrote them."""
    message = b"Subject: hi\r\n\r\nhi\r\n"
    bounce = _relay(message, "<>", ["sam@home.example"], [])
    assert bounce.envelopes == [("<>", ["sam@home.example"])]
    quoted = _relay(message, '"friend of sam"@example.org', ["sam@home.example"], [])
    assert quoted.envelopes == [('"friend of sam"@example.org', ["sam@home.example"])]
    utf8 = _relay(message, "zoë@exämple.org", ["sam@home.example"], ["SMTPUTF8"])
    assert utf8.envelopes == [("zoë@exämple.org", ["sam@home.example"])]
