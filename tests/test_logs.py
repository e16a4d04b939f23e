"""Logging: nothing about a message, held or not, ever reaches a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from datetime import datetime

import pytest
import structlog
from structlog.testing import capture_logs

from proxy import logs
from proxy.rules import decide
from proxy.traffic import Traffic, bucket
from tests.factories import email, make_rules

HELD = email(
    "From: Mark Smith <mark.smith@gmail.com>\nSubject: CANARY-SUBJECT",
    "CANARY-BODY call me on +1 555 010 0199",
)
CANARIES = ("CANARY", "mark", "Mark", "gmail", "555", "0199", "Smith")


def _assert_clean(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text, canary


def _assert_clean_records(records: list[dict[str, object]]) -> None:
    """The lines are clean but for their timestamps, whose digits may spell a canary
    ("12:00:01.555"); each is a real ISO time."""
    for record in records:
        datetime.fromisoformat(str(record.pop("timestamp")))
    _assert_clean(json.dumps(records))


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
    _assert_clean_records(records)


def test_level_filters() -> None:
    """Below the configured level nothing is written."""
    stream = io.StringIO()
    logs.configure(level="warning", stream=stream)
    try:
        logs.get_logger("test").info("quiet")
    finally:
        structlog.reset_defaults()
    assert stream.getvalue() == ""


class _StalledSink(io.StringIO):
    """A log sink that blocks every write until released: a stalled journald."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.released.wait(10)
        return super().write(text)


def test_the_daemon_never_waits_for_its_log_and_loses_no_line_it_kept() -> None:
    """With a stalled sink, logging returns at once; once it moves, every line is written,
    in order, redacted."""
    sink = _StalledSink()
    logs.configure(level="info", stream=sink, background=True)
    try:
        logger = logs.get_logger("sms")
        started = time.monotonic()
        for n in range(200):
            logger.info("message handled", channel="sms", attempt=n, subject=HELD.subject)
        assert time.monotonic() - started < 2.0  # not 200 stalled writes
        assert sink.getvalue() == ""
        sink.released.set()
        logs.drain()
    finally:
        sink.released.set()
        structlog.reset_defaults()
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [r["attempt"] for r in records] == list(range(200))
    _assert_clean_records(records)


def test_a_dead_sink_cannot_fill_the_memory_and_the_drop_is_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past QUEUED_LINES waiting, new lines are dropped, and one line says how many."""
    monkeypatch.setattr(logs, "QUEUED_LINES", 10)
    sink = _StalledSink()
    logs.configure(level="info", stream=sink, background=True)
    try:
        logger = logs.get_logger("sms")
        logger.info("first")
        time.sleep(0.2)  # the log thread holds "first" in its stalled write
        for n in range(50):
            logger.info("message handled", attempt=n)
        sink.released.set()
        time.sleep(0.5)  # the thread writes what it kept, then says what it dropped
        logs.drain()
    finally:
        sink.released.set()
        structlog.reset_defaults()
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    kept = [r["attempt"] for r in records if r["event"] == "message handled"]
    assert kept == list(range(10))
    dropped = [r for r in records if r["event"].startswith("log lines dropped")]
    assert len(dropped) == 1
    assert dropped[0]["dropped"] == 40


def test_a_line_logged_after_drain_is_written_not_lost() -> None:
    """Once the log thread is drained (at exit), a late line is written at once."""
    stream = io.StringIO()
    logs.configure(level="info", stream=stream, background=True)
    try:
        logs.get_logger("daemon").info("before")
        logs.drain()
        logs.get_logger("daemon").info("after")
    finally:
        structlog.reset_defaults()
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "before",
        "after",
    ]


def test_traffic_is_logged_as_coarse_totals_of_every_message() -> None:
    """Totals per channel, in buckets a household mailbox never leaves the first of; the
    counts start again after each report."""
    traffic = Traffic()
    for _ in range(99):
        traffic.count("smtp")
    for _ in range(100):
        traffic.count("sms")
    assert traffic.report(("smtp", "imap", "sms")) == {
        "smtp": "under 100", "imap": "under 100", "sms": "100 to 999",
    }  # fmt: skip
    assert traffic.report(("smtp",)) == {"smtp": "under 100"}
    assert [bucket(n) for n in (0, 1, 99, 100, 999, 1000, 10**9)] == [
        "under 100", "under 100", "under 100", "100 to 999", "100 to 999", "1000 or more",
        "1000 or more",
    ]  # fmt: skip


def test_traffic_totals_are_logged_once_a_period_through_the_real_pipeline() -> None:
    """Each period one "traffic" line, its buckets kept by the redaction, its counts reset."""
    stream = io.StringIO()
    logs.configure(level="info", stream=stream)
    traffic = Traffic()

    async def run() -> None:
        for _ in range(150):
            traffic.count("smtp")
        task = asyncio.get_running_loop().create_task(traffic.log_every(("smtp", "sms"), 0.05))
        await asyncio.sleep(0.13)
        task.cancel()

    try:
        asyncio.run(run())
    finally:
        structlog.reset_defaults()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["smtp"], r["sms"]) for r in records] == [
        ("traffic", "100 to 999", "under 100"), ("traffic", "under 100", "under 100"),
    ]  # fmt: skip


def test_a_librarys_own_log_lines_keep_only_their_logger_and_level() -> None:
    """aiosmtpd's 'mail.log' writes what a client typed; through our logging it becomes
    "library log" with the logger's name and level: no address, no text, and an exception
    as its type and place only."""
    stream = io.StringIO()
    logs.configure(level="info", stream=stream)
    try:
        library = logging.getLogger("mail.log")
        library.info("%r sender: %s", ("192.0.2.7", 4000), "mark.smith@gmail.com")
        library.warning("%r unrecognised: %s", ("192.0.2.7", 4000), "MARK.SMITH@GMAIL.COM")
        try:
            raise ValueError("CANARY-SUBJECT from mark.smith@gmail.com")
        except ValueError:
            library.exception("%r SMTP session exception", ("192.0.2.7", 4000))
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers = []
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["component"], r["level"]) for r in records] == [
        ("library log", "mail.log", "warning"), ("library log", "mail.log", "error"),
    ]  # fmt: skip
    assert records[1]["error"] == "ValueError"
    text = stream.getvalue().lower()
    assert "mark" not in text
    assert "192.0.2.7" not in text
    assert "canary" not in text
