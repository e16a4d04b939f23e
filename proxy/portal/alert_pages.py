"""The portal's acknowledgement of an urgent alert: a button, for a logged-in contact.

Rules this module keeps:
1. `GET /alerts/<code>` (the link in an urgent alert) shows the code and one button; only
   `POST /alerts/<code>/ack`, logged in and CSRF-checked (web.py rule 4), acknowledges.
   Without a session both lead to the login page, so a code read off a lost phone cannot
   silence an alert without a contact's passphrase and second factor (acks.py rule 2).
2. The acknowledgement goes to the daemon over its alerts socket (acks.py) on a worker
   thread; the page says in one line whether an open alert had that code, or that the
   daemon could not be asked (503).
3. It is not a custody record: acknowledging opens nothing. The logs carry one fixed
   event, never the code (web.py rule 6).
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web

from proxy import logs
from proxy.alerts.acks import AckProblem, ask_ack
from proxy.portal.sessions import Session
from proxy.portal.web import archive, logged_in, page

_CODE = "{code:[A-Za-z0-9]{4,16}}"
_log = logs.get_logger("portal")
DONE = "Acknowledged: the alert will not be repeated or escalated."
NOT_OPEN = "No open alert has this code: it was acknowledged already, or the code is wrong."


def routes(app: web.Application) -> None:
    app.router.add_get(f"/alerts/{_CODE}", logged_in(_offer))
    app.router.add_post(f"/alerts/{_CODE}/ack", logged_in(_acknowledge))


async def _offer(request: web.Request, session: Session) -> web.StreamResponse:
    code = request.match_info["code"].upper()
    return page(request, "alert.html", csrf=session.csrf, code=code, message="")


async def _acknowledge(request: web.Request, session: Session) -> web.StreamResponse:
    code = request.match_info["code"].upper()
    try:
        done = await asyncio.to_thread(ask_ack, archive(request), code)
    except AckProblem as problem:
        return page(request, "alert.html", HTTPStatus.SERVICE_UNAVAILABLE, csrf=session.csrf,
                    code=code, message=str(problem), done=False)  # fmt: skip
    _log.info("portal alert acknowledgement")
    status = HTTPStatus.OK if done else HTTPStatus.NOT_FOUND
    return page(request, "alert.html", status, csrf=session.csrf, code=code,
                message=DONE if done else NOT_OPEN, done=done)  # fmt: skip
