"""The passkey endpoints through aiohttp's test client (a software authenticator answers),
and a passkey registered and used in real Chromium with Selenium's virtual authenticator."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from webauthn.helpers import base64url_to_bytes

from proxy.config import load_config
from proxy.portal import passkey_pages, passkeys, throttle
from proxy.portal import web as portal_web
from proxy.portal.passkeys import RelyingParty
from proxy.portal.refusals import LOGIN_REFUSED
from tests.portal_helpers import (
    CANARY,
    EMAIL,
    HTTP_CONFIG,
    PLAIN,
    STRONG,
    Portal,
    Reply,
    SoftKey,
    Template,
    assert_headers,
    browser_log_in,
    chromium,
    code,
    copy_portal,
    fetch,
    free_port,
    from_mark,
    held_template,
    hidden,
    log_in,
    portal_app,
    run,
    serving,
    wait_for,
)

WRONG = "wrong horse battery staple"
SCRIPT_TAG = re.compile(r"<script\b[^>]*>(.*?)</script>", re.DOTALL)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One enrollment and an archive of two items sealed to it, copied for each test."""
    return held_template(tmp_path_factory, "passkey", [from_mark(PLAIN), from_mark(CANARY)])


@pytest.fixture
def portal(template: Template, tmp_path: Path) -> Portal:
    return copy_portal(template, tmp_path)


def party(portal: Portal) -> RelyingParty:
    assert portal.config.portal is not None
    return passkeys.relying_party(portal.config.portal.public_url)


async def account_csrf(portal: Portal, client: Any) -> str:
    _, _, page, _ = await fetch(portal, client, "GET", "/account")
    return hidden(page, "csrf")


async def registration_challenge(portal: Portal, client: Any, key: SoftKey) -> bytes:
    """Ask for registration options as the script does; the key takes the user handle."""
    csrf = await account_csrf(portal, client)
    status, headers, text, _ = await fetch(portal, client, "POST", "/account/passkeys/options",
                                           {"csrf": csrf})  # fmt: skip
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    options = json.loads(text)
    key.user_handle = options["user"]["id"]
    return base64url_to_bytes(options["challenge"])


async def add(
    portal: Portal, client: Any, key: SoftKey, *, name: str = "laptop",
    passphrase: str = STRONG, challenge: bytes | None = None,
) -> Reply:  # fmt: skip
    """Add `key` on the account page: options, the authenticator's answer, the form."""
    challenge = challenge or await registration_challenge(portal, client, key)
    answer = key.create(challenge, party=party(portal))
    form = {"csrf": await account_csrf(portal, client), "name": name,
            "passphrase": passphrase, "credential": answer}  # fmt: skip
    return await fetch(portal, client, "POST", "/account/passkeys", form)


async def login_challenge(portal: Portal, client: Any) -> tuple[str, bytes]:
    """A fresh login form's token and the challenge the portal issues for it."""
    _, _, page, _ = await fetch(portal, client, "GET", "/login")
    token = hidden(page, "login_token")
    status, _, text, _ = await fetch(portal, client, "POST", "/login/passkey",
                                     {"login_token": token})  # fmt: skip
    assert status == 200
    return token, base64url_to_bytes(json.loads(text)["challenge"])


async def passkey_log_in(
    portal: Portal, client: Any, token: str, answer: str, passphrase: str = STRONG
) -> Reply:
    """Send the login form with `answer` in its passkey field and no code."""
    form = {"login_token": token, "email": EMAIL, "passphrase": passphrase, "code": "",
            "passkey": answer}  # fmt: skip
    return await fetch(portal, client, "POST", "/login", form)


async def enrolled_key(portal: Portal, client: Any) -> SoftKey:
    """Log in with a code, add a passkey, log out; the passkey."""
    key = SoftKey()
    await log_in(portal, client)
    status, _, page, _ = await add(portal, client, key)
    assert status == 200, page
    await fetch(portal, client, "POST", "/logout", {"csrf": hidden(page, "csrf")})
    return key


def refusal(page: str) -> str:
    """The login page with its one-off token blanked: the same for every refusal."""
    return re.sub(r'name="login_token" value="[^"]+"', "", page)


def test_one_same_origin_script_and_no_inline_script(portal: Portal) -> None:
    """The login and account pages load /static/passkey.js and nothing else; no page has
    inline script or event attributes; the script carries the security headers."""

    async def body(client: Any) -> None:
        status, headers, script, _ = await fetch(portal, client, "GET", passkey_pages.SCRIPT_PATH)
        assert status == 200
        assert headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert_headers(headers)
        assert "navigator.credentials.get" in script
        assert not re.search(r"https?://", script)  # it reaches only the portal
        await log_in(portal, client)
        for path in ("/account", "/login"):
            _, _, page, _ = await fetch(portal, client, "GET", path)
            assert re.findall(r"<script\b[^>]*>", page) == [
                f'<script src="{passkey_pages.SCRIPT_PATH}" defer>'
            ]
            assert all(inline == "" for inline in SCRIPT_TAG.findall(page))
            assert not re.search(r"\son[a-z]+\s*=", page)

    run(portal, body)


def test_login_options_need_the_forms_token_and_name_no_credential(portal: Portal) -> None:
    """Without the login form's token (or with one not its cookie's) the options are 403;
    with it, JSON for the portal's RP id, a fresh 32-byte challenge each time, user
    verification preferred, and no credential named, whatever the account."""

    async def body(client: Any) -> None:
        _, _, page, _ = await fetch(portal, client, "GET", "/login")
        token = hidden(page, "login_token")
        for form in ({}, {"login_token": "x" * 43}):
            status, headers, _, _ = await fetch(portal, client, "POST", "/login/passkey", form)
            assert status == 403
            assert_headers(headers)
        answers = []
        for _ in range(2):
            status, headers, text, _ = await fetch(portal, client, "POST", "/login/passkey",
                                                   {"login_token": token})  # fmt: skip
            assert (status, headers["Content-Type"]) == (200, "application/json; charset=utf-8")
            answers.append(json.loads(text))
        assert answers[0]["challenge"] != answers[1]["challenge"]
        assert len(base64url_to_bytes(answers[0]["challenge"])) == 32
        assert answers[0]["rpId"] == party(portal).id == "127.0.0.1"
        assert answers[0]["userVerification"] == "preferred"
        assert answers[0].get("allowCredentials", []) == []

    run(portal, body)


def test_add_a_passkey_then_log_in_with_it_instead_of_a_code(portal: Portal) -> None:
    """A contact adds a passkey (listed by name on the account page), logs out, and logs
    in with email, passphrase and the passkey, no code; the logs hold fixed events only."""

    async def body(client: Any) -> None:
        key = SoftKey()
        await log_in(portal, client)
        status, _, page, _ = await add(portal, client, key, name="my <laptop>")
        assert status == 200, page
        assert "Your passkey “my &lt;laptop&gt;” is added" in page
        assert "<td>my &lt;laptop&gt;</td>" in page
        await fetch(portal, client, "POST", "/logout", {"csrf": hidden(page, "csrf")})
        token, challenge = await login_challenge(portal, client)
        answer = key.get(challenge, party=party(portal))
        status, headers, _, _ = await passkey_log_in(portal, client, token, answer)
        assert (status, headers["Location"]) == (303, "/items")
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200

    with capture_logs() as logged:
        run(portal, body)
    assert [e["event"] for e in logged] == ["portal login", "portal passkey added",
                                            "portal logout", "portal login"]  # fmt: skip
    assert all(set(entry) <= {"event", "log_level", "component"} for entry in logged), logged


def test_every_passkey_failure_is_the_login_refusal(portal: Portal) -> None:
    """A wrong origin, a passkey not the account's, a replayed or never-issued challenge,
    the right passkey with a wrong passphrase, and broken or huge JSON each get the page
    a wrong code gets (401, LOGIN_REFUSED), and no session."""
    pages: dict[str, tuple[int, str]] = {}

    async def body(client: Any) -> None:
        key = await enrolled_key(portal, client)
        rp = party(portal)

        async def attempt(case: str, answer: Any, passphrase: str = STRONG) -> str:
            portal.clock.advance(minutes=16)  # failures forgotten: each is refused for itself
            token, challenge = await login_challenge(portal, client)
            text = answer(challenge) if callable(answer) else answer
            status, _, page, cookies = await passkey_log_in(portal, client, token, text,
                                                            passphrase)  # fmt: skip
            assert portal_web.SESSION_COOKIE not in cookies, case
            pages[case] = (status, refusal(page))
            return token

        stranger = SoftKey(credential=b"\x07" * 16)
        await attempt("wrong origin", lambda c: key.get(c, party=rp, origin="http://evil.example"))
        await attempt("unknown credential", lambda c: stranger.get(c, party=rp))
        await attempt("wrong passphrase", lambda c: key.get(c, party=rp), WRONG)
        await attempt("other login's challenge", key.get(b"\x01" * 32, party=rp))
        for n, junk in enumerate(("{", "null", "[]", '{"rawId": 5}', "[" * 17_000, "é" * 9_000)):
            await attempt(f"junk {n}", junk)
        # a challenge is used by the attempt that sent it, refused or not
        portal.clock.advance(minutes=16)
        token, challenge = await login_challenge(portal, client)
        answer = key.get(challenge, party=rp)
        await passkey_log_in(portal, client, token, answer, WRONG)
        portal.cookies[portal_web.LOGIN_COOKIE] = token
        status, _, page, _ = await passkey_log_in(portal, client, token, answer)
        pages["replayed challenge"] = (status, refusal(page))
        portal.clock.advance(minutes=16)
        status, _, page, _ = await log_in(portal, client, totp=code(portal.secret, portal.clock,
                                                                    steps=5))  # fmt: skip
        pages["wrong code"] = (status, refusal(page))

    run(portal, body)
    assert len(pages) == 12
    assert set(pages.values()) == {pages["wrong code"]}, pages.keys()
    assert pages["wrong code"][0] == portal_web.REFUSED
    assert LOGIN_REFUSED in pages["wrong code"][1]


def test_a_used_assertion_cannot_log_in_again(portal: Portal) -> None:
    """After a passkey login, the same form sent again (its token's cookie put back) is
    refused: its challenge was used."""

    async def body(client: Any) -> None:
        key = await enrolled_key(portal, client)
        token, challenge = await login_challenge(portal, client)
        answer = key.get(challenge, party=party(portal))
        assert (await passkey_log_in(portal, client, token, answer))[0] == 303
        portal.cookies[portal_web.LOGIN_COOKIE] = token
        status, _, page, cookies = await passkey_log_in(portal, client, token, answer)
        assert (status, LOGIN_REFUSED in page) == (portal_web.REFUSED, True)
        assert portal_web.SESSION_COOKIE not in cookies

    run(portal, body)


def test_failed_passkeys_lock_the_account_like_failed_codes(portal: Portal) -> None:
    """LOCK_AFTER refused passkeys lock the account: the right code is refused until the
    lock is over, then accepted."""

    async def body(client: Any) -> None:
        await enrolled_key(portal, client)
        stranger = SoftKey(credential=b"\x08" * 16)
        for _ in range(throttle.LOCK_AFTER):
            portal.clock.advance(seconds=11)  # past the slowing waits, inside FORGET
            token, challenge = await login_challenge(portal, client)
            answer = stranger.get(challenge, party=party(portal))
            assert (await passkey_log_in(portal, client, token, answer))[0] == portal_web.REFUSED
        portal.clock.advance(seconds=30)
        assert (await log_in(portal, client))[0] == portal_web.REFUSED
        portal.clock.advance(minutes=16)
        assert (await log_in(portal, client))[0] == 303

    run(portal, body)


def test_adding_and_removing_on_the_account_page(portal: Portal) -> None:
    """Without JavaScript the page says adding needs it (and a form sent without the
    browser's answer adds nothing); a wrong passphrase is LOGIN_REFUSED; an answer to a
    used challenge is refused with a reason; removing needs the passphrase; every POST
    without the session's CSRF token is 403."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        assert '<p id="passkey-needs-script">' in page
        assert '<form method="post" action="/account/passkeys" id="passkey-add" hidden>' in page
        assert 'id="no-passkeys"' in page
        csrf = hidden(page, "csrf")
        for path in ("/account/passkeys/options", "/account/passkeys",
                     "/account/passkeys/remove"):  # fmt: skip
            assert (await fetch(portal, client, "POST", path, {}))[0] == 403
        form = {"csrf": csrf, "name": "x", "passphrase": STRONG}
        status, _, page, _ = await fetch(portal, client, "POST", "/account/passkeys", form)
        assert (status, passkey_pages.NEEDS_SCRIPT in page) == (400, True)
        key = SoftKey()
        challenge = await registration_challenge(portal, client, key)
        status, _, page, _ = await add(portal, client, key, passphrase=WRONG, challenge=challenge)
        assert (status, LOGIN_REFUSED in page) == (401, True)
        status, _, page, _ = await add(portal, client, key, challenge=challenge)  # used above
        assert (status, "could not be checked" in page) == (400, True)
        assert (await add(portal, client, key))[0] == 200
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        credential = re.findall(r'<option value="([^"]+)">laptop</option>', page)
        assert len(credential) == 1
        form = {"csrf": csrf, "credential_id": credential[0], "passphrase": WRONG}
        status, _, page, _ = await fetch(portal, client, "POST", "/account/passkeys/remove", form)
        assert (status, LOGIN_REFUSED in page, "<td>laptop</td>" in page) == (401, True, True)
        form["passphrase"] = STRONG
        status, _, page, _ = await fetch(portal, client, "POST", "/account/passkeys/remove", form)
        assert (status, "Your passkey “laptop” is removed." in page) == (200, True)
        assert 'id="no-passkeys"' in page

    run(portal, body)


def test_register_a_passkey_and_log_in_with_it_in_real_chromium(portal: Portal) -> None:
    """Headless Chromium with a virtual authenticator (CTAP2, resident keys, user
    verification): log in with a code, add a passkey on the account page through the
    script, log out, log in with email, passphrase and the passkey (no code)."""
    port = free_port()  # browsers take no IP address as an RP id: the origin is localhost
    origin = f"http://localhost:{port}"
    (portal.directory / "config.yaml").write_text(
        HTTP_CONFIG.replace("http://127.0.0.1:8089/", origin + "/")
    )
    portal.config = load_config(portal.directory / "config.yaml")
    app = portal_app(portal)
    with serving(app, port), chromium(portal.directory / "chromium", passkeys=True) as browser:
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        browser_log_in(browser, origin, portal.secret, portal.clock)
        wait_for(browser, lambda b: b.current_url == f"{origin}/items")
        browser.get(f"{origin}/account")
        assert not browser.find_element(By.ID, "passkey-needs-script").is_displayed()
        adding = browser.find_element(By.ID, "passkey-add")
        adding.find_element(By.NAME, "name").send_keys("Chromium")
        adding.find_element(By.NAME, "passphrase").send_keys(STRONG)
        adding.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "passkey-note"))
        assert "is added" in browser.find_element(By.ID, "passkey-note").text
        assert "Chromium" in browser.find_element(By.ID, "passkeys").text
        assert len(browser.get_credentials()) == 1
        browser.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
        wait_for(browser, lambda b: b.current_url == f"{origin}/login", seconds=30)
        browser_log_in(browser, origin, portal.secret, portal.clock, passkey=True)
        wait_for(browser, lambda b: b.current_url == f"{origin}/items")
        assert "please" in browser.find_element(By.TAG_NAME, "table").text
    stored = app[portal_web.ACCOUNTS].passkeys_of("Priya Raman")
    assert [(p.name, p.sign_count > 0) for p in stored] == [("Chromium", True)]
