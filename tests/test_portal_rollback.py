"""The portal remembers each contact's last-seen checkpoint and shows a warning, and no
held item, when the archive on the server does not continue it: rolled back or rewritten
behind a logged-in session's back, or before a fresh login (issue 23)."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from proxy.archive import layout
from proxy.archive.note import Verifier, parse_checkpoint
from proxy.cli import main
from proxy.portal import web as portal_web
from tests.portal_helpers import (
    Portal,
    Template,
    assert_headers,
    copy_portal,
    enroll,
    fetch,
    from_mark,
    hidden,
    log_in,
    publish_custody_key,
    run,
)
from tests.rollbacks import checkpoints, entries, hold_signed, roll_back

SUBJECTS = [f"answer me {n}" for n in range(4)]


def _message(subject: str) -> bytes:
    return (f"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: {subject}"
            "\r\n\r\nPick up the phone.\r\n").encode()  # fmt: skip


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """Priya enrolled; four items held for her, a checkpoint signed after each."""
    enrollment = enroll(tmp_path_factory.mktemp("rollback") / "state")
    recipient = enrollment.enrolled.recipient
    hold_signed(enrollment.directory / "archive", recipient,
                [from_mark(_message(subject)) for subject in SUBJECTS])  # fmt: skip
    publish_custody_key(enrollment.directory, enrollment.config, recipient)
    return Template(enrollment.directory, enrollment.secret, enrollment.clock,
                    enrollment.enrolled.recovery_codes, (1, 3, 5, 7))  # fmt: skip


@pytest.fixture
def portal(template: Template, tmp_path: Path) -> Portal:
    return copy_portal(template, tmp_path)


def _archive(portal: Portal) -> Path:
    return portal.directory / "archive"


def _seen(portal: Portal) -> Any:
    """The checkpoint the portal holds as Priya's last seen, as the archive signed it."""
    (record,) = (portal.directory / "portal" / "seen").glob("*.json")
    note = json.loads(record.read_text())["note"].encode()
    verifier = Verifier.decode((_archive(portal) / layout.VERIFIER_KEY).read_text())
    return parse_checkpoint(verifier.open(note))


def _assert_warned(status: int, headers: dict[str, str], page: str, reason: str) -> None:
    assert status == portal_web.NOT_CONTINUED, page
    assert_headers(headers)
    assert "The archive is not the one you saw" in page
    assert reason in html.unescape(page)
    assert "nocontact verify --archive COPY --checkpoint FILE" in page
    for subject in SUBJECTS:
        assert subject not in page
    assert "Pick up" not in page


def test_a_rollback_behind_a_sessions_back_is_refused_with_the_warning(portal: Portal) -> None:
    """Priya lists the four items; the archive is rolled back to entry 2 on disk (it still
    verifies); every page that reads it, and the account page, is then the warning naming
    the checkpoint she saw last, and nothing held; logging out still works."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        status, _, listing, _ = await fetch(portal, client, "GET", "/items")
        assert status == 200
        assert all(subject in listing for subject in SUBJECTS)
        seen = _seen(portal)
        roll_back(_archive(portal), 2)
        for path in ("/items", "/items/1", "/items/7", "/custody", "/account", "/report"):
            status, headers, page, _ = await fetch(portal, client, "GET", path)
            _assert_warned(status, headers, page, "entries were removed\nsince (a rollback)")
            assert f"covered {seen.size} entries" in page
            assert seen.time.strftime("%Y-%m-%d %H:%M:%S") in page
        assert _seen(portal) == seen  # kept as it was: every later look is refused too
        status, _, _, _ = await fetch(portal, client, "POST", "/logout",
                                      {"csrf": hidden(page, "csrf")})  # fmt: skip
        assert status == 303

    run(portal, body)


def test_a_fresh_login_after_a_rollback_is_warned(portal: Portal) -> None:
    """A rollback done while Priya was away (between two portal runs) is the warning at
    her next login, whatever page she opens first."""

    async def look(client: Any) -> None:
        await log_in(portal, client)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200

    run(portal, look)
    roll_back(_archive(portal), 2)
    portal.cookies.clear()
    portal.clock.advance(minutes=1)

    async def again(client: Any) -> None:
        status, headers, _, _ = await log_in(portal, client)
        assert (status, headers["Location"]) == (303, "/items")
        status, headers, page, _ = await fetch(portal, client, "GET", "/items")
        _assert_warned(status, headers, page, "a rollback")

    run(portal, again)


def test_a_rewritten_history_is_refused(portal: Portal) -> None:
    """Rolled back and refilled with other items by the archive's own key, longer than
    before: the warning names a fork."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200
        roll_back(_archive(portal), 2)
        others = [from_mark(_message(f"nothing {n}")) for n in range(8)]
        await asyncio.to_thread(hold_signed, _archive(portal), _recipient(portal), others)
        status, headers, page, _ = await fetch(portal, client, "GET", "/items")
        _assert_warned(status, headers, page, "(a fork)")
        assert "nothing 3" not in page

    run(portal, body)


def test_another_archive_in_its_place_is_refused(portal: Portal, tmp_path: Path) -> None:
    """An archive with another signing key put in place of the one Priya saw is refused:
    the checkpoint she saw is not signed by its key."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200
        other = tmp_path / "other"
        await asyncio.to_thread(hold_signed, other, _recipient(portal),
                                [from_mark(_message("elsewhere"))])  # fmt: skip
        shutil.rmtree(_archive(portal))
        shutil.copytree(other, _archive(portal))
        publish_custody_key(portal.directory, portal.config, _recipient(portal))
        status, headers, page, _ = await fetch(portal, client, "GET", "/items")
        _assert_warned(status, headers, page, "it is for another archive (nocontact.archive/")
        assert "signed for another archive or by another key" in page

    run(portal, body)


def test_the_seen_checkpoint_moves_forward_only(portal: Portal) -> None:
    """New items held while Priya is logged in are a continuation: the page shows them and
    her seen checkpoint moves on to the larger one."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200
        first = _seen(portal)
        await asyncio.to_thread(hold_signed, _archive(portal), _recipient(portal),
                                [from_mark(_message("later one"))])  # fmt: skip
        status, _, listing, _ = await fetch(portal, client, "GET", "/items")
        assert status == 200
        assert "later one" in listing
        assert _seen(portal).size > first.size

    run(portal, body)


def test_the_custody_page_gives_the_checkpoint_to_keep(
    portal: Portal, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The custody log page shows the archive's signed checkpoint; saved as it is copied
    from the page, it passes verify --checkpoint, and catches the rollback after."""
    shown: list[str] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        status, _, page, _ = await fetch(portal, client, "GET", "/custody")
        assert status == 200
        found = re.search(r'<pre id="checkpoint">(.*?)</pre>', page, re.S)
        assert found is not None, page
        shown.append(html.unescape(found[1]))

    run(portal, body)
    kept = tmp_path / "kept-checkpoint.txt"
    kept.write_text(shown[0])
    assert main(["verify", "--archive", str(_archive(portal)), "--checkpoint", str(kept)]) == 0
    roll_back(_archive(portal), checkpoints(_archive(portal))[1])
    assert main(["verify", "--archive", str(_archive(portal)), "--checkpoint", str(kept)]) == 1
    assert "(a rollback)" in capsys.readouterr().out


def _recipient(portal: Portal) -> str:
    return (portal.directory / "keys" / "priya.pub").read_text().strip()


def test_entries_the_tests_roll_back_are_held_items(template: Template) -> None:
    """The template's archive is as the tests assume: a checkpoint at entry 2, after the
    first held item, and three held items after it."""
    found = entries(template.directory / "archive")
    assert checkpoints(template.directory / "archive")[:2] == [0, 2]
    assert [found[index][3].name for index in template.sequences] == ["SEALED"] * 4


def test_a_damaged_seen_record_shows_nothing(portal: Portal) -> None:
    """A seen record that is not one is the "not shown" page naming no content, and is
    not silently replaced by the archive as it now is."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        assert (await fetch(portal, client, "GET", "/items"))[0] == 200
        (record,) = (portal.directory / "portal" / "seen").glob("*.json")
        record.write_text('{"note": "not a checkpoint"}')
        status, headers, page, _ = await fetch(portal, client, "GET", "/items")
        assert status == portal_web.NOT_SHOWN
        assert_headers(headers)
        assert "is not a seen checkpoint" in page
        assert not any(subject in page for subject in SUBJECTS)
        assert record.read_text() == '{"note": "not a checkpoint"}'

    run(portal, body)
