"""The portal's custody log and account pages: `/custody` and `/account`.

The account page also lists the contact's passkeys; adding and removing them is
passkey_pages.py's, which renders this page (`account_page`).

Rules this module keeps:
1. Custody first, here too: the custody log is held content (it names items and who
   looked), so viewing it records a "custody" entry before anything is read; if that
   cannot be recorded, nothing is shown (web.py's `not_shown`). The page also shows the
   archive's latest signed checkpoint, as web.py checked it for this request (its rule
   10), for the contact to keep off the server; it is not held content.
2. Every POST goes through web.py's `logged_in`, which refuses it (403, nothing done)
   without the session's CSRF token.
3. A passphrase change is a full login with the current passphrase and a code
   (`Accounts.change_passphrase`), on a worker thread; so is a TOTP reset with a recovery
   code. Every refusal of the old credentials is the same line (`LOGIN_REFUSED`), as at
   login. After a passphrase change the contact's other sessions end: whoever else held
   one held it with the old passphrase.
4. A TOTP reset's new secret is made by the portal and kept in the session's memory only
   (`Session.new_totp_secret`), shown once as a QR code and as text; a form cannot choose
   it. It is dropped once used, and with the session.
5. Logs carry fixed events only: never an email, code, secret or item number.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from aiohttp import web

from proxy import logs
from proxy.access.keys import IdentityProblem
from proxy.access.reading import AccessProblem
from proxy.access.viewing import custody_log
from proxy.archive import custody_keys
from proxy.custody import CustodyProblem
from proxy.portal import totp
from proxy.portal.refusals import LOGIN_REFUSED, EnrollProblem, LoginRefused
from proxy.portal.sessions import Session
from proxy.portal.web import (
    ACCOUNTS,
    CONFIG,
    SESSION_COOKIE,
    SESSIONS,
    WITNESSED,
    address_of,
    archive,
    field,
    logged_in,
    not_shown,
    page,
)

ACTIONS = tuple(sorted(custody_keys.ACTIONS))
_log = logs.get_logger("portal")


def routes(app: web.Application) -> None:
    """Add the custody log and account pages to the portal `app`."""
    app.router.add_get("/custody", logged_in(_custody))
    app.router.add_get("/account", logged_in(_account))
    app.router.add_post("/account/passphrase", logged_in(_change_passphrase))
    app.router.add_post("/account/totp", logged_in(_reset_totp))
    app.router.add_post("/account/sessions", logged_in(_end_other_sessions))


# The custody log (rule 1)


async def _custody(request: web.Request, session: Session) -> web.StreamResponse:
    action = request.query.get("action", "").strip()
    witnessed = request.get(WITNESSED)
    checkpoint = witnessed.note.decode("utf-8", "replace") if witnessed is not None else ""
    if action and action not in ACTIONS:
        refused = f"action: {action[:40]!r} is not one of {', '.join(ACTIONS)}"
        return page(request, "custody.html", HTTPStatus.BAD_REQUEST, csrf=session.csrf,
                    entries=(), actions=ACTIONS, action="", refused=refused,
                    checkpoint=checkpoint)  # fmt: skip
    identity = session.unlocked.identity
    root = archive(request)

    try:
        entries = await asyncio.to_thread(custody_log, root, identity, index=session.index)
    except (AccessProblem, CustodyProblem, IdentityProblem) as problem:
        return not_shown(request, session, problem)
    shown = [e for e in entries if not action or e.action == action]
    return page(request, "custody.html", csrf=session.csrf, entries=shown, actions=ACTIONS,
                action=action, refused="", checkpoint=checkpoint)  # fmt: skip


# The account (rules 3 and 4)


def email_of(request: web.Request, session: Session) -> str:
    name = session.unlocked.contact
    contact = next(c for c in request.app[CONFIG].contacts if c.name == name)
    return contact.email or ""


def account_page(
    request: web.Request, session: Session, status: int = HTTPStatus.OK, **said: str
) -> web.Response:
    """The account page; a TOTP reset shows a new secret, made here once per session."""
    if not session.new_totp_secret:
        session.new_totp_secret = totp.new_secret()
    uri = totp.provisioning_uri(session.new_totp_secret, email_of(request, session))
    others = request.app[SESSIONS].count_of(session.unlocked.contact) - 1
    keys = request.app[ACCOUNTS].passkeys_of(session.unlocked.contact)
    return page(request, "account.html", status, csrf=session.csrf, qr_svg=totp.qr_svg(uri),
                totp_secret=session.new_totp_secret, others=others, passkeys=keys,
                **said)  # fmt: skip


async def _account(request: web.Request, session: Session) -> web.StreamResponse:
    return account_page(request, session)


async def _change_passphrase(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    new, again = field(form, "new_passphrase"), field(form, "new_passphrase_again")
    if new != again:
        differ = "the two new passphrases differ: nothing changed"
        return account_page(request, session, HTTPStatus.BAD_REQUEST, change_note=differ)
    try:
        await asyncio.to_thread(
            request.app[ACCOUNTS].change_passphrase, email_of(request, session),
            field(form, "passphrase"), field(form, "code"), new_passphrase=new,
            client_address=address_of(request),
        )  # fmt: skip
    except LoginRefused:
        _log.info("portal passphrase change refused")
        return account_page(request, session, HTTPStatus.UNAUTHORIZED,
                             change_note=LOGIN_REFUSED)  # fmt: skip
    except EnrollProblem as problem:  # not strong enough: says what to fix
        return account_page(request, session, HTTPStatus.BAD_REQUEST,
                             change_note=str(problem))  # fmt: skip
    request.app[SESSIONS].close_others(request.cookies.get(SESSION_COOKIE))  # rule 3
    _log.info("portal passphrase changed")
    return account_page(request, session, change_note="Your passphrase is changed; "
                         "your other sessions have ended.")  # fmt: skip


async def _reset_totp(request: web.Request, session: Session) -> web.StreamResponse:
    form = await request.post()
    secret = session.new_totp_secret
    if not secret:
        return account_page(request, session, HTTPStatus.BAD_REQUEST,
                             totp_note="reload the page and scan the new code first")  # fmt: skip
    try:
        left = await asyncio.to_thread(
            request.app[ACCOUNTS].reset_totp, email_of(request, session),
            field(form, "passphrase"), recovery_code=field(form, "recovery_code"),
            new_secret=secret, new_code=field(form, "new_code"),
            client_address=address_of(request),
        )  # fmt: skip
    except LoginRefused:
        _log.info("portal authenticator reset refused")
        return account_page(request, session, HTTPStatus.UNAUTHORIZED, totp_note=LOGIN_REFUSED)
    except EnrollProblem as problem:
        return account_page(request, session, HTTPStatus.BAD_REQUEST, totp_note=str(problem))
    session.new_totp_secret = ""  # rule 4: used
    _log.info("portal authenticator reset")
    return account_page(request, session, totp_note=f"Your new authenticator is set up. "
                         f"{left} recovery codes are left.")  # fmt: skip


async def _end_other_sessions(request: web.Request, session: Session) -> web.StreamResponse:
    ended = request.app[SESSIONS].close_others(request.cookies.get(SESSION_COOKIE))
    _log.info("portal other sessions ended")
    return account_page(request, session, sessions_note=f"{ended} other sessions ended.")
