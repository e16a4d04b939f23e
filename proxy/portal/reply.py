"""The portal's reply page: a contact answers an item of his under a court order.

Rules this module keeps:
1. Who first, before anything is read: a lawyer's POST (or one from someone the config no
   longer names) is 403 and nothing is done (replying.py rule 1); the CSRF token was
   checked already (web.py rule 4). Then the form: no choice, a missing, too long or not
   plain proposal brings it back (400) with what was typed and one line saying what to
   fix, and nothing is read from the archive (replying.py rule 3).
2. Then the item, read through `release.prepare`: one whose seal carries no court order
   mark is refused (403) with a page saying why. One that came from an address or number
   not among his in the config (a forged From), or that no configured way can answer (no
   `outbound:` section for an email, no SMS channel for a text), is refused (409) with
   one line. Nothing is recorded or sent.
3. Custody first: the "reply" record (the original's leaf hash and exactly the text he
   will receive, replying.py rule 5) is stored and read back before sending
   (handover.py); if it cannot be, nothing is sent. Sending is delivery.py's (rule 7).
   If it fails, a "reply-failed" record is stored and the page says so (503) with the
   form again. Once sent, the page shows exactly the text sent.
4. One reply at a time in this process (`_ONE_AT_A_TIME`): a double click waits its turn.
   A reply is not once only: each is its own record.
5. The logs carry only fixed events (web.py rule 6): never the reply, the item, his
   address or its sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from proxy import logs
from proxy.access import delivery, release, replying
from proxy.archive.metadata import SealedItem
from proxy.custody import CustodyProblem
from proxy.portal.handover import PROBLEMS, NotSent, hand_over
from proxy.portal.sessions import Session
from proxy.portal.web import CONFIG, archive, logged_in, not_shown, page

_log = logs.get_logger("portal")
_ONE_AT_A_TIME = web.AppKey("reply_lock", asyncio.Lock)
NOT_RECORDED = "The reply could not be recorded in the custody log, so nothing was sent"
EMPTY = {"template": "", "proposal": ""}


def routes(app: web.Application) -> None:
    app[_ONE_AT_A_TIME] = asyncio.Lock()
    app.router.add_post("/items/{sequence:[0-9]{1,12}}/reply", logged_in(_reply))


def offer(request: web.Request, session: Session, metadata: SealedItem) -> str | None:
    """For the item page: None if this contact may reply to this item (show the form),
    else why not; "" where a reply is not to be mentioned (a lawyer; an item with no
    order)."""
    config = request.app[CONFIG]
    role = release.role_of(config, session.unlocked.contact)
    if replying.refusal(role, metadata) is not None:
        return ""
    try:
        delivery.plan_reply(config, replying.addressee(config, metadata), "", datetime.now(UTC))
    except (replying.CannotReply, delivery.CannotDeliver) as cannot:
        return str(cannot)
    return None


def form_values(values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What reply_form.html needs besides the CSRF token and the sequence."""
    return {"templates": replying.TEMPLATES, "limit": replying.PROPOSAL_LIMIT,
            "reply_values": dict(values or EMPTY)}  # fmt: skip


def _outcome(
    request: web.Request, session: Session, sequence: int, status: int = 200, *,
    message: str = "", sent: str = "", values: Mapping[str, str] | None = None,
) -> web.Response:  # fmt: skip
    return page(request, "reply.html", status, csrf=session.csrf, sequence=sequence,
                message=message, sent=sent, retry=values is not None,
                **form_values(values))  # fmt: skip


async def _reply(request: web.Request, session: Session) -> web.StreamResponse:
    sequence = int(request.match_info["sequence"])
    config = request.app[CONFIG]
    refused = replying.may_reply(release.role_of(config, session.unlocked.contact))
    if refused is not None:
        _log.info("portal reply refused")
        raise web.HTTPForbidden(text=f"forbidden: {refused}")  # rule 1: nothing is read
    form = await request.post()
    typed = {name: value for name, value in form.items() if isinstance(value, str)}
    values, fix = replying.read_form(typed)
    if fix is not None:
        return _outcome(request, session, sequence, HTTPStatus.BAD_REQUEST, message=fix,
                        values=values)  # fmt: skip
    async with request.app[_ONE_AT_A_TIME]:
        return await _reply_once(request, session, sequence, values)


async def _reply_once(
    request: web.Request, session: Session, sequence: int, values: dict[str, str]
) -> web.StreamResponse:
    config, root, identity = request.app[CONFIG], archive(request), session.unlocked.identity
    try:
        candidate = await asyncio.to_thread(release.prepare, root, identity, sequence,
                                            session.index)  # fmt: skip
    except PROBLEMS as problem:
        return not_shown(request, session, problem)
    item = candidate.item
    if item.metadata.order is None:
        _log.info("portal reply refused")
        return _outcome(request, session, sequence, HTTPStatus.FORBIDDEN,
                        message=replying.NO_ORDER)  # fmt: skip
    text = replying.reply_text(values)
    try:
        addressee = replying.addressee(config, item.metadata)
        route = delivery.plan_reply(config, addressee, text, datetime.now(UTC))
    except (replying.CannotReply, delivery.CannotDeliver) as cannot:
        _log.info("portal reply refused")
        return _outcome(request, session, sequence, HTTPStatus.CONFLICT, message=str(cannot))
    reason = replying.reply_reason(item.leaf_hash, text)
    try:
        missed = await hand_over(root, identity, sequence, route, action=replying.REPLY,
                                 reason=reason)  # fmt: skip
    except PROBLEMS as problem:  # rule 3: custody first, or nothing
        return not_shown(request, session, CustodyProblem(f"{NOT_RECORDED}: {problem}"))
    if missed is not None:
        _log.warning("portal reply not sent")
        return _failed(request, session, sequence, values, missed)
    _log.info("portal reply")
    how = "by email" if addressee.by_email else "by text"
    return _outcome(request, session, sequence, message=f"Your reply was sent to him {how}.",
                    sent=text)  # fmt: skip


def _failed(
    request: web.Request, session: Session, sequence: int, values: dict[str, str],
    missed: NotSent,
) -> web.Response:  # fmt: skip
    failed = missed.failure
    message = f"Not sent: {failed}. The reply is recorded as failed; try again."
    if not missed.recorded:
        message = (f"Not sent: {failed}. The failure could not be recorded in the custody "
                   "log, so the log says it was sent; try again.")  # fmt: skip
    return _outcome(request, session, sequence, HTTPStatus.SERVICE_UNAVAILABLE, message=message,
                    values=values)  # fmt: skip
