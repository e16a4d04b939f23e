"""The SMTP next hop's transaction: the DATA bytes and the envelope as they go on the wire."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP, Envelope, Session
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given
from hypothesis import strategies as st

from proxy.deliver.hops import Answer, HopUnreachable, SmtpHop, wire_form
from tests.test_deliver_pool import Mailbox, next_hop_server
from tests.test_smtp import free_port

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


class _Mailboxes(Mailbox):
    """A next hop that knows one recipient and refuses any other at RCPT."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.asked.append(address)
        if address != "sam@home.example":
            return "550 5.1.1 <" + address + ">: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_recipient_is_verified_with_the_next_hop_and_the_answer_remembered() -> None:
    """verify asks MAIL FROM:<> / RCPT / RSET: the known recipient 250, another the next
    hop's 550; asked again, the answers come from memory; the connection stays usable."""

    async def run() -> tuple[list[Answer | None], list[str], list[bytes]]:
        mailboxes = _Mailboxes()
        async with next_hop_server(mailbox=mailboxes) as (port, mailbox):
            hop = SmtpHop("127.0.0.1", port, hostname="test")
            answers = [
                await hop.verify(r)
                for r in ("sam@home.example", "nobody@home.example", "sam@home.example",
                          "nobody@home.example")
            ]  # fmt: skip
            await hop.deliver(b"Subject: hi\r\n\r\nhi\r\n", "friend@example.org",
                              ["sam@home.example"], [])  # fmt: skip
            await hop.aclose()
        return answers, mailboxes.asked, mailbox.messages

    answers, asked, messages = asyncio.run(run())
    assert answers[0] == answers[2] == (250, "OK")
    assert answers[1] == answers[3]
    assert answers[1] is not None
    assert answers[1][0] == 550
    assert asked == ["sam@home.example", "nobody@home.example", "sam@home.example"]
    assert messages == [b"Subject: hi\r\n\r\nhi\r\n"]


def test_a_next_hop_that_is_down_cannot_verify() -> None:
    """No next hop listening: verify says None (the channel answers 450: try later)."""

    async def run() -> object:
        hop = SmtpHop("127.0.0.1", free_port(), hostname="test")
        try:
            return await hop.verify("sam@home.example")
        finally:
            await hop.aclose()

    assert asyncio.run(run()) is None


def test_once_the_hop_is_found_down_remembered_answers_are_set_aside_until_it_answers() -> None:
    """A recipient verified before the hop went down is not vouched for from memory once a
    delivery could not reach the hop: every sender then gets the same 450 at RCPT (no 250
    for his sealed mail beside 451 for others'); when the hop answers again, so does verify."""

    async def run() -> list[object]:
        seen: list[object] = []
        mailboxes = _Mailboxes()
        async with next_hop_server(mailbox=mailboxes) as (port, _):
            hop = SmtpHop("127.0.0.1", port, hostname="test")
            seen.append(await hop.verify("sam@home.example"))
        # the hop is gone: its port no longer listens
        try:
            await hop.deliver(b"Subject: hi\r\n\r\nhi\r\n", "a@example.org",
                              ["sam@home.example"], [])  # fmt: skip
        except HopUnreachable:
            seen.append("unreachable")
        seen.append(await hop.verify("sam@home.example"))
        async with next_hop_server(mailbox=mailboxes) as (again, _):
            hop.port = again  # the same hop, listening again (on a new port, for the test)
            seen.append(await hop.verify("sam@home.example"))
            seen.append(len(mailboxes.asked))
            seen.append(await hop.verify("sam@home.example"))  # remembered again
            seen.append(len(mailboxes.asked))
        await hop.aclose()
        return seen

    assert asyncio.run(run()) == [(250, "OK"), "unreachable", None, (250, "OK"), 2, (250, "OK"), 2]
