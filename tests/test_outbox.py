"""The outbox's journal lines: every task kind written as before, old lines still read.

Against tests/twilio_fake.py with the real Provider (the REST API is the one thing faked).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from proxy.channels.sms.journal import Journal
from proxy.channels.sms.outbox import Addresses, Outbox, Task, TaskKind
from proxy.channels.sms.provider import Provider
from tests.test_sms import ACCOUNT, FRIEND, NUMBER, PHONE, TOKEN, eventually, run_with_fake
from tests.twilio_fake import FakeTwilio

# A journal as an older version left it: byte for byte what it wrote.
OLD_LINES = [
    b'{"task":"a-0","kind":"forward","body":"From +15550123456: hi"}\n',
    b'{"task":"a-1","kind":"blank_text","sid":"%s"}\n',
    b'{"task":"a-2","kind":"delete_media","sid":"SM1","media_sid":"ME1"}\n',
    b'{"done":"a-2"}\n',
]


@pytest.mark.parametrize("kind", list(TaskKind))
def test_a_task_is_journaled_as_its_kind_s_plain_string(kind: TaskKind) -> None:
    """Each kind's line names it by the string earlier versions wrote, and reads back equal."""
    task = Task(kind=kind, sid="SM1", media_sid="ME1", body="b", media_urls=("u",))
    line = json.dumps(task.entry("n"), separators=(",", ":"))
    assert line == ('{"task":"n","kind":"' + kind.value
                    + '","sid":"SM1","media_sid":"ME1","body":"b","media_urls":["u"]}')  # fmt: skip
    assert type(task.entry("n")["kind"]) is str
    assert Task.from_entry(json.loads(line)) == task


def test_an_old_journal_is_read_and_an_unknown_kind_skipped(tmp_path: Path) -> None:
    """An older journal's tasks are rewritten byte for byte and done (a blank_text too); a
    task of a kind this version does not know is left out rather than raising."""

    async def test(fake: FakeTwilio) -> None:
        sid, _ = fake.inbound_message(sender=FRIEND, to=NUMBER, body="held")
        path = tmp_path / "journal"
        unknown = b'{"task":"a-3","kind":"frobnicate","sid":"SM2"}\n'
        path.write_bytes(b"".join(OLD_LINES).replace(b"%s", sid.encode()) + unknown)
        journal, entries = Journal.open(path)
        provider = Provider(account_sid=ACCOUNT, auth_token=TOKEN, api_base_url=fake.base_url)
        outbox = Outbox(journal, entries, provider,
                        lambda: Addresses(number=NUMBER, forward_to=PHONE))  # fmt: skip
        journal.compact(outbox.lines())
        assert path.read_bytes() == b"".join(OLD_LINES[:2]).replace(b"%s", sid.encode())
        running = asyncio.ensure_future(outbox.run())
        try:
            await eventually(lambda: len(outbox) == 0)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await journal.aclose()
            await provider.close()
        assert [row["body"] for row in fake.sent()] == ["From +15550123456: hi"]
        assert fake.messages[sid]["body"] == ""  # blanked, as the old task asked

    run_with_fake(test)
