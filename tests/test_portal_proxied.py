"""The portal behind an HTTPS reverse proxy: the login throttle counts the client a
trusted proxy names (never what an untrusted peer claims), cookies are Secure and scoped
to the path prefix, and every page, link, form, redirect, script and enrollment link works
under that prefix, through aiohttp's test client and in real Chromium."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from proxy.config import load_config
from proxy.portal import web as portal_web
from proxy.portal.accounts import Accounts
from proxy.portal.throttle import LOCK_AFTER
from tests.portal_helpers import (
    CANARY,
    CONFIG,
    FAST,
    PLAIN,
    PREFIXED_CONFIG,
    STRONG,
    Clock,
    Portal,
    Template,
    assert_headers,
    browser_log_in,
    chromium,
    code,
    copy_portal,
    fetch,
    from_mark,
    from_marks_phone,
    held_template,
    hidden,
    log_in,
    network,
    picture,
    portal_app,
    requested,
    responses,
    run,
    send,
    serving,
    wait_for,
)

PROXIES = "portal:\n  trusted_proxies: [127.0.0.1, '::1']\n"
# Served at https://home.example/portal/ by a proxy on this machine (the test client's
# peer is 127.0.0.1).
PROXIED = CONFIG.replace("portal:\n", PROXIES)
# The same, but the proxy the portal trusts is elsewhere: the test client is not it.
UNTRUSTED = CONFIG.replace("portal:\n", "portal:\n  trusted_proxies: [10.0.0.0/8]\n")
PRIYA, MALLORY = "203.0.113.7", "198.51.100.9"
WRONG = "wrong horse battery staple"
LINKS = re.compile(r'\b(?:href|action|src)="([^"]*)"')


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One enrollment and archive (scrypt takes seconds), copied for each test."""
    messages = [from_mark(PLAIN), from_mark(CANARY),
                from_marks_phone("look", [("image/png", picture())])]  # fmt: skip
    return held_template(tmp_path_factory, "proxied", messages)


def forwarded(address: str) -> dict[str, str]:
    """What nginx's `$proxy_add_x_forwarded_for` sends for a client at `address`."""
    return {"X-Forwarded-For": address}


async def fail(portal: Portal, client: Any, times: int, headers: dict[str, str]) -> None:
    """`times` failed logins (unknown emails: only the address is counted), far enough
    apart that the slowing never refuses one unchecked."""
    for n in range(times):
        status, _, _, _ = await log_in(portal, client, email=f"nobody{n}@example.org",
                                       passphrase=WRONG, headers=headers)  # fmt: skip
        assert status == portal_web.REFUSED
        portal.clock.advance(minutes=1)


def test_behind_a_trusted_proxy_one_clients_failures_lock_only_that_client(
    template: Template, tmp_path: Path
) -> None:
    """Mallory's failures through the proxy lock Mallory's address, even when he writes
    Priya's address into X-Forwarded-For himself (the proxy appends his real one): Priya,
    through the same proxy, logs in; Mallory, even with her passphrase and code, cannot."""
    portal = copy_portal(template, tmp_path, PROXIED)

    async def body(client: Any) -> None:
        await fail(portal, client, LOCK_AFTER, forwarded(f"{PRIYA}, {MALLORY}"))
        status, _, _, _ = await log_in(portal, client, headers=forwarded(MALLORY))
        assert status == portal_web.REFUSED  # locked: right passphrase and code refused
        status, headers, _, _ = await log_in(portal, client, headers=forwarded(PRIYA))
        assert (status, headers["Location"]) == (303, "/portal/items")

    run(portal, body)


def test_an_untrusted_peers_forwarded_header_is_never_believed(
    template: Template, tmp_path: Path
) -> None:
    """From a peer not in trusted_proxies, X-Forwarded-For is ignored: a new forged
    address on every failure does not escape the lock, which falls on the peer."""
    portal = copy_portal(template, tmp_path, UNTRUSTED)

    async def body(client: Any) -> None:
        for n in range(LOCK_AFTER):
            await fail(portal, client, 1, forwarded(f"192.0.2.{n + 1}"))
        status, _, _, _ = await log_in(portal, client, headers=forwarded(PRIYA))
        assert status == portal_web.REFUSED

    run(portal, body)


def test_a_malformed_header_from_the_proxy_counts_against_the_proxy(
    template: Template, tmp_path: Path
) -> None:
    """A header the portal cannot read where it must (`unknown`, a port, garbage) counts
    against the peer itself, never against an address taken from the garbage; a
    well-formed client through the same proxy is not touched."""
    portal = copy_portal(template, tmp_path, PROXIED)
    hostile = ["unknown", f"{PRIYA}:443", "<script>", f"{PRIYA},", "x" * 8000]

    async def body(client: Any) -> None:
        for header in hostile:
            await fail(portal, client, 1, forwarded(header))
        status, _, _, _ = await log_in(portal, client)  # the proxy's own address: locked
        assert status == portal_web.REFUSED
        status, _, _, _ = await log_in(portal, client, headers=forwarded(PRIYA))
        assert status == 303

    run(portal, body)


def test_behind_an_https_proxy_cookies_are_secure_and_scoped_to_the_prefix(
    template: Template, tmp_path: Path
) -> None:
    """With an https public_url under /portal, served as plain HTTP on loopback to the
    proxy: the login and session cookies are Secure, HttpOnly, SameSite=Strict, with
    Path /portal/login and /portal; logout clears the session cookie at /portal."""
    portal = copy_portal(template, tmp_path, PROXIED)
    assert portal_web.cookies_secure(portal.config) is True

    async def body(client: Any) -> None:
        _, _, _, cookies = await fetch(portal, client, "GET", "/login")
        assert (cookies["nc_login"]["path"], cookies["nc_login"]["secure"]) == (
            "/portal/login", True)  # fmt: skip
        _, _, page, cookies = await log_in(portal, client, headers=forwarded(PRIYA))
        session = cookies[portal_web.SESSION_COOKIE]
        assert (session["secure"], session["httponly"], session["samesite"], session["path"]) == (
            True, True, "Strict", "/portal")  # fmt: skip
        assert cookies["nc_login"]["path"] == "/portal/login"  # deleted where it was set
        _, _, page, _ = await fetch(portal, client, "GET", "/items")
        status, headers, _, cookies = await fetch(portal, client, "POST", "/logout",
                                                  {"csrf": hidden(page, "csrf")})  # fmt: skip
        assert (status, headers["Location"]) == (303, "/portal/login")
        morsel = cookies[portal_web.SESSION_COOKIE]
        assert (morsel.value, morsel["path"]) == ("", "/portal")

    run(portal, body)


def under_prefix(page: str, base: str = "/portal") -> list[str]:
    """Every link, form action and source in `page` that is NOT under `base` (the
    favicon's `data:,` stops the browser asking for /favicon.ico, outside the prefix)."""
    assert f'<body data-base="{base}">' in page
    found = [link for link in LINKS.findall(page) if link != "data:,"]
    return [link for link in found if not link.startswith(base + "/")]


def test_every_page_link_and_redirect_stays_under_the_prefix(
    template: Template, tmp_path: Path
) -> None:
    """Under /portal: the bare prefix leads to /portal/ and on to the login page; paths
    outside it are 404 with the usual headers; log in, the list, an item, a picture's
    page, the report (its chart), the export (a zip), the custody log and the account
    page all answer, and no link, action or script on them leaves the prefix."""
    portal = copy_portal(template, tmp_path, PROXIED)

    async def body(client: Any) -> None:
        for path, status, location in (("/portal", 303, "/portal/"), ("/", 404, None),
                                       ("/login", 404, None), ("/items", 404, None),
                                       ("/portalx/login", 404, None)):  # fmt: skip
            async with client.get(path, allow_redirects=False) as answer:
                assert (answer.status, answer.headers.get("Location")) == (status, location)
                assert_headers(dict(answer.headers))
        status, headers, _, _ = await fetch(portal, client, "GET", "/")
        assert (status, headers["Location"]) == (303, "/portal/login")
        status, _, page, _ = await fetch(portal, client, "GET", "/login")
        assert status == 200
        assert under_prefix(page) == []
        assert '<script src="/portal/static/passkey.js" defer>' in page
        await log_in(portal, client, headers=forwarded(PRIYA))
        for path in ("/items", "/items/1", "/items/3/parts/1/view", "/report?chart=1",
                     "/export", "/custody", "/account"):  # fmt: skip
            status, headers, page, _ = await fetch(portal, client, "GET", path)
            assert status == 200, path
            assert_headers(headers)
            assert under_prefix(page) == [], path
        assert 'src="/portal/report/timeline.png' in (await fetch(
            portal, client, "GET", "/report?chart=1"))[2]  # fmt: skip
        _, _, page, _ = await fetch(portal, client, "GET", "/export")
        assert '<script src="/portal/static/export.js"></script>' in page
        status, _, _, _ = await send(portal, client, "GET", "/static/export.js")
        assert status == 200
        status, headers, data, _ = await send(portal, client, "POST", "/export",
                                              {"csrf": hidden(page, "csrf"),
                                               "reason": "hearing"})  # fmt: skip
        assert (status, headers["Content-Type"]) == (200, "application/zip")
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            assert "verify.py" in bundle.namelist()

    run(portal, body)


def test_an_enrollment_link_works_under_the_prefix(tmp_path: Path) -> None:
    """`portal invite` prints <public_url>/enroll/<token>, under the prefix; the form there
    (posting back to its own URL) enrolls, its cookie is scoped to /portal/enroll, and
    the page after it links to /portal/login."""
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "config.yaml").write_text(PREFIXED_CONFIG)
    config = load_config(directory / "config.yaml")
    portal = Portal(directory, config, Clock(), secret="", base="/portal")
    link = Accounts(config, clock=portal.clock, hasher=FAST).invite("Priya Raman")
    assert link.startswith("http://127.0.0.1:8089/portal/enroll/")
    path = link.removeprefix("http://127.0.0.1:8089/portal")

    async def body(client: Any) -> None:
        status, _, page, cookies = await fetch(portal, client, "GET", path)
        assert status == 200
        assert under_prefix(page) == []
        assert cookies["nc_enroll"]["path"] == "/portal/enroll"
        secret = hidden(page, "secret")
        form = {"enroll_token": hidden(page, "enroll_token"), "secret": secret,
                "passphrase": STRONG, "passphrase_again": STRONG,
                "code": code(secret, portal.clock)}  # fmt: skip
        status, _, page, cookies = await fetch(portal, client, "POST", path, form)
        assert status == 200
        assert 'id="recovery-codes"' in page
        assert under_prefix(page) == []
        assert 'href="/portal/login"' in page
        assert cookies["nc_enroll"]["path"] == "/portal/enroll"

    run(portal, body)


def test_the_portal_under_a_prefix_in_real_chromium(template: Template, tmp_path: Path) -> None:
    """Headless Chromium logs in at /portal/login, opens the list, an item, a picture,
    the report with its chart, the account page (its script loaded) and the export (its
    script asks for progress), then logs out: every request it makes is under /portal/,
    none is answered 404, and each page lands where it should."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    portal = copy_portal(template, tmp_path, PREFIXED_CONFIG)
    downloads = portal.directory / "downloads"
    with (
        serving(portal_app(portal)) as origin,
        chromium(portal.directory / "chromium", downloads) as browser,
    ):
        root = origin + "/portal"
        browser.get(root)
        wait_for(browser, lambda b: b.current_url == f"{root}/login")
        browser_log_in(browser, root, portal.secret, portal.clock)
        wait_for(browser, lambda b: b.current_url == f"{root}/items")
        browser.find_element(By.LINK_TEXT, "1").click()
        wait_for(browser, lambda b: b.current_url == f"{root}/items/1")
        browser.get(f"{root}/items/3")
        browser.find_element(By.PARTIAL_LINK_TEXT, "Show the").click()
        wait_for(browser, lambda b: b.find_elements(By.ID, "shown-part"))
        wait_for(browser, lambda b: b.execute_script(
            "return document.getElementById('shown-part').naturalWidth") > 0)  # fmt: skip
        browser.get(f"{root}/items")
        browser.find_element(By.LINK_TEXT, "Pattern report").click()
        wait_for(browser, lambda b: b.current_url.startswith(f"{root}/report"))
        browser.get(f"{root}/report?chart=1")
        browser.find_element(By.LINK_TEXT, "All held items").click()
        wait_for(browser, lambda b: b.current_url == f"{root}/items")
        browser.find_element(By.LINK_TEXT, "Account").click()
        wait_for(browser, lambda b: b.current_url == f"{root}/account")
        wait_for(browser, lambda b: not b.find_element(By.ID, "passkey-needs-script")
                 .is_displayed())  # fmt: skip
        browser.get(f"{root}/export")
        browser.find_element(By.NAME, "reason").send_keys("for the hearing")
        browser.find_element(By.CSS_SELECTOR, "#export-form button").click()
        seen: list[dict[str, Any]] = []

        def asked_progress(b: Any) -> bool:
            seen.extend(network(b))
            return any("/export/progress/" in url for url in requested(seen))

        wait_for(browser, asked_progress, seconds=60)
        wait_for(browser, lambda b: list(downloads.glob("nocontact-evidence-*.zip")))
        browser.get(f"{root}/items")
        browser.find_element(By.CSS_SELECTOR, "form[action='/portal/logout'] button").click()
        wait_for(browser, lambda b: b.current_url == f"{root}/login")
        events = [*seen, *network(browser)]
    urls = requested(events)
    assert any(url.startswith(f"{root}/static/passkey.js") for url in urls)
    assert any(url.startswith(f"{root}/static/export.js") for url in urls)
    assert any(url.startswith(f"{root}/report/timeline.png") for url in urls)
    outside = [url for url in urls if not url.startswith(root + "/") and url != root]
    assert outside == []
    missing = [(method, url) for method, url, status in responses(events) if status == 404]
    assert missing == []
