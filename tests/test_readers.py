"""Reading beside the event loop: large mail in a child, within a budget, always decided."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from proxy import readers as readers_module
from proxy.alerts.order_mark import Topic
from proxy.message import Action, Kind
from proxy.readers import INLINE_BYTES, UNREADABLE, Postmark, Readers, read_email
from proxy.rules import compile_rules
from tests.factories import MARK, RECEIVED_AT, make_config

ROOT = Path(__file__).resolve().parents[1]

CONFIG = make_config()
RULES = compile_rules(CONFIG)
POSTMARK = Postmark(
    sender="friend@example.org", recipients=("sam@home.example",), received_at=RECEIVED_AT,
    default_region="US",
)  # fmt: skip
PADDING = b"nothing to see here, just an ordinary line of a long letter\r\n" * (
    2 * INLINE_BYTES // 60
)
INNOCENT = b"From: friend@example.org\r\nSubject: news\r\n\r\n" + PADDING
ABOUT_HIM = INNOCENT + b"and I saw Mark Smith at the gate\r\n"


def _with_readers(body: Callable[[Readers], Awaitable[None]], **options: int) -> None:
    async def run() -> None:
        readers = Readers(CONFIG, **options)
        try:
            await body(readers)
        finally:
            await readers.close()

    asyncio.run(run())


@pytest.mark.parametrize(("raw", "action"), [(INNOCENT, Action.DELIVER), (ABOUT_HIM, Action.HOLD)])
def test_a_large_message_is_decided_in_a_child_as_it_would_be_here(
    raw: bytes, action: Action
) -> None:
    """The child reads with the same rules: the same decision, and the bytes come back whole."""

    async def body(readers: Readers) -> None:
        message, decision = await readers.read(raw, POSTMARK, RULES)
        inline_message, inline_decision = read_email(raw, POSTMARK, RULES)
        assert decision.action is action
        assert (decision.rule_id, decision.kind) == (inline_decision.rule_id, inline_decision.kind)
        assert message.raw == raw
        assert message.senders == inline_message.senders

    _with_readers(body)


HIS_THREAT = (b"From: Mark <mark.smith@gmail.com>\r\nSubject: news\r\n\r\n" + PADDING
              + b"I know where you live.\r\n")  # fmt: skip


@pytest.mark.parametrize(
    "raw", [HIS_THREAT, HIS_THREAT.replace(PADDING, b"")], ids=["in a child", "here"]
)
def test_his_mail_is_assessed_on_its_whole_text_here_and_in_a_child(raw: bytes) -> None:
    """His mail is decided on its header block, and its body is read (in the child, for a
    large one) only to assess it: the decision comes back with the reasons, and the
    message sealed is still the header block's reading (no mentions from the body)."""

    async def body(readers: Readers) -> None:
        message, decision = await readers.read(raw, POSTMARK, RULES)
        assert (decision.action, decision.kind) == (Action.HOLD, Kind.DIRECT)
        assert str(decision.assessment) == "urgent:proximity"
        assert message.raw == raw
        assert read_email(raw, POSTMARK, RULES)[1] == decision

    _with_readers(body)


ORDERED = make_config(people=[{**MARK, "court_order": {
    "children": ["Lily"], "channels": ["email"], "relay": "Dana Reyes"}}])  # fmt: skip
HIS_PICKUP = (b"From: Mark <mark.smith@gmail.com>\r\nSubject: Lily\r\n\r\n" + PADDING
              + b"I pick Lily up from school today.\r\n")  # fmt: skip


def test_his_mail_under_an_order_is_read_for_logistics_in_a_child_too() -> None:
    """The child compiles his court order with the rules: a large pickup change comes back
    with its logistics reasons and order mark, as read here."""

    async def run() -> None:
        readers = Readers(ORDERED)
        rules = compile_rules(ORDERED)
        try:
            _, decision = await readers.read(HIS_PICKUP, POSTMARK, rules)
        finally:
            await readers.close()
        assert str(decision.assessment) == "urgent:same_day_logistics,elevated:child_logistics"
        assert decision.order is not None
        assert decision.order.topic is Topic.CHILDREN
        assert read_email(HIS_PICKUP, POSTMARK, rules)[1] == decision

    asyncio.run(run())


def test_a_delivered_message_is_not_assessed() -> None:
    """Mail the rules let through carries no assessment, whatever its text says."""
    raw = b"From: friend@example.org\r\nSubject: hi\r\n\r\nI know where you live.\r\n"
    _, decision = read_email(raw, POSTMARK, RULES)
    assert decision.action is Action.DELIVER
    assert str(decision.assessment) == "digest"


def test_a_child_that_dies_mid_read_leaves_the_message_to_the_linear_scan() -> None:
    """A killed child is replaced, and the message is still decided, by the scan."""

    async def body(readers: Readers) -> None:
        await readers.start()
        child = readers._idle.get_nowait()
        readers._idle.put_nowait(child)
        process = await child.ensure_started()
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        dead = [process]  # handed out once, as if it had died unseen between two messages

        async def first_the_dead_one() -> asyncio.subprocess.Process:
            return dead.pop() if dead else await started()

        started = child.ensure_started
        child.ensure_started = first_the_dead_one  # type: ignore[method-assign]
        _, decision = await readers.read(ABOUT_HIM, POSTMARK, RULES)
        assert not dead
        assert decision.action is Action.HOLD
        assert decision.rule_id == "people.mark.name"
        assert "linear scan" in decision.reason

    _with_readers(body, processes=1)


def test_a_message_over_every_budget_is_held_as_unreadable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no time at all to read, the message is held (releasable), never left undecided."""
    monkeypatch.setattr(readers_module, "BUDGET_BASE", 0.0)
    monkeypatch.setattr(readers_module, "BUDGET_PER_MIB", 0.0)

    async def body(readers: Readers) -> None:
        message, decision = await readers.read(INNOCENT, POSTMARK, RULES)
        assert decision is UNREADABLE
        assert decision.kind is Kind.PASSIVE
        assert message.raw == INNOCENT

    _with_readers(body)


def test_new_rules_reach_the_children() -> None:
    """After replace, a child reads with the new config's rules."""
    renamed = make_config(people=[{"id": "rick", "name": "Rick Jones", "emails": []}])

    async def body(readers: Readers) -> None:
        _, before = await readers.read(ABOUT_HIM, POSTMARK, RULES)
        readers.replace(renamed)
        _, after = await readers.read(ABOUT_HIM, POSTMARK, compile_rules(renamed))
        assert before.action is Action.HOLD
        assert after.action is Action.DELIVER

    _with_readers(body, processes=1)


def test_his_mail_is_decided_from_its_headers_alone() -> None:
    """A direct match needs no body reading: the message is not read past its header block."""
    raw = b"From: mark.smith@gmail.com\r\n\r\n" + PADDING
    message, decision = read_email(raw, POSTMARK, RULES)
    assert decision.kind is Kind.DIRECT
    assert "ordinary line" not in message.text


def test_a_read_cancelled_half_way_leaves_no_torn_pipe() -> None:
    """A read cancelled mid-exchange (the sender hung up) kills that child, and the next
    message is read by a fresh one, correctly."""

    async def body(readers: Readers) -> None:
        await readers.start()
        reading = asyncio.ensure_future(readers.read(INNOCENT + PADDING * 40, POSTMARK, RULES))
        await asyncio.sleep(0.02)  # mid-write or mid-read
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        _, decision = await readers.read(ABOUT_HIM, POSTMARK, RULES)
        assert decision.rule_id == "people.mark.name"
        assert "linear scan" not in decision.reason

    _with_readers(body, processes=1)


def test_the_kernel_ends_a_reader_past_its_cpu_budget() -> None:
    """A reading process that spends more CPU than its budget is ended by SIGXCPU (its
    RLIMIT_CPU), however long the clock says it took: the budget is CPU, not wall time."""
    spin = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from proxy.readers import _limit_cpu\n"
        "_limit_cpu(0.5)\n"
        "while True: pass\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", spin, str(ROOT)], timeout=60, check=False)
    assert result.returncode == -signal.SIGXCPU
    assert time.monotonic() - started < 30
