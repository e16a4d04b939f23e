"""The portal's pages through aiohttp's test client: headers, login, sessions, CSRF, held
items with custody recorded first, hostile content rendered inert."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from proxy.archive import layout
from proxy.config import Config, load_config
from proxy.portal import web as portal_web
from proxy.portal.refusals import LOGIN_REFUSED
from tests.portal_helpers import (
    CANARY,
    CONFIG,
    EMAIL,
    HTTP_CONFIG,
    PLAIN,
    STRONG,
    Portal,
    Template,
    assert_headers,
    code,
    copy_portal,
    custody_actions,
    fetch,
    from_mark,
    held_template,
    hidden,
    log_in,
    run,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One enrollment and archive (scrypt takes seconds), copied for each test."""
    return held_template(tmp_path_factory, "web", [from_mark(PLAIN), from_mark(CANARY)])


@pytest.fixture
def portal(template: Template, tmp_path: Path) -> Portal:
    return copy_portal(template, tmp_path)


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
        attempts: list[dict[str, Any]] = [
            {"passphrase": "wrong horse battery staple"},
            {"totp": "000000"},
        ]
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

    run(portal, body)
    actions = custody_actions(portal)
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
