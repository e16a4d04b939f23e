"""The relay from the portal: a contact's neutral summary of an item under a court order
reaches her, labelled as the contact's and not his words; custody first; the relay record
names the original's leaf hash. Through aiohttp's test client against a real archive, a
real Maildir and the Twilio fake."""

from __future__ import annotations

import asyncio
import email
from email import policy
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from proxy.access import relaying
from proxy.access.reading import open_archive
from proxy.alerts.order_mark import SAME_DAY_LOGISTICS, OrderMark, Topic
from proxy.alerts.tiers import Assessment
from proxy.archive import layout
from proxy.archive.metadata import SealedCustody
from proxy.message import Kind
from proxy.portal import web as portal_web
from tests.portal_helpers import (
    EMAIL,
    PLAIN,
    Holding,
    Template,
    copy_portal,
    fetch,
    from_mark,
    from_marks_phone,
    hidden,
    identity,
)
from tests.portal_helpers import held_template as make_template
from tests.test_portal_release import (
    ACCOUNT,
    PHONE,
    TOKEN,
    Held,
    Setup,
    custody,
    delivered,
    run,
)
from tests.twilio_fake import FakeTwilio

CANARIES = ("zanzibar", "quokka", "marmalade")  # his words: none may reach her
PICKUP = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: zanzibar\r\n"
    b"Date: Sun, 01 Mar 2026 11:58:00 +0000\r\nMessage-ID: <pickup-1@gmail.example>\r\n\r\n"
    b"Lily pickup moved to 17:30 today, quokka marmalade, you never listen.\r\n"
)
MARK = OrderMark(person="mark", topic=Topic.CHILDREN, logistics=True)
URGENT = Assessment.of([SAME_DAY_LOGISTICS])
SUMMARY = {"child": "Lily", "what": "The school pickup is moved.", "when": "Today, 17:30",
           "where": "Oak Street school", "asked": "Can you confirm you will be there?"}  # fmt: skip
EXPECTED = (
    "Summary from your contact Priya — not his words\n\nChild: Lily\n"
    "What: The school pickup is moved.\nWhen: Today, 17:30\nWhere: Oak Street school\n"
    "What is asked: Can you confirm you will be there?\n"
)
TEXTED = EXPECTED + "\nTo answer, write to Priya directly, not to this number.\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """An urgent pickup email under an order, a plain email with no order, a text under an
    order."""
    to_her = ("sam@home.example",)
    return make_template(tmp_path_factory, "relay", [
        Holding(from_mark(PICKUP, recipients=to_her), extras={"peer": "203.0.113.9"},
                order=MARK, assessment=URGENT),
        Holding(from_mark(PLAIN, recipients=to_her)),
        Holding(from_marks_phone("zanzibar quokka pickup 17:30 today"),
                extras={"provider": "twilio", "voicemail": False}, kind=Kind.DIRECT,
                order=MARK, assessment=URGENT),
    ])  # fmt: skip


@pytest.fixture
def setup(template: Template, tmp_path: Path) -> Setup:
    """A fresh copy; `held.passive` is the pickup, `held.direct` the item with no order,
    `held.text` the text (no voicemail)."""
    pickup, plain, text = template.sequences
    return Setup(copy_portal(template, tmp_path), Held(pickup, plain, text, -1),
                 tmp_path / "mail")  # fmt: skip


async def item_page(portal: Any, client: Any, sequence: int) -> tuple[str, str]:
    status, _, page, _ = await fetch(portal, client, "GET", f"/items/{sequence}")
    assert status == 200
    return page, hidden(page, "csrf")


async def post_relay(
    portal: Any, client: Any, sequence: int, form: dict[str, str]
) -> tuple[int, str]:
    status, _, page, _ = await fetch(portal, client, "POST", f"/items/{sequence}/relay", form)
    return status, page


def relays(setup: Setup) -> list[tuple[str, tuple[int, ...]]]:
    return [(e.action, e.items) for e in custody(setup) if e.action.startswith("relay")]


def test_an_urgent_pickup_is_relayed_as_exactly_the_labelled_summary(setup: Setup) -> None:
    """The item page offers the form; sending it stores a signed "relay" custody entry
    naming the original's leaf hash, then her Maildir receives one email whose text is
    exactly the labelled summary: no word of his (canaries), not his address or subject."""
    sequence = setup.held.passive

    async def body(portal: Any, client: Any) -> None:
        page, csrf = await item_page(portal, client, sequence)
        assert f'action="/items/{sequence}/relay"' in page
        status, page = await post_relay(portal, client, sequence, {"csrf": csrf, **SUMMARY})
        assert status == 200, page
        assert "Your summary was sent to her inbox." in page

    run(setup, setup.config(), body)
    [raw] = delivered(setup.maildir)
    for canary in (*CANARIES, "mark.smith", "gmail", "17:30 today"):
        assert canary.encode() not in raw.lower()
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == relaying.header("Priya Raman")
    assert message["Reply-To"] == EMAIL  # she answers her contact, never him
    content = message.get_content()
    assert content.replace("\r\n", "\n") == EXPECTED  # mail's lines end in CRLF
    assert "Received" not in message
    opened = open_archive(setup.directory / "archive", identity(setup.portal))
    [entry] = [e for e in custody(setup) if e.action == "relay"]
    assert (entry.items, entry.signed) == ((sequence,), "verified")
    item = opened.item(sequence)
    assert item is not None
    record = SealedCustody(action=entry.action, reason=entry.reason)
    assert relaying.read_relay(record) == relaying.Relay(leaf_hash=item.leaf_hash.hex(),
                                                         text=EXPECTED)  # fmt: skip


def test_a_text_under_an_order_is_relayed_to_her_phone(setup: Setup) -> None:
    """For a text of his, the summary alone goes to her phone (no "From <number>:"),
    ending with the line telling her to answer Priya directly; the relay record holds
    exactly that text."""
    sent: list[Any] = []

    async def main() -> None:
        async with FakeTwilio(ACCOUNT, TOKEN) as fake:
            config = setup.config(sms=fake.base_url)

            async def body(portal: Any, client: Any) -> None:
                _, csrf = await item_page(portal, client, setup.held.text)
                status, page = await post_relay(portal, client, setup.held.text,
                                                {"csrf": csrf, **SUMMARY})  # fmt: skip
                assert status == 200, page
                assert "sent to her phone" in page
                sent.extend(fake.sent())

            await asyncio.to_thread(run, setup, config, body)

    asyncio.run(main())
    assert [(m["to"], m["body"]) for m in sent] == [(PHONE, TEXTED)]
    [entry] = [e for e in custody(setup) if e.action == "relay"]
    item = open_archive(setup.directory / "archive", identity(setup.portal)).item(setup.held.text)
    assert item is not None
    record = SealedCustody(action=entry.action, reason=entry.reason)
    assert relaying.read_relay(record) == relaying.Relay(leaf_hash=item.leaf_hash.hex(),
                                                         text=TEXTED)  # fmt: skip


def test_a_lawyer_is_refused_and_sees_no_form(setup: Setup) -> None:
    """A lawyer's item page never mentions the relay; a POST with a valid token is 403,
    nothing recorded, nothing sent."""

    async def body(portal: Any, client: Any) -> None:
        page, csrf = await item_page(portal, client, setup.held.passive)
        assert "/relay" not in page
        status, page = await post_relay(portal, client, setup.held.passive,
                                        {"csrf": csrf, **SUMMARY})  # fmt: skip
        assert status == 403
        assert relaying.LAWYER in page

    run(setup, setup.config(role="lawyer"), body)
    assert relays(setup) == []
    assert delivered(setup.maildir) == []


def test_an_item_without_an_order_has_no_relay_form(setup: Setup) -> None:
    """No order mark, no form; a forged POST is refused (403) with why, nothing sent."""

    async def body(portal: Any, client: Any) -> None:
        page, csrf = await item_page(portal, client, setup.held.direct)
        assert "/relay" not in page
        status, page = await post_relay(portal, client, setup.held.direct,
                                        {"csrf": csrf, **SUMMARY})  # fmt: skip
        assert status == 403
        assert str(escape(relaying.NO_ORDER)) in page

    run(setup, setup.config(), body)
    assert relays(setup) == []
    assert delivered(setup.maildir) == []


def test_a_post_without_csrf_is_forbidden(setup: Setup) -> None:
    async def body(portal: Any, client: Any) -> None:
        status, _ = await post_relay(portal, client, setup.held.passive, dict(SUMMARY))
        assert status == 403

    run(setup, setup.config(), body)
    assert relays(setup) == []
    assert delivered(setup.maildir) == []


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("what", "x" * 601, "Keep What within 600 characters."),
     ("child", "L" * 101, "Keep Child within 100 characters."),
     ("where", "Oak\nStreet", "Where is one line."),
     ("asked", "call\x07me", "What is asked holds a control character"),
     ("what", "  ", "What is required")],
)  # fmt: skip
def test_a_bad_field_brings_the_form_back(setup: Setup, field: str, value: str, says: str) -> None:
    """A field too long, a line break in a one-line field, a control character or no
    "what": 400 with the form again, holding what was typed; nothing recorded or sent."""

    async def body(portal: Any, client: Any) -> None:
        _, csrf = await item_page(portal, client, setup.held.passive)
        form = {"csrf": csrf, **SUMMARY, field: value}
        status, page = await post_relay(portal, client, setup.held.passive, form)
        assert status == 400
        assert says in page
        assert "Send the summary to her" in page
        assert 'value="Today, 17:30"' in page

    run(setup, setup.config(), body)
    assert relays(setup) == []
    assert delivered(setup.maildir) == []


def test_a_failed_delivery_is_recorded_and_the_form_comes_back(setup: Setup) -> None:
    """With the Maildir unwritable, the relay is recorded, delivery fails (503, the form
    again with what was typed), "relay-failed" is recorded; the retry is sent."""
    setup.maildir.write_text("not a directory")
    sequence = setup.held.passive

    async def body(portal: Any, client: Any) -> None:
        _, csrf = await item_page(portal, client, sequence)
        status, page = await post_relay(portal, client, sequence, {"csrf": csrf, **SUMMARY})
        assert status == 503
        assert "Not sent: the next hop did not take it" in page
        assert 'value="Oak Street school"' in page
        setup.maildir.unlink()
        status, page = await post_relay(portal, client, sequence, {"csrf": csrf, **SUMMARY})
        assert status == 200, page

    run(setup, setup.config(), body)
    assert len(delivered(setup.maildir)) == 1
    assert relays(setup) == [("relay", (sequence,)), ("relay-failed", (sequence,)),
                             ("relay", (sequence,))]  # fmt: skip


def test_nothing_is_sent_when_custody_cannot_be_recorded(setup: Setup) -> None:
    """With the archive's custody keys gone, the page shows the custody problem and
    nothing is sent: custody first."""

    async def body(portal: Any, client: Any) -> None:
        _, csrf = await item_page(portal, client, setup.held.passive)
        (setup.directory / "archive" / layout.CUSTODY_KEYS).unlink()
        status, page = await post_relay(portal, client, setup.held.passive,
                                        {"csrf": csrf, **SUMMARY})  # fmt: skip
        assert status == portal_web.NOT_SHOWN
        assert "nothing was sent" in page

    run(setup, setup.config(), body)
    assert delivered(setup.maildir) == []


def test_read_relay_reads_only_relay_records() -> None:
    leaf = bytes(range(32))
    reason = relaying.relay_reason(leaf, EXPECTED)
    assert relaying.read_relay(SealedCustody(action="relay", reason=reason)) == relaying.Relay(
        leaf_hash=leaf.hex(), text=EXPECTED
    )
    assert relaying.read_relay(SealedCustody(action="release", reason=reason)) is None
    assert relaying.read_relay(SealedCustody(action="relay", reason="no leaf")) is None
