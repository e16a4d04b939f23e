"""Nothing urgent waits silently: an urgent logistics item not relayed within
`relay_within` gets her the automatic card, or escalates (proxy/alerts/service.py rule 8)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy.access import delivery
from proxy.access.keys import custody_public_key
from proxy.access.recording import signed_request
from proxy.alerts.card import CARD as CARD_SENT
from proxy.alerts.card import DAEMON, FOOTER, HEADER, Card, Way, card_text
from proxy.alerts.held import Held
from proxy.alerts.outbox import State
from proxy.alerts.service import AlertService
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.archive import Archive
from proxy.archive.seal import fingerprint
from proxy.channels.smtp import SmtpHandler, serve_smtp
from proxy.config import Config
from proxy.custody import record_custody, serve_custody
from proxy.deliver.address import parse_destination
from proxy.deliver.hops import open_next_hop
from proxy.pipeline import Pipeline
from proxy.rules import compile_rules
from tests.alerts_helpers import Clock, Receiver, receiving
from tests.factories import MARK, make_config
from tests.test_smtp import IDENTITY, free_port, held_items, maildir_messages
from tests.test_smtp import RECIPIENT as ARCHIVE_RECIPIENT

SAME_DAY = Assessment.of([Reason(tier=Tier.URGENT, code="same_day_logistics"),
                          Reason(tier=Tier.ELEVATED, code="child_logistics")])  # fmt: skip
CARD = Card(child="Lily", date="Monday 2 March", time="17:30", place="school", topic="pickup")
HER = "dana.home@example.org"
THURSDAY_EVENING = datetime(2026, 3, 12, 16, 30, tzinfo=UTC)  # 17:30 in Berlin
PICKUP = (b"From: Mark Smith <mark.smith@gmail.com>\r\nTo: dana.home@example.org\r\n"
          b"Subject: change of plan CANARY-SUBJECT\r\n\r\n"
          b"I pick up Lily from school today at 18:30, not Friday. CANARY-PICKUP zq7\r\n"
          )  # fmt: skip
HOSPITAL = (b"From: Mark Smith <mark.smith@gmail.com>\r\nTo: dana.home@example.org\r\n"
            b"Subject: Noah\r\n\r\nNoah is at the hospital. CANARY-HOSPITAL\r\n")  # fmt: skip


def _config(archive: str, receiver: Receiver, mail: Path, *, auto_card: bool = True,
            port: int = 2525) -> Config:  # fmt: skip
    """Priya, the order's relay, and Dana, the next on the ladder; escalation by time is
    slow (120 minutes) so only the relay deadline (30 minutes) moves the alert."""
    contacts = [
        {"name": "Priya Raman", "role": "contact", "age_recipient": ARCHIVE_RECIPIENT,
         "alerts": {"transports": ["priya"]}},
        {"name": "Dana Reyes", "role": "lawyer", "age_recipient": ARCHIVE_RECIPIENT,
         "alerts": {"transports": ["dana"]}},
    ]  # fmt: skip
    order = {"children": ["Lily", "Noah"], "channels": ["email"], "relay": "Priya Raman",
             "relay_within": 30, "auto_card": auto_card}  # fmt: skip
    transports = {"dana": {"url": receiver.url("dana")}, "priya": {"url": receiver.url("priya")}}
    return make_config(
        archive={"path": archive}, contacts=contacts, people=[{**MARK, "court_order": order}],
        channels={"smtp": {"listen": f"127.0.0.1:{port}", "deliver": f"maildir:{mail}",
                           "hostname": "nocontact.test"}},
        alerts={"transports": transports, "timezone": "Europe/Berlin", "escalate_after": 120},
    )  # fmt: skip


@asynccontextmanager
async def _alerting(
    tmp_path: Path, mail: Path, *, auto_card: bool = True
) -> AsyncIterator[tuple[AlertService, Receiver, Clock]]:
    """The alerts service over a new archive, telling a local receiver, on a clock the test
    moves; the test closes the service, this the archive."""
    archive = await Archive.open(tmp_path / "archive", recipients=[ARCHIVE_RECIPIENT])
    try:
        async with receiving() as receiver:
            clock = Clock()
            config = _config(archive.path, receiver, mail, auto_card=auto_card)
            yield await AlertService.open(config, archive, clock=clock), receiver, clock
    finally:
        await archive.close()


def _held(sequence: int = 3, card: Card | None = CARD) -> Held:
    return Held(sequence=sequence, assessment=SAME_DAY, person="mark", channel="email",
                identity="mark.smith@gmail.com", card=card,
                way=Way(channel="email", recipients=(HER,)))  # fmt: skip


def _cards(mail: Path) -> list[email.message.EmailMessage]:
    found = []
    for raw in maildir_messages(mail):
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        found.append(message)
    return found


def _the_card(message: email.message.EmailMessage) -> str:
    assert message["Subject"] == HEADER
    assert message["To"] == HER
    assert message["From"] == "nocontact <nocontact@nocontact.test>"
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def _alerts(receiver: Receiver, who: str) -> list[str]:
    return [b for b in receiver.bodies(who) if "same_day_logistics" in b]


def test_the_card_goes_to_her_after_relay_within_with_no_relay(tmp_path: Path) -> None:
    """No relay in 30 minutes: at 30 her Maildir receives exactly the card, once; nothing
    before; the alert itself goes on as before (not escalated by the deadline)."""
    mail = tmp_path / "mail"

    async def main() -> None:
        async with _alerting(tmp_path, mail) as (service, receiver, clock):
            service.held(_held())
            await service.step()
            assert _alerts(receiver, "priya")
            clock.advance(minutes=29)
            await service.step()
            assert maildir_messages(mail) == []
            clock.advance(minutes=1)
            await service.step()
            clock.advance(minutes=5)
            await service.step()
            assert not _alerts(receiver, "dana")
            assert service.state.waiting == []
            await service.close()

    asyncio.run(main())
    (card,) = _cards(mail)
    assert _the_card(card) == card_text(CARD)
    assert _the_card(card) == (
        f"{HEADER}\n\nChild: Lily\nDate: Monday 2 March\nTime: 17:30\nPlace: school\n"
        f"Topic: pickup\n\n{FOOTER}\n"
    )


def test_a_relay_in_time_means_no_card_and_closes_the_alert(tmp_path: Path) -> None:
    """A relay custody record for the item, heard before the deadline: no card ever, and
    the urgent alert counts as acknowledged (no escalation later)."""
    mail = tmp_path / "mail"

    async def main() -> None:
        async with _alerting(tmp_path, mail) as (service, _, clock):
            service.held(_held(3))
            service.held(_held(4))
            await service.step()
            clock.advance(minutes=10)
            service.recorded("show", (4,))  # a look is no relay
            service.recorded("relay", (3,))
            await service.step()
            assert [w.sequence for w in service.state.waiting] == [4]
            assert [u.sequence for u in service.state.urgent] == [4]
            clock.advance(minutes=200)
            await service.step()
            await service.close()

    asyncio.run(main())
    assert len(_cards(mail)) == 1  # item 4's, never item 3's


def test_without_auto_card_the_alert_escalates_at_the_deadline_even_acknowledged(
    tmp_path: Path,
) -> None:
    """With no auto_card, the deadline sends the alert on to the next contact at once,
    though the relay contact acknowledged it: only a relay stops it. No card is sent."""
    mail = tmp_path / "mail"

    async def main() -> None:
        async with _alerting(tmp_path, mail, auto_card=False) as (service, receiver, clock):
            service.held(_held())
            await service.step()
            (code,) = [u.code for u in service.state.urgent]
            assert await service.acknowledge(code)
            clock.advance(minutes=29)
            await service.step()
            assert not _alerts(receiver, "dana")
            clock.advance(minutes=1)
            await service.step()
            assert _alerts(receiver, "dana")  # the next contact, at the deadline
            assert len(_alerts(receiver, "priya")) == 2  # told again with the new code
            assert service.state.waiting == []
            (reopened,) = service.state.urgent
            assert reopened.code != code
            await service.close()

    asyncio.run(main())
    assert maildir_messages(mail) == []


def test_an_unacknowledged_alert_escalates_one_step_at_the_deadline(tmp_path: Path) -> None:
    """No auto_card, alert still open: at the deadline it goes one step down its own
    ladder (relay contact and the next), as escalate_after would have."""
    mail = tmp_path / "mail"

    async def main() -> None:
        async with _alerting(tmp_path, mail, auto_card=False) as (service, receiver, clock):
            service.held(_held())
            await service.step()
            clock.advance(minutes=30)
            await service.step()
            assert len(_alerts(receiver, "dana")) == 1
            assert len(_alerts(receiver, "priya")) == 2
            assert [u.reached for u in service.state.urgent] == [2]
            await service.close()

    asyncio.run(main())


def test_the_wait_and_its_card_survive_a_restart(tmp_path: Path) -> None:
    """Saved in the sealed alert state: after a restart the card still goes at the
    deadline; the vault file holds no card value in the clear."""
    mail = tmp_path / "mail"

    async def main() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[ARCHIVE_RECIPIENT])
        async with receiving() as receiver:
            clock = Clock()
            config = _config(archive.path, receiver, mail)
            service = await AlertService.open(config, archive, clock=clock)
            service.held(_held())
            await service.step()
            await service.close()
            for path in Path(archive.path).rglob("*"):
                if path.is_file() and not path.is_socket():
                    data = path.read_bytes()
                    assert b"Lily" not in data
                    assert HER.encode() not in data
            clock.advance(minutes=31)
            again = await AlertService.open(config, archive, clock=clock)
            assert [w.card for w in again.state.waiting] == [CARD]
            await again.step()
            await again.close()
        await archive.close()

    asyncio.run(main())
    (card,) = _cards(mail)
    assert _the_card(card) == card_text(CARD)


def test_a_failed_card_is_retried_with_backoff(tmp_path: Path) -> None:
    """Her next hop down (a Maildir that cannot be written): the card waits and is tried
    again after the backoff, then delivered once."""
    mail = tmp_path / "mail"
    mail.write_text("not a directory")

    async def main() -> None:
        async with _alerting(tmp_path, mail) as (service, _, clock):
            service.held(_held())
            await service.step()
            clock.advance(minutes=30)
            await service.step()
            (waiting,) = service.state.waiting
            assert waiting.attempts == 1
            mail.unlink()
            clock.advance(seconds=10)
            await service.step()
            assert maildir_messages(mail) == []  # not yet: 30 s backoff
            clock.advance(seconds=30)
            await service.step()
            assert service.state.waiting == []
            await service.close()

    asyncio.run(main())
    assert len(_cards(mail)) == 1


def test_a_state_saved_before_cards_loads() -> None:
    """An older state without `waiting` (or with garbage there) loads, waiting for nothing."""
    key = b"k" * 32
    assert State.load(key, {"urgent": [], "letters": []}).waiting == []
    odd: list[Any] = [None, 3, {"sequence": "x"}, {"sequence": 1, "relay_by": 2.0}]
    assert State.load(key, {"waiting": odd}).waiting == []
    kept = {"sequence": 1, "relay_by": 2.0, "first": "Priya", "reasons": [],
            "card": {"child": "Lily"}, "way": {"channel": "mail"}}  # fmt: skip
    (loaded,) = State.load(key, {"waiting": [kept]}).waiting
    assert loaded.card is None  # a card with no way to her is no card: it escalates


# -- end to end ---------------------------------------------------------------------------


def _send(port: int, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("mark.smith@gmail.com", [HER], raw)


def test_his_urgent_pickup_through_smtp_reaches_her_only_as_the_card(tmp_path: Path) -> None:
    """Through the real SMTP filter and custody socket: his urgent pickup change and a
    hospital note are held; a contact relays the second through the custody socket; past
    relay_within her Maildir receives exactly one message, the first's card, and no word
    of his."""
    mail = tmp_path / "mail"
    port = free_port()

    async def main() -> None:
        keys = {fingerprint(ARCHIVE_RECIPIENT): custody_public_key(IDENTITY)}
        archive = await Archive.open(tmp_path / "archive", recipients=[ARCHIVE_RECIPIENT],
                                     custody_keys=keys)  # fmt: skip
        async with receiving() as receiver:
            config = _config(archive.path, receiver, mail, port=port)
            settings = config.channels.smtp
            assert settings is not None
            pipeline = Pipeline(
                rules=compile_rules(config), archive=archive,
                next_hop=open_next_hop(parse_destination(settings.deliver), hostname="test"),
                hostname="nocontact.test", default_region="US", clock=lambda: THURSDAY_EVENING,
            )  # fmt: skip
            clock = Clock(THURSDAY_EVENING)
            service = await AlertService.open(config, archive, clock=clock)
            pipeline.alerts = service.held
            server = await serve_smtp(settings, SmtpHandler(pipeline))
            custody = await serve_custody(archive, service.recorded)
            try:
                for raw in (PICKUP, HOSPITAL):
                    await asyncio.to_thread(_send, port, raw)
                await service.step()
                pickup, hospital = (w.sequence for w in service.state.waiting)
                request = signed_request(IDENTITY, action="relay", items=[hospital],
                                         reason="relay of leaf ...")  # fmt: skip
                await asyncio.to_thread(record_custody, Path(archive.path), request)
                await asyncio.sleep(0)
                clock.advance(minutes=10)
                await service.step()
                assert [w.sequence for w in service.state.waiting] == [pickup]
                assert maildir_messages(mail) == []
                clock.advance(minutes=21)
                await service.step()
            finally:
                server.close()
                await server.wait_closed()
                custody.close()
                await pipeline.next_hop.aclose()
                await service.close()
                await archive.close()

    asyncio.run(main())
    (raw,) = maildir_messages(mail)
    (card,) = _cards(mail)
    expected = Card(child="Lily", date="Thursday 12 March", time="18:30", place="school",
                    topic="pickup")  # fmt: skip
    assert _the_card(card) == card_text(expected)
    for word in (b"CANARY", b"zq7", b"Friday", b"change of plan", b"mark.smith", b"pick up",
                 b"Mark", b"hospital"):  # fmt: skip
        assert word not in raw
    records = [m for m, _ in held_items(tmp_path / "archive") if m.get("kind") == "custody"]
    cards = [r for r in records if r["action"] == CARD_SENT]
    (relay,) = [r for r in records if r["action"] == "relay"]
    assert [(r["contact"], r["items"], r["reason"]) for r in cards] == [
        (DAEMON, [relay["items"][0] - 1], card_text(expected))
    ]  # the card sent is in the log, by the daemon, naming the pickup (held before the other)


def test_a_card_for_a_text_of_his_is_a_text_to_her_phone(tmp_path: Path) -> None:
    """For a text, call or voicemail of his, the card is planned as texts of the card
    alone to her phone, as a relay is (no "From <number>:")."""
    (tmp_path / "token").write_text("token\n")
    sms = {"public_url": "https://home.example/sms", "account_sid": "AC" + "0" * 32,
           "number": "+15550100111", "forward_to": "+15550100222",
           "auth_token_file": str(tmp_path / "token")}  # fmt: skip
    config = make_config(channels={"sms": sms})
    route = delivery.plan_note(config, Way(channel="voice"), HEADER, card_text(CARD),
                               datetime.now(UTC))  # fmt: skip
    assert isinstance(route, delivery.TextRoute)
    assert "".join(route.bodies) == card_text(CARD)
    assert route.settings.forward_to == "+15550100222"
    with pytest.raises(delivery.CannotDeliver):  # no SMTP channel: no way for an email's card
        delivery.plan_note(
            config, Way(channel="email", recipients=(HER,)), HEADER, "", datetime.now(UTC)
        )


def test_a_card_no_channel_can_carry_escalates_instead(tmp_path: Path) -> None:
    """A text of his, and no SMS channel to her phone: at the deadline the alert goes to
    the next contact; nothing waits and nothing reaches the Maildir."""
    mail = tmp_path / "mail"

    async def main() -> None:
        async with _alerting(tmp_path, mail) as (service, receiver, clock):
            text = Held(sequence=3, assessment=SAME_DAY, person="mark", channel="sms",
                        identity="+15550100199", card=CARD, way=Way(channel="sms"))  # fmt: skip
            service.held(text)
            await service.step()
            clock.advance(minutes=30)
            await service.step()
            assert service.state.waiting == []
            await service.step()
            assert _alerts(receiver, "dana")
            await service.close()

    asyncio.run(main())
    assert maildir_messages(mail) == []


def test_a_relay_heard_just_before_a_stop_is_kept(tmp_path: Path) -> None:
    """A relay heard after the last step and before the stop still ends the wait: the
    saved state has nothing waiting after the restart."""
    mail = tmp_path / "mail"

    async def main() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[ARCHIVE_RECIPIENT])
        async with receiving() as receiver:
            clock = Clock()
            config = _config(archive.path, receiver, mail)
            service = await AlertService.open(config, archive, clock=clock)
            service.held(_held())
            await service.step()
            service.recorded("relay", (3,))
            await service.close()
            again = await AlertService.open(config, archive, clock=clock)
            assert again.state.waiting == []
            assert again.state.urgent == []
            await again.close()
        await archive.close()

    asyncio.run(main())
