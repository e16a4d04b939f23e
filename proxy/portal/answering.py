"""What the relay and the reply pages share: a contact's answer to an item of his under a
court order, from the form to the custody log and out (relay.py: a summary to her;
reply.py: fixed words to him).

Rules this module keeps:
1. Who first, before anything is read: a lawyer's POST (or one from someone the config no
   longer names) is 403 and nothing is done (`Answer.may`); the CSRF token was checked
   already (web.py rule 4). Then the form (`Answer.read_form`): anything wrong brings it
   back (400) with what was typed and one line saying what to fix, and nothing is read
   from the archive.
2. Then the item, read through `release.prepare`: one whose seal carries no court order
   mark is refused (403) with a page saying why. `Answer.compose` makes the exact text
   and its route; where it cannot (no channel can carry it; an address that is not his),
   it raises one of `Answer.refusals` and the page says why (409). Nothing is recorded or
   sent.
3. Custody first (handover.py): the answer's record (`Answer.kind` as its action, its
   reason `Answer.reason` of the original's leaf hash and exactly the text sent) is stored
   and read back before anything goes; if it cannot be, nothing is sent. A delivery that
   fails is recorded as `<kind>-failed` and the page says so (503) with the form again,
   and what the log now says. Once sent, the page shows exactly the text sent.
4. An answer is not once only (a correction, a second reply): each is its own record. One
   answer at a time in this process (`_ONE_AT_A_TIME`): a double click waits its turn.
5. The logs carry only fixed events (web.py rule 6): `portal <kind>`, `portal <kind>
   refused`, `portal <kind> not sent`; never the text, the item, an address or a sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from proxy import logs
from proxy.access import delivery, release
from proxy.archive.metadata import SealedItem
from proxy.config import Config
from proxy.custody import CustodyProblem
from proxy.portal.handover import PROBLEMS, NotSent, hand_over
from proxy.portal.sessions import Session
from proxy.portal.web import CONFIG, Handler, archive, logged_in, not_shown, page

_log = logs.get_logger("portal")
_ONE_AT_A_TIME = web.AppKey("answer_lock", asyncio.Lock)


@dataclass(frozen=True, slots=True, kw_only=True)
class Composed:
    """An answer ready to go: exactly the text, its route, and the page's line once sent."""

    text: str
    route: delivery.Route
    done: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """One kind of answer (rules 1-5)."""

    kind: str  # the custody action, the URL's last step and the logs' word
    noun: str  # "relay", "reply": what the failure line calls it
    template: str  # the page after a POST
    may: Callable[[str | None], str | None]  # why this config role may not, or None
    read_form: Callable[[Mapping[str, str]], tuple[dict[str, str], str | None]]
    form_values: Callable[[Mapping[str, str] | None], dict[str, Any]]
    no_order: str
    compose: Callable[[Config, str, SealedItem, dict[str, str]], Composed]
    reason: Callable[[bytes, str], str]
    refusals: tuple[type[Exception], ...]


def add_route(app: web.Application, answer: Answer) -> None:
    """POST /items/<sequence>/<kind>, logged in."""
    if _ONE_AT_A_TIME not in app:
        app[_ONE_AT_A_TIME] = asyncio.Lock()
    path = "/items/{sequence:[0-9]{1,12}}/" + answer.kind
    app.router.add_post(path, logged_in(_taker(answer)))


def outcome(
    request: web.Request, session: Session, answer: Answer, sequence: int, status: int = 200,
    *, message: str = "", sent: str = "", values: Mapping[str, str] | None = None,
) -> web.Response:  # fmt: skip
    return page(request, answer.template, status, csrf=session.csrf, sequence=sequence,
                message=message, sent=sent, retry=values is not None,
                **answer.form_values(values))  # fmt: skip


def _taker(answer: Answer) -> Handler:
    async def take(request: web.Request, session: Session) -> web.StreamResponse:
        sequence = int(request.match_info["sequence"])
        refused = answer.may(release.role_of(request.app[CONFIG], session.unlocked.contact))
        if refused is not None:
            _log.info(f"portal {answer.kind} refused")
            raise web.HTTPForbidden(text=f"forbidden: {refused}")  # rule 1: nothing is read
        form = await request.post()
        typed = {name: value for name, value in form.items() if isinstance(value, str)}
        values, fix = answer.read_form(typed)
        if fix is not None:
            return outcome(request, session, answer, sequence, HTTPStatus.BAD_REQUEST,
                           message=fix, values=values)  # fmt: skip
        async with request.app[_ONE_AT_A_TIME]:
            return await _once(request, session, answer, sequence, values)

    return take


async def _once(
    request: web.Request, session: Session, answer: Answer, sequence: int,
    values: dict[str, str],
) -> web.StreamResponse:  # fmt: skip
    config, root, identity = request.app[CONFIG], archive(request), session.unlocked.identity
    try:
        candidate = await asyncio.to_thread(release.prepare, root, identity, sequence,
                                            session.index)  # fmt: skip
    except PROBLEMS as problem:
        return not_shown(request, session, problem)
    item = candidate.item
    if item.metadata.order is None:
        _log.info(f"portal {answer.kind} refused")
        return outcome(request, session, answer, sequence, HTTPStatus.FORBIDDEN,
                       message=answer.no_order)  # fmt: skip
    try:
        composed = answer.compose(config, session.unlocked.contact, item.metadata, values)
    except answer.refusals as cannot:
        _log.info(f"portal {answer.kind} refused")
        return outcome(request, session, answer, sequence, HTTPStatus.CONFLICT,
                       message=str(cannot))  # fmt: skip
    reason = answer.reason(item.leaf_hash, composed.text)
    try:
        missed = await hand_over(root, identity, sequence, composed.route, action=answer.kind,
                                 reason=reason)  # fmt: skip
    except PROBLEMS as problem:  # rule 3: custody first, or nothing
        not_recorded = (f"The {answer.noun} could not be recorded in the custody log, so "
                        f"nothing was sent: {problem}")  # fmt: skip
        return not_shown(request, session, CustodyProblem(not_recorded))
    if missed is not None:
        _log.warning(f"portal {answer.kind} not sent")
        return _failed(request, session, answer, sequence, values=values, missed=missed)
    _log.info(f"portal {answer.kind}")
    return outcome(request, session, answer, sequence, message=composed.done,
                   sent=composed.text)  # fmt: skip


def _failed(
    request: web.Request, session: Session, answer: Answer, sequence: int, *,
    values: dict[str, str], missed: NotSent,
) -> web.Response:  # fmt: skip
    failed = missed.failure
    message = f"Not sent: {failed}. The {answer.noun} is recorded as failed; try again."
    if not missed.recorded:
        message = (f"Not sent: {failed}. The failure could not be recorded in the custody "
                   f"log, so the log says the {answer.noun} was sent; try again.")  # fmt: skip
    return outcome(request, session, answer, sequence, HTTPStatus.SERVICE_UNAVAILABLE,
                   message=message, values=values)  # fmt: skip
