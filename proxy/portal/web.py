"""The portal's pages (aiohttp, server-rendered with jinja2): log in, held items, one item.

Rules this module keeps:
1. Every response carries the security headers (`HEADERS`: CSP with no inline script,
   no referrer, nosniff) and `Cache-Control: no-store`, whatever its status. A response
   that sets a CSP of its own keeps it: only media.py does, a stricter one (sandbox).
2. Pages render from templates shipped in the package with autoescape on: held content
   is text to jinja2, never markup. No page needs JavaScript. The login and account pages
   load one same-origin script, /static/passkey.js (passkey_pages.py), which only adds
   passkeys to forms that work without it; no page has inline script. Every link, form
   action, script and redirect is built with `url` (in templates, the global `url('/x')`;
   a script reads the prefix from `<body data-base>`), never written as a bare path. The
   favicon is `data:,`, so a browser asks for nothing outside the portal's prefix.
3. Login runs `Accounts.login` on a worker thread (argon2id and scrypt must not stall the
   loop), with the TOTP code or, if the form carries one, a passkey's answer to the
   challenge issued for this login form's token (taken: single use). Every failure,
   whatever failed, is the same page with the same status (`REFUSED`). Success opens a
   fresh session (sessions.py); the cookie is HttpOnly, SameSite=Strict, and Secure
   unless the portal serves plain HTTP on loopback to an http:// public_url: behind a
   reverse proxy, public_url's scheme decides (https: Secure), never a request header.
   The throttle counts against the client's address (`address_of`): the peer's, or,
   from a trusted proxy, the one it forwarded (forwarded.py).
4. Every POST carries a CSRF token (the session's, or the login form's one-off token
   checked against its cookie); without a matching one it gets 403 and does nothing.
5. Held content is shown only through `proxy.access.viewing`, which records custody first
   (for exactly the rows of the page shown); if that fails the page says why and shows
   nothing of the items (`NOT_SHOWN`). The list's filters are checked first
   (`proxy.portal.filters`): a bad one is the list page with the reason, and no look.
   The list reads through the session's index (viewing.py rule 4): after the first, a
   page decrypts only the entries added since.
6. The login page says nothing about held items, and the logs carry no item data: only
   fixed events, never an email, sequence number, subject or address.
7. The portal process dumps no core: a contact's unwrapped identity is in its memory
   (serving.py runs the process).
8. The item page offers a contact (never a lawyer) the release of a passive hold, or says
   why that item cannot be released (release.py); a lawyer's page never mentions it.
   Likewise the relay of an item whose seal carries a court order mark (relay.py): a
   contact gets the summary form, or why no channel can carry it; a lawyer's page, or an
   item with no order, never mentions it. Under it, the same way, the reply to him
   (reply.py): the form, or why no reply can go where the item came from.
9. The portal serves under public_url's path (`base_path`, e.g. /portal), which a reverse
   proxy passes on unchanged: the pages are a sub-application mounted there, so their
   routes stay as written; the bare prefix is sent on to `prefix/`, anything else
   outside it is 404. Cookies' Path is the prefix (or its /login, /enroll).
10. Every logged-in page but logout first checks that the archive continues the checkpoint
    this contact saw last (`witness`, seen.py), on a worker thread. If it does not, the
    page is the warning (`not_continued.html`, status `NOT_CONTINUED`): what they saw last,
    that the archive may have been rolled back or tampered with, what to do; nothing held
    is shown. An archive that does not verify at all is left to the page, which says so
    (rule 5). The checked report is kept on the request (`WITNESSED`) for the custody
    page, which shows the signed checkpoint for the contact to take away.
"""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from proxy import logs
from proxy.access.keys import IdentityProblem
from proxy.access.reading import AccessProblem
from proxy.access.viewing import held_list, held_view
from proxy.archive import VerifyFailure, VerifyReport
from proxy.archive.following import follower
from proxy.config import Config
from proxy.custody import CustodyProblem
from proxy.deliver.address import parse_listen
from proxy.portal.accounts import Accounts
from proxy.portal.challenges import Challenges, for_login
from proxy.portal.filters import PAGE_SIZE, FilterProblem, ListQuery, parse_query
from proxy.portal.forwarded import Network, client_address
from proxy.portal.passkeys import Assertion
from proxy.portal.refusals import LOGIN_REFUSED, LoginRefused, PortalProblem
from proxy.portal.seen import NotContinued, SeenCheckpoints
from proxy.portal.sessions import Session, Sessions, new_token, tokens_match
from proxy.portal.store import Store

CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")  # fmt: skip
HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
SESSION_COOKIE, LOGIN_COOKIE = "nc_session", "nc_login"
REFUSED = HTTPStatus.UNAUTHORIZED
NOT_SHOWN = HTTPStatus.SERVICE_UNAVAILABLE
NOT_CONTINUED = HTTPStatus.CONFLICT
_log = logs.get_logger("portal")
ACCOUNTS = web.AppKey("accounts", Accounts)
SESSIONS = web.AppKey("sessions", Sessions)
CHALLENGES = web.AppKey("challenges", Challenges)
_PAGES = web.AppKey("pages", jinja2.Environment)
CONFIG = web.AppKey("config", Config)
_SECURE = web.AppKey("secure", bool)
BASE = web.AppKey("base", str)
_PROXIES = web.AppKey("proxies", tuple)
SEEN = web.AppKey("seen", SeenCheckpoints)
WITNESSED = web.RequestKey("witnessed", VerifyReport)  # the request's checked report (rule 10)
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


def _now() -> datetime:
    return datetime.now(UTC)


def portal_app(
    config: Config, *, accounts: Accounts | None = None, clock: Callable[[], datetime] = _now
) -> web.Application:
    """The portal's aiohttp application for `config` (which must have a portal section),
    serving under public_url's path (rule 9)."""
    accounts = accounts if accounts is not None else Accounts(config)
    settings = accounts.settings
    app = web.Application(client_max_size=64 * 1024)
    app[CONFIG] = config
    app[BASE] = base = base_path(config)
    app[_PROXIES] = tuple(ipaddress.ip_network(net) for net in settings.trusted_proxies)
    app[ACCOUNTS] = accounts
    app[SESSIONS] = Sessions(idle=timedelta(minutes=settings.session_idle_minutes),
                              lifetime=timedelta(hours=settings.session_max_hours),
                              clock=clock)  # fmt: skip
    app[CHALLENGES] = Challenges(clock=clock)
    pages = jinja2.Environment(
        loader=jinja2.PackageLoader("proxy.portal", "templates"), autoescape=True
    )
    pages.globals.update(base=base, url=lambda path: base + path)  # rule 9
    app[_PAGES] = pages
    app[_SECURE] = cookies_secure(config)
    app[SEEN] = SeenCheckpoints(Store(settings.state_dir))
    app.on_response_prepare.append(_headers)
    app.router.add_get("/", _home)
    app.router.add_get("/login", _login_page)
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", logged_in(_logout, witness=False))
    app.router.add_get("/items", logged_in(_items))
    app.router.add_get("/items/{sequence:[0-9]{1,12}}", logged_in(_item))
    # Further pages' modules add their own routes here (they import this module's helpers).
    from proxy.portal import (  # noqa: PLC0415 - they import this module
        account,
        alert_pages,
        enrollment,
        evidence,
        media,
        passkey_pages,
        relay,
        release,
        reply,
    )

    account.routes(app)
    alert_pages.routes(app)
    enrollment.routes(app)
    evidence.routes(app)
    passkey_pages.routes(app)
    release.routes(app)
    relay.routes(app)
    reply.routes(app)
    media.routes(app)
    return app if not base else _mounted(app, base)


def _mounted(portal: web.Application, base: str) -> web.Application:
    """An app serving `portal` under `base` (rule 9): `base` alone is sent on to `base/`,
    anything else outside it is 404, with the same headers."""
    outer = web.Application(client_max_size=64 * 1024)
    outer.on_response_prepare.append(_headers)

    async def to_base(_: web.Request) -> web.StreamResponse:
        return see_other(base + "/")

    outer.router.add_get(base, to_base)
    outer.add_subapp(base, portal)
    return outer


def base_path(config: Config) -> str:
    """The path the portal serves under: public_url's, without the final '/' ("" for none)."""
    settings = config.portal
    return urllib.parse.urlsplit(settings.public_url).path.rstrip("/") if settings else ""


def url(request: web.Request, path: str) -> str:
    """The portal's own `path` (from its root, "/items") as the browser must ask for it."""
    return request.app[BASE] + path


def cookie_path(request: web.Request, path: str = "") -> str:
    """A cookie's Path for the portal's `path` ("" for all of the portal)."""
    return url(request, path) or "/"


def address_of(request: web.Request) -> str:
    """The client's address, read through the trusted proxies (forwarded.py)."""
    proxies: tuple[Network, ...] = request.app[_PROXIES]
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", []),
                          proxies)  # fmt: skip


def cookies_secure(config: Config) -> bool:
    """Secure cookies unless plain HTTP on loopback to an http:// public_url (rule 3)."""
    settings = config.portal
    if settings is None or settings.tls_cert_file is not None:
        return True
    host, _ = parse_listen(settings.listen)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    return not (loopback and str(settings.public_url).startswith("http://"))


async def _headers(_: web.Request, response: web.StreamResponse) -> None:
    own_csp = response.headers.get("Content-Security-Policy")  # media.py's, stricter
    response.headers.update(HEADERS)  # rule 1
    if own_csp is not None:
        response.headers["Content-Security-Policy"] = own_csp


def page(request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
    text = request.app[_PAGES].get_template(name).render(**values)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def see_other(location: str) -> web.Response:
    return web.Response(status=HTTPStatus.SEE_OTHER, headers={"Location": location})


def to_login(request: web.Request) -> web.Response:
    return see_other(url(request, "/login"))


async def _home(request: web.Request) -> web.StreamResponse:
    found = request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
    return see_other(url(request, "/items" if found is not None else "/login"))


def _login_form(request: web.Request, status: int = 200, refused: str = "") -> web.Response:
    token = new_token()
    response = page(request, "login.html", status, login_token=token, refused=refused)
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                        secure=request.app[_SECURE],
                        path=cookie_path(request, "/login"))  # fmt: skip
    return response


async def _login_page(request: web.Request) -> web.StreamResponse:
    return _login_form(request)


async def _login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), field(form, "login_token")):
        raise web.HTTPForbidden(text="forbidden: reload the login page")  # rule 4
    accounts, sessions = request.app[ACCOUNTS], request.app[SESSIONS]
    sessions.close(request.cookies.get(SESSION_COOKIE))  # renewed at login: never reused
    answer = field(form, "passkey")
    passkey = None
    if answer:  # the challenge goes with the attempt, whatever happens (rule 3)
        challenge = request.app[CHALLENGES].take(for_login(field(form, "login_token")))
        passkey = Assertion(response=answer, challenge=challenge)
    try:
        unlocked = await asyncio.to_thread(
            accounts.login, field(form, "email"), field(form, "passphrase"),
            field(form, "code"), address_of(request), passkey=passkey,
        )  # fmt: skip
    except LoginRefused:
        _log.info("portal login refused")
        return _login_form(request, REFUSED, LOGIN_REFUSED)
    token, _ = sessions.open(unlocked)
    _log.info("portal login")
    response = see_other(url(request, "/items"))
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        secure=request.app[_SECURE], path=cookie_path(request))  # fmt: skip
    response.del_cookie(LOGIN_COOKIE, path=cookie_path(request, "/login"))
    return response


def field(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def logged_in(
    handler: Handler, *, witness: bool = True
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler`, given the request's live session; the login page without one, and 403
    for a POST whose CSRF token does not match the session's (rule 4); the warning if the
    archive does not continue what the contact saw last (rule 10) unless not `witness`."""

    async def checked(request: web.Request) -> web.StreamResponse:
        session = request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
        if request.method == "POST":
            form = await request.post()
            if session is None or not tokens_match(session.csrf, field(form, "csrf")):
                raise web.HTTPForbidden(text="forbidden: reload the page")
        if session is None:
            return to_login(request)
        if witness:
            refused = await _witness(request, session)
            if refused is not None:
                return refused
        return await handler(request, session)

    return checked


async def _witness(request: web.Request, session: Session) -> web.Response | None:
    """None if the archive continues what this contact saw last (or does not verify: the
    page says so); else the warning page (rule 10)."""
    contact = session.unlocked.contact
    try:
        report = await asyncio.to_thread(_witnessed, archive(request), request.app[SEEN], contact)
    except NotContinued as problem:
        _log.warning("portal archive does not continue a seen checkpoint")  # rule 6
        return page(request, "not_continued.html", NOT_CONTINUED, csrf=session.csrf,
                    seen=problem.seen, reason=str(problem), kind=problem.kind)  # fmt: skip
    except PortalProblem as problem:
        return not_shown(request, session, problem)
    if report is not None:
        request[WITNESSED] = report
    return None


def _witnessed(root: Path, seen: SeenCheckpoints, contact: str) -> VerifyReport | None:
    try:
        report = follower(root).refresh()
    except VerifyFailure:
        return None  # the page's own look refuses, saying why (rule 10)
    seen.witness(contact, report)
    return report


async def _logout(request: web.Request, _: Session) -> web.StreamResponse:
    request.app[SESSIONS].close(request.cookies.get(SESSION_COOKIE))
    _log.info("portal logout")
    response = to_login(request)
    response.del_cookie(SESSION_COOKIE, path=cookie_path(request))
    return response


def archive(request: web.Request) -> Path:
    return Path(request.app[CONFIG].archive.path)


async def _items(request: web.Request, session: Session) -> web.StreamResponse:
    people = {person.id for person in request.app[CONFIG].people}
    try:
        query = parse_query(request.query, people=people)  # before the archive is opened
    except FilterProblem as problem:
        return page(request, "items.html", HTTPStatus.BAD_REQUEST, csrf=session.csrf, rows=(),
                    query=ListQuery(), filters=request.query, refused=str(problem))  # fmt: skip
    identity = session.unlocked.identity
    try:
        listing = await asyncio.to_thread(
            held_list, archive(request), identity, query.selection,
            skip=query.skip, limit=PAGE_SIZE, index=session.index,
        )  # fmt: skip
    except (AccessProblem, CustodyProblem, IdentityProblem) as problem:
        return not_shown(request, session, problem)
    pages = max(1, -(-listing.selected // PAGE_SIZE))
    return page(request, "items.html", csrf=session.csrf, rows=listing.rows, query=query,
                filters=request.query, unreadable=listing.unreadable, selected=listing.selected,
                pages=pages, zone=query.zone)  # fmt: skip


async def _item(request: web.Request, session: Session) -> web.StreamResponse:
    sequence = int(request.match_info["sequence"])
    identity = session.unlocked.identity
    try:
        view = await asyncio.to_thread(held_view, archive(request), identity, sequence)
    except (AccessProblem, CustodyProblem, IdentityProblem) as problem:
        return not_shown(request, session, problem)
    from proxy.portal.evidence import part_name  # noqa: PLC0415 - it imports this module
    from proxy.portal.media import kind  # noqa: PLC0415 - it imports this module
    from proxy.portal.relay import form_values  # noqa: PLC0415 - it imports this module
    from proxy.portal.relay import offer as relay  # noqa: PLC0415 - it imports this module
    from proxy.portal.release import offer  # noqa: PLC0415 - it imports this module
    from proxy.portal.reply import form_values as reply_values  # noqa: PLC0415 - it imports this
    from proxy.portal.reply import offer as reply  # noqa: PLC0415 - it imports this module

    shown = [(part_name(part.name, n, part.content_type), part, kind(part))
             for n, part in enumerate(view.parts, 1)]  # fmt: skip
    return page(request, "item.html", csrf=session.csrf, sequence=sequence, text=view.text,
                parts=shown, release=offer(request, session, view.metadata, view.payload),
                relay=relay(request, session, view.metadata),
                reply=reply(request, session, view.metadata), **form_values(),
                **reply_values())  # fmt: skip


def not_shown(request: web.Request, session: Session, problem: Exception) -> web.Response:
    _log.warning("portal showed nothing", error=type(problem).__name__)  # rule 6: no message
    return page(request, "problem.html", NOT_SHOWN, csrf=session.csrf, problem=str(problem))
