"""A court order, end to end, as the people in it live it: the real daemon (`nocontact run`)
takes his mail through SMTP and his texts through signed Twilio webhooks; the relay
contact is alerted; she logs in to the portal in a real headless Chromium, relays a
summary and answers him "Confirmed." through the outbound SMTP relay (an aiosmtpd server);
the survivor's Maildir receives exactly that summary and not one word of his; his
abusive text is held with nothing relayed; both answers are sealed custody records; the
compliance numbers count exactly this traffic.

Only Twilio's REST API is faked (tests/twilio_fake.py); the webhooks are signed as Twilio
signs them. The portal runs in this process, over the archive the daemon holds, so its
custody records go through the daemon's custody socket as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from proxy.access import relaying, replying
from proxy.access.bundle import bates, report_item
from proxy.access.compliance import ABUSIVE, ON_TOPIC, compliance, read_answers
from proxy.access.reading import Selection, open_archive
from tests.alerts_helpers import Receiver, receiving
from tests.factories import write_secret
from tests.portal_helpers import (
    DANA,
    EMAIL,
    MARKS_PHONE,
    SAM,
    Clock,
    Portal,
    browser_log_in,
    chromium,
    enroll,
    identity,
    portal_app,
    serving,
    wait_for,
)
from tests.portal_helpers import free_port as free
from tests.twilio_fake import FakeTwilio, post_webhook

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-0123456789abcdef"
NUMBER, PHONE = "+15550107777", "+15550108888"  # her public Twilio number, her real phone
PUBLIC = "https://home.example/twilio"
CANARIES = ("zanzibar", "quokka", "marmalade")  # his words: none may reach her
PICKUP = (
    b"From: Mark Smith <mark.smith@gmail.com>\r\nTo: sam@home.example\r\n"
    b"Subject: zanzibar\r\nMessage-ID: <pickup@gmail.example>\r\n\r\n"
    b"I pick Lily up from school today at 18:30, quokka. You never listen, marmalade.\r\n"
)
ABUSE = "You pathetic liar, I'll kill you when I find you. zanzibar"
SUMMARY = {"child": "Lily", "what": "Mark will pick Lily up from school.",
           "when": "Today, 18:30", "where": "School", "asked": ""}  # fmt: skip
EXPECTED = (
    "Summary from your contact Priya — not his words\n\nChild: Lily\n"
    "What: Mark will pick Lily up from school.\nWhen: Today, 18:30\nWhere: School\n"
)


class Relay:
    """The outbound SMTP relay his replies go through: every message it took."""

    def __init__(self) -> None:
        self.took: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        content = envelope.original_content or b""
        self.took.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 OK"


@contextlib.contextmanager
def outbound_relay(port: int) -> Iterator[Relay]:
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


def config_text(
    root: Path, ports: tuple[int, int, int], fake: FakeTwilio, alerts: Receiver, **order: Any
) -> str:
    """The survivor's whole setup: SMTP into a Maildir, Twilio, alerts, the portal, and
    Mark under a court order about Lily and Noah, with Priya relaying, and an outbound
    relay for replies."""
    smtp, sms, outbound = ports
    data: dict[str, Any] = {
        "archive": {"path": "./archive"},
        "contacts": [
            {"name": "Dana Whitfield", "role": "lawyer", "age_recipient": DANA,
             "alerts": {"transports": ["dana"], "tiers": ["urgent"]}},
            {"name": "Priya Raman", "role": "contact", "email": EMAIL, "portal": True,
             "age_recipient_file": "keys/priya.pub", "alerts": {"transports": ["priya"]}},
            {"name": "Sam Ortiz", "role": "contact", "email": "sam@example.org",
             "age_recipient": SAM},
        ],
        "people": [{
            "id": "mark", "name": "Mark Smith", "emails": ["mark.smith@gmail.com"],
            "phones": [MARKS_PHONE],
            "court_order": {"children": ["Lily", "Noah"], "channels": ["email", "sms"],
                            "relay": "Priya Raman", **order},
        }],
        "alerts": {"transports": {"priya": {"url": alerts.url("priya")},
                                  "dana": {"url": alerts.url("dana")}},
                   "digest": {"every": "off"}, "escalate_after": 30},
        "channels": {
            "smtp": {"listen": f"127.0.0.1:{smtp}", "deliver": f"maildir:{root / 'mail'}"},
            "sms": {"listen": f"127.0.0.1:{sms}", "public_url": PUBLIC,
                    "account_sid": ACCOUNT, "auth_token_file": str(root / "token"),
                    "number": NUMBER, "forward_to": PHONE, "api_base_url": fake.base_url,
                    "state_dir": str(root / "sms"), "reconcile_every": 3600},
        },
        "portal": {"public_url": "http://127.0.0.1:8089/", "state_dir": "./portal"},
        "outbound": {"host": "127.0.0.1", "port": outbound, "tls": "none",
                     "from": "replies@priya.example"},
    }  # fmt: skip
    write_secret(root / "token", TOKEN)
    return yaml.safe_dump(data, allow_unicode=True)


@dataclass
class World:
    """Everything running: the daemon, Twilio's fake, the alert receiver, the portal."""

    root: Path
    daemon: subprocess.Popen[bytes]
    fake: FakeTwilio
    alerts: Receiver
    smtp: int
    sms: int

    @property
    def log(self) -> str:
        return (self.root / "daemon.log").read_text(errors="replace")


@contextlib.contextmanager
def running_daemon(root: Path, smtp: int, sms: int) -> Iterator[subprocess.Popen[bytes]]:
    """`nocontact run` on the config in `root`, once both its SMTP and webhook listeners
    answer; stopped (SIGTERM, then SIGKILL) at the end."""
    with (root / "daemon.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "-c", str(root / "config.yaml")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            _until(lambda: _greets(smtp, process, root), "the daemon's SMTP listener")
            _until(lambda: _listens(sms), "the daemon's webhook listener")
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=60)
            if process.poll() is None:
                process.kill()
                process.wait()


def _greets(port: int, process: subprocess.Popen[bytes], root: Path) -> bool:
    assert process.poll() is None, (root / "daemon.log").read_text(errors="replace")
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=2) as client:
            return client.noop()[0] == 250
    except OSError:
        return False


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _maildir(root: Path) -> list[EmailMessage]:
    new = root / "mail" / "new"
    found = sorted(new.iterdir()) if new.exists() else []
    parser = BytesParser(_class=EmailMessage, policy=policy.default)
    return [parser.parsebytes(p.read_bytes()) for p in found]


def _by() -> Any:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    return By


def test_an_urgent_pickup_is_held_alerted_and_relayed_and_abuse_is_only_held(
    tmp_path: Path,
) -> None:
    """The whole journey (module docstring)."""
    pytest.importorskip("selenium.webdriver")
    enrollment = enroll(tmp_path / "state")
    root = enrollment.directory
    smtp, sms, outbound = free(), free(), free()
    relay = Relay()

    async def main() -> None:
        nonlocal relay
        fake = FakeTwilio(ACCOUNT, TOKEN)
        await fake.start()
        try:
            async with receiving() as alerts:
                ports = (smtp, sms, outbound)
                (root / "config.yaml").write_text(config_text(root, ports, fake, alerts))
                with running_daemon(root, smtp, sms) as process, outbound_relay(outbound) as relay:
                    world = World(root, process, fake, alerts, smtp, sms)
                    await _his_traffic(world)
                    await _relay_in_the_browser(world, enrollment.secret)
        finally:
            await fake.stop()

    asyncio.run(main())
    _nothing_of_his_reached_her(root)
    _he_got_exactly_the_reply(relay)
    _both_answers_are_sealed_and_counted(root)


async def _his_traffic(world: World) -> None:
    """His pickup email through SMTP (held: 250, nothing in her Maildir) and his abusive
    text through a signed webhook (held: not forwarded); Priya is told of the urgent
    pickup first, Dana of the threat, and no alert carries a word of either."""

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", world.smtp, timeout=30) as client:
            client.sendmail("mark.smith@gmail.com", ["sam@home.example"], PICKUP)

    await asyncio.to_thread(send)
    sid, params = world.fake.inbound_message(sender=MARKS_PHONE, to=NUMBER, body=ABUSE)
    async with aiohttp.ClientSession() as session:
        answer = await post_webhook(
            session, public_url=PUBLIC + "/sms", params=params, auth_token=TOKEN,
            local_url=f"http://127.0.0.1:{world.sms}/sms",
        )  # fmt: skip
    assert answer[0] == 200
    deadline = time.monotonic() + 60
    while not (world.alerts.bodies("priya") and world.alerts.bodies("dana")):
        assert time.monotonic() < deadline, f"no alerts: {world.alerts.got}\n{world.log}"
        await asyncio.sleep(0.05)
    told = world.alerts.bodies("priya")
    assert any("urgent:same_day_logistics" in body for body in told)
    assert not any("urgent:threat" in body for body in told)
    assert any("urgent:threat" in body for body in world.alerts.bodies("dana"))
    for body in [*told, *world.alerts.bodies("dana")]:
        assert not any(word in body.lower() for word in (*CANARIES, "lily", "kill"))
    while sid in world.fake.messages:  # its copy at the provider is deleted once sealed
        assert time.monotonic() < deadline, f"the held text stays at Twilio\n{world.log}"
        await asyncio.sleep(0.05)
    assert _maildir(world.root) == []
    assert world.fake.sent() == []  # the held text is not forwarded to her phone


async def _relay_in_the_browser(world: World, secret: str) -> None:
    """Priya logs in, finds the pickup under the order, relays a summary; the page shows
    what was sent; the abusive text's page offers a relay too (she judges), and she sends
    none."""
    portal = Portal(world.root, _portal_config(world.root), Clock(), secret)
    portal.clock.now = datetime.now(UTC)
    with (
        serving(portal_app(portal)) as origin,
        chromium(world.root / "chromium") as browser,
    ):
        await asyncio.to_thread(_browse, browser, origin, portal)


def _portal_config(root: Path) -> Any:
    from proxy.config import load_config  # noqa: PLC0415

    return load_config(root / "config.yaml")


def _browse(browser: Any, origin: str, portal: Portal) -> None:
    by = _by()
    browser_log_in(browser, origin, portal.secret, portal.clock)
    wait_for(browser, lambda b: b.current_url == f"{origin}/items")
    links = [a.get_attribute("href") for a in browser.find_elements(by.CSS_SELECTOR, "tbody a")]
    assert len(links) == 2
    pages = {}
    for link in links:
        browser.get(link)
        pages[link] = browser.page_source
    pickup = next(link for link, page in pages.items() if "quokka" in page)
    abuse = next(link for link, page in pages.items() if "pathetic" in page)
    assert "Send the summary to her" in pages[abuse]  # offered: the contact judges
    browser.get(pickup)
    for name, value in SUMMARY.items():
        if value:
            browser.find_element(by.NAME, name).send_keys(value)
    browser.find_element(by.XPATH, "//button[text()='Send the summary to her']").click()
    wait_for(browser, lambda b: "Your summary was sent to her inbox." in b.page_source)
    browser.get(pickup)
    browser.find_element(by.CSS_SELECTOR, "input[name=template][value=confirmed]").click()
    browser.find_element(by.XPATH, "//button[text()='Send the reply to him']").click()
    wait_for(browser, lambda b: "Your reply was sent to him" in b.page_source)


def _nothing_of_his_reached_her(root: Path) -> None:
    """Her Maildir holds exactly one message: the summary, labelled, from nocontact with a
    null envelope sender; not a word, address or subject of his. The relay is its own
    custody record naming the pickup's leaf."""
    (message,) = _maildir(root)
    body = message.get_content().replace("\r\n", "\n")
    assert body == EXPECTED
    raw = message.as_string().lower()
    assert not any(word in raw for word in (*CANARIES, "mark.smith", "18:30 today"))
    assert message["Return-Path"] in (None, "<>")
    opened = open_archive(root / "archive", identity(_as_portal(root)))
    pickup = next(item for item in opened.items() if b"quokka" in item.payload)
    (relay,) = [entry for entry in opened.custody() if entry.action == relaying.RELAY]
    assert relay.items == (pickup.sequence,)
    assert relay.reason == relaying.relay_reason(pickup.leaf_hash, EXPECTED)


CARD_TEXT = "Noah: dentist today at 16:45 instead, zanzibar quokka, answer me marmalade"
CARD = (
    "Logistics card — read automatically from a message about the children, not his "
    "words\n\nChild: Noah\nDate: {day}\nTime: 16:45\nPlace: dentist\n\n"
    "Your contact has been told and may send you a summary.\n"
)


def _written(moment: datetime) -> str:
    """A day as the card writes it: "Sunday 6 December" (in the alerts' zone, UTC here)."""
    return f"{moment:%A} {moment.day} {moment:%B}"


def test_an_urgent_text_no_one_relays_reaches_her_as_the_card_and_nothing_of_his(
    tmp_path: Path,
) -> None:
    """With `auto_card` and `relay_within: 1`, his urgent text about Noah's dentist, which
    no contact relays, reaches her phone after a minute as the card alone: facts from
    fixed lists and the config, not one word of his (canaries), through the real daemon
    and Twilio's fake."""
    enrollment = enroll(tmp_path / "state")
    root = enrollment.directory
    smtp, sms = free(), free()

    sent_on: list[str] = []

    async def main() -> list[str]:
        fake = FakeTwilio(ACCOUNT, TOKEN)
        await fake.start()
        try:
            async with receiving() as alerts:
                text = config_text(root, (smtp, sms, free()), fake, alerts, auto_card=True,
                                   relay_within=1)  # fmt: skip
                (root / "config.yaml").write_text(text)
                with running_daemon(root, smtp, sms):
                    _, params = fake.inbound_message(sender=MARKS_PHONE, to=NUMBER,
                                                     body=CARD_TEXT)  # fmt: skip
                    sent_on.append(_written(datetime.now(UTC)))
                    async with aiohttp.ClientSession() as session:
                        answer = await post_webhook(
                            session, public_url=PUBLIC + "/sms", params=params,
                            auth_token=TOKEN, local_url=f"http://127.0.0.1:{sms}/sms",
                        )  # fmt: skip
                    sent_on.append(_written(datetime.now(UTC)))  # (midnight may pass)
                    assert answer[0] == 200
                    deadline = time.monotonic() + 150
                    while not fake.sent():
                        assert time.monotonic() < deadline, (root / "daemon.log").read_text()
                        await asyncio.sleep(0.2)
                    assert any("urgent:same_day_logistics" in b for b in alerts.bodies("priya"))
                return [str(row["body"]) for row in fake.sent()]
        finally:
            await fake.stop()

    bodies = asyncio.run(main())
    assert bodies in ([CARD.format(day=day)] for day in sent_on)
    assert not any(word in bodies[0].lower() for word in (*CANARIES, "answer me", "instead"))


def _he_got_exactly_the_reply(relay: Relay) -> None:
    """One message through the outbound relay, to his configured address, from the
    outbound address, saying exactly "Confirmed." and nothing of anyone else's."""
    ((sender, recipients, raw),) = relay.took
    assert (sender, recipients) == ("replies@priya.example", ["mark.smith@gmail.com"])
    message = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(raw)
    assert message.get_content().replace("\r\n", "\n") == "Confirmed.\n"
    assert message["Subject"] == replying.SUBJECT
    assert not any(word in raw.decode().lower() for word in ("priya raman", "lily", "sam@"))


def _both_answers_are_sealed_and_counted(root: Path) -> None:
    """The relay and the reply are custody records naming the pickup's leaf; the
    compliance numbers: one email on topic and relayed, one text abusive, one reply."""
    opened = open_archive(root / "archive", identity(_as_portal(root)))
    items = list(opened.items(Selection()))
    pickup = next(item for item in items if b"quokka" in item.payload)
    (reply,) = [entry for entry in opened.custody() if entry.action == replying.REPLY]
    assert reply.items == (pickup.sequence,)
    assert reply.reason == replying.reply_reason(pickup.leaf_hash, "Confirmed.")
    reports = [report_item(bates(n), item) for n, item in enumerate(items, 1)]
    answers = read_answers(record for _, record in opened.custody_read)
    (mark,) = compliance(reports, UTC, answers)
    assert (mark.person, mark.count, mark.logistics, mark.off_channel) == ("mark", 2, 1, 0)
    assert mark.kinds == {ON_TOPIC: 1, "off topic": 0, ABUSIVE: 1, "not read": 0}
    none = dict.fromkeys((ON_TOPIC, "off topic", ABUSIVE, "not read"), 0)
    assert mark.by_channel == {"email": {**none, ON_TOPIC: 1}, "sms": {**none, ABUSIVE: 1}}
    assert (mark.relays.sent, mark.relays.failed, mark.relays.items) == (1, 0, 1)
    assert (mark.replies.sent, mark.replies.failed, mark.replies.items) == (1, 0, 1)
    (urgent,) = mark.urgent
    assert urgent.relayed_after is not None


def _as_portal(root: Path) -> Portal:
    return Portal(root, _portal_config(root), Clock(), "")
