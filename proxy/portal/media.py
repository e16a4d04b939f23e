"""A held picture or recording shown inline, only after a click, only from the portal itself.

Rules this module keeps:
1. Only raster pictures (PNG, JPEG, GIF, WebP) and audio (MP3, Ogg, WAV) are ever shown
   inline, and only when the part's bytes begin as its claimed type's do (`inline_type`):
   a claim the bytes do not bear out, SVG (it can carry script), and every other type
   stay downloads only. The type is taken from this short table, never from the sender.
2. Nothing is fetched until the contact asks: the item page only links to the part's
   view page ("Show"); that page embeds the part with `<img>` or `<audio controls>` from
   the portal's own URL (`/items/N/parts/M/inline`). No script anywhere.
3. The inline bytes go out as the verified type, `Content-Disposition: inline`, the usual
   headers, and a CSP of their own, `default-src 'none'; sandbox` (`MEDIA_CSP`): opened
   on their own, they run nothing and load nothing.
4. Custody first: the view page and the bytes each come through `viewing.held_part`,
   which records a "show" of the item before anything is returned; if it cannot, nothing
   is sent (`not_shown`). A part that is not inline-safe gets 404 and the view page says
   to download it instead.
5. Pure sniffing: `inline_type` takes the claimed type and the bytes, returns a type or
   None; it never raises.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web

from proxy.access.keys import IdentityProblem
from proxy.access.reading import AccessProblem
from proxy.access.render import Part
from proxy.access.viewing import held_part
from proxy.custody import CustodyProblem
from proxy.portal.sessions import Session
from proxy.portal.web import archive, logged_in, not_shown, page

MEDIA_CSP = "default-src 'none'; sandbox"
_PROBLEMS = (AccessProblem, CustodyProblem, IdentityProblem)
# The claimed types (lower case, parameters dropped) that may be shown, and the type
# each is served as.
_CLAIMS = {
    "image/png": "image/png",
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/gif": "image/gif",
    "image/webp": "image/webp",
    "audio/mpeg": "audio/mpeg",
    "audio/mp3": "audio/mpeg",
    "audio/ogg": "audio/ogg",
    "audio/wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-wav": "audio/wav",
    "audio/vnd.wave": "audio/wav",
}


# What each type's bytes begin with: (offset, bytes) pairs that must all be there; any
# of a type's alternatives will do. MPEG audio: an ID3 tag, or a frame's 11 sync bits.
_MAGIC: tuple[tuple[str, tuple[tuple[tuple[int, bytes], ...], ...]], ...] = (
    ("image/png", (((0, b"\x89PNG\r\n\x1a\n"),),)),
    ("image/jpeg", (((0, b"\xff\xd8\xff"),),)),
    ("image/gif", (((0, b"GIF87a"),), ((0, b"GIF89a"),))),
    ("image/webp", (((0, b"RIFF"), (8, b"WEBP")),)),
    ("audio/wav", (((0, b"RIFF"), (8, b"WAVE")),)),
    ("audio/ogg", (((0, b"OggS"),),)),
    ("audio/mpeg", (((0, b"ID3"),),)),
)


def _sniffed(data: bytes) -> str | None:
    """The type the bytes begin as, of those in `_CLAIMS`' values (rule 1)."""
    for name, alternatives in _MAGIC:
        for marks in alternatives:
            if all(data[at : at + len(mark)] == mark for at, mark in marks):
                return name
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MPEG audio frame's sync bits (JPEG's FF D8 has not all 3)
    return None


def inline_type(claimed: str, data: bytes) -> str | None:
    """The type to serve a part as inline, or None if it is to be downloaded only: the
    claim must be in the table and the bytes must bear it out (rule 1)."""
    wanted = _CLAIMS.get(claimed.split(";", 1)[0].strip().lower())
    return wanted if wanted is not None and _sniffed(data) == wanted else None


def kind(part: Part) -> str:
    """ "picture", "audio" or "" (download only), for the item page's links."""
    shown = inline_type(part.content_type, part.data)
    return "" if shown is None else ("picture" if shown.startswith("image/") else "audio")


def routes(app: web.Application) -> None:
    parts = "/items/{sequence:[0-9]{1,12}}/parts/{number:[0-9]{1,6}}"
    app.router.add_get(parts + "/view", logged_in(_view))
    app.router.add_get(parts + "/inline", logged_in(_inline))


async def _held(request: web.Request, session: Session) -> tuple[int, int, Part]:
    sequence, number = int(request.match_info["sequence"]), int(request.match_info["number"])
    part = await asyncio.to_thread(held_part, archive(request), session.unlocked.identity,
                                   sequence, number)  # fmt: skip
    return sequence, number, part


async def _view(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        sequence, number, part = await _held(request, session)
    except _PROBLEMS as problem:
        return not_shown(request, session, problem)
    from proxy.portal.evidence import part_name  # noqa: PLC0415 - it imports web.py too

    shown = kind(part)
    title = part_name(part.name, number, part.content_type)
    return page(request, "media.html", HTTPStatus.OK if shown else HTTPStatus.NOT_FOUND,
                csrf=session.csrf, sequence=sequence, number=number, kind=shown,
                title=title, content_type=part.content_type)  # fmt: skip


async def _inline(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        _, _, part = await _held(request, session)
    except _PROBLEMS as problem:
        return not_shown(request, session, problem)
    shown = inline_type(part.content_type, part.data)
    if shown is None:
        raise web.HTTPNotFound(text="not shown inline: download it instead")
    return web.Response(body=part.data, content_type=shown,
                        headers={"Content-Disposition": "inline",
                                 "Content-Security-Policy": MEDIA_CSP})  # fmt: skip
