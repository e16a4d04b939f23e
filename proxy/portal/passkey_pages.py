"""The portal's passkey endpoints and its one script: WebAuthn over forms that work without it.

Rules this module keeps:
1. One script, `/static/passkey.js`, shipped in the package and served by the portal
   itself (the CSP allows nothing else, and no inline script). It only enhances: the
   login form keeps its code field, and every passkey form here works or says why
   without it. With JavaScript off, a contact logs in with a code and can still list
   and remove passkeys; adding one needs JavaScript (the page says so).
2. Challenges come only from the portal (`proxy.portal.challenges`): a login attempt's
   from `POST /login/passkey`, bound to the login form's token and refused (403) unless
   that token matches its cookie; a registration's from `POST /account/passkeys/options`,
   bound to the session. The options are JSON; login options name no credentials
   (passkeys.py rule 2), so they say nothing about any account.
3. Adding (`POST /account/passkeys`) and removing (`POST /account/passkeys/remove`) a
   passkey take the passphrase (accounts.py rule 8), on a worker thread. A wrong one is
   `LOGIN_REFUSED`, counted by the login throttle; anything else refused says why on the
   account page. Every POST goes through web.py's `logged_in` (CSRF, rule 4 there).
4. Logs carry fixed events only: never an email, passkey name or credential id.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from importlib import resources

from aiohttp import web

from proxy import logs
from proxy.portal.account import account_page, email_of
from proxy.portal.challenges import for_login, for_session
from proxy.portal.passkeys import authentication_options
from proxy.portal.refusals import LOGIN_REFUSED, EnrollProblem, LoginRefused
from proxy.portal.sessions import Session, tokens_match
from proxy.portal.web import (
    ACCOUNTS,
    CHALLENGES,
    LOGIN_COOKIE,
    address_of,
    field,
    logged_in,
)

SCRIPT_PATH = "/static/passkey.js"
NEEDS_SCRIPT = "adding a passkey needs JavaScript in this browser: nothing was added"
_SCRIPT = web.AppKey("passkey_script", bytes)
_log = logs.get_logger("portal")


def routes(app: web.Application) -> None:
    """Add the passkey endpoints and the script to the portal `app`."""
    app[_SCRIPT] = (resources.files("proxy.portal") / "static" / "passkey.js").read_bytes()
    app.router.add_get(SCRIPT_PATH, _script)
    app.router.add_post("/login/passkey", _login_options)
    app.router.add_post("/account/passkeys/options", logged_in(_registration_options))
    app.router.add_post("/account/passkeys", logged_in(_add))
    app.router.add_post("/account/passkeys/remove", logged_in(_remove))


async def _script(request: web.Request) -> web.StreamResponse:
    return web.Response(body=request.app[_SCRIPT], content_type="text/javascript",
                        charset="utf-8")  # fmt: skip


def _json(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json", charset="utf-8")


async def _login_options(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = field(form, "login_token")
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), token):
        raise web.HTTPForbidden(text="forbidden: reload the login page")  # rule 2
    challenge = request.app[CHALLENGES].issue(for_login(token))
    return _json(authentication_options(request.app[ACCOUNTS].party, challenge=challenge))


async def _registration_options(request: web.Request, session: Session) -> web.StreamResponse:
    challenge = request.app[CHALLENGES].issue(for_session(session.csrf))
    options = await asyncio.to_thread(
        request.app[ACCOUNTS].passkey_options, session.unlocked.contact, challenge
    )
    return _json(options)


async def _add(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    challenge = request.app[CHALLENGES].take(for_session(session.csrf))  # used, whatever next
    response = field(form, "credential")
    if not response:
        return account_page(request, session, HTTPStatus.BAD_REQUEST, passkey_note=NEEDS_SCRIPT)
    try:
        added = await asyncio.to_thread(
            request.app[ACCOUNTS].add_passkey, email_of(request, session),
            field(form, "passphrase"), name=field(form, "name"), response=response,
            challenge=challenge, client_address=address_of(request),
        )  # fmt: skip
    except LoginRefused:
        _log.info("portal passkey add refused")
        return account_page(request, session, HTTPStatus.UNAUTHORIZED, passkey_note=LOGIN_REFUSED)
    except EnrollProblem as problem:
        _log.info("portal passkey add refused")
        return account_page(request, session, HTTPStatus.BAD_REQUEST, passkey_note=str(problem))
    _log.info("portal passkey added")
    return account_page(request, session, passkey_note=f"Your passkey “{added.name}” is added: "
                        "you can log in with it instead of a code.")  # fmt: skip


async def _remove(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    try:
        gone = await asyncio.to_thread(
            request.app[ACCOUNTS].remove_passkey, email_of(request, session),
            field(form, "passphrase"), credential_id=field(form, "credential_id"),
            client_address=address_of(request),
        )  # fmt: skip
    except LoginRefused:
        _log.info("portal passkey remove refused")
        return account_page(request, session, HTTPStatus.UNAUTHORIZED, passkey_note=LOGIN_REFUSED)
    except EnrollProblem as problem:
        return account_page(request, session, HTTPStatus.BAD_REQUEST, passkey_note=str(problem))
    _log.info("portal passkey removed")
    return account_page(request, session, passkey_note=f"Your passkey “{gone.name}” is removed.")
