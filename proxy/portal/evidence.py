"""The portal's evidence pages: export the bundle, the pattern report (PDF and its timeline
chart), and one item's attachments and media as files.

Rules this module keeps:
1. Custody first, by the code that reads: `bundle.export` and `bundle.report` record the
   export or report before the file is moved into place, `bundle.timeline` before it
   returns the chart, `viewing.held_part` before it returns the part. Nothing here
   records custody itself; if recording fails, nothing is sent (`not_shown`).
2. The bundle is streamed as it is made, from a worker thread (decryption, PDF and zip are
   CPU work; streaming.py), so its first byte leaves at once and no copy is ever written
   to disk. Its items are fixed from the session's index and the export's custody is
   recorded before the first byte (bundle.py rule 4). The export page's form carries a
   random id under which the page's optional script (static/export.js, same-origin)
   reads how many items are written; without script, the browser's own download shows
   the bytes coming. A bundle that fails midway is cut short (no last chunk), which the
   browser shows as a failed download. The PDF report is written on a worker thread
   into a new 0600 file under `portal.state_dir`, named by a random token, unlinked as
   soon as it is opened for sending (and in any case afterwards).
3. Downloads are `Content-Disposition: attachment`, served as `application/octet-stream`
   (a part) or their own type (zip, PDF, PNG from the portal itself); a part's name is the
   sender's text, so it is reduced to a safe file name (`part_name`): no path, no control
   or bidirectional characters, never empty.
4. An export needs a reason (it goes into the custody log and the manifest); without one
   the form comes back with a message and nothing is read.
5. The logs carry only fixed events (web.py rule 6).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import secrets
import unicodedata
import urllib.parse
from datetime import UTC, date, datetime
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy import logs
from proxy.access.keys import IdentityProblem
from proxy.access.reading import AccessProblem, OpenedArchive, Selection, open_archive
from proxy.access.viewing import held_part, planned_export
from proxy.archive.custody_keys import MAX_REASON
from proxy.archive.seal import fingerprint
from proxy.custody import CustodyProblem
from proxy.portal.sessions import Session
from proxy.portal.streaming import Progress, stream
from proxy.portal.web import CONFIG, archive, logged_in, not_shown, page, url

if TYPE_CHECKING:
    from proxy.access.bundle import ExportRequest

_log = logs.get_logger("portal")
_PROBLEMS = (AccessProblem, CustodyProblem, IdentityProblem)
_CHUNK = 256 * 1024
MAX_NAME = 120
_PROGRESS_TOKEN = re.compile(r"[0-9a-f]{32}")
_KEPT_PROGRESS = 4  # a session's latest exports whose progress can be asked for
NO_REASON = "Give a reason for the export: it is recorded in the custody log and the bundle."


def routes(app: web.Application) -> None:
    app.router.add_get("/export", logged_in(_export_form))
    app.router.add_post("/export", logged_in(_export))
    app.router.add_get("/export/progress/{token:[0-9a-f]{32}}", logged_in(_export_progress))
    app.router.add_get("/static/export.js", _script)
    app.router.add_get("/report", logged_in(_report_page))
    app.router.add_post("/report", logged_in(_report))
    app.router.add_get("/report/timeline.png", logged_in(_timeline))
    app.router.add_get("/items/{sequence:[0-9]{1,12}}/parts/{number:[0-9]{1,6}}",
                       logged_in(_part))  # fmt: skip


def part_name(name: str, number: int, content_type: str = "") -> str:
    """A safe file name for part `number` named `name` by its sender (rule 3): the last
    path component, without control, format (bidi, zero-width) or separator characters,
    no leading dots, at most MAX_NAME characters; `part-<number>.bin` if nothing is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in base if unicodedata.category(c)[0] not in "CZ" or c == " ")
    kept = kept.lstrip(". ").rstrip()  # dots and spaces in any mix: ". .x" is still hidden
    if not kept:
        return f"part-{number}.bin"
    stem, dot, extension = kept.rpartition(".")
    if not dot:
        stem, extension = kept, (mimetypes.guess_extension(content_type) or ".bin")[1:]
    extension = extension[:16]
    return f"{stem[: MAX_NAME - len(extension) - 1]}.{extension}"


def disposition(name: str) -> str:
    """`attachment` with `name` as an ASCII fallback and in full (RFC 6266, RFC 5987)."""
    ascii_name = "".join(c if " " <= c < "\x7f" and c not in '"\\%' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(name)}"


def _day(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def _filters(values: Any) -> tuple[Selection, dict[str, str]]:
    """The selection a form or query asks for, and its values to show again; ValueError
    for a date that is not YYYY-MM-DD."""
    shown = {name: str(values.get(name) or "").strip() for name in ("since", "until", "person")}
    selection = Selection(since=_day(shown["since"]), until=_day(shown["until"]),
                          person=shown["person"] or None)  # fmt: skip
    return selection, shown


def _request(request: web.Request, session: Session, *, out: Path, reason: str,
             selection: Selection) -> ExportRequest:  # fmt: skip
    from proxy.access.bundle import ExportRequest  # noqa: PLC0415 - PDF and chart libraries

    return ExportRequest(
        out=out, reason=reason, contact=fingerprint(session.unlocked.recipient),
        selection=selection, no_contact_since=request.app[CONFIG].no_contact_since,
        timezone=UTC, witness_keys=tuple(w.key for w in request.app[CONFIG].witnesses),
    )  # fmt: skip


def _state_dir(request: web.Request) -> Path:
    settings = request.app[CONFIG].portal
    assert settings is not None  # portal_app needs a portal section
    return Path(settings.state_dir)


def _produce(root: Path, identity: Any, action: str, export_request: ExportRequest) -> int:
    from proxy.access import bundle  # noqa: PLC0415 - PDF and chart libraries

    opened: OpenedArchive = open_archive(root, identity)
    write = bundle.export if action == "export" else bundle.report
    return write(opened, export_request, lambda _: None)


async def _send_file(
    request: web.Request, path: Path, *, content_type: str, name: str
) -> web.StreamResponse:
    """Stream `path` as a download, unlinking it once open (rule 2)."""
    try:
        file = await asyncio.to_thread(path.open, "rb")
    finally:
        path.unlink(missing_ok=True)
    with file:
        response = web.StreamResponse(headers={"Content-Disposition": disposition(name)})
        response.content_type = content_type
        response.content_length = os.fstat(file.fileno()).st_size
        await response.prepare(request)
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


async def _download(
    request: web.Request, session: Session, *, action: str, reason: str, selection: Selection
) -> web.StreamResponse:
    today = datetime.now(UTC).date().isoformat()
    suffix, content_type, name = (
        (".zip", "application/zip", f"nocontact-evidence-{today}.zip")
        if action == "export"
        else (".pdf", "application/pdf", f"nocontact-report-{today}.pdf")
    )
    out = _state_dir(request) / f"download-{secrets.token_hex(16)}{suffix}"
    wanted = _request(request, session, out=out, reason=reason, selection=selection)
    try:
        await asyncio.to_thread(_produce, archive(request), session.unlocked.identity, action,
                                wanted)  # fmt: skip
    except _PROBLEMS as problem:
        out.unlink(missing_ok=True)
        return not_shown(request, session, problem)
    _log.info(f"portal {action}")
    try:
        return await _send_file(request, out, content_type=content_type, name=name)
    finally:
        out.unlink(missing_ok=True)


def _export_page(
    request: web.Request, session: Session, *, status: int = 200, message: str = "",
    values: dict[str, str] | None = None,
) -> web.Response:  # fmt: skip
    return page(request, "export.html", status, csrf=session.csrf, message=message,
                values=values or {}, progress=secrets.token_hex(16))  # fmt: skip


async def _export_form(request: web.Request, session: Session) -> web.StreamResponse:
    return _export_page(request, session)


async def _export(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    reason = str(form.get("reason") or "").strip()
    try:
        selection, values = _filters(form)
    except ValueError:
        return _export_page(request, session, status=HTTPStatus.BAD_REQUEST,
                            message="Dates are written YYYY-MM-DD.",
                            values={"reason": reason})  # fmt: skip
    values["reason"] = reason
    if not reason or len(reason) > MAX_REASON:
        message = NO_REASON if not reason else f"Keep the reason under {MAX_REASON} characters."
        return _export_page(request, session, status=HTTPStatus.BAD_REQUEST, message=message,
                            values=values)  # fmt: skip
    token = str(form.get("progress") or "")
    if not _PROGRESS_TOKEN.fullmatch(token):
        token = secrets.token_hex(16)
    return await _stream_export(request, session, reason=reason, selection=selection,
                                token=token)  # fmt: skip


async def _stream_export(
    request: web.Request, session: Session, *, reason: str, selection: Selection, token: str
) -> web.StreamResponse:
    """The bundle, streamed as it is made (rule 2): its custody recorded first."""
    from proxy.access.bundle import stream_export  # noqa: PLC0415 - PDF and chart libraries

    identity = session.unlocked.identity
    try:
        opened, planned = await asyncio.to_thread(
            planned_export, archive(request), identity, selection, reason=reason,
            index=session.index,
        )  # fmt: skip
    except _PROBLEMS as problem:
        return not_shown(request, session, problem)
    progress = Progress(total=len(planned.sequences))
    while len(session.exports) >= _KEPT_PROGRESS:
        session.exports.pop(next(iter(session.exports)))
    session.exports[token] = progress
    wanted = _request(request, session, out=_state_dir(request) / "unused", reason=reason,
                      selection=selection)  # fmt: skip
    today = datetime.now(UTC).date().isoformat()
    name = f"nocontact-evidence-{today}.zip"
    response = web.StreamResponse(headers={"Content-Disposition": disposition(name)})
    response.content_type = "application/zip"
    await response.prepare(request)
    failure = await stream(
        response, lambda file: stream_export(opened, wanted, planned, file, progress.advance)
    )  # fmt: skip
    if failure is not None:
        progress.failed = True
        _log.warning("portal export cut short", error=type(failure).__name__)
        if request.transport is not None:
            request.transport.close()  # no last chunk: the browser sees a failed download
        return response
    progress.finished = True
    await response.write_eof()
    _log.info("portal export")
    return response


async def _export_progress(request: web.Request, session: Session) -> web.StreamResponse:
    progress = session.exports.get(request.match_info["token"])
    if progress is None:
        raise web.HTTPNotFound(text="no such export")
    return web.json_response(progress.as_json())


async def _script(request: web.Request) -> web.StreamResponse:
    script = resources.files("proxy.portal").joinpath("static/export.js").read_bytes()
    return web.Response(body=script, content_type="text/javascript")


def _report_values(request: web.Request, session: Session, status: int = 200, message: str = "",
                   values: dict[str, str] | None = None) -> web.Response:  # fmt: skip
    query = urllib.parse.urlencode({k: v for k, v in (values or {}).items() if v})
    chart = url(request, "/report/timeline.png") + (f"?{query}" if query else "")
    return page(request, "report.html", status, csrf=session.csrf, message=message,
                values=values or {}, chart=chart,
                show_chart=request.query.get("chart") == "1")  # fmt: skip


async def _report_page(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        _, values = _filters(request.query)
    except ValueError:
        return _report_values(request, session, HTTPStatus.BAD_REQUEST,
                              "Dates are written YYYY-MM-DD.")  # fmt: skip
    return _report_values(request, session, values=values)


async def _report(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    try:
        selection, _ = _filters(form)
    except ValueError:
        return _report_values(request, session, HTTPStatus.BAD_REQUEST,
                              "Dates are written YYYY-MM-DD.")  # fmt: skip
    return await _download(request, session, action="report", reason="", selection=selection)


def _chart(root: Path, identity: Any, wanted: ExportRequest) -> bytes | None:
    from proxy.access import bundle  # noqa: PLC0415 - the chart library

    return bundle.timeline(open_archive(root, identity), wanted)


async def _timeline(request: web.Request, session: Session) -> web.StreamResponse:
    try:
        selection, _ = _filters(request.query)
    except ValueError:
        raise web.HTTPBadRequest(text="dates are written YYYY-MM-DD") from None
    wanted = _request(request, session, out=_state_dir(request) / "unused", reason="",
                      selection=selection)  # fmt: skip
    try:
        png = await asyncio.to_thread(_chart, archive(request), session.unlocked.identity,
                                      wanted)  # fmt: skip
    except _PROBLEMS as problem:
        return not_shown(request, session, problem)
    if png is None:
        raise web.HTTPNotFound(text="no items to chart")
    return web.Response(body=png, content_type="image/png")


async def _part(request: web.Request, session: Session) -> web.StreamResponse:
    sequence, number = int(request.match_info["sequence"]), int(request.match_info["number"])
    try:
        part = await asyncio.to_thread(held_part, archive(request), session.unlocked.identity,
                                       sequence, number)  # fmt: skip
    except _PROBLEMS as problem:
        return not_shown(request, session, problem)
    name = part_name(part.name, number, part.content_type)
    return web.Response(body=part.data, content_type="application/octet-stream",
                        headers={"Content-Disposition": disposition(name)})  # fmt: skip
