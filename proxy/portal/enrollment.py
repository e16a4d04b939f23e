"""The enrollment pages: a one-time invitation link becomes a portal account.

Rules this module keeps:
1. A link that is unknown, used or expired gets one page with one status (`LINK_REFUSED`),
   whatever the reason and whichever method: it says nothing else (refusals rule 2).
2. The form shows the TOTP setup once per link visit: the QR code as inline <svg> (nothing
   fetched, no image file) and the base32 secret as text. The secret is the contact's own,
   being set up, so it travels in a hidden field; a refused attempt re-shows the same
   secret, so the entry already in their authenticator app stays valid.
3. Every POST carries the form's one-off CSRF token, checked against its cookie (as the
   login form's); without a match it gets 403 and nothing is tried.
4. `Accounts.begin` and `Accounts.enroll` run on worker threads (scrypt and argon2id must
   not stall the loop). An `EnrollProblem` re-shows the form with its reason.
5. Success shows the recovery codes once (no-store is global) and a link to /login.
6. The logs carry fixed event names only: never a token, name, email, code or secret.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from aiohttp import web

from proxy import logs
from proxy.portal import totp
from proxy.portal.accounts import TotpSetup
from proxy.portal.refusals import INVITE_REFUSED, EnrollProblem, InviteRefused, PortalProblem
from proxy.portal.sessions import new_token, tokens_match
from proxy.portal.web import ACCOUNTS, CONFIG, cookie_path, cookies_secure, field, page

ENROLL_COOKIE = "nc_enroll"
LINK_REFUSED = HTTPStatus.NOT_FOUND
NOT_ENROLLED = HTTPStatus.INTERNAL_SERVER_ERROR
PROBLEM = HTTPStatus.UNPROCESSABLE_ENTITY
MAX_IDENTITY_BYTES = 4 * 1024  # a keygen file is about 200 bytes
MISMATCH = "the two passphrases differ: type the same passphrase twice"
_log = logs.get_logger("portal")


def routes(app: web.Application) -> None:
    """Add the enrollment pages to the portal's `app`."""
    app.router.add_get("/enroll/{token}", _enroll_page)
    app.router.add_post("/enroll/{token}", _enroll)


async def _enroll_page(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    accounts = request.app[ACCOUNTS]
    try:
        name = await asyncio.to_thread(accounts.begin, token)
    except InviteRefused:
        return _refused(request)
    _log.info("portal enroll form")
    return _form(request, await asyncio.to_thread(accounts.totp_setup, name))


async def _enroll(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not tokens_match(request.cookies.get(ENROLL_COOKIE), field(form, "enroll_token")):
        raise web.HTTPForbidden(text="forbidden: open the link again")  # rule 3
    token, accounts = request.match_info["token"], request.app[ACCOUNTS]
    try:
        name = await asyncio.to_thread(accounts.begin, token)
    except InviteRefused:
        return _refused(request)
    secret = field(form, "secret")
    setup = _same_setup(request, name, secret)
    if setup is None:  # not a secret the portal made: enroll refuses it; show a fresh one
        setup = await asyncio.to_thread(accounts.totp_setup, name)
    passphrase = field(form, "passphrase")
    if passphrase != field(form, "passphrase_again"):
        _log.info("portal enroll problem")
        return _form(request, setup, MISMATCH)
    try:
        upload = await _upload(form.get("identity"))
        enrolled = await asyncio.to_thread(
            accounts.enroll, token, passphrase, field(form, "code"), secret,
            identity_file=upload,
        )  # fmt: skip
    except InviteRefused:
        return _refused(request)
    except EnrollProblem as problem:
        _log.info("portal enroll problem")
        return _form(request, setup, str(problem))
    except PortalProblem as problem:  # the server's own trouble (a key file not writable)
        _log.error("portal enroll failed")
        return page(request, "enroll_failed.html", NOT_ENROLLED, problem=str(problem))
    _log.info("portal enrolled")
    response = page(request, "enrolled.html", codes=enrolled.recovery_codes)
    response.del_cookie(ENROLL_COOKIE, path=cookie_path(request, "/enroll"))
    return response


def _refused(request: web.Request) -> web.Response:
    _log.info("portal enroll refused")
    return page(request, "link_refused.html", LINK_REFUSED, refused=INVITE_REFUSED)  # rule 1


def _form(request: web.Request, setup: TotpSetup, problem: str = "") -> web.Response:
    csrf = new_token()
    status = PROBLEM if problem else HTTPStatus.OK
    response = page(request, "enroll.html", status, enroll_token=csrf, secret=setup.secret,
                    qr_svg=setup.qr_svg, problem=problem)  # fmt: skip
    response.set_cookie(ENROLL_COOKIE, csrf, httponly=True, samesite="Strict",
                        secure=cookies_secure(request.app[CONFIG]),
                        path=cookie_path(request, "/enroll"))  # fmt: skip
    return response


def _same_setup(request: web.Request, name: str, secret: str) -> TotpSetup | None:
    """The setup for the secret the form came with (rule 2), if the portal could have made it."""
    if not totp.well_formed(secret):
        return None
    wanted = name.casefold()
    contact = next(c for c in request.app[CONFIG].contacts if c.name.casefold() == wanted)
    uri = totp.provisioning_uri(secret, contact.email or contact.name)
    return TotpSetup(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri))


async def _upload(value: Any) -> bytes | None:
    """The uploaded identity file's bytes, or None when no file was chosen."""
    if not isinstance(value, web.FileField):
        return None
    data = await asyncio.to_thread(value.file.read, MAX_IDENTITY_BYTES + 1)
    if not data:
        return None
    if len(data) > MAX_IDENTITY_BYTES:
        raise EnrollProblem(
            "that file is too large to be an identity from `nocontact contact keygen`"
        )
    return bytes(data)
