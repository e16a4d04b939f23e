"""The portal's pages through aiohttp's test client: headers, login, sessions, CSRF, held
items with custody recorded first, hostile content rendered inert."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import re
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

from proxy.access.reading import open_archive
from proxy.archive import Archive, layout
from proxy.archive.custody_keys import keys_file_bytes
from proxy.archive.seal import fingerprint
from proxy.config import Config, load_config
from proxy.normalize import normalize_email
from proxy.portal import web as portal_web
from proxy.portal.accounts import Accounts, custody_key_file
from proxy.portal.refusals import LOGIN_REFUSED
from proxy.rules import decide
from tests.factories import RECEIVED_AT, make_rules
from tests.test_portal_accounts import (
    CONFIG,
    EMAIL,
    FAST,
    STRONG,
    Clock,
    Enrollment,
    _enroll,
    code,
)

CANARY = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: <script>alert(1)"
    b"</script>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>see <img src=x onerror="
    b"alert(2)> and <img src='http://127.0.0.1:9/canary.png'> <script>alert(3)</script></p>\r\n"
)
PLAIN = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: please\r\n\r\n"
    b"I just want to talk.\r\n"
)
Reply = tuple[int, dict[str, str], str, SimpleCookie]
HTTP_CONFIG = CONFIG.replace("https://home.example/portal/", "http://127.0.0.1:8089/")


@dataclass
class Portal:
    """An enrolled contact, an archive holding two items sealed to them, and a clock."""

    directory: Path
    config: Config
    clock: Clock
    secret: str
    cookies: dict[str, str] = field(default_factory=dict)


def _hold(directory: Path, recipient: str) -> None:
    async def hold() -> None:
        archive = await Archive.open(directory / "archive", recipients=[recipient])
        rules = make_rules()
        for raw in (PLAIN, CANARY):
            message = normalize_email(raw, envelope_sender="mark.smith@gmail.com",
                                      received_at=RECEIVED_AT)  # fmt: skip
            decision = decide(message, rules)
            assert decision.held
            await archive.hold(message, decision)
        await archive.close()

    asyncio.run(hold())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Clock]:
    """One enrollment and archive (scrypt takes seconds), copied for each test."""
    enrollment = _enroll(tmp_path_factory.mktemp("web") / "state")
    directory, recipient = enrollment.directory, enrollment.enrolled.recipient
    _hold(directory, recipient)
    publish_custody_key(enrollment)
    return directory, enrollment.secret, enrollment.clock


def publish_custody_key(enrollment: Enrollment) -> None:
    """Publish the enrolled contact's custody key beside the archive, as the daemon would."""
    contact = next(c for c in enrollment.config.contacts if c.portal)
    key = custody_key_file(contact).read_text().strip()
    recipient = enrollment.enrolled.recipient
    layout.replace_file(enrollment.directory / "archive" / layout.CUSTODY_KEYS,
                        keys_file_bytes({fingerprint(recipient): key}))  # fmt: skip


def copy_portal(directory: Path, secret: str, clock: Clock, tmp_path: Path) -> Portal:
    """A fresh copy of a template's directory, served over plain HTTP, with its own clock."""
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    (copy / "config.yaml").write_text(HTTP_CONFIG)
    own = Clock()
    own.now = clock.now
    return Portal(copy, load_config(copy / "config.yaml"), own, secret)


@pytest.fixture
def portal(template: tuple[Path, str, Clock], tmp_path: Path) -> Portal:
    directory, secret, old = template
    return copy_portal(directory, secret, old, tmp_path)


Session = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


def run(portal: Portal, body: Session) -> None:
    """Run `body` against the portal app on a loopback port."""
    accounts = Accounts(portal.config, clock=portal.clock, hasher=FAST)
    app = portal_web.portal_app(portal.config, accounts=accounts, clock=portal.clock)

    async def main() -> None:
        async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
            await body(client)

    asyncio.run(main())


async def fetch(
    portal: Portal, client: TestClient[web.Request, web.Application], method: str, path: str,
    data: dict[str, str] | None = None,
) -> Reply:  # fmt: skip
    """One request, sending and keeping cookies by hand (the jar would refuse 127.0.0.1)."""
    cookie = "; ".join(f"{k}={v}" for k, v in portal.cookies.items())
    async with client.request(
        method, path, data=data, allow_redirects=False, headers={"Cookie": cookie} if cookie else {}
    ) as response:
        text = await response.text()
        for name, morsel in response.cookies.items():
            if morsel.value:
                portal.cookies[name] = morsel.value
            else:
                portal.cookies.pop(name, None)
        return response.status, dict(response.headers), text, response.cookies


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found is not None, page
    return found[1]


async def log_in(
    portal: Portal, client: Any, *, passphrase: str = STRONG, totp: str | None = None
) -> Reply:
    _, _, page, _ = await fetch(portal, client, "GET", "/login")
    totp = totp or code(portal.secret, portal.clock)
    form = {"login_token": hidden(page, "login_token"), "email": EMAIL,
            "passphrase": passphrase, "code": totp}  # fmt: skip
    return await fetch(portal, client, "POST", "/login", form)


def assert_headers(headers: dict[str, str]) -> None:
    assert headers["Content-Security-Policy"] == portal_web.CSP
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def custody_actions(portal: Portal, identity: Any) -> list[tuple[str, tuple[int, ...], str]]:
    entries = open_archive(portal.directory / "archive", identity).custody()
    return [(entry.action, tuple(entry.items), entry.signed) for entry in entries]


def test_every_page_carries_the_headers_and_login_says_nothing_of_items(portal: Portal) -> None:
    """The login page, a redirect, a 403 and the item pages all carry CSP, no-referrer,
    nosniff and no-store; the login page shows no count, time or word of held items."""

    async def body(client: Any) -> None:
        pages = (("GET", "/"), ("GET", "/login"), ("GET", "/items"), ("POST", "/login"),
                 ("POST", "/logout"), ("GET", "/nowhere"))  # fmt: skip
        for method, path in pages:
            status, headers, page, _ = await fetch(portal, client, method, path)
            assert_headers(headers)
            if path == "/login" and method == "GET":
                assert status == 200
                assert "held" not in page.lower()
                assert "item" not in page.lower()
                assert re.findall(r"<script\b[^>]*>", page) == [  # passkey_pages.py rule 1
                    '<script src="/static/passkey.js" defer>'
                ]
        status, headers, _, _ = await log_in(portal, client)
        assert status == 303
        assert_headers(headers)
        for path in ("/items", "/items/1"):
            status, headers, _, _ = await fetch(portal, client, "GET", path)
            assert status == 200
            assert_headers(headers)

    run(portal, body)


def test_every_login_failure_is_the_same_page(portal: Portal) -> None:
    """A wrong passphrase, a wrong code and an unknown email get the same status and the
    same page (bar the form's one-off token), with no session cookie."""
    pages = []

    async def body(client: Any) -> None:
        attempts = [{"passphrase": "wrong horse battery staple"}, {"totp": "000000"}]
        for attempt in attempts:
            status, _, page, cookies = await log_in(portal, client, **attempt)
            pages.append((status, re.sub(r'value="[^"]+"', "", page)))
            assert portal_web.SESSION_COOKIE not in cookies
        _, _, page, _ = await fetch(portal, client, "GET", "/login")
        status, _, page, _ = await fetch(portal, client, "POST", "/login", {
            "login_token": hidden(page, "login_token"), "email": "nobody@example.org",
            "passphrase": STRONG, "code": code(portal.secret, portal.clock)})  # fmt: skip
        pages.append((status, re.sub(r'value="[^"]+"', "", page)))

    run(portal, body)
    assert len(set(pages)) == 1
    assert pages[0][0] == portal_web.REFUSED
    assert LOGIN_REFUSED in pages[0][1]


def test_session_cookie_flags_and_renewal(portal: Portal) -> None:
    """The session cookie is HttpOnly and SameSite=Strict (not Secure on plain loopback
    HTTP), a fresh 256-bit token at each login; the old one stops working."""
    tokens = []

    async def body(client: Any) -> None:
        for _ in range(2):
            _, _, _, cookies = await log_in(portal, client)
            morsel = cookies[portal_web.SESSION_COOKIE]
            assert morsel["httponly"] is True
            assert morsel["samesite"] == "Strict"
            assert not morsel["secure"]
            assert morsel["path"] == "/"
            tokens.append(morsel.value)
            portal.clock.advance(seconds=30)  # the next TOTP step
        portal.cookies[portal_web.SESSION_COOKIE] = tokens[0]
        status, _, _, _ = await fetch(portal, client, "GET", "/items")
        assert status == 303

    run(portal, body)
    assert tokens[0] != tokens[1]
    assert all(len(token) >= 43 for token in tokens)  # 32 bytes, base64url


def test_cookies_are_secure_unless_plain_http_on_loopback(portal: Portal) -> None:
    """Behind an HTTPS proxy (an https public_url) or anywhere but loopback, Secure is set."""
    assert portal_web.cookies_secure(portal.config) is False
    https = load_config_text(portal.directory, CONFIG)
    assert portal_web.cookies_secure(https) is True
    public = load_config_text(portal.directory, HTTP_CONFIG.replace(
        "public_url:", "listen: 0.0.0.0:8089\n  public_url:"))  # fmt: skip
    assert portal_web.cookies_secure(public) is True


def load_config_text(directory: Path, text: str) -> Config:
    path = directory / "other.yaml"
    path.write_text(text)
    return load_config(path)


def test_a_post_without_its_csrf_token_is_refused(portal: Portal) -> None:
    """Logout without the session's CSRF token, or with a wrong one, is 403 and the session
    lives on; a login POST without the form's token is 403 and nothing is tried."""

    async def body(client: Any) -> None:
        _, _, page, _ = await fetch(portal, client, "GET", "/login")
        form = {"email": EMAIL, "passphrase": STRONG, "code": code(portal.secret, portal.clock)}
        status, _, _, _ = await fetch(portal, client, "POST", "/login", form)
        assert status == 403
        assert portal_web.SESSION_COOKIE not in portal.cookies
        await log_in(portal, client)
        _, _, page, _ = await fetch(portal, client, "GET", "/items")
        for data in ({}, {"csrf": "x" * 43}):
            status, _, _, _ = await fetch(portal, client, "POST", "/logout", data)
            assert status == 403
        status, _, _, _ = await fetch(portal, client, "GET", "/items")
        assert status == 200
        status, _, _, _ = await fetch(portal, client, "POST", "/logout",
                                      {"csrf": hidden(page, "csrf")})  # fmt: skip
        assert status == 303
        portal.cookies[portal_web.SESSION_COOKIE] = "gone"
        status, headers, _, _ = await fetch(portal, client, "GET", "/items")
        assert (status, headers["Location"]) == (303, "/login")

    run(portal, body)


def test_sessions_end_when_idle_and_at_their_age(portal: Portal) -> None:
    """Unused for session_idle_minutes, a session ends; used all along, it still ends
    session_max_hours after login."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        portal.clock.advance(minutes=14)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200
        portal.clock.advance(minutes=15)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 303
        portal.clock.advance(seconds=30)
        await log_in(portal, client)
        for _ in range(34):  # 476 minutes, never idle for 15
            portal.clock.advance(minutes=14)
            assert (await fetch(portal, client, "GET", "/items"))[0] == 200
        portal.clock.advance(minutes=5)  # 481 minutes: past 8 hours
        assert (await fetch(portal, client, "GET", "/items"))[0] == 303

    run(portal, body)


def test_list_and_item_record_custody_first_and_render_canaries_inert(portal: Portal) -> None:
    """The list and an item each add a signed custody entry (list of both items, show of
    one); the hostile item's script, onerror and remote image appear only as text."""
    unlocked: list[Any] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, listing, _ = await fetch(portal, client, "GET", "/items")
        assert 'href="/items/1"' in listing
        assert "please" in listing
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
        status, _, plain, _ = await fetch(portal, client, "GET", "/items/1")
        assert status == 200
        assert "I just want to talk." in plain
        status, _, page, _ = await fetch(portal, client, "GET", "/items/2")
        assert status == 200
        assert "see" in page
        for raw in ("<script>alert", "<img", "onerror=alert(2)>", "src='http"):
            assert raw not in page, raw
            assert raw not in listing, raw

    accounts = Accounts(portal.config, clock=portal.clock, hasher=FAST)
    run(portal, body)
    portal.clock.advance(seconds=30)
    unlocked.append(accounts.login(EMAIL, STRONG, code(portal.secret, portal.clock), "::1"))
    actions = custody_actions(portal, unlocked[0].identity)
    assert actions == [("list", (1, 2), "verified"), ("show", (1,), "verified"),
                       ("show", (2,), "verified")]  # fmt: skip


def test_nothing_is_shown_when_custody_cannot_be_recorded(portal: Portal) -> None:
    """With the archive's custody keys gone, the list and an item page show no item data."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        (portal.directory / "archive" / layout.CUSTODY_KEYS).unlink()
        for path in ("/items", "/items/1"):
            status, headers, page, _ = await fetch(portal, client, "GET", path)
            assert status == portal_web.NOT_SHOWN
            assert_headers(headers)
            assert "please" not in page
            assert "alert" not in page
            assert "talk" not in page

    run(portal, body)


def test_log_in_in_real_chromium_and_nothing_leaves_the_origin(portal: Portal) -> None:
    """Headless Chromium logs in through the form, sees the list and the hostile item; every
    network request it makes (its own log; chrome:// pages are its own) goes to the
    portal's origin: the remote image in the item is never fetched."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/test installs them)")
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.support.wait import WebDriverWait  # noqa: PLC0415

    accounts = Accounts(portal.config, clock=portal.clock, hasher=FAST)
    app = portal_web.portal_app(portal.config, accounts=accounts, clock=portal.clock)
    with serving(app) as origin:
        options = chromium_options(portal.directory)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            browser.get(f"{origin}/login")
            browser.find_element(By.NAME, "email").send_keys(EMAIL)
            browser.find_element(By.NAME, "passphrase").send_keys(STRONG)
            browser.find_element(By.NAME, "code").send_keys(code(portal.secret, portal.clock))
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(browser, 60).until(lambda b: b.current_url == f"{origin}/items")
            assert "please" in browser.find_element(By.TAG_NAME, "table").text
            browser.get(f"{origin}/items/2")
            assert "<script>" in browser.find_element(By.TAG_NAME, "pre").text
            assert browser.find_elements(By.TAG_NAME, "img") == []
            urls = [
                message["params"]["request"]["url"]
                for entry in browser.get_log("performance")
                if (message := json.loads(entry["message"])["message"])["method"]
                == "Network.requestWillBeSent"
            ]
        finally:
            browser.quit()
    fetched = [url for url in urls if not url.startswith(("chrome:", "about:", "data:"))]
    assert f"{origin}/items/2" in fetched
    assert [url for url in fetched if not url.startswith(origin + "/")] == []


def chromium_options(directory: Path) -> Any:
    """Options for Debian's headless Chromium, its profile under `directory`, nothing
    fetched in the background (selenium's ChromeOptions)."""
    from selenium import webdriver  # noqa: PLC0415 - only where Chromium runs

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 f"--user-data-dir={directory / 'chromium'}"):  # fmt: skip
        options.add_argument(flag)
    return options


@contextlib.contextmanager
def serving(app: web.Application, port: int = 0) -> Iterator[str]:
    """`app` on a loopback port (a free one unless `port`) in a thread of its own; its
    origin."""
    ready: queue.Queue[str] = queue.Queue()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port)
        loop.run_until_complete(site.start())
        bound = runner.addresses[0][1]
        ready.put(f"http://127.0.0.1:{bound}")
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
