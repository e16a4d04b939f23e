"""Logging: nothing about a message, held or not, ever reaches a log line."""

from __future__ import annotations

import io
import json

import structlog
from structlog.testing import capture_logs

from proxy import logs
from proxy.rules import decide
from tests.factories import email, make_rules

HELD = email(
    "From: Mark Smith <mark.smith@gmail.com>\nSubject: CANARY-SUBJECT",
    "CANARY-BODY call me on +1 555 010 0199",
)
CANARIES = ("CANARY", "mark", "Mark", "gmail", "555", "0199", "Smith")


def _assert_clean(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, canary


def test_redaction_replaces_unknown_keys_and_message_values() -> None:
    """Values under keys not on the safe list, and message objects anywhere, are replaced."""
    decision = decide(HELD, make_rules())
    with capture_logs(processors=[logs.redact]) as captured:
        log = structlog.get_logger()
        log.info("message handled", sender="mark.smith@gmail.com", subject=HELD.subject)
        log.info("message handled", channel=HELD, config=decision)
        log.info("text", body=HELD.text, raw=HELD.raw)
    _assert_clean(repr(captured))
    assert captured[0]["sender"] == logs.REDACTED
    assert captured[1]["channel"] == logs.REDACTED


def test_addresses_and_numbers_in_safe_text_are_masked() -> None:
    """An address or number that slips into the event text or a safe key is masked."""
    with capture_logs(processors=[logs.redact]) as captured:
        structlog.get_logger().warning(
            "could not reach mark.smith@gmail.com", problems="call +1 (555) 010-0199"
        )
    _assert_clean(repr(captured))
    assert captured[0]["event"] == "could not reach [address]"


def test_exceptions_are_logged_without_their_text() -> None:
    """An exception is logged as its type and place, never its text (which may quote a header)."""
    try:
        raise ValueError("bad header from mark.smith@gmail.com: CANARY-SUBJECT")
    except ValueError:
        with capture_logs(processors=[logs.redact]) as captured:
            structlog.get_logger().exception("delivery failed")
    _assert_clean(repr(captured))
    assert captured[0]["error"] == "ValueError"
    assert captured[0]["where"].startswith("test_logs.py:")


def test_configured_output_is_json_lines_and_clean() -> None:
    """The real pipeline writes one JSON object per line, redacted."""
    stream = io.StringIO()
    logs.configure(level="debug", stream=stream)
    try:
        logger = logs.get_logger("smtp")
        logger.info("message handled", subject=HELD.subject, message=HELD)
        logger.debug("peer", peer="mark.smith@gmail.com")
    finally:
        structlog.reset_defaults()
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["message handled", "peer"]
    assert records[0]["component"] == "smtp"
    assert records[0]["level"] == "info"
    _assert_clean(stream.getvalue())


def test_level_filters() -> None:
    """Below the configured level nothing is written."""
    stream = io.StringIO()
    logs.configure(level="warning", stream=stream)
    try:
        logs.get_logger("test").info("quiet")
    finally:
        structlog.reset_defaults()
    assert stream.getvalue() == ""
