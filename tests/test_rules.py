"""The rules: who is held, why, and the precedence direct > allow > passive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.message import Action, Decision, Kind
from proxy.rules import decide
from tests.factories import email, make_rules, sms

RULES = make_rules()

# (headers, body, expected verdict): verdict is "deliver", "allow <rule>" or "<kind> <rule>"
EMAIL_CASES = [
    ("From: mark.smith@gmail.com", "hi", "direct people.mark.emails"),
    ("From: Mark.Smith+court@GoogleMail.com", "hi", "direct people.mark.emails"),
    ("From: stranger@example.org\nReply-To: mark@smith-family.example", "hi",
     "direct people.mark.emails"),
    ("From: stranger@example.org\nSender: MARK@SMITH-FAMILY.EXAMPLE", "hi",
     "direct people.mark.emails"),
    ("From: a@mail.markscompany.example", "hi", "direct people.mark.domains"),
    ("From: a@markscompany.example", "hi", "direct people.mark.domains"),
    ("From: a@notmarkscompany.example", "hi", "deliver"),
    ("From: \"M. Smith\" <new-address@example.org>", "hi", "direct people.mark.display_names"),
    ("From: \"\u041c. SMITH\" <new-address@example.org>", "hi",
     "direct people.mark.display_names"),
    ("From: \"Mark Smith\" <other@example.org>", "hi", "direct people.mark.name"),
    ("From: friend@example.org", "I ran into Mark Smith at the shop", "passive people.mark.name"),
    ("From: friend@example.org", "I ran into MARK\nSMITH at the shop", "passive people.mark.name"),
    ("From: friend@example.org", "Márk Smíth says hi", "passive people.mark.name"),
    ("From: friend@example.org", "Marky called", "passive people.mark.aliases"),
    ("From: friend@example.org", "Café ☕ — déjà vu with Mark Smith", "passive people.mark.name"),
    ("From: friend@example.org", "Café ☕ — MarkSmith", "deliver"),
    ("From: friend@example.org", "Café ☕ — Mark Smithé", "deliver"),
    ("From: friend@example.org\nSubject: about Marky", "hi", "passive people.mark.aliases"),
    ("From: friend@example.org", "the markyard is open", "deliver"),
    ("From: friend@example.org", "Mark Smithson is a different man", "deliver"),
    ("From: friend@example.org", "he says: call me on 555 010 0199", "passive people.mark.phones"),
    ("From: friend@example.org", "write to mark.smith+a@gmail.com", "passive people.mark.emails"),
    ("From: carol@example.net", "hi", "passive intermediaries.carol"),
    ("From: Carol <CAROL@example.net>", "nothing about anyone", "passive intermediaries.carol"),
    ("From: dana@reyes-law.example", "Mark Smith's hearing is on Monday", "allow allow.emails"),
    ("From: clerk@family.court.example.gov", "Re: Marky", "allow allow.domains"),
    ("From: mark.smith@gmail.com\nReply-To: dana@reyes-law.example", "hi",
     "direct people.mark.emails"),
    ("From: dana@reyes-law.example\nReply-To: mark.smith@gmail.com", "hi",
     "direct people.mark.emails"),
    ("From: friend@example.org\nReply-To: dana@reyes-law.example", "Mark Smith",
     "passive people.mark.name"),
    ("From: carol@example.net\nReply-To: dana@reyes-law.example", "hi",
     "passive intermediaries.carol"),
    ("From: friend@example.org", "see you at 5", "deliver"),
    ("From: friend@example.org\nTo: Mark Smith <x@example.org>", "party!",
     "passive people.mark.name"),
]  # fmt: skip


def _verdict(headers: str, body: str, envelope_sender: str = "") -> str:
    return _verdict_of(decide(email(headers, body, envelope_sender=envelope_sender), RULES))


def _verdict_of(decision: Decision) -> str:
    if decision.action is Action.DELIVER:
        return "deliver" if decision.kind is None else f"allow {decision.rule_id}"
    assert decision.kind is not None
    return f"{decision.kind.value} {decision.rule_id}"


@pytest.mark.parametrize(("headers", "body", "expected"), EMAIL_CASES)
def test_email_decisions(headers: str, body: str, expected: str) -> None:
    """Each sample email gets the verdict its senders and text call for."""
    assert _verdict(headers, body) == expected


def test_envelope_sender_is_a_direct_identity() -> None:
    """His address as SMTP MAIL FROM is enough to hold, whatever the headers say."""
    assert _verdict("From: nobody@example.org", "hi", "mark@smith-family.example") == (
        "direct people.mark.emails"
    )


SMS_CASES = [
    ("(555) 010-0199", "hi", "direct people.mark.phones"),
    ("+1 555 010 0199", "hi", "direct people.mark.phones"),
    ("+442079460958", "hi", "direct people.mark.phones"),
    ("+1 555 010 0142", "hi", "passive intermediaries.carol"),
    ("+1 555 010 0100", "about Mark Smith", "allow allow.phones"),
    ("+1 555 010 0177", "Mark Smith was here", "passive people.mark.name"),
    ("+1 555 010 0177", "see you", "deliver"),
    ("MARKETING", "sale", "deliver"),
]


@pytest.mark.parametrize(("sender", "text", "expected"), SMS_CASES)
def test_sms_decisions(sender: str, text: str, expected: str) -> None:
    """Each sample text gets the verdict its number and words call for."""
    assert _verdict_of(decide(sms(sender, text), RULES)) == expected


def test_decision_says_why_without_quoting_content() -> None:
    """A decision's reason names the header and the person, not the address or text."""
    decision = decide(email("From: mark.smith@gmail.com", "secret words"), RULES)
    assert decision.reason == "from address is mark"
    assert "gmail" not in decision.reason
    assert "secret" not in decision.reason


@st.composite
def _blocked_gmail(draw: st.DrawFn) -> str:
    chars = []
    for char in "marksmith":
        chars.append(char.upper() if draw(st.booleans()) else char)
        if draw(st.booleans()):
            chars.append(".")
    tag = "+" + draw(st.text("abc123-", max_size=6)) if draw(st.booleans()) else ""
    return "".join(chars) + tag + "@" + draw(st.sampled_from(["gmail.com", "googlemail.com"]))


@given(_blocked_gmail(), st.sampled_from(["From", "Sender", "Reply-To", "Resent-From"]))
def test_every_variant_of_a_blocked_gmail_is_held(address: str, header: str) -> None:
    """Every case, plus-tag and dot variant of his Gmail, in any sender header, is held direct."""
    headers = f"From: stranger@example.org\n{header}: {address}"
    decision = decide(email(headers, "hi"), RULES)
    assert (decision.action, decision.kind) == (Action.HOLD, Kind.DIRECT)


@st.composite
def _written_number(draw: st.DrawFn) -> str:
    digits = "5550100199"
    separator = draw(st.sampled_from(["", " ", "-", ".", "  "]))
    area = f"({digits[:3]})" if draw(st.booleans()) else digits[:3]
    body = separator.join([area, digits[3:6], digits[6:]])
    prefix = draw(st.sampled_from(["", "+1 ", "+1", "1-", "+1-", "001 "]))
    return prefix + body if prefix != "001 " else "+1 " + body


@given(_written_number())
def test_every_written_form_of_a_blocked_number_is_held(number: str) -> None:
    """His number in any written form, as the sender of a text, is held direct."""
    decision = decide(sms(number), RULES)
    assert (decision.action, decision.kind, decision.rule_id) == (
        Action.HOLD,
        Kind.DIRECT,
        "people.mark.phones",
    )


@given(
    st.sampled_from(["dana@reyes-law.example", "clerk@court.example.gov"]),
    st.sampled_from(["From", "Sender", "Reply-To", "Return-Path"]),
    st.sampled_from(
        ["mark.smith@gmail.com", "mark@smith-family.example", "x@markscompany.example"]
    ),
)
def test_allow_never_rescues_a_direct_match(allowed: str, header: str, his: str) -> None:
    """However an allowed and a blocked address are combined, the message is held direct."""
    for headers in (f"From: {allowed}\n{header}: {his}", f"From: {his}\n{header}: {allowed}"):
        decision = decide(email(headers, "Mark Smith"), RULES)
        assert (decision.action, decision.kind) == (Action.HOLD, Kind.DIRECT)


@given(st.text(max_size=300))
def test_decide_never_raises_on_any_text(text: str) -> None:
    """Any body text yields a decision."""
    decide(email("From: friend@example.org", text.replace("\r", "")), RULES)
    decide(sms("+15550100177", text), RULES)


def test_short_names_match_whole_words_only() -> None:
    """A short name is held as a word of its own, not inside a longer word."""
    rules = make_rules(people=[{"id": "x", "name": "Zed", "emails": ["z@example.org"]}])
    assert decide(email("From: friend@example.org", "Zed was here"), rules).held
    assert not decide(email("From: friend@example.org", "Zedd was here"), rules).held
