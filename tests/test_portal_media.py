"""Pictures and recordings shown inline (proxy/portal/media.py), through aiohttp's test
client: only verified raster pictures and audio get a "Show" link; their bytes come from
the portal with their verified type, inline, sandboxed; every showing records custody."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from proxy.channels.sms.capture import ArrivalKind
from proxy.portal import media
from proxy.portal import web as portal_web
from tests.portal_helpers import (
    PLAIN,
    Portal,
    Template,
    copy_portal,
    custody_actions,
    fetch,
    from_mark,
    from_marks_phone,
    held_template,
    log_in,
    picture,
    recording,
    run,
    send,
)

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """An email, an MMS with a picture, an SVG and an SVG claiming to be a PNG, and a
    voicemail recording."""
    mms = [("image/png", picture()), ("image/svg+xml", SVG), ("image/png", SVG)]
    messages = [from_mark(PLAIN), from_marks_phone("look at this", mms),
                from_marks_phone("", [("audio/x-wav", recording())],
                                 kind=ArrivalKind.VOICEMAIL)]  # fmt: skip
    return held_template(tmp_path_factory, "media", messages)


@pytest.fixture
def portal(template: Template, tmp_path: Path) -> Portal:
    return copy_portal(template, tmp_path)


@pytest.mark.parametrize(
    ("claimed", "data", "shown"),
    [
        ("image/png", b"\x89PNG\r\n\x1a\n....", "image/png"),
        ("IMAGE/PNG; name=x.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ("image/jpeg", b"\xff\xd8\xff\xe0", "image/jpeg"),
        ("image/jpg", b"\xff\xd8\xff\xdb", "image/jpeg"),
        ("image/gif", b"GIF89a..", "image/gif"),
        ("image/webp", b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("audio/mpeg", b"ID3\x04\x00", "audio/mpeg"),
        ("audio/mpeg", b"\xff\xfb\x90\x64", "audio/mpeg"),
        ("audio/ogg", b"OggS\x00\x02", "audio/ogg"),
        ("audio/x-wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        ("image/png", SVG, None),  # a claim the bytes do not bear out
        ("image/png", b"\xff\xd8\xff\xe0", None),  # another picture type than claimed
        ("audio/mpeg", b"\xff\xd8\xff\xe0", None),  # a JPEG is no MPEG frame
        ("image/svg+xml", SVG, None),  # SVG can carry script: never inline
        ("text/html", b"<html>", None),
        ("audio/amr", b"#!AMR\n", None),  # no browser plays it: download only
        ("image/webp", b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        ("image/png", b"", None),
        ("", b"", None),
    ],
)
def test_only_verified_pictures_and_audio_are_shown_inline(
    claimed: str, data: bytes, shown: str | None
) -> None:
    """A part is shown inline only when its claimed type is a raster picture or audio and
    its bytes begin as that type's do; it is served as the table's type."""
    assert media.inline_type(claimed, data) == shown


def test_show_links_only_for_verified_media_and_nothing_embedded_on_the_item(
    portal: Portal,
) -> None:
    """The MMS item links "Show" for the PNG only (not the SVG, not the false PNG), and
    embeds nothing; the voicemail links "Show the audio"; the view pages embed the part
    from /inline, or say to download it (404)."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, item, _ = await fetch(portal, client, "GET", "/items/2")
        assert re.findall(r'href="(/items/2/parts/[0-9]+/view)"', item) == ["/items/2/parts/1/view"]
        assert "<img" not in item
        assert "/inline" not in item
        status, headers, view, _ = await fetch(portal, client, "GET", "/items/2/parts/1/view")
        assert status == 200
        assert headers["Content-Security-Policy"] == portal_web.CSP
        assert '<img id="shown-part" src="/items/2/parts/1/inline"' in view
        for number in (2, 3):
            status, _, view, _ = await fetch(portal, client, "GET", f"/items/2/parts/{number}/view")
            assert status == 404
            assert "<img" not in view
            assert "Download it instead" in view
        _, _, voicemail, _ = await fetch(portal, client, "GET", "/items/3")
        assert 'href="/items/3/parts/1/view">Show the audio' in voicemail
        _, _, view, _ = await fetch(portal, client, "GET", "/items/3/parts/1/view")
        assert '<audio id="shown-part" controls' in view

    run(portal, body)


def test_inline_bytes_carry_their_verified_type_and_a_sandbox(portal: Portal) -> None:
    """/inline serves the picture's bytes as image/png, inline, with the sandboxing CSP
    and the usual headers; the SVG and the false PNG are 404 there; every look is a
    custody "show" of the item."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        status, headers, data, _ = await send(portal, client, "GET", "/items/2/parts/1/inline")
        assert status == 200
        assert data == picture()
        assert headers["Content-Type"] == "image/png"
        assert headers["Content-Disposition"] == "inline"
        assert headers["Content-Security-Policy"] == media.MEDIA_CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
        status, headers, data, _ = await send(portal, client, "GET", "/items/3/parts/1/inline")
        assert (status, headers["Content-Type"]) == (200, "audio/wav")
        assert data == recording()
        for number in (2, 3):
            status, headers, data, _ = await send(portal, client, "GET",
                                                  f"/items/2/parts/{number}/inline")  # fmt: skip
            assert status == 404
            assert b"<svg" not in data
        status, _, _, _ = await send(portal, client, "GET", "/items/2/parts/9/inline")
        assert status == portal_web.NOT_SHOWN

    run(portal, body)
    shows = [("show", (item,), "verified") for item in (2, 3, 2, 2)]
    assert custody_actions(portal) == shows


def test_logged_out_gets_the_login_page_not_the_media(portal: Portal) -> None:
    """Without a session, the view page and the bytes redirect to /login and record nothing."""

    async def body(client: Any) -> None:
        for path in ("/items/2/parts/1/view", "/items/2/parts/1/inline"):
            status, headers, data, _ = await send(portal, client, "GET", path)
            assert (status, headers["Location"]) == (303, "/login")
            assert not data.startswith(b"\x89PNG")

    run(portal, body)
    assert custody_actions(portal) == []
