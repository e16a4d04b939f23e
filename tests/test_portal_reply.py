"""A contact's reply to him from the portal: through aiohttp's test client against a real
archive, an aiosmtpd server as the outbound SMTP relay (with a login) and the Twilio fake.
Custody first, sealed, and only ever to an address or number of his the config lists."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from markupsafe import escape

from proxy.access import delivery, replying
from proxy.access.reading import CustodyEntry, open_archive
from proxy.alerts.order_mark import OrderMark, Topic
from proxy.archive import layout
from proxy.archive.metadata import SealedCustody
from proxy.config import Config, load_config
from proxy.message import Kind
from proxy.portal import web as portal_web
from tests.factories import write_secret
from tests.portal_helpers import (
    HTTP_CONFIG,
    MARKS_PHONE,
    PLAIN,
    Holding,
    Portal,
    Template,
    browser_log_in,
    chromium,
    copy_portal,
    fetch,
    free_port,
    from_mark,
    from_marks_phone,
    held_template,
    hidden,
    identity,
    log_in,
    portal_app,
    serving,
    wait_for,
)
from tests.portal_helpers import run as run_portal
from tests.twilio_fake import FakeTwilio

# The relay stands on loopback without TLS (tls: none), as the config allows only there.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-0123456789abcdef"
NUMBER, PHONE = "+15550107777", "+15550108888"  # her public Twilio number, her real phone
LOGIN, PASSWORD = "replies@fastmail.example", "relay-password-4711"
FROM = "replies@fastmail.example"
CANARIES = ("zanzibar", "quokka")  # his words: none may go back to him
PICKUP = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: zanzibar\r\n"
    b"Date: Sun, 01 Mar 2026 11:58:00 +0000\r\nMessage-ID: <pickup-1@gmail.example>\r\n\r\n"
    b"Lily pickup moved to 17:30 today, quokka.\r\n"
)
FORGED = PICKUP.replace(b"Mark <mark.smith@gmail.com>", b"Jo <jo@friends.example>")
MARK = OrderMark(person="mark", topic=Topic.CHILDREN, logistics=True)
PROPOSAL = "Saturday 10:00 at the Oak Street library instead."
NOT_POSSIBLE = {"template": "not_possible", "proposal": PROPOSAL}
SENT = f"Not possible. I propose: {PROPOSAL}"


@dataclass
class Held:
    """The sequence numbers of the template's held items."""

    pickup: int  # an email of his under the order
    forged: int  # under the order, its From a third party's address
    text: int  # a text of his under the order
    plain: int  # an email of his with no order


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    to_her = ("sam@home.example",)
    return held_template(tmp_path_factory, "reply", [
        Holding(from_mark(PICKUP, recipients=to_her), order=MARK),
        Holding(from_mark(FORGED, recipients=to_her), kind=Kind.DIRECT, order=MARK),
        Holding(from_marks_phone("zanzibar quokka pickup 17:30 today"),
                extras={"provider": "twilio", "voicemail": False}, kind=Kind.DIRECT,
                order=MARK),
        Holding(from_mark(PLAIN, recipients=to_her)),
    ])  # fmt: skip


@dataclass
class Setup:
    portal: Portal
    held: Held

    @property
    def directory(self) -> Path:
        return self.portal.directory

    def config(
        self, *, outbound: int | None = None, sms: str = "", role: str = "contact"
    ) -> Config:
        """The portal's config: Mark with his addresses and numbers; an outbound relay on
        loopback port `outbound` (with a login); given the fake's URL, an SMS channel."""
        text = HTTP_CONFIG.replace("role: contact\n    email: priya",
                                   f"role: {role}\n    email: priya")  # fmt: skip
        text = text.replace("    name: Mark Smith\n", "    name: Mark Smith\n"
                            "    emails: [mark.smith@gmail.com]\n"
                            f"    phones: ['{MARKS_PHONE}']\n")  # fmt: skip
        text += "default_region: US\n"
        if outbound is not None:
            password = write_secret(self.directory / "outbound-password", PASSWORD)
            text += (f"outbound:\n  host: 127.0.0.1\n  port: {outbound}\n  tls: none\n"
                     f"  username: {LOGIN}\n  password_file: {password}\n"
                     f"  from: {FROM}\n")  # fmt: skip
        if sms:
            token = write_secret(self.directory / "twilio-token", TOKEN)
            text += (f"channels:\n  sms:\n    public_url: https://home.example/twilio\n"
                     f"    account_sid: {ACCOUNT}\n    auth_token_file: {token}\n"
                     f"    number: '{NUMBER}'\n    forward_to: '{PHONE}'\n"
                     f"    api_base_url: {sms}\n")  # fmt: skip
        path = self.directory / "config.yaml"
        path.write_text(text)
        return load_config(path)


@pytest.fixture
def setup(template: Template, tmp_path: Path) -> Setup:
    return Setup(copy_portal(template, tmp_path), Held(*template.sequences))


@dataclass(frozen=True)
class Taken:
    """One message the outbound relay took."""

    sender: str
    recipients: tuple[str, ...]
    raw: bytes
    logged_in: bool


@dataclass
class OutboundRelay:
    """An aiosmtpd server standing in for the provider's submission server: it takes mail
    only after a login with LOGIN and PASSWORD."""

    taken: list[Taken] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        self.taken.append(Taken(envelope.mail_from or "", tuple(envelope.rcpt_tos),
                                envelope.original_content or b"",
                                bool(session.authenticated)))  # fmt: skip
        return "250 OK"


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
) -> AuthResult:
    known = isinstance(data, LoginPassword) and (data.login, data.password) == (
        LOGIN.encode(), PASSWORD.encode())  # fmt: skip
    return AuthResult(success=known, handled=False)  # not handled: aiosmtpd answers 535


@contextlib.contextmanager
def outbound_relay() -> Iterator[tuple[int, OutboundRelay]]:
    relay = OutboundRelay()
    port = free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port, authenticator=_authenticate,
                            auth_required=True, auth_require_tls=False)  # fmt: skip
    controller.start()
    try:
        yield port, relay
    finally:
        controller.stop()


Body = Callable[[Portal, Any], Awaitable[None]]


def run(setup: Setup, config: Config, body: Body) -> None:
    """Log in and run `body` with a client of the portal app for `config`."""
    portal = dataclasses.replace(setup.portal, config=config, cookies={})

    async def logged_in(client: Any) -> None:
        await log_in(portal, client)
        await body(portal, client)

    run_portal(portal, logged_in)


async def item_page(portal: Portal, client: Any, sequence: int) -> tuple[str, str]:
    status, _, page, _ = await fetch(portal, client, "GET", f"/items/{sequence}")
    assert status == 200
    return page, hidden(page, "csrf")


async def post_reply(
    portal: Portal, client: Any, sequence: int, form: dict[str, str]
) -> tuple[int, str]:
    status, _, page, _ = await fetch(portal, client, "POST", f"/items/{sequence}/reply", form)
    return status, page


def custody(setup: Setup) -> list[CustodyEntry]:
    """Every custody entry, read with the contact's key."""
    return open_archive(setup.directory / "archive", identity(setup.portal)).custody()


def replies(setup: Setup) -> list[tuple[str, tuple[int, ...]]]:
    return [(e.action, e.items) for e in custody(setup) if e.action.startswith("reply")]


def test_a_reply_by_email_reaches_him_through_the_outbound_relay(setup: Setup) -> None:
    """The item page offers "Reply to him"; sending Not possible with a proposal records a
    signed "reply" entry, sealed (it reads back only with a contact's key: the text is on
    no file in the clear), then the relay, logged in, takes exactly one new message from
    `outbound.from` to his configured address with exactly the text; the page shows it."""
    sequence = setup.held.pickup
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            page, csrf = await item_page(portal, client, sequence)
            assert "Reply to him" in page
            assert f'action="/items/{sequence}/reply"' in page
            assert 'type="radio" name="template" value="not_possible"' in page
            status, page = await post_reply(portal, client, sequence,
                                            {"csrf": csrf, **NOT_POSSIBLE})  # fmt: skip
            assert status == 200, page
            assert "Your reply was sent to him by email." in page
            assert f"<pre>{escape(SENT)}</pre>" in page

        run(setup, setup.config(outbound=port), body)
    [taken] = relay.taken
    assert (taken.sender, taken.recipients, taken.logged_in) == (
        FROM, ("mark.smith@gmail.com",), True)  # fmt: skip
    message = email.message_from_bytes(taken.raw, policy=policy.default)
    assert (message["From"], message["To"], message["Subject"]) == (
        FROM, "mark.smith@gmail.com", "About the children")  # fmt: skip
    assert message.get_content().replace("\r\n", "\n") == SENT + "\n"
    for canary in (*CANARIES, "sam@home.example", "pickup-1"):
        assert canary.encode() not in taken.raw
    [entry] = [e for e in custody(setup) if e.action == "reply"]
    assert (entry.items, entry.signed) == ((sequence,), "verified")
    item = open_archive(setup.directory / "archive", identity(setup.portal)).item(sequence)
    assert item is not None
    record = SealedCustody(action=entry.action, reason=entry.reason)
    assert replying.read_reply(record) == replying.Reply(leaf_hash=item.leaf_hash.hex(),
                                                         text=SENT)  # fmt: skip
    on_disk = [p.read_bytes() for p in (setup.directory / "archive").rglob("*") if p.is_file()]
    assert on_disk
    assert not any(PROPOSAL.encode() in data for data in on_disk)


def test_a_reply_to_his_text_goes_from_the_twilio_number(setup: Setup) -> None:
    """For a text of his, Confirmed goes as a text from her public number to his number,
    through the provider; the record holds exactly "Confirmed."."""
    sent: list[Any] = []
    sequence = setup.held.text

    async def main() -> None:
        async with FakeTwilio(ACCOUNT, TOKEN) as fake:
            config = setup.config(sms=fake.base_url)

            async def body(portal: Portal, client: Any) -> None:
                _, csrf = await item_page(portal, client, sequence)
                confirmed = {"csrf": csrf, "template": "confirmed"}
                status, page = await post_reply(portal, client, sequence, confirmed)
                assert status == 200, page
                assert "Your reply was sent to him by text." in page
                assert "<pre>Confirmed.</pre>" in page
                sent.extend(fake.sent())

            await asyncio.to_thread(run, setup, config, body)

    asyncio.run(main())
    assert [(m["from"], m["to"], m["body"]) for m in sent] == [(NUMBER, MARKS_PHONE, "Confirmed.")]
    [entry] = [e for e in custody(setup) if e.action == "reply"]
    reply = replying.read_reply(SealedCustody(action=entry.action, reason=entry.reason))
    assert reply is not None
    assert (entry.items, reply.text) == ((sequence,), "Confirmed.")


def test_a_forged_from_is_refused_and_nothing_is_sent_or_recorded(setup: Setup) -> None:
    """An item whose From is an address not among his in the config (though his envelope
    held it): the page says why instead of the form, and a POST is 409 with that line;
    the relay takes nothing and no reply is recorded."""
    sequence = setup.held.forged
    refusal = str(escape(replying.NOT_HIS_EMAIL))
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            page, csrf = await item_page(portal, client, sequence)
            assert refusal in page
            assert "/reply" not in page
            status, page = await post_reply(portal, client, sequence,
                                            {"csrf": csrf, "template": "confirmed"})  # fmt: skip
            assert status == 409
            assert refusal in page

        run(setup, setup.config(outbound=port), body)
    assert relay.taken == []
    assert replies(setup) == []


def test_without_an_outbound_section_an_email_cannot_be_answered(setup: Setup) -> None:
    """No `outbound:`: the page says so instead of the form; a POST is 409 saying so."""
    sequence = setup.held.pickup
    refusal = str(escape(delivery.NO_OUTBOUND))

    async def body(portal: Portal, client: Any) -> None:
        page, csrf = await item_page(portal, client, sequence)
        assert refusal in page
        status, page = await post_reply(portal, client, sequence,
                                        {"csrf": csrf, "template": "confirmed"})  # fmt: skip
        assert status == 409
        assert refusal in page

    run(setup, setup.config(), body)
    assert replies(setup) == []


def test_a_lawyer_is_refused_and_sees_no_form(setup: Setup) -> None:
    """A lawyer's item page never mentions the reply; a POST with a valid token is 403,
    nothing recorded, nothing sent."""
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            page, csrf = await item_page(portal, client, setup.held.pickup)
            assert "/reply" not in page
            assert "Reply to him" not in page
            status, page = await post_reply(portal, client, setup.held.pickup,
                                            {"csrf": csrf, **NOT_POSSIBLE})  # fmt: skip
            assert status == 403
            assert replying.LAWYER in page

        run(setup, setup.config(outbound=port, role="lawyer"), body)
    assert relay.taken == []
    assert replies(setup) == []


def test_a_post_without_csrf_is_forbidden(setup: Setup) -> None:
    """No token: 403, nothing recorded, nothing sent."""
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            status, _ = await post_reply(portal, client, setup.held.pickup, dict(NOT_POSSIBLE))
            assert status == 403

        run(setup, setup.config(outbound=port), body)
    assert relay.taken == []
    assert replies(setup) == []


def test_an_item_without_an_order_has_no_reply_form(setup: Setup) -> None:
    """No order mark, no form; a forged POST is refused (403) with why, nothing sent."""
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            page, csrf = await item_page(portal, client, setup.held.plain)
            assert "/reply" not in page
            status, page = await post_reply(portal, client, setup.held.plain,
                                            {"csrf": csrf, **NOT_POSSIBLE})  # fmt: skip
            assert status == 403
            assert str(escape(replying.NO_ORDER)) in page

        run(setup, setup.config(outbound=port), body)
    assert relay.taken == []
    assert replies(setup) == []


def test_a_bad_form_comes_back_with_what_was_typed(setup: Setup) -> None:
    """Not possible without a proposal, or one of two lines: 400, the form again with the
    choice and the proposal kept; nothing recorded or sent."""
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            _, csrf = await item_page(portal, client, setup.held.pickup)
            status, page = await post_reply(portal, client, setup.held.pickup,
                                            {"csrf": csrf, "template": "not_possible"})  # fmt: skip
            assert status == 400
            assert replying.NO_PROPOSAL in page
            form = {"csrf": csrf, "template": "not_possible", "proposal": "Sunday\nat noon"}
            status, page = await post_reply(portal, client, setup.held.pickup, form)
            assert status == 400
            assert "The proposal is one line." in page
            assert 'value="not_possible" required checked' in page
            assert 'value="Sunday\nat noon"' in page

        run(setup, setup.config(outbound=port), body)
    assert relay.taken == []
    assert replies(setup) == []


def test_a_dead_outbound_records_reply_failed_and_the_form_comes_back(setup: Setup) -> None:
    """With nothing listening at the outbound relay's port, the reply is recorded, the send
    fails (503, the form again with the proposal), and "reply-failed" is recorded."""
    sequence = setup.held.pickup

    async def body(portal: Portal, client: Any) -> None:
        _, csrf = await item_page(portal, client, sequence)
        status, page = await post_reply(portal, client, sequence, {"csrf": csrf, **NOT_POSSIBLE})
        assert status == 503
        assert "Not sent: the outbound SMTP relay could not be reached." in page
        assert "The reply is recorded as failed; try again." in page
        assert f'value="{PROPOSAL}"' in page

    run(setup, setup.config(outbound=free_port()), body)
    assert replies(setup) == [("reply", (sequence,)), ("reply-failed", (sequence,))]


def test_a_refused_login_records_reply_failed(setup: Setup) -> None:
    """A wrong password: the relay refuses the login, nothing is taken, "reply-failed"."""
    sequence = setup.held.pickup
    with outbound_relay() as (port, relay):
        config = setup.config(outbound=port)
        write_secret(setup.directory / "outbound-password", "not the password")

        async def body(portal: Portal, client: Any) -> None:
            _, csrf = await item_page(portal, client, sequence)
            status, page = await post_reply(portal, client, sequence,
                                            {"csrf": csrf, "template": "confirmed"})  # fmt: skip
            assert status == 503
            assert "Not sent: the outbound SMTP relay refused the login" in page

        run(setup, config, body)
    assert relay.taken == []
    assert replies(setup) == [("reply", (sequence,)), ("reply-failed", (sequence,))]


def test_nothing_is_sent_when_custody_cannot_be_recorded(setup: Setup) -> None:
    """With the archive's custody keys gone, the page shows the custody problem and
    nothing is sent: custody first."""
    with outbound_relay() as (port, relay):

        async def body(portal: Portal, client: Any) -> None:
            _, csrf = await item_page(portal, client, setup.held.pickup)
            (setup.directory / "archive" / layout.CUSTODY_KEYS).unlink()
            status, page = await post_reply(portal, client, setup.held.pickup,
                                            {"csrf": csrf, **NOT_POSSIBLE})  # fmt: skip
            assert status == portal_web.NOT_SHOWN
            assert "nothing was sent" in page

        run(setup, setup.config(outbound=port), body)
    assert relay.taken == []


def test_a_reply_in_real_chromium_with_javascript_off(setup: Setup) -> None:
    """Headless Chromium with scripts disabled: the contact logs in, opens his email,
    chooses Not possible, types a proposal and sends; the page shows exactly the text
    sent, and the outbound relay took it."""
    sequence = setup.held.pickup
    with outbound_relay() as (port, relay):
        setup.portal.config = setup.config(outbound=port)
        with (
            serving(portal_app(setup.portal)) as origin,
            chromium(setup.directory / "chromium") as browser,
        ):
            from selenium.webdriver.common.by import By  # noqa: PLC0415

            browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
            browser.get(f"{origin}/login")  # passkey.js would show its button: scripts off
            assert not browser.find_element(By.ID, "passkey-login").is_displayed()
            browser_log_in(browser, origin, setup.portal.secret, setup.portal.clock)
            wait_for(browser, lambda b: b.current_url == f"{origin}/items")
            browser.get(f"{origin}/items/{sequence}")
            browser.find_element(By.CSS_SELECTOR, "input[value=not_possible]").click()
            browser.find_element(By.NAME, "proposal").send_keys(PROPOSAL)
            browser.find_element(By.XPATH, "//button[text()='Send the reply to him']").click()
            wait_for(browser, lambda b: "Reply sent" in b.title)
            assert browser.find_element(By.TAG_NAME, "pre").text == SENT
    [taken] = relay.taken
    message = email.message_from_bytes(taken.raw, policy=policy.default)
    assert message.get_content().replace("\r\n", "\n") == SENT + "\n"
    assert replies(setup) == [("reply", (sequence,))]
