"""Normalize and decide on mail written to break them: never a raise, only UTF-8, no blind spot.

Issue 20: no input, however crafted, makes normalize or decide raise, and cost is linear in
size. The properties run on random MIME trees and encoded words (tests/strategies.py); the
regressions at the end are inputs fuzzing found (docs/fuzz-findings.md, fuzz/regressions/).
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.invariants import assert_seals, assert_utf8
from proxy.message import InboundMessage
from proxy.normalize import normalize_email
from proxy.rules import decide
from tests.factories import RECEIVED_AT, make_rules, sms
from tests.strategies import (
    address_spellings,
    encoded_words,
    hostile_messages,
    messages_naming,
    phone_spellings,
)

ONE_PERSON = make_rules(intermediaries=[], allow={})  # Mark Smith, and no one else
NAME = "Mark Smith"
REGRESSIONS = Path(__file__).resolve().parent.parent / "fuzz" / "regressions" / "email"
LINEAR_LIMIT_SECONDS = 2.0  # for 64 KiB, as in the fuzz targets
_HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _normalize(raw: bytes, *, headers_only: bool = False) -> InboundMessage:
    return normalize_email(
        raw,
        envelope_sender="",
        received_at=RECEIVED_AT,
        default_region="US",
        headers_only=headers_only,
    )


def _assert_held_by_his_name(raw: bytes) -> None:
    """The message is held, and by his name (not by some other rule)."""
    decision = decide(_normalize(raw), ONE_PERSON)
    assert decision.held
    assert decision.rule_id == "people.mark.name"


def _check(raw: bytes) -> None:
    """Normalize (whole, and headers only) and decide; every string must be UTF-8."""
    for headers_only in (False, True):
        message = _normalize(raw, headers_only=headers_only)
        decision = decide(message, ONE_PERSON)
        assert_utf8(message, "message")
        assert_utf8(decision, "decision")


@_HOSTILE
@given(hostile_messages())
def test_hostile_mime_never_raises_and_reads_as_utf8(raw: bytes) -> None:
    """Any MIME tree, charset, transfer encoding and header is read without raising, and
    every string of the message and decision is valid UTF-8."""
    _check(raw)


@_HOSTILE
@given(st.lists(encoded_words(), min_size=1, max_size=4), st.sampled_from(("Subject", "From")))
def test_encoded_words_in_any_charset_read_as_utf8(words: list[str], header: str) -> None:
    """Encoded words in any charset, q or b, broken base64 included, decode to valid UTF-8."""
    value = " ".join(words)
    if header == "From":
        value += " <someone@example.org>"
    _check(f"{header}: {value}\n\nhi\n".encode())


@_HOSTILE
@given(messages_naming(NAME))
def test_a_blocked_name_anywhere_readable_is_found(placed: tuple[str, bytes]) -> None:
    """His name in a header, a text or HTML part, a forwarded message or an attachment's name,
    in any charset or encoding, around any structure, gets the message held for him."""
    place, raw = placed
    decision = decide(_normalize(raw), ONE_PERSON)
    assert decision.held, f"{NAME} in {place} was not found"
    assert decision.rule_id is not None
    assert decision.rule_id.startswith("people.mark."), decision.rule_id


# What aiosmtpd hands over with SMTPUTF8 on: command arguments decoded as UTF-8 with
# surrogate escapes, so an 8-bit byte in MAIL FROM or RCPT TO arrives as a lone surrogate.
ENVELOPE_TEXT = st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))


@_HOSTILE
@given(ENVELOPE_TEXT, st.lists(ENVELOPE_TEXT, max_size=3))
def test_hostile_envelope_reads_as_utf8_and_seals(sender: str, recipients: list[str]) -> None:
    """Any MAIL FROM and RCPT TO bytes give a message of UTF-8 strings that seals."""
    message = normalize_email(
        b"From: friend@example.org\n\nhi\n",
        envelope_sender=sender,
        recipients=tuple(recipients),
        received_at=RECEIVED_AT,
        default_region="US",
    )
    decision = decide(message, ONE_PERSON)
    assert_utf8(message, "message")
    assert_seals(message, decision)


@_HOSTILE
@given(phone_spellings(("555", "010", "0199")), st.sampled_from(("sms", "email")))
def test_his_number_written_any_readable_way_is_found(number: str, channel: str) -> None:
    """His number in a text or an email, in any digits a reader reads (fullwidth,
    Arabic-Indic ...) and with any separator (NBSP, non-breaking hyphen, en dash ...), is
    found as his."""
    text = f"his new number is {number} call him"
    message = sms("+15550100177", text) if channel == "sms" else _normalize(
        f"From: friend@example.org\nContent-Type: text/plain; charset=utf-8\n\n{text}\n".encode()
    )  # fmt: skip
    decision = decide(message, ONE_PERSON)
    assert decision.held, f"{number!r} was not found"
    assert decision.rule_id == "people.mark.phones"


@_HOSTILE
@given(address_spellings("mark.smith", "gmail.com"))
def test_his_address_written_any_readable_way_is_found(address: str) -> None:
    """His address in a text, with a fullwidth or small at sign, ideographic full stops,
    fullwidth letters or a zero-width space inside, is found as his."""
    decision = decide(sms("+15550100177", f"write to him at {address} now"), ONE_PERSON)
    assert decision.held, f"{address!r} was not found"
    assert decision.rule_id == "people.mark.emails"


# Regressions: inputs fuzzing found. Each fails until normalize/rules keep issue 20.

UTF7_LONE_SURROGATE = b"From: friend@example.org\nSubject: =?utf-7?q?+2AA-?=\n\nhi\n"
UTF7_DISPLAY_NAME = b"From: =?utf-7?q?+2AA-?= <friend@example.org>\n\nhi\n"
UTF7_BODY = b"From: friend@example.org\nContent-Type: text/plain; charset=utf-7\n\n+2AA- hi\n"


@pytest.mark.parametrize(
    "raw",
    [UTF7_LONE_SURROGATE, UTF7_DISPLAY_NAME, UTF7_BODY],
    ids=["subject", "display-name", "body"],
)
def test_utf7_lone_surrogate_reads_as_utf8(raw: bytes) -> None:
    """UTF-7 "+2AA-" decodes to a lone surrogate (U+D800); it must not reach the message,
    nor make decide raise (Aho-Corasick refuses such text)."""
    _check(raw)


def test_8bit_envelope_recipient_reads_as_utf8_and_seals() -> None:
    """RCPT TO:<\xffsam@home.example> (a lone surrogate from aiosmtpd) does not reach the
    message's strings, so a held message from him still seals instead of raising."""
    message = normalize_email(
        b"From: friend@example.org\n\nhi\n",
        envelope_sender="mark.smith@gmail.com",
        recipients=("\udcffsam@home.example",),
        received_at=RECEIVED_AT,
        default_region="US",
    )
    decision = decide(message, ONE_PERSON)
    assert decision.held
    assert_utf8(message, "message")
    assert_seals(message, decision)


@pytest.mark.parametrize(
    "number",
    ["555\u00a0010\u00a00199", "555\u2011010\u20110199", "555\u2013010\u20130199",
     "\uff15\uff15\uff15 \uff10\uff11\uff10 \uff10\uff11\uff19\uff19",
     "\u0665\u0665\u0665 \u0660\u0661\u0660 \u0660\u0661\u0669\u0669"],
    ids=["nbsp", "non-breaking-hyphen", "en-dash", "fullwidth-digits", "arabic-indic-digits"],
)  # fmt: skip
def test_his_number_with_unicode_digits_or_separators_is_found(number: str) -> None:
    """ "his new number is 555 010 0199" with NBSP (as copied from a contact card), a
    non-breaking hyphen, an en dash, fullwidth or Arabic-Indic digits holds the text."""
    decision = decide(sms("+15550100177", f"his new number is {number}"), ONE_PERSON)
    assert decision.held
    assert decision.rule_id == "people.mark.phones"


@pytest.mark.parametrize(
    "address",
    ["mark.smith\uff20gmail.com", "mark.smith@gmail\u3002com", "mark.smith\u200b@gmail.com"],
    ids=["fullwidth-at", "ideographic-full-stop", "zero-width-space"],
)
def test_his_address_with_lookalike_punctuation_is_found(address: str) -> None:
    """His address written with a fullwidth at sign (U+FF20), an ideographic full stop (U+3002)
    in the domain, or a zero-width space inside holds the text."""
    decision = decide(sms("+15550100177", f"write to {address}"), ONE_PERSON)
    assert decision.held
    assert decision.rule_id == "people.mark.emails"


def _elapsed(raw: bytes) -> float:
    start = time.perf_counter()
    _check(raw)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "markup",
    [b"<a" * 30000, b"<!--" * 15000, b"</" * 30000, b"<a b='" * 10000],
    ids=["unclosed-tags", "unclosed-comments", "unclosed-end-tags", "unclosed-attributes"],
)
def test_html_of_unclosed_markup_costs_linear_time(markup: bytes) -> None:
    """60 KB of unclosed HTML markup is read in well under 2 s (html.parser was quadratic)."""
    raw = b"From: friend@example.org\nContent-Type: text/html\n\n" + markup
    assert _elapsed(raw) < LINEAR_LIMIT_SECONDS


@pytest.mark.parametrize(
    "headers",
    [
        b'Content-Type: text/plain; charset="' + b";" * 60000,
        b'Content-Type: multipart/mixed; boundary="' + b";" * 60000,
        b'Content-Type: text/plain\nContent-Disposition: attachment; filename="' + b";" * 60000,
    ],
    ids=["content-type", "boundary", "content-disposition"],
)
def test_quoted_parameter_full_of_semicolons_costs_linear_time(headers: bytes) -> None:
    """A MIME parameter opening a quote and followed by 60,000 ';' is read in well under 2 s
    (the stdlib's email.message._parseparam recounts the quotes before every ';')."""
    raw = b"From: friend@example.org\n" + headers + b"\n\nhi\n"
    assert _elapsed(raw) < LINEAR_LIMIT_SECONDS


def _padding(count: int) -> bytes:
    """`count` parameters of 30 characters each, as written before a charset."""
    return b"".join(b'; x%d="%s"' % (n, b"y" * 20) for n in range(count))


@pytest.mark.parametrize("count", [40, 120], ids=["1,108-characters", "120-parameters"])
@pytest.mark.parametrize(
    ("charset", "encoding", "body"),
    [
        (b"utf-16", b"base64", base64.encodebytes("hello from Mark Smith".encode("utf-16"))),
        (b"utf-7", b"7bit", b"hello from Mark+ACA-Smith"),
    ],
    ids=["utf-16-base64", "utf-7"],
)
def test_charset_after_many_parameters_still_reads_the_name(
    charset: bytes, encoding: bytes, body: bytes, count: int
) -> None:
    """A charset= written after many other parameters still decodes the part (a mail
    client reads the whole header): his name in it is found, not delivered."""
    raw = (
        b"From: friend@example.org\nContent-Type: text/plain" + _padding(count)
        + b"; charset=" + charset + b"\nContent-Transfer-Encoding: " + encoding + b"\n\n"
        + body + b"\n"
    )  # fmt: skip
    _assert_held_by_his_name(raw)


@pytest.mark.parametrize(
    "parameters",
    [b"charset=us-ascii; charset=utf-16", b"charset=utf-16 (the charset)"],
    ids=["named-twice", "with-a-comment"],
)
def test_every_charset_a_reader_could_use_is_tried(parameters: bytes) -> None:
    """A charset named twice (readers differ on which wins) or followed by an RFC 2045
    comment still decodes the part in utf-16 for the rules: his name in it is found."""
    body = base64.encodebytes("hello from Mark Smith".encode("utf-16"))
    raw = (
        b"From: friend@example.org\nContent-Type: text/plain; " + parameters
        + b"\nContent-Transfer-Encoding: base64\n\n" + body
    )  # fmt: skip
    _assert_held_by_his_name(raw)


@pytest.mark.parametrize(
    "markup",
    [
        b"<p>M<span hidden>zz</span>ark Smith</p>",
        b"<p>M<span style='display:none'>zz</span>ark Smith</p>",
    ],
    ids=["hidden", "display-none"],
)
def test_html_a_browser_does_not_render_does_not_hide_his_name(markup: bytes) -> None:
    """Text a browser does not show (the hidden attribute, display:none), spliced into his
    name, does not keep the name the reader sees ("Mark Smith") from the rules."""
    raw = b"From: friend@example.org\nContent-Type: text/html; charset=utf-8\n\n" + markup
    _assert_held_by_his_name(raw)


_BASE64_NAME = base64.encodebytes(b"hello from Mark Smith today")
_QP_NAME = b"hello from =4Dark =53mith today\n"


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (b"base64 ", _BASE64_NAME),
        (b"base64\t", _BASE64_NAME),
        (b"base64 (as sent)", _BASE64_NAME),
        (b"quoted-printable ", _QP_NAME),
    ],
    ids=["base64-trailing-space", "base64-trailing-tab", "base64-comment", "qp-trailing-space"],
)
def test_transfer_encoding_with_whitespace_or_comment_is_decoded(
    encoding: bytes, body: bytes
) -> None:
    """A transfer encoding followed by a space, a tab or an RFC 2045 comment (which a mail
    client reads as that encoding) is decoded for the rules: his name in the part is found."""
    raw = (
        b"From: friend@example.org\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: " + encoding + b"\n\n" + body
    )
    _assert_held_by_his_name(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"From: friend@example.org\nContent-Type: text/plain\nContent-Transfer-Encoding: 7bit\n"
        b"Content-Transfer-Encoding: base64\n\n" + _BASE64_NAME,
        b"From: friend@example.org\nContent-Type: multipart/mixed; boundary=a; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
        + _BASE64_NAME
        + b"--b--\n",
        b"From: friend@example.org\nContent-Type: text/plain\nContent-Type: text/html\n\n"
        b"<p>Ma<b></b>rk Smith</p>",
    ],
    ids=["transfer-encoding-twice", "boundary-twice", "content-type-twice"],
)
def test_a_header_given_twice_is_read_both_ways(raw: bytes) -> None:
    """A part whose transfer encoding, boundary or type is given twice (readers differ on
    which wins) is read both ways for the rules: his name, read either way, is found."""
    _assert_held_by_his_name(raw)


@pytest.mark.parametrize(
    "subject",
    [
        b"=?iso-8859-1?q?Mark_Smith?= =?x-no-such-charset?q?hello?=",
        b"=?x-no-such-charset?q?hello?= =?utf-8?b?TWFyayBTbWl0aA==?=",
        b"=?UTF-8*en?Q?Mark_Smith?=",
    ],
    ids=["beside-an-unknown-charset", "after-an-unknown-charset", "rfc2231-language"],
)
def test_an_encoded_word_mail_clients_decode_is_decoded(subject: bytes) -> None:
    """An encoded word naming him is decoded even beside a word in a charset no codec knows,
    or with an RFC 2231 language after its charset (utf-8*en), as mail clients decode it."""
    raw = b"From: friend@example.org\nSubject: " + subject + b"\n\nhi\n"
    _assert_held_by_his_name(raw)


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*")), ids=lambda p: p.name)
def test_fuzz_finding_is_read_without_raising_and_in_time(path: Path) -> None:
    """A message fuzzing found breaking issue 20 (fuzz/regressions/email/) is normalized and
    decided without raising, as UTF-8, within the time limit."""
    assert _elapsed(path.read_bytes()) < LINEAR_LIMIT_SECONDS
