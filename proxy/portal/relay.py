"""The portal's relay page: a contact sends her a neutral summary of an item under a court order.

Rules this module keeps:
1. Who first, before anything is read: a lawyer's POST (or one from someone the config no
   longer names) is 403 and nothing is done (relaying.py rule 1); the CSRF token was
   checked already (web.py rule 4). Then the fields: a missing, too long or not plain one
   brings the form back (400) with what was typed and one line saying what to fix, and
   nothing is read from the archive (relaying.py rule 3).
2. Then the item, read through `release.prepare`: one whose seal carries no court order
   mark is refused (403) with a page saying why; one no configured channel can carry a
   summary for is refused (409). Nothing is recorded or sent.
3. Custody first: the "relay" record (the original's leaf hash and exactly the text she
   will receive, relaying.py rule 5) is stored and read back before delivery; if it
   cannot be, nothing is sent. Delivery goes through the daemon's own code
   (access/delivery.py rule 6), an email's Reply-To the relaying contact's own address
   (`email_of`), a text ending with the line to answer them directly (relaying.py rule
   4). If it fails, a "relay-failed" record is stored and the page says so (503) with
   the form again.
4. A relay is not once only: a contact may send a correction; each is its own record.
   One relay at a time in this process (`_ONE_AT_A_TIME`): a double click waits its turn.
5. The logs carry only fixed events (web.py rule 6): never the summary, the item or its
   sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from aiohttp import web

from proxy import logs
from proxy.access import delivery, relaying, release
from proxy.archive.metadata import SealedItem
from proxy.config import Config
from proxy.custody import CustodyProblem
from proxy.portal.handover import PROBLEMS, NotSent, hand_over
from proxy.portal.sessions import Session
from proxy.portal.web import CONFIG, archive, logged_in, not_shown, page

_log = logs.get_logger("portal")
_ONE_AT_A_TIME = web.AppKey("relay_lock", asyncio.Lock)
NOT_RECORDED = "The relay could not be recorded in the custody log, so nothing was sent"
EMPTY = {field.name: "" for field in relaying.FIELDS}


def routes(app: web.Application) -> None:
    app[_ONE_AT_A_TIME] = asyncio.Lock()
    app.router.add_post("/items/{sequence:[0-9]{1,12}}/relay", logged_in(_relay))


def offer(request: web.Request, session: Session, metadata: SealedItem) -> str | None:
    """For the item page: None if this contact may relay this item (show the form), else
    why not; "" where a relay is not to be mentioned (a lawyer; an item with no order)."""
    config = request.app[CONFIG]
    role = release.role_of(config, session.unlocked.contact)
    if relaying.refusal(role, metadata) is not None:
        return ""
    try:
        delivery.plan_summary(config, metadata, "", "", datetime.now(UTC))
    except delivery.CannotDeliver as cannot:
        return str(cannot)
    return None


def email_of(config: Config, contact: str) -> str | None:
    """The contact's own address in the config: her answers to a summary go there (rule 3)."""
    return next((c.email for c in config.contacts if c.name == contact), None)


def form_values(values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What relay_form.html needs besides the CSRF token and the sequence."""
    return {"fields": relaying.FIELDS, "values": dict(values or EMPTY)}


def _outcome(
    request: web.Request, session: Session, sequence: int, status: int = 200, *,
    message: str = "", sent: str = "", values: Mapping[str, str] | None = None,
) -> web.Response:  # fmt: skip
    return page(request, "relay.html", status, csrf=session.csrf, sequence=sequence,
                message=message, sent=sent, retry=values is not None,
                **form_values(values))  # fmt: skip


async def _relay(request: web.Request, session: Session) -> web.StreamResponse:
    sequence = int(request.match_info["sequence"])
    config = request.app[CONFIG]
    refused = relaying.may_relay(release.role_of(config, session.unlocked.contact))
    if refused is not None:
        _log.info("portal relay refused")
        raise web.HTTPForbidden(text=f"forbidden: {refused}")  # rule 1: nothing is read
    form = await request.post()
    typed = {name: value for name, value in form.items() if isinstance(value, str)}
    values, fix = relaying.read_form(typed)
    if fix is not None:
        return _outcome(request, session, sequence, HTTPStatus.BAD_REQUEST, message=fix,
                        values=values)  # fmt: skip
    async with request.app[_ONE_AT_A_TIME]:
        return await _relay_once(request, session, sequence, values)


async def _relay_once(
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
        _log.info("portal relay refused")
        return _outcome(request, session, sequence, HTTPStatus.FORBIDDEN,
                        message=relaying.NO_ORDER)  # fmt: skip
    contact = session.unlocked.contact
    text = relaying.summary_text(contact, values, by_text=delivery.texts_her(item.metadata))
    try:
        route = delivery.plan_summary(config, item.metadata, relaying.header(contact), text,
                                      datetime.now(UTC),
                                      reply_to=email_of(config, contact))  # fmt: skip
    except delivery.CannotDeliver as cannot:
        _log.info("portal relay refused")
        return _outcome(request, session, sequence, HTTPStatus.CONFLICT, message=str(cannot))
    reason = relaying.relay_reason(item.leaf_hash, text)
    try:
        missed = await hand_over(root, identity, sequence, route, action=relaying.RELAY,
                                 reason=reason)  # fmt: skip
    except PROBLEMS as problem:  # rule 3: custody first, or nothing
        return not_shown(request, session, CustodyProblem(f"{NOT_RECORDED}: {problem}"))
    if missed is not None:
        _log.warning("portal relay not delivered")
        return _failed(request, session, sequence, values, missed)
    _log.info("portal relay")
    where = "her inbox" if isinstance(route, delivery.EmailRoute) else "her phone"
    return _outcome(request, session, sequence, message=f"Your summary was sent to {where}.",
                    sent=text)  # fmt: skip


def _failed(
    request: web.Request, session: Session, sequence: int, values: dict[str, str],
    missed: NotSent,
) -> web.Response:  # fmt: skip
    failed = missed.failure
    message = f"Not sent: {failed}. The relay is recorded as failed; try again."
    if not missed.recorded:
        message = (f"Not sent: {failed}. The failure could not be recorded in the custody "
                   "log, so the log says it was relayed; try again.")  # fmt: skip
    return _outcome(request, session, sequence, HTTPStatus.SERVICE_UNAVAILABLE, message=message,
                    values=values)  # fmt: skip
