"""A contact's reply to him, as values (proxy/access/replying.py), and the message
delivery.py makes of it: the form, the exact text, who may, where it may go, the record."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
import yaml

from proxy.access import delivery, replying
from proxy.alerts.order_mark import OrderMark, Topic
from proxy.archive.metadata import SealedCustody, SealedIdentity, SealedItem
from proxy.config import Config, load_config
from proxy.message import Channel, IdentityKind
from tests.factories import MARK, RECIPIENT, config_data, write_secret

ORDER = OrderMark(person="mark", topic=Topic.CHILDREN, logistics=True)
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("form", "fix"),
    [({"template": "confirmed"}, None),
     ({"template": "confirmed", "proposal": "  "}, None),
     ({"template": "not_possible", "proposal": " Saturday at 10:00 instead. "}, None),
     ({"template": "not_possible", "proposal": "x" * 300}, None),
     ({}, replying.CHOOSE),
     ({"template": "whatever"}, replying.CHOOSE),
     ({"template": "confirmed", "proposal": "Sunday"}, replying.NOT_WITH_CONFIRMED),
     ({"template": "not_possible"}, replying.NO_PROPOSAL),
     ({"template": "not_possible", "proposal": "x" * 301},
      "Keep the proposal within 300 characters."),
     ({"template": "not_possible", "proposal": "Sunday\r\nor Monday"},
      "The proposal is one line."),
     ({"template": "not_possible", "proposal": "Sunday\u2028or Monday"},
      "The proposal is one line."),
     ({"template": "not_possible", "proposal": "Sunday\x1b[31m"},
      "The proposal holds a control character: plain text only."),
     ({"template": "not_possible", "proposal": "Sunday\ror Monday"},
      "The proposal holds a control character: plain text only.")],
)  # fmt: skip
def test_the_form_is_read_or_says_what_to_fix(form: dict[str, str], fix: str | None) -> None:
    """A template is required; a proposal is required with Not possible, refused with
    Confirmed, one line of at most 300 plain characters."""
    assert replying.read_form(form)[1] == fix


def test_the_text_sent_is_exactly_the_template() -> None:
    """Confirmed is one fixed line; Not possible carries the proposal, trimmed."""
    confirmed, _ = replying.read_form({"template": "confirmed"})
    assert replying.reply_text(confirmed) == "Confirmed."
    values, _ = replying.read_form({"template": "not_possible",
                                    "proposal": "  Saturday at 10:00, the library.  "})  # fmt: skip
    assert replying.reply_text(values) == "Not possible. I propose: Saturday at 10:00, the library."


def test_only_a_contact_may_reply_and_only_to_an_item_under_an_order() -> None:
    """A lawyer and someone no longer named are refused; an item with no order mark too."""
    marked, unmarked = SealedItem(order=ORDER), SealedItem()
    assert replying.refusal("contact", marked) is None
    assert replying.refusal("lawyer", marked) == replying.LAWYER
    assert replying.refusal(None, marked) == replying.NOT_NAMED
    assert replying.refusal("contact", unmarked) == replying.NO_ORDER


def _config(tmp_path: Path, **more: object) -> Config:
    contacts = [{"name": "Priya Raman", "role": "contact", "age_recipient": RECIPIENT,
                 "email": "priya@fastmail.example"}]  # fmt: skip
    data = config_data(archive={"path": str(tmp_path / "archive")}, contacts=contacts,
                       people=[MARK], default_region="US", **more)  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _from(address: str, source: str = "from", channel: Channel = Channel.EMAIL) -> SealedItem:
    kind = IdentityKind.EMAIL if channel is Channel.EMAIL else IdentityKind.PHONE
    sender = SealedIdentity(kind=kind, value=address, source=source)
    return SealedItem(channel=channel, order=ORDER, senders=(sender,))


@pytest.mark.parametrize(
    ("item", "expected"),
    [(_from("marksmith@gmail.com"), replying.Addressee(by_email=True,
                                                       address="mark.smith@gmail.com")),
     (_from("mark@smith-family.example"),
      replying.Addressee(by_email=True, address="mark@smith-family.example")),
     (_from("mark@smith-family.example", source="envelope"),
      replying.Addressee(by_email=True, address="mark@smith-family.example")),
     (_from("+15550100199", "caller", Channel.SMS),
      replying.Addressee(by_email=False, address="+15550100199")),
     (_from("+442079460958", "caller", Channel.VOICE),
      replying.Addressee(by_email=False, address="+442079460958")),
     (_from("jo@friends.example"), replying.NOT_HIS_EMAIL),
     (_from("someone@markscompany.example"), replying.NOT_HIS_EMAIL),  # a domain: no address
     (_from("+15550100142", "caller", Channel.SMS), replying.NOT_HIS_PHONE),
     (_from("+15550100199", "caller", Channel.EMAIL), replying.NOT_HIS_EMAIL),
     (SealedItem(channel=Channel.EMAIL, order=ORDER), replying.NOT_HIS_EMAIL),
     (SealedItem(channel=None, order=ORDER), replying.NO_CHANNEL),
     (SealedItem(channel=Channel.SMS, order=OrderMark(person="gone", topic=Topic.CHILDREN)),
      replying.NO_PERSON)],
)  # fmt: skip
def test_a_reply_goes_only_to_one_of_his_configured_addresses(
    tmp_path: Path, item: SealedItem, expected: replying.Addressee | str
) -> None:
    """The sender the item came from, compared as the rules compare (canonical mailbox,
    E.164), must be one of his configured emails or phones; the reply goes to the
    configured spelling. Anything else is one line, and no addressee."""
    config = _config(tmp_path)
    if isinstance(expected, str):
        with pytest.raises(replying.CannotReply) as refused:
            replying.addressee(config, item)
        assert str(refused.value) == expected
    else:
        assert replying.addressee(config, item) == expected


def test_the_reply_record_reads_back_and_nothing_else_does() -> None:
    """The reason names the leaf, then exactly the text; other records read as None."""
    leaf = bytes(range(32))
    reason = replying.reply_reason(leaf, "Not possible. I propose: Sunday.")
    assert reason == f"reply to leaf {leaf.hex()}\nNot possible. I propose: Sunday."
    assert replying.read_reply(SealedCustody(action="reply", reason=reason)) == replying.Reply(
        leaf_hash=leaf.hex(), text="Not possible. I propose: Sunday."
    )
    assert replying.read_reply(SealedCustody(action="relay", reason=reason)) is None
    assert replying.read_reply(SealedCustody(action="reply-failed", reason=reason)) is None
    assert replying.read_reply(SealedCustody(action="reply", reason="no leaf")) is None


def test_an_email_reply_is_a_new_plain_message_from_the_outbound_address(
    tmp_path: Path,
) -> None:
    """From `outbound.from`, to his configured address, the fixed subject, the text alone."""
    write_secret(tmp_path / "password", "relay-secret")
    outbound = {"host": "smtp.fastmail.example", "username": "priya",
                "password_file": "password", "from": "priya-replies@fastmail.example"}  # fmt: skip
    config = _config(tmp_path, outbound=outbound)
    to_him = replying.Addressee(by_email=True, address="mark.smith@gmail.com")
    route = delivery.plan_reply(config, to_him, "Confirmed.", NOW)
    assert isinstance(route, delivery.OutboundRoute)
    assert route.recipient == "mark.smith@gmail.com"
    message = email.message_from_bytes(route.raw, policy=policy.default)
    assert (message["From"], message["To"], message["Subject"]) == (
        "priya-replies@fastmail.example",
        "mark.smith@gmail.com",
        "About the children",
    )
    assert message.get_content().replace("\r\n", "\n") == "Confirmed.\n"
    assert "Reply-To" not in message
    assert config.outbound is not None
    assert (config.outbound.port_or_default, config.outbound.tls) == (587, "starttls")


def test_without_outbound_or_sms_there_is_no_way_to_reply(tmp_path: Path) -> None:
    """No `outbound:` section: an email reply cannot go; no SMS channel: a text cannot."""
    config = _config(tmp_path)
    with pytest.raises(delivery.CannotDeliver) as refused:
        delivery.plan_reply(config, replying.Addressee(by_email=True, address="m@x.example"),
                            "Confirmed.", NOW)  # fmt: skip
    assert str(refused.value) == delivery.NO_OUTBOUND
    with pytest.raises(delivery.CannotDeliver) as refused:
        delivery.plan_reply(config, replying.Addressee(by_email=False, address="+15550100199"),
                            "Confirmed.", NOW)  # fmt: skip
    assert str(refused.value) == delivery.NO_SMS_REPLY


@pytest.mark.parametrize(
    ("channels", "item", "expected"),
    [(["email"], _from("marksmith@gmail.com"), "mark.smith@gmail.com"),
     (["sms"], _from("marksmith@gmail.com"), replying.NOT_BY_EMAIL),
     (["voice"], _from("marksmith@gmail.com"), replying.NOT_BY_EMAIL),
     (["sms"], _from("+15550100199", "caller", Channel.SMS), "+15550100199"),
     (["email", "voice"], _from("+15550100199", "caller", Channel.SMS), replying.NOT_BY_TEXT),
     (["voice"], _from("+15550100199", "caller", Channel.VOICE), replying.NOT_BY_TEXT),
     (["voice", "sms"], _from("+15550100199", "caller", Channel.VOICE), "+15550100199")],
)  # fmt: skip
def test_a_reply_keeps_to_the_channels_his_order_allows(
    tmp_path: Path, channels: list[str], item: SealedItem, expected: str
) -> None:
    """A reply is contact with him: by email only if his order allows email, by text (the
    answer to a text, a call or a voicemail) only if it allows sms."""
    contacts = [
        {
            "name": "Priya Raman",
            "role": "contact",
            "age_recipient": RECIPIENT,
            "email": "priya@fastmail.example",
            "alerts": {"transports": ["priya"]},
        }
    ]
    order = {"children": ["Lily"], "channels": channels, "relay": "Priya Raman"}
    data = config_data(
        archive={"path": str(tmp_path / "archive")}, contacts=contacts, default_region="US",
        people=[{**MARK, "court_order": order}],
        alerts={"transports": {"priya": {"url": "json://127.0.0.1:9/alerts"}}},
    )  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path)
    if expected.startswith(("+", "mark")):
        assert replying.addressee(config, item).address == expected
    else:
        with pytest.raises(replying.CannotReply) as refused:
            replying.addressee(config, item)
        assert str(refused.value) == expected
