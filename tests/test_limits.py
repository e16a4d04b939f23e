"""Reading caps: a hostile shape is read in part, and what is past the caps still holds."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.message import Action, Kind
from proxy.normalize import email as email_module
from proxy.normalize import normalize_email, normalize_sms
from proxy.normalize.email import EmailReading
from proxy.normalize.limits import LIMITS, analysed_prefix
from proxy.normalize.valid import valid_text
from proxy.rules import decide
from tests.factories import RECEIVED_AT, make_rules
from tests.hostile_shapes import HEAD, MIB, shapes

RULES = make_rules()


SHAPES = {name: raw for name, raw in shapes().items() if len(raw) < 3 * MIB}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_hostile_shape_is_read_in_part_and_delivered_if_innocent(shape: str) -> None:
    """Past a cap the message is marked incomplete, and with nothing of his it is delivered."""
    message = normalize_email(SHAPES[shape], envelope_sender="", received_at=RECEIVED_AT)
    assert not message.complete
    assert decide(message, RULES).action is Action.DELIVER


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_his_name_past_every_cap_still_holds_the_message(shape: str) -> None:
    """A name placed after a megabyte of hostile shape is found by the linear scan."""
    raw = SHAPES[shape] + b"\r\nlove, Mark Smith\r\n"
    decision = decide(normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT), RULES)
    assert decision.action is Action.HOLD
    assert decision.rule_id == "people.mark.name"


def test_his_sender_header_past_the_header_cap_is_a_direct_hold() -> None:
    """A From line buried after the header cap cannot be rescued by an allowed From."""
    junk = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 60) for i in range(LIMITS.header_bytes // 60))
    raw = b"From: dana@reyes-law.example\r\n" + junk + b"Sender: mark.smith@gmail.com\r\n\r\nhi\r\n"
    message = normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT)
    assert not message.headers_complete
    decision = decide(message, RULES)
    assert (decision.action, decision.kind) == (Action.HOLD, Kind.DIRECT)


def test_an_intermediary_past_the_header_cap_holds_the_message_as_passive() -> None:
    """An intermediary's address in a header block not read to its end holds the message
    (passive: she is not him), even beside an allowed From."""
    junk = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 60) for i in range(LIMITS.header_bytes // 60))
    raw = b"From: dana@reyes-law.example\r\n" + junk + b"Reply-To: carol@example.net\r\n\r\nhi\r\n"
    decision = decide(normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT), RULES)
    assert (decision.action, decision.kind) == (Action.HOLD, Kind.PASSIVE)
    assert decision.rule_id == "intermediaries.carol"


def test_an_ordinary_message_is_read_whole() -> None:
    """Real mail stays within every cap, so the close reading alone decides it."""
    raw = (
        HEAD + b"Subject: lunch\r\nContent-Type: text/plain\r\n\r\n" + b"see you at noon\r\n" * 500
    )
    message = normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT)
    assert message.complete
    assert message.headers_complete


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: =?utf-7?q?+2AA-?=\r\n\r\nx",
        b"From: =?utf-7?q?+2AA-?= <a@example.org>\r\n\r\nx",
        b"Content-Type: text/plain; charset=utf-7\r\n\r\n+2AA-",
        b"Content-Type: text/plain; charset=utf-16-le\r\n\r\n\x00\xd8",
        b"Content-Type: text/html; charset=utf-7\r\n\r\n<p>+2AA-</p>",
        b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\xfe",
        b"Content-Type: text/plain\r\n"
        b"Content-Disposition: attachment; filename==?utf-7?q?+2AA-?=\r\n\r\nx",
    ],
)
def test_every_decode_path_yields_valid_text(raw: bytes) -> None:
    """A lone surrogate from any decoder becomes U+FFFD: every field encodes as UTF-8."""
    message = normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT)
    fields = [message.subject, message.text, message.search_text]
    fields += [i.value for i in (*message.senders, *message.mentions)]
    for field in fields:
        field.encode("utf-8")
    decide(message, RULES)


def test_a_text_with_a_lone_surrogate_is_valid_text() -> None:
    """A text message is made valid the same way."""
    message = normalize_sms(
        sender="+1 555 010 0199\ud800", recipient="", text="hi \udc80 Mark Smith", raw=b"",
        received_at=RECEIVED_AT,
    )  # fmt: skip
    message.text.encode("utf-8")
    message.envelope.sender.encode("utf-8")
    assert decide(message, RULES).action is Action.HOLD


def test_valid_text_keeps_every_other_character() -> None:
    """Only lone surrogates change; astral characters and accents stay."""
    assert valid_text("M\u00e1rk \U0001f600 \ud800x") == "M\u00e1rk \U0001f600 \ufffdx"


def test_the_prefix_is_cut_at_a_line_end_before_the_first_cap() -> None:
    """The parser is given whole lines, never more than the caps allow."""
    raw = HEAD + b"\r\n" + b"line\r\n" * (LIMITS.body_lines + 10)
    prefix = analysed_prefix(raw)
    assert not prefix.complete
    assert prefix.headers_complete
    assert prefix.data.endswith(b"\n")
    assert prefix.data.count(b"\n") <= LIMITS.body_lines + HEAD.count(b"\n") + 1


def test_an_overlong_parameter_header_keeps_the_charset_it_names() -> None:
    """A Content-Type cut for cost (30,000 ';' before its charset) still decodes the part in
    the charset it names, so his name in UTF-7 is found."""
    raw = (
        b"From: friend@example.org\r\nContent-Type: text/plain" + b";" * 30_000
        + b'; charset="utf-7"\r\n\r\nhello from Mark+ACA-Smith\r\n'
    )  # fmt: skip
    message = normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT)
    assert not message.complete
    decision = decide(message, RULES)
    assert decision.rule_id == "people.mark.name"


def test_a_charset_written_the_rfc_2231_way_does_not_stop_the_reading() -> None:
    """charset*=us-ascii'en'utf-8 (an RFC 2231 tuple, on which the stdlib's get_payload
    raises) with an odd transfer encoding: the part is still read and his name found."""
    raw = (
        b"From: friend@example.org\r\nContent-Type: text/html; charset*=us-ascii'en'utf-8\r\n"
        b"Content-Transfer-Encoding: 7bit \r\n\r\n<p>&#77;<!-- x -->ark Smith \xc3\x9f</p>\r\n"
    )  # fmt: skip
    message = normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT)
    assert not message.defects
    assert decide(message, RULES).rule_id == "people.mark.name"


@pytest.mark.parametrize("step", ["parse_head", "with_body"])
def test_a_message_the_parser_rejects_is_still_held_as_direct(
    monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """When the parser gives up on a message, at its header block or its body, his Sender
    line is still found by the scan of its header block, and holds it as direct (an
    allowed From cannot rescue it)."""

    def rejects(*_: object) -> None:
        raise RecursionError

    monkeypatch.setattr(f"proxy.normalize.email.{step}", rejects)
    raw = b"From: dana@reyes-law.example\r\nSender: mark.smith@gmail.com\r\n\r\nhi\r\n"
    message = normalize_email(raw, envelope_sender="", received_at=RECEIVED_AT)
    assert not message.headers_complete
    decision = decide(message, RULES)
    assert (decision.action, decision.kind) == (Action.HOLD, Kind.DIRECT)


def test_reading_the_header_block_first_leaves_the_whole_reading_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """read_email reads the header block for the direct rules, then the whole message from
    the same reading: the second is what a reading of the whole alone gives, even at the
    message's text cap (the header step's other readings of a subject were counted twice
    against it, and cut the body short)."""
    raw = b"From: a@b.example\r\nSubject: =?UTF-8*en?Q?Mark_Smith?= news\r\n\r\n" + (
        b"hello there\r\n" * 20
    )
    alone = EmailReading(raw, envelope_sender="", received_at=RECEIVED_AT).whole()
    tight = dataclasses.replace(LIMITS, message_text=len(alone.text) + 2)
    monkeypatch.setattr(email_module, "LIMITS", tight)
    alone = EmailReading(raw, envelope_sender="", received_at=RECEIVED_AT).whole()
    reading = EmailReading(raw, envelope_sender="", received_at=RECEIVED_AT)
    reading.headers()
    assert reading.whole() == alone
