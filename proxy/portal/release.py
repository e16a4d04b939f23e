"""The portal's release page: a trusted contact puts a wrongly held passive item in her inbox.

Rules this module keeps:
1. Who and what first, before anything is read: a lawyer's POST (or one from someone the
   config no longer names) is 403 and nothing is done (access/release.py rule 1); the
   CSRF token was checked already (web.py rule 4). A release needs a reason (it goes
   into the custody log); without one the form comes back and nothing is read.
2. Then the item, read through `release.prepare`; a direct hold, a call or voicemail, or
   an item no configured channel can carry is refused with a page saying why in one line
   (403 for what policy forbids, 409 for what a channel cannot do) and nothing delivered.
3. Once only: the custody log decides whether it was released already (release.py rule
   4); if so the page says when, and nothing is sent again.
4. Custody first: the "release" record (with the reason) is stored and read back before
   delivery; if it cannot be, nothing is delivered. Delivery then goes through the daemon's
   own code (access/delivery.py). If it fails, a "release-failed" record is stored, the
   page says so in one line (503) and offers the form again: the item stays in the
   archive (it is append-only: a release removes nothing) and can be tried again.
5. One release at a time in this process (`_ONE_AT_A_TIME`): two clicks, two tabs or two
   contacts cannot both find it unreleased and deliver it twice.
6. The logs carry only fixed events (web.py rule 6): never the item, its sequence or why.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web

from proxy import logs
from proxy.access import delivery, release
from proxy.access.reading import HeldItem
from proxy.archive.custody_keys import MAX_REASON
from proxy.archive.metadata import SealedItem, rfc3339
from proxy.config import Config
from proxy.custody import CustodyProblem
from proxy.portal.handover import PROBLEMS, NotSent, hand_over
from proxy.portal.refusals import PortalProblem
from proxy.portal.sessions import Session
from proxy.portal.web import CONFIG, archive, logged_in, not_shown, page
from proxy.rules import compile_rules

_log = logs.get_logger("portal")
_ONE_AT_A_TIME = web.AppKey("release_lock", asyncio.Lock)
NO_REASON = "Give a short reason for the release: it is recorded in the custody log."
NOT_RECORDED = "The release could not be recorded in the custody log, so nothing was delivered"


def routes(app: web.Application) -> None:
    app[_ONE_AT_A_TIME] = asyncio.Lock()
    app.router.add_post("/items/{sequence:[0-9]{1,12}}/release", logged_in(_release))


def offer(
    request: web.Request, session: Session, metadata: SealedItem, payload: bytes
) -> str | None:
    """For the item page: None if this contact may release this item (show the form),
    else why not; "" for a lawyer, to whom releasing is never mentioned. (The rules in
    force are asked again only when the form is sent.)"""
    config = request.app[CONFIG]
    role = release.role_of(config, session.unlocked.contact)
    if role != "contact":
        return ""
    refused = release.refusal(role, metadata, payload)
    if refused is not None:
        return refused
    try:
        delivery.plan(config, metadata, payload)
    except delivery.CannotDeliver as cannot:
        return str(cannot)
    return None


def _outcome(
    request: web.Request, session: Session, sequence: int, status: int = 200, *,
    message: str = "", delivered: bool = False, retry: bool = False, reason: str = "",
) -> web.Response:  # fmt: skip
    return page(request, "release.html", status, csrf=session.csrf, sequence=sequence,
                message=message, delivered=delivered, retry=retry, reason=reason)  # fmt: skip


async def _release(request: web.Request, session: Session) -> web.StreamResponse:
    sequence = int(request.match_info["sequence"])
    config = request.app[CONFIG]
    refused = release.role_refusal(release.role_of(config, session.unlocked.contact))
    if refused is not None:
        _log.info("portal release refused")
        raise web.HTTPForbidden(text=f"forbidden: {refused}")  # rule 1: nothing is read
    form = await request.post()
    reason = str(form.get("reason") or "").strip()
    if not reason or len(reason) > MAX_REASON:
        message = NO_REASON if not reason else f"Keep the reason under {MAX_REASON} characters."
        return _outcome(request, session, sequence, HTTPStatus.BAD_REQUEST, message=message,
                        retry=True, reason=reason)  # fmt: skip
    async with request.app[_ONE_AT_A_TIME]:
        return await _release_once(request, session, sequence, reason)


async def _release_once(
    request: web.Request, session: Session, sequence: int, reason: str
) -> web.StreamResponse:
    config, root, identity = request.app[CONFIG], archive(request), session.unlocked.identity
    try:
        candidate = await asyncio.to_thread(release.prepare, root, identity, sequence,
                                            session.index)  # fmt: skip
    except PROBLEMS as problem:
        return not_shown(request, session, problem)
    item = candidate.item
    try:
        route = await asyncio.to_thread(_route, config, session, item)
    except _Refused as refused:
        _log.info("portal release refused")
        return _outcome(request, session, sequence, refused.status, message=str(refused))
    if candidate.released is not None:
        at = rfc3339(candidate.released.at) or "an unrecorded time"
        return _outcome(request, session, sequence, HTTPStatus.CONFLICT,
                        message=f"Item {sequence} was released already ({at}); it is not "
                        "sent twice.")  # fmt: skip
    try:
        missed = await hand_over(root, identity, sequence, route, action=release.RELEASE,
                                 reason=reason)  # fmt: skip
    except PROBLEMS as problem:  # rule 4: custody first, or nothing
        return not_shown(request, session, CustodyProblem(f"{NOT_RECORDED}: {problem}"))
    if missed is not None:
        _log.warning("portal release not delivered")
        return _failed(request, session, sequence, reason, missed)
    _log.info("portal release")
    kept = route.media_kept if isinstance(route, delivery.TextRoute) else 0
    return _outcome(request, session, sequence, delivered=True, message=_delivered(route, kept))


class _Refused(PortalProblem):
    """This item is not released (rule 2): why, and the status the page carries."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _route(config: Config, session: Session, item: HeldItem) -> delivery.Route:
    """How the item goes to her, or `_Refused` (rule 2)."""
    role = release.role_of(config, session.unlocked.contact)
    why = release.refusal(role, item.metadata, item.payload)
    if why in (release.DIRECT, release.NOT_PASSIVE):
        raise _Refused(why, HTTPStatus.FORBIDDEN)
    if why is not None:
        raise _Refused(why, HTTPStatus.CONFLICT)
    if release.blocked_now(item, compile_rules(config), config.default_region):
        raise _Refused(release.BLOCKED_NOW, HTTPStatus.FORBIDDEN)
    try:
        return delivery.plan(config, item.metadata, item.payload)
    except delivery.CannotDeliver as cannot:
        raise _Refused(str(cannot), HTTPStatus.CONFLICT) from None


def _failed(
    request: web.Request, session: Session, sequence: int, reason: str, missed: NotSent
) -> web.Response:
    failed = missed.failure
    message = f"Not delivered: {failed}. Nothing is lost: the item stays in the archive; try again."
    if not missed.recorded:
        message = (
            f"Not delivered: {failed}. The failure could not be recorded in the custody "
            "log, so the log says it was released: it is not tried again."
        )
        return _outcome(request, session, sequence, HTTPStatus.SERVICE_UNAVAILABLE, message=message)
    return _outcome(request, session, sequence, HTTPStatus.SERVICE_UNAVAILABLE, message=message,
                    retry=True, reason=reason)  # fmt: skip


def _delivered(route: delivery.Route, media_kept: int) -> str:
    if isinstance(route, delivery.EmailRoute):
        return "Delivered to her inbox, as it would have been had it not been held."
    text = "Sent to her phone, as an allowed text is forwarded."
    if media_kept:
        text += (f" Its {media_kept} picture(s) were not sent (the provider no longer has "
                 "them); they stay in the archive.")  # fmt: skip
    return text
