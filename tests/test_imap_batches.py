"""Fetching by bytes: the batch plan as a table, then the watcher against a real Dovecot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from proxy.channels.imap import watch
from proxy.channels.imap.batches import BUDGET, plan
from proxy.pipeline import Fate
from tests import servers
from tests.imap_helpers import FROM_HIM, append_raw, message, token, tokens, wait_for, watching

MiB = 1 << 20


@pytest.mark.parametrize(
    ("sizes", "budget", "most", "batches"),
    [
        ({}, 10, 3, []),
        ({1: 1, 2: 1, 3: 1, 4: 1}, 10, 3, [[1, 2, 3], [4]]),  # by count
        ({1: 4, 2: 4, 3: 4, 4: 4}, 10, 9, [[1, 2], [3, 4]]),  # by bytes
        ({1: 5, 2: 5, 3: 1}, 10, 9, [[1, 2], [3]]),  # exactly the budget fits
        ({1: 1, 2: 11, 3: 1}, 10, 9, [[1], [2], [3]]),  # larger than the budget: alone
        ({1: 11}, 10, 9, [[1]]),
        ({1: 1, 2: None, 3: 1}, 10, 9, [[1], [2], [3]]),  # no size announced: alone
        ({1: 1, 2: -5, 3: "x", 4: 1}, 10, 9, [[1], [2], [3], [4]]),  # nonsense: alone
        ({1: 0, 2: 0, 3: 0}, 10, 2, [[1, 2], [3]]),
    ],
)
def test_plan_cuts_by_count_and_by_bytes(
    sizes: dict[int, object], budget: int, most: int, batches: list[list[int]]
) -> None:
    """Batches keep UID order, hold at most `most` and `budget` bytes, big ones alone."""
    assert plan(sizes, sizes, budget=budget, most=most) == batches


def test_plan_takes_every_uid_once_in_order_even_without_sizes() -> None:
    """UIDs given out of order, twice, or missing from `sizes` each land in one batch."""
    batches = plan([9, 3, 5, 3, 7], {3: 1, 5: 1, 9: 1}, budget=2, most=5)
    assert batches == [[3, 5], [7], [9]]


def test_plan_defaults() -> None:
    """By default a batch is at most 200 messages and 16 MiB."""
    megabytes = dict.fromkeys(range(1, 18), MiB)
    assert [len(b) for b in plan(megabytes, megabytes)] == [16, 1]
    assert [len(b) for b in plan(range(1, 451), {})] == [1] * 450  # no sizes: one by one
    small = dict.fromkeys(range(1, 451), 1000)
    assert [len(b) for b in plan(small, small)] == [200, 200, 50]


@pytest.fixture
def dovecot() -> Iterator[servers.Dovecot]:
    """A fresh private Dovecot per test: each test counts its own FETCH commands."""
    with servers.dovecot() as server:
        yield server


def _padded(mark: str, size: int) -> bytes:
    """A message from him with Subject `mark`, padded with text lines to about `size` bytes."""
    head = message(FROM_HIM, mark)
    line = b"x" * 998 + b"\r\n"
    return head + line * max(0, (size - len(head)) // len(line))


class _Recorder(IMAPClient):  # type: ignore[misc]  # imapclient is untyped
    """A real client that notes the UIDs of every body FETCH it sends; `lie`, if set,
    replaces each RFC822.SIZE the server announced (None: as if it announced none)."""

    body_fetches: list[list[int]]
    lie: tuple[int | None] | None = None

    def fetch(self, messages: object, data: list[str], modifiers: object = None) -> Any:
        result = super().fetch(messages, data, modifiers)
        if any("BODY" in item for item in data):
            type(self).body_fetches.append(sorted(result))
        if self.lie is not None:
            for answer in result.values():
                answer.pop(b"RFC822.SIZE", None)
                if self.lie[0] is not None:
                    answer[b"RFC822.SIZE"] = self.lie[0]
        return result


def _watch(
    tmp_path: Path, server: servers.Dovecot, marks: list[str], lie: tuple[int | None] | None = None
) -> list[list[int]]:
    """Watch INBOX until every message `marks` names is gone; the UIDs of each body FETCH,
    after checking that the messages were handed over once each, in arrival order."""
    handed: list[bytes] = []

    def handle(found: list[watch.Found]) -> list[watch.Judged]:
        handed.extend(raw for raw, _, _ in found)
        return [Fate.HELD for _ in found]

    class Recorder(_Recorder):
        body_fetches: list[list[int]] = []  # noqa: RUF012  # one list per test

    Recorder.lie = lie

    with watching(tmp_path, server, handle, client=Recorder):
        wait_for(lambda: not any(tokens(server, "INBOX")[mark] for mark in marks), timeout=60)
    order = [next(m for m in marks if m.encode() in raw.split(b"\r\n\r\n")[0]) for raw in handed]
    assert order == marks
    return Recorder.body_fetches


def test_mail_larger_than_the_budget_in_total_is_fetched_in_several_batches(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """40 messages of 1 MiB (40 MiB against a 16 MiB budget) are all handled, in order,
    in several FETCHes of at most 16 MiB each."""
    marks = [token() for _ in range(40)]
    for mark in marks:
        append_raw(dovecot, "INBOX", _padded(mark, MiB))
    fetches = _watch(tmp_path, dovecot, marks)
    assert len(fetches) >= 3
    assert all(len(uids) * MiB <= BUDGET + len(uids) * 4096 for uids in fetches)
    assert sorted(uid for uids in fetches for uid in uids) == [u for f in fetches for u in f]


def test_a_message_larger_than_the_budget_is_fetched_alone(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """A message over the budget, between small ones, is fetched by itself and handled."""
    marks = [token() for _ in range(4)]
    sizes = [1000, 1000, BUDGET + MiB, 1000]
    for mark, size in zip(marks, sizes, strict=True):
        append_raw(dovecot, "INBOX", _padded(mark, size))
    fetches = _watch(tmp_path, dovecot, marks)
    assert [len(uids) for uids in fetches] == [2, 1, 1]


@pytest.mark.parametrize(
    ("lie", "fetches"), [((1,), [5]), ((None,), [1] * 5)], ids=["tiny", "none"]
)
def test_a_server_lying_about_sizes_costs_memory_never_mail(
    dovecot: servers.Dovecot, tmp_path: Path, lie: tuple[int | None], fetches: list[int]
) -> None:
    """Sizes announced too small, or not at all, change only how mail is batched: every
    message is still handled once, in order."""
    marks = [token() for _ in range(5)]
    for mark in marks:
        append_raw(dovecot, "INBOX", _padded(mark, 100_000))
    assert [len(uids) for uids in _watch(tmp_path, dovecot, marks, lie)] == fetches
