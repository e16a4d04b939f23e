"""The enrollment pages through aiohttp's test client and a real headless Chromium: one
page for every bad link, CSRF, the reasons a form is re-shown (with the same secret), and
a finished enrollment's recovery codes, key files and first login."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pyotp
import pyrage
import pytest
from aiohttp import FormData
from structlog.testing import capture_logs

from proxy.config import load_config
from proxy.portal import enrollment
from proxy.portal.accounts import Accounts
from proxy.portal.keyfiles import custody_key_file
from proxy.portal.refusals import INVITE_REFUSED
from tests.portal_helpers import (
    CANARY,
    FAST,
    HTTP_CONFIG,
    PLAIN,
    STRONG,
    Clock,
    Portal,
    Reply,
    assert_headers,
    browser_log_in,
    chromium,
    code,
    fetch,
    from_mark,
    hidden,
    hold,
    portal_app,
    publish_custody_key,
    run,
    screenshot,
    send,
    serving,
    wait_for,
)

WEAK = "password123"
EVENTS = {"portal enroll form", "portal enroll problem", "portal enroll refused",
          "portal enrolled"}  # fmt: skip


@pytest.fixture
def portal(tmp_path: Path) -> Portal:
    """A portal whose contact Priya has been invited but has not enrolled."""
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "config.yaml").write_text(HTTP_CONFIG)
    return Portal(directory, load_config(directory / "config.yaml"), Clock(), secret="")


def invite(portal: Portal) -> str:
    """A fresh invitation's path, /enroll/<token>."""
    link = Accounts(portal.config, clock=portal.clock, hasher=FAST).invite("Priya Raman")
    return "/enroll/" + link.rsplit("/", 1)[1]


def hold_for(portal: Portal) -> None:
    """An archive holding two items sealed to the enrolled contact, who may sign custody."""
    recipient = recipient_file(portal).read_text().strip()
    hold(portal.directory, recipient, [from_mark(PLAIN), from_mark(CANARY)])
    publish_custody_key(portal.directory, portal.config, recipient)


def recipient_file(portal: Portal) -> Path:
    contact = next(c for c in portal.config.contacts if c.portal)
    return Path(contact.age_recipient_file or "")


async def submit(
    portal: Portal, client: Any, path: str, form: dict[str, str], identity: bytes | None = None
) -> Reply:
    """POST the enrollment form as a browser does (multipart), cookies by hand."""
    data = FormData()
    for name, value in form.items():
        data.add_field(name, value)
    data.add_field("identity", identity or b"", filename="identity.txt" if identity else "",
                   content_type="application/octet-stream")  # fmt: skip
    status, headers, body, cookies = await send(portal, client, "POST", path, data)
    return status, headers, body.decode(), cookies


async def fill(
    portal: Portal, client: Any, path: str, page: str, *, passphrase: str = STRONG,
    again: str | None = None, totp: str | None = None, identity: bytes | None = None,
) -> Reply:  # fmt: skip
    """Fill in the form on `page` (the secret it shows, its current code) and send it."""
    secret = hidden(page, "secret")
    form = {"enroll_token": hidden(page, "enroll_token"), "secret": secret,
            "passphrase": passphrase, "passphrase_again": passphrase if again is None else again,
            "code": totp or code(secret, portal.clock)}  # fmt: skip
    return await submit(portal, client, path, form, identity)


def test_every_bad_link_gets_the_same_page(portal: Portal) -> None:
    """An unknown, an expired and a used link get the same status and the same page, by GET
    and by POST, saying only INVITE_REFUSED; the page carries the security headers."""
    unknown = "/enroll/" + secrets.token_urlsafe(32)
    expired = invite(portal)
    portal.clock.advance(hours=24, seconds=1)
    used = invite(portal)
    accounts = Accounts(portal.config, clock=portal.clock, hasher=FAST)
    setup = accounts.totp_setup(accounts.begin(used.rsplit("/", 1)[1]))
    accounts.enroll(used.rsplit("/", 1)[1], STRONG, code(setup.secret, portal.clock), setup.secret)
    pages = []

    async def body(client: Any) -> None:
        for path in (unknown, expired, used, "/enroll/%00", "/enroll/" + "a" * 500):
            status, headers, page, _ = await fetch(portal, client, "GET", path)
            assert_headers(headers)
            pages.append((status, page))
            status, _, page, _ = await submit(portal, client, path, {})
            assert status == 403  # no form token: refused before the link is looked at
            portal.cookies[enrollment.ENROLL_COOKIE] = "t" * 43
            status, _, page, _ = await submit(portal, client, path, {"enroll_token": "t" * 43})
            pages.append((status, page))
            portal.cookies.clear()

    run(portal, body)
    assert len(set(pages)) == 1
    assert pages[0][0] == enrollment.LINK_REFUSED
    assert INVITE_REFUSED in pages[0][1]
    assert "<form" not in pages[0][1]


def test_the_form_shows_the_secret_as_text_and_an_inline_qr(portal: Portal) -> None:
    """A live link's form has the base32 secret as text and in a hidden field, the QR as
    inline <svg> (no <img>, no script), a file input, and a one-off CSRF cookie."""
    path = invite(portal)

    async def body(client: Any) -> None:
        status, headers, page, cookies = await fetch(portal, client, "GET", path)
        assert status == 200
        assert_headers(headers)
        secret = hidden(page, "secret")
        assert re.fullmatch(r"[A-Z2-7]{32}", secret)
        assert f'<code id="totp-secret">{secret}</code>' in page
        assert "<svg" in page
        assert "<img" not in page
        assert "<script" not in page
        assert 'enctype="multipart/form-data"' in page
        morsel = cookies[enrollment.ENROLL_COOKIE]
        assert morsel.value == hidden(page, "enroll_token")
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"

    run(portal, body)


def test_a_post_without_the_forms_csrf_token_is_refused(portal: Portal) -> None:
    """Without the form's token, or with one not matching its cookie, the POST is 403 and
    nothing is tried: the link still works and nothing is enrolled."""
    path = invite(portal)

    async def body(client: Any) -> None:
        _, _, page, _ = await fetch(portal, client, "GET", path)
        secret = hidden(page, "secret")
        form = {"secret": secret, "passphrase": STRONG, "passphrase_again": STRONG,
                "code": code(secret, portal.clock)}  # fmt: skip
        assert (await submit(portal, client, path, form))[0] == 403
        wrong = form | {"enroll_token": "x" * 43}
        assert (await submit(portal, client, path, wrong))[0] == 403
        portal.cookies.clear()
        right = form | {"enroll_token": hidden(page, "enroll_token")}
        assert (await submit(portal, client, path, right))[0] == 403
        assert (await fetch(portal, client, "GET", path))[0] == 200

    run(portal, body)
    assert not recipient_file(portal).exists()


def test_each_problem_reshows_the_form_with_its_reason_and_the_same_secret(
    portal: Portal,
) -> None:
    """Differing passphrases, a weak passphrase, a wrong code and an oversized upload each
    re-show the form with their reason and the secret the contact already added; the link
    stays usable."""
    path = invite(portal)

    async def body(client: Any) -> None:
        _, _, page, _ = await fetch(portal, client, "GET", path)
        secret = hidden(page, "secret")
        attempts: list[tuple[dict[str, Any], str]] = [
            ({"again": STRONG + " x"}, enrollment.MISMATCH),
            ({"passphrase": WEAK}, "this passphrase is too easy to guess"),
            ({"totp": code(secret, portal.clock, steps=5)}, "that code does not match"),
            ({"identity": b"#" * 5000}, "too large"),
            ({"identity": b"not a key\n"}, "exactly one age identity"),
        ]
        for attempt, reason in attempts:
            status, _, page, _ = await fill(portal, client, path, page, **attempt)
            assert status == enrollment.PROBLEM
            assert reason in page
            assert hidden(page, "secret") == secret
            assert f'<code id="totp-secret">{secret}</code>' in page
            assert WEAK not in page
        assert (await fetch(portal, client, "GET", path))[0] == 200

    run(portal, body)
    assert not recipient_file(portal).exists()


def test_enrolling_shows_ten_codes_once_writes_the_keys_and_uses_the_link(
    portal: Portal,
) -> None:
    """Success shows 10 recovery codes and a link to /login; the recipient and custody key
    files are written; the link then gets the refused page; the logs hold fixed events only."""
    path = invite(portal)
    shown = []

    async def body(client: Any) -> None:
        _, _, page, _ = await fetch(portal, client, "GET", path)
        status, headers, page, _ = await fill(portal, client, path, page)
        assert status == 200
        assert_headers(headers)
        shown.extend(re.findall(r"<li><code>([a-z2-9-]+)</code></li>", page))
        assert 'href="/login"' in page
        assert enrollment.ENROLL_COOKIE not in portal.cookies
        status, _, page, _ = await fetch(portal, client, "GET", path)
        assert (status, INVITE_REFUSED in page) == (enrollment.LINK_REFUSED, True)

    with capture_logs() as logged:
        run(portal, body)
    assert len(set(shown)) == 10
    assert all(re.fullmatch(r"([a-z2-9]{4}-){3}[a-z2-9]{4}", c) for c in shown)
    assert recipient_file(portal).read_text().startswith("age1")
    assert custody_key_file(next(c for c in portal.config.contacts if c.portal)).exists()
    assert [e["event"] for e in logged] == ["portal enroll form", "portal enrolled",
                                            "portal enroll refused"]  # fmt: skip
    assert all(set(entry) <= {"event", "log_level", "component"} for entry in logged), logged


def test_an_uploaded_keygen_identity_becomes_the_contacts_key(portal: Portal) -> None:
    """An identity file uploaded with the form (as keygen writes it) is the one enrolled:
    its public key is what the recipient file holds."""
    path = invite(portal)
    identity = pyrage.x25519.Identity.generate()
    upload = f"# created: now\n# public key: {identity.to_public()}\n{identity}\n".encode()

    async def body(client: Any) -> None:
        _, _, page, _ = await fetch(portal, client, "GET", path)
        status, _, page, _ = await fill(portal, client, path, page, identity=upload)
        assert status == 200, page

    run(portal, body)
    assert recipient_file(portal).read_text().strip() == str(identity.to_public())


def test_enroll_then_log_in_in_real_chromium(portal: Portal) -> None:
    """Headless Chromium opens the invitation link, reads the base32 secret off the page,
    enters the authenticator's code (pyotp), gets 10 recovery codes, then logs in through
    /login and sees the items page."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    path = invite(portal)
    with serving(portal_app(portal)) as origin, chromium(portal.directory / "chromium") as browser:
        browser.get(origin + path)
        assert browser.find_elements(By.CSS_SELECTOR, ".qr svg")
        secret = browser.find_element(By.ID, "totp-secret").text.strip()
        browser.find_element(By.NAME, "passphrase").send_keys(STRONG)
        browser.find_element(By.NAME, "passphrase_again").send_keys(STRONG)
        screenshot(browser, "enroll")  # the secret is this test's own, made up for the run
        browser.find_element(By.NAME, "code").send_keys(pyotp.TOTP(secret).at(portal.clock()))
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "recovery-codes"))
        codes = browser.find_elements(By.CSS_SELECTOR, "#recovery-codes li")
        assert len(codes) == 10
        screenshot(browser, "recovery-codes")
        browser.find_element(By.LINK_TEXT, "Log in").click()
        wait_for(browser, lambda b: b.current_url == f"{origin}/login")
        portal.clock.advance(seconds=30)  # the enrollment code's step is used
        hold_for(portal)  # the daemon, having reloaded, holds two items for them
        browser_log_in(browser, origin, secret, portal.clock)
        wait_for(browser, lambda b: b.current_url == f"{origin}/items")
        assert "please" in browser.find_element(By.TAG_NAME, "table").text
    assert recipient_file(portal).read_text().startswith("age1")
