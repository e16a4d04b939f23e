"""The portal's list filters and paging, custody log and account pages, through aiohttp's
test client: custody for exactly what is shown, bad filters refused with a reason,
passphrase change, authenticator reset with a recovery code, other sessions ended, CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest

from proxy.access.reading import OpenedArchive
from proxy.archive import Archive
from proxy.portal.filters import PAGE_SIZE
from proxy.portal.refusals import LOGIN_REFUSED
from proxy.rules import decide
from tests.factories import make_rules
from tests.portal_helpers import (
    NEW_STRONG,
    STRONG,
    Portal,
    Template,
    code,
    copy_portal,
    custody_actions,
    fetch,
    from_mark,
    held_template,
    hidden,
    identity,
    log_in,
    run,
)

ITEMS = 105
FIRST = datetime(2026, 2, 1, 23, 30, tzinfo=UTC)  # item i arrives FIRST + i days
MESSAGE = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: note %d\r\n\r\n"
    b"Message number %d.\r\n"
)


def note(number: int) -> bytes:
    return MESSAGE % (number, number)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One enrollment and an archive of 105 items sealed to it, copied for each test."""
    messages = [from_mark(note(n), FIRST + timedelta(days=n)) for n in range(ITEMS)]
    return held_template(tmp_path_factory, "account", messages)


@pytest.fixture
def portal(template: Template, tmp_path: Path) -> Portal:
    return copy_portal(template, tmp_path)


@pytest.fixture
def recovery(template: Template) -> tuple[str, ...]:
    return template.recovery_codes


def sequences(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/items/([0-9]+)">', page)]


def test_pages_of_a_hundred_record_custody_for_exactly_the_rows_shown(portal: Portal) -> None:
    """Page 1 shows 100 rows and page 2 the other 5, each linked to the next or previous;
    each look's custody entry names exactly the items on that page."""
    shown: list[list[int]] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        status, _, first, _ = await fetch(portal, client, "GET", "/items")
        assert status == 200
        assert f"{ITEMS} items match; page 1 of 2" in first
        assert 'href="/items?page=2"' in first
        status, _, second, _ = await fetch(portal, client, "GET", "/items?page=2")
        assert status == 200
        assert 'href="/items?page=1"' in second
        shown.extend([sequences(first), sequences(second)])

    run(portal, body)
    assert [len(rows) for rows in shown] == [PAGE_SIZE, ITEMS - PAGE_SIZE]
    assert not set(shown[0]) & set(shown[1])
    actions = custody_actions(portal)
    assert actions == [("list", tuple(shown[0]), "verified"),
                       ("list", tuple(shown[1]), "verified")]  # fmt: skip


def test_the_list_reads_only_entries_added_since_its_last_look(
    portal: Portal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's index is built on the first look; a later look decrypts only what was
    stored since (a new item, the first look's custody record), shows the new item, and
    records custody for exactly its rows."""
    opened: list[int] = []
    real_open = OpenedArchive._open

    def counting(self: OpenedArchive, index: int, body: bytes) -> Any:
        opened.append(index)
        return real_open(self, index, body)

    monkeypatch.setattr(OpenedArchive, "_open", counting)
    shown: list[int] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        await fetch(portal, client, "GET", "/items")
        assert len(opened) >= ITEMS
        opened.clear()
        recipient = (portal.directory / "keys" / "priya.pub").read_text().strip()
        archive = await Archive.open(portal.directory / "archive", recipients=[recipient])
        message = from_mark(note(ITEMS), FIRST)
        await archive.hold(message, decide(message, make_rules()))
        await archive.close()
        status, _, second, _ = await fetch(portal, client, "GET", "/items?page=2")
        assert status == 200
        assert f"{ITEMS + 1} items match; page 2 of 2" in second
        shown.extend(sequences(second))

    run(portal, body)
    assert 0 < len(opened) <= 3  # the new item and the first look's custody record
    assert len(shown) == ITEMS + 1 - PAGE_SIZE
    assert max(shown) in opened
    actions = custody_actions(portal)
    assert actions[-1] == ("list", tuple(shown), "verified")


def test_dates_person_and_channel_filter_the_list(portal: Portal) -> None:
    """since/until keep whole UTC days; person and channel keep what matches; custody
    names only the matching items."""
    counts: dict[str, int] = {}

    async def body(client: Any) -> None:
        await log_in(portal, client)
        for query in ("since=2026-02-11&until=2026-02-20", "person=mark&channel=email",
                      "channel=sms", "since=2026-05-01&page=1"):  # fmt: skip
            status, _, page, _ = await fetch(portal, client, "GET", "/items?" + query)
            assert status == 200, page
            counts[query] = len(sequences(page))

    run(portal, body)
    assert counts == {"since=2026-02-11&until=2026-02-20": 10, "person=mark&channel=email": 100,
                      "channel=sms": 0, "since=2026-05-01&page=1": 16}  # fmt: skip
    lists = [items for action, items, _ in custody_actions(portal)]
    assert [len(items) for items in lists] == [10, 100, 0, 16]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("since=yesterday", "since: 'yesterday' is not a date"),
        ("until=2026-02-30", "until: '2026-02-30' is not a date"),
        ("since=2026-03-02&until=2026-03-01", "since is after until"),
        ("person=nobody", "person: 'nobody' is not a person"),
        ("channel=fax", "channel: 'fax' is not one of email, sms, voice"),
        ("page=0", "page: '0' is not a page number"),
        ("page=-3", "page: '-3' is not a page number"),
        ("page=%C2%B2", "is not a page number"),
        ("page=99999999999999999999", "is not a page number"),
        ("tz=Mars/Olympus", "tz: 'Mars/Olympus' is not a time zone"),
        ("tz=../../etc/passwd", "is not a time zone"),
        ("tz=" + "A" * 500, "is not a time zone"),
    ],
)
def test_a_bad_filter_is_the_list_page_with_a_reason_and_no_look(
    portal: Portal, query: str, said: str
) -> None:
    """Each bad value gets 400 and the list page saying which field and why, never a 500;
    nothing is listed and no custody entry is made."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        status, _, page, _ = await fetch(portal, client, "GET", "/items?" + query)
        assert status == 400
        assert said in page.replace("&#39;", "'")
        assert "Nothing was listed" in page
        assert sequences(page) == []

    run(portal, body)
    assert custody_actions(portal) == []


def test_received_times_are_shown_in_the_chosen_time_zone(portal: Portal) -> None:
    """23:30 UTC on 1 February is 00:30 the next day in Berlin; UTC is the default."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, utc, _ = await fetch(portal, client, "GET", "/items?until=2026-02-01")
        assert "2026-02-01 23:30:00 UTC" in utc
        _, _, berlin, _ = await fetch(portal, client, "GET",
                                      "/items?until=2026-02-01&tz=Europe/Berlin")  # fmt: skip
        assert "Received (Europe/Berlin)" in berlin
        assert "2026-02-02 00:30:00 CET" in berlin
        assert "23:30:00" not in berlin

    run(portal, body)


def test_custody_page_lists_every_entry_and_records_its_own_look(portal: Portal) -> None:
    """After a list look, the custody page shows that entry (items, signature verified)
    and its own "custody" entry; filtering by action keeps only that action; a bad action
    is refused with a reason and records nothing."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        await fetch(portal, client, "GET", "/items?since=2026-05-16")
        status, _, page, _ = await fetch(portal, client, "GET", "/custody")
        assert status == 200
        cell = r"<td>([^<]*)</td>"
        rows = re.findall(r"<tr>" + cell * 6 + r"</tr>", page)
        assert [(row[2], row[5]) for row in rows] == [("list", "verified"),
                                                      ("custody", "verified")]  # fmt: skip
        assert rows[0][3].count(",") == 0  # one item: since 16 May, only the last
        assert rows[1][3] == "-"
        assert rows[0][4].startswith("20")
        _, _, only, _ = await fetch(portal, client, "GET", "/custody?action=list")
        assert "<td>custody</td>" not in only
        assert "<td>list</td>" in only
        status, _, bad, _ = await fetch(portal, client, "GET", "/custody?action=peek")
        assert status == 400
        assert "is not one of" in bad

    run(portal, body)
    actions = [action for action, _, _ in custody_actions(portal)]
    assert actions == ["list", "custody", "custody"]


def _account_form(page: str) -> str:
    return hidden(page, "csrf")


def test_passphrase_change_old_fails_new_works(portal: Portal) -> None:
    """With the current passphrase, a code and the new one twice, the passphrase changes:
    logging in with the old one is refused and with the new one succeeds; a wrong current
    passphrase or mismatched new ones change nothing."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        csrf = _account_form(page)
        portal.clock.advance(seconds=30)
        form = {"csrf": csrf, "passphrase": STRONG, "code": code(portal.secret, portal.clock),
                "new_passphrase": NEW_STRONG, "new_passphrase_again": NEW_STRONG + "x"}  # fmt: skip
        status, _, page, _ = await fetch(portal, client, "POST", "/account/passphrase", form)
        assert status == 400
        assert "the two new passphrases differ" in page
        form["new_passphrase_again"] = NEW_STRONG
        form["passphrase"] = "wrong horse battery staple"
        status, _, page, _ = await fetch(portal, client, "POST", "/account/passphrase", form)
        assert status == 401
        assert LOGIN_REFUSED in page.replace("&#39;", "'")
        portal.clock.advance(minutes=2)
        form["passphrase"], form["code"] = STRONG, code(portal.secret, portal.clock)
        status, _, page, _ = await fetch(portal, client, "POST", "/account/passphrase", form)
        assert status == 200, page
        assert "Your passphrase is changed" in page
        portal.cookies.clear()
        portal.clock.advance(seconds=30)
        status, _, _, _ = await log_in(portal, client)
        assert status == 401
        portal.clock.advance(seconds=30)
        status, _, _, _ = await log_in(portal, client, passphrase=NEW_STRONG)
        assert status == 303

    run(portal, body)
    identity(portal, NEW_STRONG)  # the identity is rewrapped with the new passphrase


def test_totp_reset_with_a_recovery_code_consumes_it(
    portal: Portal, recovery: tuple[str, ...]
) -> None:
    """The account page shows a new secret (QR and text); with the passphrase, a recovery
    code and a code from the new secret it replaces the old one: 9 codes are left, the
    same recovery code is refused again, and login then takes the new secret's codes."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        assert "<svg" in page
        found = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
        assert found is not None
        new_secret = found[1]
        form = {"csrf": _account_form(page), "passphrase": STRONG,
                "recovery_code": recovery[0], "new_code": "000000"}  # fmt: skip
        if pyotp.TOTP(new_secret).verify("000000", for_time=portal.clock.now, valid_window=1):
            form["new_code"] = "111111"  # (a one-in-300,000 chance)
        status, _, page, _ = await fetch(portal, client, "POST", "/account/totp", form)
        assert status == 400
        assert "your recovery code was not used" in page
        form["new_code"] = pyotp.TOTP(new_secret).at(portal.clock.now)
        status, _, page, _ = await fetch(portal, client, "POST", "/account/totp", form)
        assert status == 200, page
        assert "9 recovery codes are left" in page
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        portal.clock.advance(seconds=30)
        form["csrf"] = _account_form(page)
        form["new_code"] = pyotp.TOTP(hidden_secret(page)).at(portal.clock.now)
        status, _, page, _ = await fetch(portal, client, "POST", "/account/totp", form)
        assert status == 401  # that recovery code is spent
        portal.cookies.clear()
        portal.clock.advance(seconds=30)
        status, _, _, _ = await log_in(portal, client)  # the old secret's code
        assert status == 401
        portal.clock.advance(minutes=2)
        totp = pyotp.TOTP(new_secret).at(portal.clock.now)
        status, _, _, _ = await log_in(portal, client, totp=totp)
        assert status == 303

    run(portal, body)


def hidden_secret(page: str) -> str:
    found = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert found is not None
    return found[1]


def test_ending_other_sessions_invalidates_their_cookies(portal: Portal) -> None:
    """Two logins make two sessions; "end my other sessions" from the second leaves the
    first's cookie leading to the login page, and the second still works."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        first = dict(portal.cookies)
        portal.cookies.clear()
        portal.clock.advance(seconds=30)
        await log_in(portal, client)
        second = dict(portal.cookies)
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        assert "You have 1 other sessions open." in page
        status, _, page, _ = await fetch(portal, client, "POST", "/account/sessions",
                                         {"csrf": _account_form(page)})  # fmt: skip
        assert status == 200
        assert "1 other sessions ended." in page
        portal.cookies = first
        status, headers, _, _ = await fetch(portal, client, "GET", "/account")
        assert (status, headers["Location"]) == (303, "/login")
        portal.cookies = second
        status, _, _, _ = await fetch(portal, client, "GET", "/items?channel=voice")
        assert status == 200

    run(portal, body)


@pytest.mark.parametrize("path", ["/account/passphrase", "/account/totp", "/account/sessions"])
def test_every_account_post_without_the_csrf_token_is_refused(
    portal: Portal, recovery: tuple[str, ...], path: str
) -> None:
    """Without the session's CSRF token (missing or another's), each account POST is 403
    and changes nothing: the passphrase still works, the recovery code is unspent and the
    other session lives on."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        other = dict(portal.cookies)
        portal.cookies.clear()
        portal.clock.advance(seconds=30)
        await log_in(portal, client)
        _, _, page, _ = await fetch(portal, client, "GET", "/account")
        secret = hidden_secret(page)
        form = {"passphrase": STRONG, "code": code(portal.secret, portal.clock, 1),
                "new_passphrase": NEW_STRONG, "new_passphrase_again": NEW_STRONG,
                "recovery_code": recovery[0],
                "new_code": pyotp.TOTP(secret).at(portal.clock.now)}  # fmt: skip
        for csrf in (None, "forged-" + "x" * 40):
            sent = form if csrf is None else {**form, "csrf": csrf}
            status, _, _, _ = await fetch(portal, client, "POST", path, sent)
            assert status == 403
        portal.cookies = other
        assert (await fetch(portal, client, "GET", "/account"))[0] == 200

    run(portal, body)
    identity(portal, STRONG)  # not rewrapped
    accounts_file = next((portal.directory / "portal" / "accounts").glob("*.json"))
    assert len(re.findall(r'"[0-9a-f]{64}"', accounts_file.read_text())) == 10  # codes unspent
