"""What the portal tests share: an enrolled contact, an archive held for them, the app on
loopback, requests with cookies kept by hand, a software passkey, and a headless Chromium
that records every request it makes.

Rules this module keeps:
1. One copy of each helper: the portal test modules import from here, never from each
   other.
2. A module builds its enrollment and archive once (`held_template`: scrypt takes seconds)
   and each test works on a copy (`copy_portal`) with a clock of its own.
3. Chromium is Debian's (`chromium`, `chromedriver`); without it a browser test is skipped
   with the reason. The browser records its network log, so a test can ask what it fetched.
   Asked for `passkeys`, it carries a virtual authenticator; the app is then served on a
   known port (`free_port`) and reached as localhost, since no browser takes an IP address
   as a WebAuthn relying party.
4. Screenshots are taken only when NOCONTACT_SCREENSHOTS names a folder (for the README),
   so an ordinary run writes nothing into the tree.
5. A portal served under a path prefix (`PREFIXED_CONFIG`, its public_url's path) is
   asked with the same paths as any other: `send` puts `Portal.base` in front, so the
   same helpers drive both.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import queue
import re
import shutil
import socket
import struct
import threading
import wave
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import argon2
import cbor2
import pyotp
import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import bytes_to_base64url

from proxy.access.reading import open_archive
from proxy.alerts.order_mark import OrderMark
from proxy.alerts.tiers import Assessment
from proxy.archive import Archive, layout
from proxy.archive.custody_keys import keys_file_bytes
from proxy.archive.seal import fingerprint
from proxy.channels.sms.capture import ArrivalKind, capture
from proxy.channels.sms.provider import Media
from proxy.config import Config, load_config
from proxy.message import Action, Channel, Decision, InboundMessage, Kind
from proxy.normalize import normalize_email, normalize_sms
from proxy.portal import web as portal_web
from proxy.portal import wrapping
from proxy.portal.accounts import Accounts, Enrolled
from proxy.portal.keyfiles import custody_key_file
from proxy.portal.passkeys import RelyingParty
from proxy.rules import decide
from tests.factories import RECEIVED_AT, make_rules

DANA = "age1v2pf68wd4y0u803wvxxs9uunz2fvcu4ep6jmk7glm32ss8f0tsuskzl33j"
SAM = "age1rasje64ckl6y67qzfthzuu04j432c66mq0nzggxzeem9c8f0dslqpggts7"
EMAIL = "priya.raman@fastmail.example"
STRONG = "lantern orchard vivid tugboat"
NEW_STRONG = "marble cactus drizzle falcon"
MARKS_PHONE = "+15550100199"  # tests.factories.MARK's "(555) 010-0199"
ADDRESS = "203.0.113.7"  # the client address a login comes from
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

CONFIG = f"""\
archive:
  path: ./archive
contacts:
  - name: Dana Whitfield
    role: lawyer
    age_recipient: {DANA}
  - name: Priya Raman
    role: contact
    email: {EMAIL}
    portal: true
    age_recipient_file: keys/priya.pub
  - name: Sam Ortiz
    role: contact
    email: sam@example.org
    age_recipient: {SAM}
people:
  - id: mark
    name: Mark Smith
portal:
  public_url: https://home.example/portal/
  state_dir: ./portal
"""
HTTP_CONFIG = CONFIG.replace("https://home.example/portal/", "http://127.0.0.1:8089/")
PREFIXED_CONFIG = CONFIG.replace("https://home.example/portal/", "http://127.0.0.1:8089/portal")

CANARY = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: <script>alert(1)"
    b"</script>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>see <img src=x onerror="
    b"alert(2)> and <img src='http://127.0.0.1:9/canary.png'> <script>alert(3)</script></p>\r\n"
)
PLAIN = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: please\r\n\r\n"
    b"I just want to talk.\r\n"
)
Reply = tuple[int, dict[str, str], str, SimpleCookie]
Raw = tuple[int, dict[str, str], bytes, SimpleCookie]
Client = TestClient[web.Request, web.Application]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def write_config(directory: Path, text: str = CONFIG) -> Path:
    path = directory / "config.yaml"
    path.write_text(text)
    return path


def code(secret: str, clock: Clock, steps: int = 0) -> str:
    """The TOTP code an authenticator app shows at the clock's time (plus `steps`)."""
    return pyotp.TOTP(secret).at(clock.now + timedelta(seconds=30 * steps))


@dataclass
class Enrollment:
    """An enrolled portal contact in its own directory."""

    directory: Path
    config: Config
    accounts: Accounts
    clock: Clock
    secret: str
    enrolled: Enrolled


def enroll(directory: Path) -> Enrollment:
    """Invite and enroll Priya (passphrase STRONG) in a new `directory`."""
    directory.mkdir()
    config = load_config(write_config(directory))
    clock = Clock()
    accounts = Accounts(config, clock=clock, hasher=FAST)
    token = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    setup = accounts.totp_setup(accounts.begin(token))
    enrolled = accounts.enroll(token, STRONG, code(setup.secret, clock), setup.secret)
    clock.advance(seconds=30)  # the enrollment code's step is used
    return Enrollment(directory, config, accounts, clock, setup.secret, enrolled)


def copy_enrollment(template: Enrollment, tmp_path: Path, source: Path | None = None) -> Enrollment:
    """A fresh copy of `template`'s state (or of `source`, a copy of it kept untouched),
    with its own clock (rule 2)."""
    directory = tmp_path / "copy"
    shutil.copytree(source or template.directory, directory)
    config = load_config(directory / "config.yaml")
    clock = Clock()
    clock.now = template.clock.now
    accounts = Accounts(config, clock=clock, hasher=FAST)
    return Enrollment(directory, config, accounts, clock, template.secret, template.enrolled)


def from_mark(
    raw: bytes, received_at: datetime = RECEIVED_AT, *, sender: str = "mark.smith@gmail.com",
    recipients: tuple[str, ...] = (),
) -> InboundMessage:  # fmt: skip
    """An email (from Mark, a blocked sender, unless `sender` says otherwise; to the
    envelope `recipients`), as the SMTP channel would normalize it."""
    return normalize_email(raw, envelope_sender=sender, recipients=recipients,
                           received_at=received_at)  # fmt: skip


def picture(width: int = 40, height: int = 30) -> bytes:
    """A small PNG picture (as an MMS would carry)."""
    from PIL import Image  # noqa: PLC0415 - only the media tests need it

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 40)).save(out, format="PNG")
    return out.getvalue()


def recording(seconds: float = 0.5) -> bytes:
    """A short silent WAV recording (as a voicemail would be)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\0\0" * int(8000 * seconds))
    return out.getvalue()


def from_marks_phone(
    text: str, media: Sequence[tuple[str, bytes]] = (), received_at: datetime = RECEIVED_AT,
    *, kind: ArrivalKind = ArrivalKind.TEXT,
) -> InboundMessage:  # fmt: skip
    """A text (MMS with `media`: (content type, bytes) pairs) or a voicemail from Mark's
    phone, captured as the SMS channel seals it."""
    params = {"From": MARKS_PHONE, "To": "+15550100111", "Body": text}
    pieces = [Media(sid=f"ME{n:032d}", content_type=content_type, data=data)
              for n, (content_type, data) in enumerate(media, 1)]  # fmt: skip
    raw = capture(kind=kind, record=params, media=pieces)
    channel = Channel.VOICE if kind is ArrivalKind.VOICEMAIL else Channel.SMS
    return normalize_sms(sender=MARKS_PHONE, recipient="+15550100111", text=text, raw=raw,
                         received_at=received_at, default_region="US",
                         channel=channel)  # fmt: skip


@dataclass(frozen=True)
class Holding:
    """A message held as its channel holds it: with the channel's extras (the SMTP peer,
    the provider), and as `kind` whatever the test rules say, where a test needs an item
    the rules have since changed about."""

    message: InboundMessage
    extras: Mapping[str, object] | None = None
    kind: Kind | None = None
    order: OrderMark | None = None  # as a court order marks it (proxy/alerts/logistics.py)
    assessment: Assessment | None = None


def hold(
    directory: Path, recipient: str, messages: Sequence[InboundMessage | Holding]
) -> tuple[int, ...]:
    """Seal `messages` (each must be held by the test rules, unless given a `kind`) into
    `directory`/archive; their sequence numbers."""

    async def sealing() -> tuple[int, ...]:
        archive = await Archive.open(directory / "archive", recipients=[recipient])
        rules = make_rules()
        sequences = []
        for given in messages:
            holding = given if isinstance(given, Holding) else Holding(given)
            decision = decide(holding.message, rules)
            if holding.kind is not None:
                decision = Decision(action=Action.HOLD, kind=holding.kind,
                                    rule_id=decision.rule_id, reason=decision.reason)  # fmt: skip
            if holding.order is not None or holding.assessment is not None:
                assessment = holding.assessment or decision.assessment
                decision = dataclasses.replace(decision, order=holding.order,
                                               assessment=assessment)  # fmt: skip
            assert decision.held
            receipt = await archive.hold(holding.message, decision, extras=holding.extras)
            sequences.append(receipt.index)
        await archive.close()
        return tuple(sequences)

    return asyncio.run(sealing())


def publish_custody_key(directory: Path, config: Config, recipient: str) -> None:
    """Publish the enrolled contact's custody key beside the archive, as the daemon would."""
    contact = next(c for c in config.contacts if c.portal)
    key = custody_key_file(contact).read_text().strip()
    layout.replace_file(directory / "archive" / layout.CUSTODY_KEYS,
                        keys_file_bytes({fingerprint(recipient): key}))  # fmt: skip


@dataclass(frozen=True)
class Template:
    """An enrolled contact and an archive held for them, to be copied for each test."""

    directory: Path
    secret: str
    clock: Clock
    recovery_codes: tuple[str, ...]
    sequences: tuple[int, ...]  # of the held items, in the order given


def held_template(
    factory: pytest.TempPathFactory, name: str, messages: Sequence[InboundMessage | Holding]
) -> Template:
    """Enroll Priya, hold `messages` sealed to her, publish her custody key (rule 2)."""
    enrollment = enroll(factory.mktemp(name) / "state")
    recipient = enrollment.enrolled.recipient
    sequences = hold(enrollment.directory, recipient, messages)
    publish_custody_key(enrollment.directory, enrollment.config, recipient)
    return Template(enrollment.directory, enrollment.secret, enrollment.clock,
                    enrollment.enrolled.recovery_codes, sequences)  # fmt: skip


@dataclass
class Portal:
    """An enrolled contact, an archive holding items sealed to them, and a clock."""

    directory: Path
    config: Config
    clock: Clock
    secret: str
    cookies: dict[str, str] = field(default_factory=dict)
    base: str = ""  # the path prefix it serves under (rule 5)


def copy_portal(template: Template, tmp_path: Path, text: str = HTTP_CONFIG) -> Portal:
    """A fresh copy of a template's directory, with the config `text` (plain HTTP on
    loopback unless it says otherwise) and its own clock."""
    copy = tmp_path / "copy"
    shutil.copytree(template.directory, copy)
    (copy / "config.yaml").write_text(text)
    own = Clock()
    own.now = template.clock.now
    config = load_config(copy / "config.yaml")
    return Portal(copy, config, own, template.secret, base=portal_web.base_path(config))


def portal_app(portal: Portal) -> web.Application:
    """The portal's app for `portal`, on its clock, with a fast password hasher."""
    accounts = Accounts(portal.config, clock=portal.clock, hasher=FAST)
    return portal_web.portal_app(portal.config, accounts=accounts, clock=portal.clock)


def run(portal: Portal, body: Callable[[Client], Awaitable[None]]) -> None:
    """Run `body` against the portal app on a loopback port."""

    async def main() -> None:
        server = TestServer(portal_app(portal))
        async with TestClient(server, cookie_jar=DummyCookieJar()) as client:
            await body(client)

    asyncio.run(main())


async def send(
    portal: Portal, client: Client, method: str, path: str, data: Any = None, *,
    headers: Mapping[str, str] | None = None,
) -> Raw:  # fmt: skip
    """One request to the portal's `path` (under its prefix, rule 5; `data` a form dict or
    FormData, `headers` any more to send), sending and keeping cookies by hand (the jar
    would refuse 127.0.0.1); the body as bytes."""
    cookie = "; ".join(f"{k}={v}" for k, v in portal.cookies.items())
    sent = {**(headers or {}), **({"Cookie": cookie} if cookie else {})}
    async with client.request(
        method, portal.base + path, data=data, allow_redirects=False, headers=sent
    ) as response:
        body = await response.read()
        for name, morsel in response.cookies.items():
            if morsel.value:
                portal.cookies[name] = morsel.value
            else:
                portal.cookies.pop(name, None)
        return response.status, dict(response.headers), body, response.cookies


async def fetch(
    portal: Portal, client: Client, method: str, path: str, data: Any = None, *,
    headers: Mapping[str, str] | None = None,
) -> Reply:  # fmt: skip
    """`send`, with the body as text."""
    status, got, body, cookies = await send(portal, client, method, path, data, headers=headers)
    return status, got, body.decode("utf-8", "replace"), cookies


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', page)
    assert found is not None, page
    return found[1]


async def log_in(
    portal: Portal, client: Client, *, passphrase: str = STRONG, totp: str | None = None,
    email: str = EMAIL, headers: Mapping[str, str] | None = None,
) -> Reply:  # fmt: skip
    """Log in through the form (`headers` sent with both requests, as a proxy would)."""
    _, _, page, _ = await fetch(portal, client, "GET", "/login", headers=headers)
    totp = totp or code(portal.secret, portal.clock)
    form = {"login_token": hidden(page, "login_token"), "email": email,
            "passphrase": passphrase, "code": totp}  # fmt: skip
    return await fetch(portal, client, "POST", "/login", form, headers=headers)


def assert_headers(headers: dict[str, str]) -> None:
    assert headers["Content-Security-Policy"] == portal_web.CSP
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def identity(portal: Portal, passphrase: str = STRONG) -> Any:
    """The contact's identity, unwrapped from the portal's state (to read custody)."""
    (wrapped,) = (portal.directory / "portal" / "accounts").glob("*.age")
    found = wrapping.unwrap(wrapped.read_bytes(), passphrase)
    assert found is not None
    return found


def custody_actions(
    portal: Portal, key: Any | None = None
) -> list[tuple[str, tuple[int, ...], str]]:
    """(action, items, signature state) of every custody entry, oldest first."""
    entries = open_archive(portal.directory / "archive", key or identity(portal)).custody()
    return [(entry.action, tuple(entry.items), entry.signed) for entry in entries]


PARTY = RelyingParty(id="home.example", origin="https://home.example")  # CONFIG's public_url
HANDLE = bytes_to_base64url(b"u" * 32)
UP, UV, AT = 0x01, 0x04, 0x40  # authenticator data flags: user present, verified, attested


@dataclass
class SoftKey:
    """A software authenticator: one P-256 credential, its counter, what it answers (real
    keys, CBOR and signatures, as navigator.credentials would hand them to the script)."""

    credential: bytes = field(default_factory=lambda: bytes(range(16)))
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(
        ec.SECP256R1()))  # fmt: skip
    count: int = 0
    user_handle: str = HANDLE

    def cose(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})  # fmt: skip

    def create(
        self, challenge: bytes, *, party: RelyingParty = PARTY, origin: str | None = None
    ) -> str:
        """What navigator.credentials.create() answers, as the portal's script sends it."""
        client = _client_data("webauthn.create", challenge, origin or party.origin)
        attested = b"\0" * 16 + struct.pack(">H", len(self.credential)) + self.credential
        data = _rp_hash(party.id) + bytes([UP | UV | AT]) + struct.pack(">I", self.count)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {},
                                   "authData": data + attested + self.cose()})  # fmt: skip
        b64 = bytes_to_base64url
        return json.dumps({"id": b64(self.credential), "rawId": b64(self.credential),
                           "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": b64(client),
                                        "attestationObject": b64(attestation)}})  # fmt: skip

    def get(
        self, challenge: bytes, *, party: RelyingParty = PARTY, origin: str | None = None,
        count: int | None = None,
    ) -> str:  # fmt: skip
        """What navigator.credentials.get() answers; the counter moves on by one unless
        `count` says what to report."""
        self.count = self.count + 1 if count is None else count
        client = _client_data("webauthn.get", challenge, origin or party.origin)
        data = _rp_hash(party.id) + bytes([UP | UV]) + struct.pack(">I", self.count)
        signature = self.key.sign(data + hashlib.sha256(client).digest(),
                                  ec.ECDSA(hashes.SHA256()))  # fmt: skip
        b64 = bytes_to_base64url
        return json.dumps({"id": b64(self.credential), "rawId": b64(self.credential),
                           "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": b64(client),
                                        "authenticatorData": b64(data),
                                        "signature": b64(signature),
                                        "userHandle": self.user_handle}})  # fmt: skip


def _client_data(kind: str, challenge: bytes, origin: str) -> bytes:
    return json.dumps({"type": kind, "challenge": bytes_to_base64url(challenge),
                       "origin": origin, "crossOrigin": False}).encode()  # fmt: skip


def _rp_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def free_port() -> int:
    """A loopback port free now, for an app whose public_url must name its port (rule 3)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(app: web.Application, port: int = 0) -> Iterator[str]:
    """`app` on a loopback port (a free one unless `port`) in a thread of its own; its
    origin."""
    ready: queue.Queue[str] = queue.Queue()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port)
        loop.run_until_complete(site.start())
        bound = runner.addresses[0][1]
        ready.put(f"http://127.0.0.1:{bound}")
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


@contextlib.contextmanager
def chromium(
    profile: Path, downloads: Path | None = None, *, passkeys: bool = False
) -> Iterator[Any]:
    """Headless Chromium with its own profile, recording its network log (rule 3); files
    it downloads land in `downloads`; with `passkeys`, a virtual authenticator (CTAP2,
    built in, resident keys, the user verified) answers navigator.credentials."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/test installs them)")
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--window-size=1100,800", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        if downloads is not None:
            downloads.mkdir(parents=True, exist_ok=True)
            allow = {"behavior": "allow", "downloadPath": str(downloads)}
            browser.execute_cdp_cmd("Browser.setDownloadBehavior", allow)
        if passkeys:
            browser.add_virtual_authenticator(virtual_authenticator())
        yield browser
    finally:
        browser.quit()


def virtual_authenticator() -> Any:
    """Selenium's options for an authenticator that holds passkeys and verifies its user."""
    from selenium.webdriver.common.virtual_authenticator import (  # noqa: PLC0415
        Protocol,
        Transport,
        VirtualAuthenticatorOptions,
    )

    return VirtualAuthenticatorOptions(
        protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
        has_user_verification=True, is_user_verified=True,
    )  # fmt: skip


def network(browser: Any) -> list[dict[str, Any]]:
    """The browser's network events since the last call (its log is drained)."""
    events = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    return [event for event in events if event["method"].startswith("Network.")]


def requested(events: list[dict[str, Any]]) -> list[str]:
    """The URLs of the requests in `events` that went to the network (not chrome:, data:)."""
    urls = [event["params"]["request"]["url"] for event in events
            if event["method"] == "Network.requestWillBeSent"]  # fmt: skip
    return [url for url in urls if not url.startswith(("chrome:", "about:", "data:", "blob:"))]


def responses(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(method, URL, status) of each request in `events` that got a response, in order."""
    methods = {event["params"]["requestId"]: event["params"]["request"]["method"]
               for event in events if event["method"] == "Network.requestWillBeSent"}  # fmt: skip
    return [(methods.get(event["params"]["requestId"], "?"), event["params"]["response"]["url"],
             event["params"]["response"]["status"])
            for event in events if event["method"] == "Network.responseReceived"]  # fmt: skip


def browser_log_in(
    browser: Any, origin: str, secret: str, clock: Clock, *, passphrase: str = STRONG,
    passkey: bool = False,
) -> None:  # fmt: skip
    """Fill in and send the login form at `origin` (with the portal's path prefix, if it
    has one) with the code at the clock's time, or with `passkey` through the passkey
    button instead (without waiting for where it leads)."""
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    browser.get(f"{origin}/login")
    browser.find_element(By.NAME, "email").send_keys(EMAIL)
    browser.find_element(By.NAME, "passphrase").send_keys(passphrase)
    if passkey:
        browser.find_element(By.ID, "passkey-login-button").click()
        return
    browser.find_element(By.NAME, "code").send_keys(pyotp.TOTP(secret).at(clock.now))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def wait_for(browser: Any, check: Callable[[Any], object], seconds: float = 60) -> None:
    from selenium.webdriver.support.wait import WebDriverWait  # noqa: PLC0415

    WebDriverWait(browser, seconds).until(check)


def screenshot(browser: Any, name: str) -> None:
    """Save the page as `name`.png in NOCONTACT_SCREENSHOTS, if that is set (rule 4)."""
    folder = os.environ.get("NOCONTACT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))
