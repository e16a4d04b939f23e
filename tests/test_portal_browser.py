"""The portal in one real headless Chromium, logged in once for the module: lockout,
the list and its filters, a hostile item that fetches and runs nothing, a picture shown
only after a click, downloads and an export checked by its own verify.py, a POST without
its CSRF token, custody for every view, and idle expiry. Every request the browser makes
is in its network log; the hostile item's remote URLs point at a canary server on
another loopback port (another origin) that counts what reaches it."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from proxy.channels.sms.capture import ArrivalKind
from proxy.portal.refusals import LOGIN_REFUSED
from proxy.portal.throttle import LOCK, LOCK_AFTER
from tests.factories import RECEIVED_AT
from tests.portal_helpers import (
    EMAIL,
    STRONG,
    Portal,
    browser_log_in,
    chromium,
    code,
    copy_portal,
    custody_actions,
    from_mark,
    from_marks_phone,
    held_template,
    network,
    picture,
    portal_app,
    recording,
    requested,
    responses,
    screenshot,
    serving,
    wait_for,
)

MARK = "mark@smith-family.example"  # one of tests.factories.MARK's addresses
CAROL = "carol@example.net"  # an intermediary (tests.factories)
WRONG = "wrong horse battery staple"
ALL = [1, 2, 3, 4, 5]


class Canary:
    """An HTTP server on its own loopback port that records every request it gets."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a")

            do_POST = do_GET  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


def hostile(canary: str) -> bytes:
    """An HTML email carrying every way a page can run script or fetch from elsewhere, all
    pointing at `canary`, and an SVG attachment with script."""
    html = f"""<html><head>
<meta http-equiv="refresh" content="0;url={canary}/refresh">
<base href="{canary}/base/">
<link rel="stylesheet" href="{canary}/style.css">
<style>@import url({canary}/import.css); body {{ background: url({canary}/css-url.png) }}</style>
<script src="{canary}/script.js"></script>
</head><body>
<script>window.canaryRan = "script"; document.title = "canary ran"; alert("script")</script>
<img src="x" onerror="window.canaryRan = 'onerror'; alert('onerror')">
<a href="javascript:window.canaryRan = 'link'">open me</a>
<img src="{canary}/remote.png" alt="remote picture">
<img src="{canary}/pixel.gif" width="1" height="1">
<img src="through-base.png">
<svg xmlns="http://www.w3.org/2000/svg" onload="window.canaryRan = 'svg onload'">
<script>window.canaryRan = "svg"</script><image href="{canary}/svg-image.png"/></svg>
<iframe src="{canary}/frame.html"></iframe>
<p>Call me back tonight.</p>
</body></html>"""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg"><script>window.canaryRan = "svg file"'
           f'</script><image href="{canary}/svg-file.png"/></svg>')  # fmt: skip
    return (
        f"From: Mark <{MARK}>\r\nTo: sam@home.example\r\n"
        "Subject: <script>window.canaryRan = 'subject'</script> call me\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        f"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
        "--b\r\nContent-Type: image/svg+xml\r\n"
        f'Content-Disposition: attachment; filename="smile.svg"\r\n\r\n{svg}\r\n--b--\r\n'
    ).encode()


def email(sender: str, subject: str, text: str) -> bytes:
    return (f"From: {sender}\r\nTo: sam@home.example\r\nSubject: {subject}\r\n\r\n"
            f"{text}\r\n").encode()  # fmt: skip


@dataclass
class Site:
    """The portal on loopback, the canary beside it, and the one browser."""

    portal: Portal
    origin: str
    canary: Canary
    browser: Any
    downloads: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Items 1-5 (email, MMS with a picture, an intermediary's email, a voicemail, the
    hostile email), the portal serving them, and one Chromium for the module."""
    canary = Canary()
    canary.thread.start()
    day = timedelta(days=1)
    messages = [
        from_mark(email(f"Mark <{MARK}>", "please answer me", "I just want to talk."),
                  RECEIVED_AT, sender=MARK),
        from_marks_phone("look what I found", [("image/png", picture(160, 120))],
                         RECEIVED_AT + 4 * day),
        from_mark(email(f"Carol <{CAROL}>", "from Carol", "Mark asked me to write to you."),
                  RECEIVED_AT - 9 * day, sender=CAROL),
        from_marks_phone("", [("audio/x-wav", recording())], RECEIVED_AT + 7 * day,
                         kind=ArrivalKind.VOICEMAIL),
        from_mark(hostile(canary.origin), RECEIVED_AT + 9 * day, sender=MARK),
    ]  # fmt: skip
    template = held_template(tmp_path_factory, "browser", messages)
    portal = copy_portal(template, tmp_path_factory.mktemp("browser-copy"))
    downloads = portal.directory / "downloads"
    try:
        with (
            serving(portal_app(portal)) as origin,
            chromium(portal.directory / "chromium", downloads) as browser,
        ):
            yield Site(portal, origin, canary, browser, downloads)
    finally:
        canary.server.shutdown()
        canary.server.server_close()


def by() -> Any:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    return By


def logged_in(site: Site) -> None:
    """Log in (with a fresh TOTP step) unless the browser's session still works."""
    site.browser.get(f"{site.origin}/items")
    if site.browser.current_url == f"{site.origin}/items":
        return
    site.portal.clock.advance(seconds=30)
    browser_log_in(site.browser, site.origin, site.portal.secret, site.portal.clock)
    wait_for(site.browser, lambda b: b.current_url == f"{site.origin}/items")


def listed(site: Site) -> list[int]:
    links = site.browser.find_elements(by().CSS_SELECTOR, "tbody a")
    return [int(link.text) for link in links]


def refusal(site: Site) -> str:
    """The login page as shown, without its one-off token."""
    return re.sub(r'value="[^"]*"', "", site.browser.page_source)


def test_wrong_passphrase_and_code_lead_to_a_lockout_that_looks_like_any_failure(
    site: Site,
) -> None:
    """Wrong passphrases and wrong codes are each refused with the same page (401); after
    LOCK_AFTER failures even the right passphrase and code get that same page; once the
    lock has run out (the portal's clock moved), they log in."""
    portal, browser = site.portal, site.browser
    browser.get(f"{site.origin}/login")
    screenshot(browser, "login")
    pages, wrong_code = [], code(portal.secret, portal.clock, steps=5)
    network(browser)
    for attempt in range(LOCK_AFTER + 1):
        passphrase, totp = (WRONG, None) if attempt % 2 == 0 else (None, wrong_code)
        if attempt == LOCK_AFTER:  # locked: the right passphrase and code
            passphrase, totp = None, code(portal.secret, portal.clock)
        fill_login(site, passphrase, totp)
        wait_for(browser, lambda b: b.find_elements(by().CSS_SELECTOR, "[role=alert]"))
        pages.append(refusal(site))
        portal.clock.advance(seconds=11)  # past the slowing (5 s, then 10 s)
    assert len(set(pages)) == 1
    assert LOGIN_REFUSED in pages[0].replace("&#39;", "'")
    posts = [(url, status) for method, url, status in responses(network(browser))
             if method == "POST"]  # fmt: skip
    assert posts == [(f"{site.origin}/login", 401)] * len(pages)
    portal.clock.advance(seconds=LOCK.total_seconds())
    logged_in(site)
    assert listed(site) == ALL


def fill_login(site: Site, passphrase: str | None, totp: str | None) -> None:
    browser = site.browser
    browser.get(f"{site.origin}/login")
    browser.find_element(by().NAME, "email").send_keys(EMAIL)
    browser.find_element(by().NAME, "passphrase").send_keys(passphrase or STRONG)
    browser.find_element(by().NAME, "code").send_keys(
        totp or code(site.portal.secret, site.portal.clock)
    )
    browser.find_element(by().CSS_SELECTOR, "button[type=submit]").click()


def filter_list(site: Site, **values: str) -> list[int]:
    """Fill in the list's filter form as a person would and send it; the rows shown."""
    browser = site.browser
    browser.get(f"{site.origin}/items")
    for name, value in values.items():
        field = browser.find_element(by().NAME, name)
        if field.get_attribute("type") == "date":  # typing depends on the locale: set it
            browser.execute_script("arguments[0].value = arguments[1]", field, value)
        elif field.tag_name == "select":
            field.find_element(by().CSS_SELECTOR, f"option[value='{value}']").click()
        else:
            field.send_keys(value)
    browser.find_element(by().CSS_SELECTOR, "form[action='/items'] button").click()
    wait_for(browser, lambda b: "?" in b.current_url)
    return listed(site)


def test_the_list_and_its_filters_in_the_browser(site: Site) -> None:
    """The list shows all five items; the form filters by channel, person and dates."""
    logged_in(site)
    assert listed(site) == ALL
    table = site.browser.find_element(by().TAG_NAME, "table").text
    assert "please answer me" in table
    assert "look what I found" in table
    screenshot(site.browser, "items")
    assert filter_list(site, channel="sms") == [2]
    assert filter_list(site, channel="voice") == [4]
    assert filter_list(site, person="mark") == [1, 2, 4, 5]
    assert filter_list(site, since="2026-03-02", until="2026-03-09") == [2, 4]
    assert filter_list(site, since="2026-03-02", channel="email") == [5]


def test_the_hostile_item_fetches_nothing_and_runs_nothing(site: Site) -> None:
    """Opening the hostile item from the list: the canary server gets no request, every
    request the browser made went to the portal, no canary script ran (no flag, no title
    change, no alert), the page did not move, and it has no image, frame, SVG, base or
    javascript: link; the SVG attachment is a download, never shown."""
    browser = site.browser
    logged_in(site)
    network(browser)
    browser.find_element(by().LINK_TEXT, "5").click()
    wait_for(browser, lambda b: b.current_url == f"{site.origin}/items/5")
    time.sleep(1.5)  # a refresh, an onerror or a remote load would have happened by now
    urls = requested(network(browser))
    assert site.canary.paths == []
    assert f"{site.origin}/items/5" in urls
    assert [url for url in urls if not url.startswith(site.origin + "/")] == []
    assert browser.current_url == f"{site.origin}/items/5"
    assert browser.title == "Item 5"
    assert browser.execute_script("return typeof window.canaryRan") == "undefined"
    assert alert_shown(browser) is False
    own_icon = ":not([rel=icon][href='data:,'])"  # the portal's own empty favicon (web.py)
    for tag in ("img", "iframe", "svg", "base", "script", "link", "style", "audio"):
        assert browser.find_elements(by().CSS_SELECTOR, tag + own_icon) == [], tag
    hrefs = [a.get_attribute("href") or "" for a in browser.find_elements(by().TAG_NAME, "a")]
    assert [h for h in hrefs if not h.startswith(site.origin + "/")] == []
    text = browser.find_element(by().TAG_NAME, "pre").text
    assert "Call me back tonight." in text
    assert "smile.svg" in browser.find_element(by().TAG_NAME, "ul").text
    assert browser.find_elements(by().PARTIAL_LINK_TEXT, "Show") == []


def alert_shown(browser: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException  # noqa: PLC0415

    try:
        browser.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return False
    return True


def test_a_picture_is_fetched_only_after_a_click_and_only_from_the_portal(site: Site) -> None:
    """The MMS item's page fetches no part; clicking "Show the picture" loads it from the
    portal's own origin (naturalWidth > 0), and nothing from elsewhere."""
    browser = site.browser
    logged_in(site)
    network(browser)
    browser.get(f"{site.origin}/items/2")
    before = requested(network(browser))
    assert [url for url in before if "/parts/" in url] == []
    screenshot(browser, "item")
    browser.find_element(by().LINK_TEXT, "Show the picture").click()
    wait_for(browser, lambda b: b.execute_script(
        "const i = document.getElementById('shown-part'); return i && i.complete"))  # fmt: skip
    shown = browser.find_element(by().ID, "shown-part")
    assert browser.execute_script("return arguments[0].naturalWidth", shown) == 160
    assert shown.get_attribute("currentSrc") == f"{site.origin}/items/2/parts/1/inline"
    after = requested(network(browser))
    assert f"{site.origin}/items/2/parts/1/inline" in after
    assert [url for url in before + after if not url.startswith(site.origin + "/")] == []
    screenshot(browser, "picture")


def downloaded(site: Site, pattern: str) -> Path:
    """The file matching `pattern` the browser has finished downloading."""
    found: list[Path] = []

    def done(_: Any) -> bool:
        found[:] = [p for p in site.downloads.glob(pattern) if not p.name.endswith("crdownload")]
        return bool(found)

    wait_for(site.browser, done, seconds=120)
    return found[0]


def test_an_export_downloaded_by_the_browser_passes_its_verify_py(site: Site) -> None:
    """The export form, with a reason, downloads a zip into the browser's download folder;
    the bundle's own verify.py (run with python) says it is whole, with all five items."""
    browser = site.browser
    logged_in(site)
    browser.get(f"{site.origin}/export")
    browser.find_element(by().NAME, "reason").send_keys("for the protective order hearing")
    screenshot(browser, "export")
    browser.find_element(by().CSS_SELECTOR, "form[action='/export'] button").click()
    bundle = downloaded(site, "nocontact-evidence-*.zip")
    unpacked = site.downloads / "bundle"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    result = subprocess.run([sys.executable, "-I", "verify.py"], cwd=unpacked, text=True,
                            capture_output=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list((unpacked / "originals").iterdir())) >= len(ALL)
    assert custody_actions(site.portal)[-1][:2] == ("export", tuple(ALL))


def test_a_post_without_its_csrf_token_is_refused_and_does_nothing(site: Site) -> None:
    """With the CSRF field taken out of the page, logging out and exporting are refused
    (403): the session lives on and no export is made or recorded."""
    browser = site.browser
    logged_in(site)
    exports = sum(1 for entry in custody_actions(site.portal) if entry[0] == "export")
    zips = sorted(site.downloads.glob("*.zip"))
    for path, form in (("/items", "/logout"), ("/export", "/export")):
        browser.get(site.origin + path)
        if form == "/export":
            browser.find_element(by().NAME, "reason").send_keys("no token")
        browser.execute_script(f"document.querySelector(\"form[action='{form}'] "
                               "input[name=csrf]\").remove()")  # fmt: skip
        network(browser)
        browser.find_element(by().CSS_SELECTOR, f"form[action='{form}'] button").click()
        wait_for(browser, lambda b: "forbidden" in b.page_source)
        posts = [(url, status) for method, url, status in responses(network(browser))
                 if method == "POST"]  # fmt: skip
        assert posts == [(site.origin + form, 403)]
    browser.get(f"{site.origin}/items")
    assert browser.current_url == f"{site.origin}/items"
    assert listed(site) == ALL
    assert sum(1 for entry in custody_actions(site.portal) if entry[0] == "export") == exports
    assert sorted(site.downloads.glob("*.zip")) == zips


def test_every_view_is_a_custody_entry(site: Site) -> None:
    """The list page, the item page, a part's download and a picture shown are each
    recorded, in that order, signed; the custody page then lists them."""
    browser = site.browser
    logged_in(site)  # a list look
    before = len(custody_actions(site.portal)) - 1
    browser.find_element(by().LINK_TEXT, "2").click()
    wait_for(browser, lambda b: b.current_url == f"{site.origin}/items/2")
    browser.find_element(by().CSS_SELECTOR, "a[download]").click()
    downloaded(site, "ME*.png")
    browser.find_element(by().LINK_TEXT, "Show the picture").click()
    wait_for(browser, lambda b: b.execute_script(
        "const i = document.getElementById('shown-part'); return i && i.complete"))  # fmt: skip
    added = custody_actions(site.portal)[before:]
    assert added == [("list", tuple(ALL), "verified")] + [("show", (2,), "verified")] * 4
    browser.get(f"{site.origin}/custody")
    rows = [row.text for row in browser.find_elements(by().CSS_SELECTOR, "tbody tr")]
    assert len(rows) == len(added) + before + 1  # and this look's own "custody" entry
    assert all(row.endswith("verified") for row in rows)
    screenshot(browser, "custody")
    for page, name in (("/report?chart=1", "report"), ("/account", "account")):
        browser.get(site.origin + page)
        screenshot(browser, name)


def test_an_idle_session_lands_on_the_login_page(site: Site) -> None:
    """Unused for session_idle_minutes (the portal's clock moved, no sleeping), the
    session ends: the next page is the login page, and the held items are not shown."""
    logged_in(site)
    settings = site.portal.config.portal
    assert settings is not None
    site.portal.clock.advance(minutes=settings.session_idle_minutes)
    site.browser.get(f"{site.origin}/items/1")
    assert site.browser.current_url == f"{site.origin}/login"
    assert "talk" not in site.browser.page_source
