"""Releasing a wrongly held passive item from the portal: through aiohttp's test client
against a real archive, a real Maildir, an aiosmtpd next hop and the Twilio fake; who may,
which items, custody first, failures and retries, once only; and one run in Chromium."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from markupsafe import escape

from proxy.access import delivery, release
from proxy.access.reading import CustodyEntry, open_archive
from proxy.archive import layout
from proxy.channels.sms.capture import ArrivalKind, Webhook, capture
from proxy.config import Config, load_config
from proxy.message import Channel, InboundMessage, Kind
from proxy.normalize import normalize_sms
from proxy.portal import web as portal_web
from tests.factories import RECEIVED_AT, write_secret
from tests.portal_helpers import (
    HTTP_CONFIG,
    PLAIN,
    Holding,
    Portal,
    Template,
    assert_headers,
    browser_log_in,
    chromium,
    copy_portal,
    fetch,
    from_mark,
    held_template,
    hidden,
    identity,
    log_in,
    portal_app,
    serving,
    wait_for,
)
from tests.portal_helpers import run as run_portal
from tests.test_smtp import sink
from tests.twilio_fake import FakeTwilio

ABOUT_HIM = (
    b"From: Jo Baker <jo@friends.example>\r\nTo: sam@home.example\r\nSubject: Saturday\r\n"
    b"Date: Sun, 01 Mar 2026 11:58:00 +0000\r\nMessage-ID: <party-1@friends.example>\r\n\r\n"
    b"Mark Smith said he might come to the party on Saturday.\r\n"
)
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-0123456789abcdef"
NUMBER, PHONE = "+15550107777", "+15550108888"  # her public Twilio number, her real phone
CAROL = "+15550100142"  # an intermediary (tests.factories)
TEXT = "Mark Smith asked me to tell you he is sorry."
RELEASED = "Delivered to her inbox"


@dataclass
class Held:
    """The sequence numbers of the template's held items."""

    passive: int
    direct: int
    text: int
    voicemail: int


def from_carol(kind: ArrivalKind, text: str) -> InboundMessage:
    """A text or voicemail from Carol (an intermediary) to her public number, as the SMS
    channel captures a Twilio webhook."""
    form = urlencode({"From": CAROL, "To": NUMBER, "Body": text, "MessageSid": "SM1"})
    message = normalize_sms(sender=CAROL, recipient=NUMBER, text=text, raw=b"",
                            received_at=RECEIVED_AT, default_region="US")  # fmt: skip
    webhook = Webhook(url="https://home.example/twilio/sms", body=form.encode(), signature="x")
    raw = capture(kind=kind, webhook=webhook)
    return dataclasses.replace(message, raw=raw, channel=Channel.SMS)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One enrollment and an archive of four held items (a passive email, a direct email,
    a passive text, a passive voicemail), copied for each test."""
    peer = {"peer": "203.0.113.9", "helo": "mx.friends.example"}
    to_her = ("sam@home.example",)
    return held_template(tmp_path_factory, "release", [
        Holding(from_mark(ABOUT_HIM, sender="jo@friends.example", recipients=to_her),
                extras=peer),
        Holding(from_mark(PLAIN, recipients=to_her), extras=peer),
        Holding(from_carol(ArrivalKind.TEXT, TEXT),
                extras={"provider": "twilio", "voicemail": False}),
        Holding(from_carol(ArrivalKind.VOICEMAIL, ""),  # held as passive: the rules changed
                extras={"provider": "twilio", "voicemail": True}, kind=Kind.PASSIVE),
    ])  # fmt: skip


@dataclass
class Setup:
    """A fresh copy of the template, with where released items arrive."""

    portal: Portal
    held: Held
    maildir: Path

    @property
    def directory(self) -> Path:
        return self.portal.directory

    def config(self, *, deliver: str = "", role: str = "contact", sms: str = "") -> Config:
        """The portal's config, with an SMTP channel delivering to `deliver` (the Maildir
        by default) and, given the fake's URL, an SMS channel."""
        text = HTTP_CONFIG.replace(
            "role: contact\n    email: priya", f"role: {role}\n    email: priya"
        )
        deliver = deliver or f"maildir:{self.maildir}"
        text += f"default_region: US\nchannels:\n  smtp:\n    deliver: {deliver}\n"
        if sms:
            token = write_secret(self.directory / "twilio-token", TOKEN)
            text += (f"  sms:\n    public_url: https://home.example/twilio\n"
                     f"    account_sid: {ACCOUNT}\n    auth_token_file: {token}\n"
                     f"    number: '{NUMBER}'\n    forward_to: '{PHONE}'\n"
                     f"    api_base_url: {sms}\n")  # fmt: skip
        path = self.directory / "config.yaml"
        path.write_text(text)
        return load_config(path)


@pytest.fixture
def setup(template: Template, tmp_path: Path) -> Setup:
    return Setup(copy_portal(template, tmp_path), Held(*template.sequences), tmp_path / "mail")


Body = Callable[[Portal, Any], Awaitable[None]]


def run(setup: Setup, config: Config, body: Body) -> Portal:
    """Log in and run `body` with a client of the portal app for `config`; the portal (its
    cookies)."""
    portal = dataclasses.replace(setup.portal, config=config, cookies={})

    async def logged_in(client: Any) -> None:
        await log_in(portal, client)
        await body(portal, client)

    run_portal(portal, logged_in)
    return portal


async def release_form(portal: Portal, client: Any, sequence: int) -> tuple[str, str]:
    """The item page, and its CSRF token."""
    status, _, page, _ = await fetch(portal, client, "GET", f"/items/{sequence}")
    assert status == 200
    return page, hidden(page, "csrf")


async def post_release(
    portal: Portal, client: Any, sequence: int, csrf: str, reason: str = "a party invitation"
) -> tuple[int, dict[str, str], str]:
    status, headers, page, _ = await fetch(portal, client, "POST", f"/items/{sequence}/release",
                                           {"csrf": csrf, "reason": reason})  # fmt: skip
    return status, headers, page


def delivered(maildir: Path) -> list[bytes]:
    new = maildir / "new"
    return [path.read_bytes() for path in sorted(new.iterdir())] if new.is_dir() else []


def custody(setup: Setup) -> list[CustodyEntry]:
    """Every custody entry, read with the contact's key."""
    return open_archive(setup.directory / "archive", identity(setup.portal)).custody()


def releases(setup: Setup) -> list[tuple[str, tuple[int, ...], str, str]]:
    return [(e.action, e.items, e.reason, e.signed) for e in custody(setup)
            if e.action.startswith("release")]  # fmt: skip


def test_a_passive_email_is_released_into_her_maildir_once(setup: Setup) -> None:
    """A contact's item page for a passive hold offers the release form; sending it with a
    reason records a signed "release" custody entry, then the original arrives in the
    Maildir byte for byte after the filter's Received line; a second release says it was
    released already and delivers nothing more."""
    sequence = setup.held.passive

    async def body(portal: Portal, client: Any) -> None:
        page, csrf = await release_form(portal, client, sequence)
        assert f'action="/items/{sequence}/release"' in page
        assert "Release to her inbox" in page
        status, headers, page = await post_release(portal, client, sequence, csrf)
        assert status == 200, page
        assert RELEASED in page
        assert_headers(headers)
        status, _, page = await post_release(portal, client, sequence, csrf, "again")
        assert status == 409
        assert "released already" in page
        assert "Release to her inbox" not in page

    run(setup, setup.config(), body)
    [message] = delivered(setup.maildir)
    assert message.endswith(ABOUT_HIM)
    trace = message[: -len(ABOUT_HIM)]
    assert trace.startswith(b"Received: from mx.friends.example (203.0.113.9)\r\n")
    assert b"by nocontact.local (nocontact) with ESMTP;" in trace
    assert releases(setup) == [("release", (sequence,), "a party invitation", "verified")]


def test_release_goes_to_an_smtp_next_hop_not_back_through_the_filter(setup: Setup) -> None:
    """With an smtp:// next hop (Postfix's reinjection port, here aiosmtpd), the released
    email reaches that hop with its sealed envelope recipients and one Received line: it is
    not filtered again, and no marker header is added."""
    with sink() as (port, recorder):
        config = setup.config(deliver=f"smtp://127.0.0.1:{port}")

        async def body(portal: Portal, client: Any) -> None:
            _, csrf = await release_form(portal, client, setup.held.passive)
            status, _, page = await post_release(portal, client, setup.held.passive, csrf)
            assert status == 200, page

        run(setup, config, body)
    [message] = recorder.messages
    assert message.endswith(ABOUT_HIM)
    assert message.count(b"Received:") == 1
    assert b"nocontact-released" not in message.lower()


def test_a_next_hop_that_is_the_filter_itself_is_refused(setup: Setup) -> None:
    """A deliver address equal to the filter's listen address would hold the email again:
    the item page says so instead of the form, and a POST is refused (409), nothing sent."""
    config = setup.config(deliver="smtp://127.0.0.1:2525")

    async def body(portal: Portal, client: Any) -> None:
        page, csrf = await release_form(portal, client, setup.held.passive)
        assert escape(delivery.LOOPS) in page
        assert "Release to her inbox" not in page
        status, _, page = await post_release(portal, client, setup.held.passive, csrf)
        assert status == 409
        assert escape(delivery.LOOPS) in page

    run(setup, config, body)
    assert releases(setup) == []


def test_a_direct_hold_can_never_be_released(setup: Setup) -> None:
    """The item page of a direct hold has no release form, only why; a forged POST with a
    valid CSRF token is refused (403) with that line, nothing recorded, nothing delivered."""

    async def body(portal: Portal, client: Any) -> None:
        page, csrf = await release_form(portal, client, setup.held.direct)
        assert "/release" not in page
        assert escape(release.DIRECT) in page
        status, headers, page = await post_release(portal, client, setup.held.direct, csrf)
        assert status == 403
        assert escape(release.DIRECT) in page
        assert_headers(headers)

    run(setup, setup.config(), body)
    assert delivered(setup.maildir) == []
    assert releases(setup) == []


def test_a_lawyer_never_sees_a_release_and_is_refused(setup: Setup) -> None:
    """For a contact whose role is lawyer, the passive item's page mentions no release, and
    a POST with a valid CSRF token is 403: nothing read, recorded or delivered."""

    async def body(portal: Portal, client: Any) -> None:
        page, csrf = await release_form(portal, client, setup.held.passive)
        assert "release" not in page.lower()
        status, _, page = await post_release(portal, client, setup.held.passive, csrf)
        assert status == 403
        assert escape(release.LAWYER) in page

    run(setup, setup.config(role="lawyer"), body)
    assert delivered(setup.maildir) == []
    assert [entry.action for entry in custody(setup)] == ["show"]


def test_a_release_without_its_csrf_token_or_reason_does_nothing(setup: Setup) -> None:
    """No CSRF token, or a wrong one: 403. No reason: the form again (400). Either way
    nothing is recorded or delivered."""

    async def body(portal: Portal, client: Any) -> None:
        _, csrf = await release_form(portal, client, setup.held.passive)
        path = f"/items/{setup.held.passive}/release"
        for form in ({"reason": "x"}, {"csrf": "y" * 43, "reason": "x"}):
            status, _, _, _ = await fetch(portal, client, "POST", path, form)
            assert status == 403
        status, _, page = await post_release(portal, client, setup.held.passive, csrf, "  ")
        assert status == 400
        assert "Give a short reason" in page

    run(setup, setup.config(), body)
    assert delivered(setup.maildir) == []
    assert releases(setup) == []


def test_a_failed_delivery_says_so_and_can_be_tried_again(setup: Setup) -> None:
    """With the Maildir unwritable (a file where its directory should be), the release is
    recorded, delivery fails, the page says so in one line (503) with the form again and
    "release-failed" is recorded; once the Maildir is fixed, the retry delivers it, once."""
    setup.maildir.write_text("not a directory")

    async def body(portal: Portal, client: Any) -> None:
        _, csrf = await release_form(portal, client, setup.held.passive)
        status, _, page = await post_release(portal, client, setup.held.passive, csrf)
        assert status == 503
        assert "Not delivered: the next hop did not take it: maildir delivery failed" in page
        assert "try again" in page
        assert "Release to her inbox" in page
        setup.maildir.unlink()
        status, _, page = await post_release(portal, client, setup.held.passive, csrf, "retry")
        assert status == 200, page
        status, _, page = await post_release(portal, client, setup.held.passive, csrf, "more")
        assert status == 409

    run(setup, setup.config(), body)
    assert len(delivered(setup.maildir)) == 1
    sequence = setup.held.passive
    assert [(action, items) for action, items, _, _ in releases(setup)] == [
        ("release", (sequence,)),
        ("release-failed", (sequence,)),
        ("release", (sequence,)),
    ]


def test_nothing_is_delivered_when_custody_cannot_be_recorded(setup: Setup) -> None:
    """With the archive's custody keys gone, the release shows the custody problem and
    delivers nothing: custody first."""

    async def body(portal: Portal, client: Any) -> None:
        _, csrf = await release_form(portal, client, setup.held.passive)
        (setup.directory / "archive" / layout.CUSTODY_KEYS).unlink()
        status, _, page = await post_release(portal, client, setup.held.passive, csrf)
        assert status == portal_web.NOT_SHOWN
        assert "nothing was delivered" in page

    run(setup, setup.config(), body)
    assert delivered(setup.maildir) == []


def test_a_passive_text_is_forwarded_to_her_phone_and_retried_after_an_outage(
    setup: Setup,
) -> None:
    """A passive text goes to her phone as the SMS channel forwards an allowed one ("From
    <number>: <text>", from her public number); with the provider down the page says so
    and release-failed is recorded; the retry sends it once. A voicemail is refused."""
    sent: list[dict[str, object]] = []

    async def main() -> None:
        async with FakeTwilio(ACCOUNT, TOKEN) as fake:
            config = setup.config(sms=fake.base_url)

            async def body(portal: Portal, client: Any) -> None:
                page, csrf = await release_form(portal, client, setup.held.text)
                assert "Release to her inbox" in page
                fake.down = True
                status, _, page = await post_release(portal, client, setup.held.text, csrf)
                assert status == 503
                assert "Not delivered: the provider (Twilio) could not be reached" in page
                fake.down = False
                status, _, page = await post_release(portal, client, setup.held.text, csrf)
                assert status == 200, page
                assert "Sent to her phone" in page
                page, _ = await release_form(portal, client, setup.held.voicemail)
                assert escape(release.VOICEMAIL) in page
                status, _, page = await post_release(portal, client, setup.held.voicemail, csrf)
                assert status == 409
                assert escape(release.VOICEMAIL) in page
                sent.extend(fake.sent())

            await asyncio.to_thread(run, setup, config, body)

    asyncio.run(main())
    assert [(m["to"], m["from"], m["body"]) for m in sent] == [
        (PHONE, NUMBER, f"From {CAROL}: {TEXT}")
    ]
    assert [action for action, _, _, _ in releases(setup)] == [
        "release",
        "release-failed",
        "release",
    ]


def test_an_item_the_rules_now_hold_as_direct_stays_held(setup: Setup) -> None:
    """A passive text from a number since added to a blocked person's phones is refused
    (403) when released: the rules in force are asked again."""
    setup.config(sms="http://127.0.0.1:9")
    path = setup.directory / "config.yaml"
    carol = f"  - id: carol\n    name: Carol Smith\n    phones: ['{CAROL}']\n"
    path.write_text(path.read_text().replace("people:\n", "people:\n" + carol))
    config = load_config(path)

    async def body(portal: Portal, client: Any) -> None:
        _, csrf = await release_form(portal, client, setup.held.text)
        status, _, page = await post_release(portal, client, setup.held.text, csrf)
        assert status == 403
        assert escape(release.BLOCKED_NOW) in page

    run(setup, config, body)
    assert releases(setup) == []


def test_release_state_is_the_last_release_record() -> None:
    """ "release" then "release-failed" leaves an item unreleased; a later "release" makes
    it released; records about other items do not count."""
    from proxy.archive.metadata import SealedCustody  # noqa: PLC0415

    def entry(action: str, *items: int) -> SealedCustody:
        return SealedCustody(action=action, items=items)

    table = [
        ([], None),
        ([entry("release", 5)], "release"),
        ([entry("release", 5), entry("release-failed", 5)], None),
        ([entry("release", 5), entry("release-failed", 5), entry("release", 5)], "release"),
        ([entry("release", 6), entry("release-failed", 4)], None),
    ]
    for records, expected in table:
        found = release.last_release(list(enumerate(records)), 5)
        assert (found.action if found else None) == expected, records


def test_release_in_real_chromium(setup: Setup) -> None:
    """Headless Chromium: a contact logs in, opens the passive item, gives a reason and
    releases it, and it arrives in her Maildir; the direct item has no release button."""
    setup.portal.config = setup.config()
    with (
        serving(portal_app(setup.portal)) as origin,
        chromium(setup.directory / "chromium") as browser,
    ):
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        browser_log_in(browser, origin, setup.portal.secret, setup.portal.clock)
        wait_for(browser, lambda b: b.current_url == f"{origin}/items")
        browser.get(f"{origin}/items/{setup.held.direct}")
        assert browser.find_elements(By.NAME, "reason") == []
        assert release.DIRECT in browser.find_element(By.TAG_NAME, "main").text
        browser.get(f"{origin}/items/{setup.held.passive}")
        browser.find_element(By.NAME, "reason").send_keys("an ordinary party invitation")
        browser.find_element(By.XPATH, "//button[text()='Release to her inbox']").click()
        wait_for(browser, lambda b: "Released" in b.title)
        assert RELEASED in browser.find_element(By.TAG_NAME, "main").text
    [message] = delivered(setup.maildir)
    assert message.endswith(ABOUT_HIM)
    assert json.dumps(releases(setup)[0][:3]) == json.dumps(
        ["release", [setup.held.passive], "an ordinary party invitation"])  # fmt: skip
