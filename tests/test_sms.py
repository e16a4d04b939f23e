"""The SMS/voice channel against a local fake of Twilio's REST API, with really signed webhooks.

Each test runs the channel in-process (SmsRunner, a real archive, the pipeline) and plays
Twilio's part with tests/twilio_fake.py: it stores what the provider would, posts the
webhook signed by twilio's own RequestValidator, and records every REST request made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator, add_port, remove_port

from proxy import logs
from proxy.archive import Archive, verify_archive
from proxy.channels.sms.capture import read_capture
from proxy.channels.sms.journal import Journal, JournalUnavailable
from proxy.channels.sms.ledger import Ledger
from proxy.channels.sms.line import forward_bodies
from proxy.channels.sms.outbox import QUIET
from proxy.channels.sms.runner import JOURNAL, SmsRunner
from proxy.channels.sms.webhooks import EMPTY, signed_params
from proxy.config.model import SmsChannel
from proxy.daemon import NO_NEXT_HOP
from proxy.pipeline import Pipeline
from tests.factories import config_data, make_rules, write_secret
from tests.test_smtp import RECIPIENT, free_port, held_items
from tests.twilio_fake import FakeTwilio, Signing, post_webhook

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC = "https://home.example/twilio"
NUMBER = "+15550107777"  # the survivor's public Twilio number
PHONE = "+15550108888"  # the survivor's real phone
MARK = "+15550100199"  # config: "(555) 010-0199"
FRIEND = "+15550123456"
PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
AUDIO = b"RIFF....WAVEfmt " + bytes(2000)


def _parts(raw: bytes) -> dict[str, Any]:
    """The capture's parts: "webhook" (the form body), "record", and media by SID."""
    document = read_capture(raw)
    found: dict[str, Any] = {}
    webhook = document.get("webhook")
    if isinstance(webhook, dict):
        found["webhook"] = webhook["body"]
        found["url"] = webhook["url"]
    if "record" in document:
        found["record"] = document["record"]
    for piece in document["media"]:  # type: ignore[attr-defined]
        found[piece["sid"]] = piece["data"]
    return found


async def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


class Phone:
    """The SMS channel in-process, on a free port, with a real archive, against `fake`."""

    def __init__(self, tmp: Path, fake: FakeTwilio, **settings: Any) -> None:
        self.tmp, self.fake = tmp, fake
        self.port = free_port()
        token_file = tmp / "token"
        write_secret(token_file, TOKEN + "\n")
        data = {
            "listen": f"127.0.0.1:{self.port}", "public_url": PUBLIC, "account_sid": ACCOUNT,
            "auth_token_file": str(token_file), "number": NUMBER, "forward_to": PHONE,
            "api_base_url": fake.base_url, "state_dir": str(tmp / "sms"),
            "reconcile_every": 3600, **settings,
        }  # fmt: skip
        self.settings = SmsChannel.model_validate(data, context={"default_region": "US"})
        self.archive_path = tmp / "archive"
        self.runner: SmsRunner | None = None

    @contextlib.asynccontextmanager
    async def running(self, **rules: Any) -> AsyncIterator[SmsRunner]:
        archive = await Archive.open(self.archive_path, recipients=[RECIPIENT])
        pipeline = Pipeline(
            rules=make_rules(**rules), archive=archive, next_hop=NO_NEXT_HOP,
            hostname="nocontact.test", default_region="US",
        )  # fmt: skip
        runner = SmsRunner(self.settings, pipeline, archive, "US")
        await runner.start()
        self.runner = runner
        try:
            await eventually(lambda: runner.reconciler.passes > 0)  # the pass made at start
            async with aiohttp.ClientSession() as self.session:
                yield runner
        finally:
            await runner.close()
            await archive.close()

    async def post(
        self, path: str, params: dict[str, str], signature: str | Signing | None = Signing.COMPUTE,
        *, public: str | None = None,
    ) -> tuple[int, str]:  # fmt: skip
        return await post_webhook(
            self.session, public_url=public or PUBLIC + path,
            local_url=f"http://127.0.0.1:{self.port}{path}", params=params, auth_token=TOKEN,
            signature=signature,
        )  # fmt: skip

    def held(self) -> list[tuple[dict[str, Any], bytes]]:
        return held_items(self.archive_path)


def run_with_fake(test: Callable[[FakeTwilio], Awaitable[None]]) -> None:
    async def main() -> None:
        async with FakeTwilio(ACCOUNT, TOKEN) as fake:
            await test(fake)

    asyncio.run(main())


def test_held_mms_is_sealed_with_its_media_answered_empty_and_redacted(tmp_path: Path) -> None:
    """A held MMS: sealed with the signed webhook and the picture, empty TwiML, then wiped."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            sid, params = fake.inbound_message(
                sender=MARK, to=NUMBER, body="CANARY open the door",
                media=[("image/png", PICTURE)],
            )  # fmt: skip
            media_sid = fake.media[sid][0].sid
            status, body = await phone.post("/sms", params)
            assert (status, body) == (200, EMPTY)
            await eventually(lambda: sid not in fake.messages and not fake.media.get(sid))
        assert fake.sent() == []
        [(metadata, raw)] = phone.held()
        assert metadata["channel"] == "sms"
        assert metadata["provider_id"] == sid
        parts = _parts(raw)
        assert urllib.parse.parse_qs(parts["webhook"].decode())["Body"] == ["CANARY open the door"]
        assert parts[media_sid] == PICTURE
        assert parts["url"] == PUBLIC + "/sms"
        verify_archive(phone.archive_path)  # raises VerifyFailure if anything is wrong

    run_with_fake(test)


def test_a_held_threat_is_sealed_with_how_urgent_it_is(tmp_path: Path) -> None:
    """A held text that says he is outside is sealed with its tier and reason (codes, never
    words) through the whole webhook path; the sender still gets empty TwiML."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            sid, params = fake.inbound_message(sender=MARK, to=NUMBER, body="I'm outside. CANARY")
            assert await phone.post("/sms", params) == (200, EMPTY)
            await eventually(lambda: sid not in fake.messages)
        [(metadata, _)] = phone.held()
        assert metadata["assessment"] == {"tier": "urgent", "reasons": ["urgent:proximity"]}

    run_with_fake(test)


def test_allowed_text_is_forwarded_with_its_media(tmp_path: Path) -> None:
    """An allowed MMS goes to the real phone as 'From <number>: <text>' with its media URL."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            sid, params = fake.inbound_message(
                sender="(555) 012-3456", to=NUMBER, body="lunch at noon?",
                media=[("image/png", PICTURE)],
            )  # fmt: skip
            assert await phone.post("/sms", params) == (200, EMPTY)
            await eventually(lambda: len(fake.sent()) == 1)
        [sent] = fake.sent()
        assert sent["to"] == PHONE
        assert sent["from"] == NUMBER
        assert sent["body"] == f"From {FRIEND}: lunch at noon?"
        [create] = fake.asked("POST", "/Messages.json")
        assert create.form["MediaUrl"] == [params["MediaUrl0"]]
        assert phone.held() == []
        assert fake.messages[sid]["body"] == "lunch at noon?"  # allowed texts are not redacted

    run_with_fake(test)


@pytest.mark.parametrize(
    "signature",
    [None, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "forged-with-another-token"],
    ids=["missing", "garbage", "other-token"],
)
def test_forged_or_missing_signature_is_403_and_nothing_is_kept(
    tmp_path: Path, signature: str | None
) -> None:
    """Without a valid X-Twilio-Signature the request is refused and nothing is stored."""
    from tests.twilio_fake import signature as sign  # noqa: PLC0415 - used by this test only

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            # After the pass made at start (the next is an hour away): only a webhook brings them.
            _, params = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY")
            _, allowed = fake.inbound_message(sender=FRIEND, to=NUMBER, body="hi")
            forged = signature
            if signature == "forged-with-another-token":
                forged = sign("not-the-token", PUBLIC + "/sms", params)
            for form in (params, allowed):
                status, _ = await phone.post("/sms", form, signature=forged)
                assert status == 403
            # Signed, but over another URL (a replay to another endpoint) or altered params.
            status, _ = await phone.post("/voice", params, public=PUBLIC + "/sms")
            assert status == 403
            tampered = {**allowed, "Body": "changed"}
            good = sign(TOKEN, PUBLIC + "/sms", allowed)
            assert (await phone.post("/sms", tampered, signature=good))[0] == 403
            await asyncio.sleep(0.2)
        assert phone.held() == []
        assert fake.sent() == []

    run_with_fake(test)


def test_an_oversized_webhook_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    """A body over the cap is 413 before it is read into memory, signed or not."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            _, params = fake.inbound_message(sender=MARK, to=NUMBER, body="x" * (2 << 20))
            status, _ = await phone.post("/sms", params)
            assert status == 413
            _, small = fake.inbound_message(sender=MARK, to=NUMBER, body="still here")
            assert (await phone.post("/sms", small))[0] == 200
        assert len(phone.held()) == 1

    run_with_fake(test)


def test_replayed_webhook_gets_the_same_answer_and_is_stored_once(tmp_path: Path) -> None:
    """The same MessageSid posted again, even concurrently or after a restart, is kept once."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            _, held = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY")
            _, allowed = fake.inbound_message(sender=FRIEND, to=NUMBER, body="hello")
            answers = await asyncio.gather(
                *(phone.post("/sms", form) for form in (held, held, held, allowed, allowed))
            )
            assert set(answers) == {(200, EMPTY)}
            await eventually(lambda: len(fake.sent()) == 1)
        async with phone.running():
            assert await phone.post("/sms", held) == (200, EMPTY)
            assert await phone.post("/sms", allowed) == (200, EMPTY)
            await asyncio.sleep(0.3)
        assert len(phone.held()) == 1
        assert len(fake.sent()) == 1

    run_with_fake(test)


def test_provider_down_forward_is_not_lost_across_a_restart(tmp_path: Path) -> None:
    """API down: the webhook still gets 200 (the provider keeps the text); the forward waits
    in memory, and the journal says nothing of it, nor that the SID is handled. After a
    restart, reconciliation finds the text at the provider and forwards it, once."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:
            sid, params = fake.inbound_message(sender=FRIEND, to=NUMBER, body="are you ok?")
            fake.down = True
            assert await phone.post("/sms", params) == (200, EMPTY)
            await eventually(lambda: len(fake.asked("POST", "/Messages.json")) >= 1)
            assert len(runner.outbox) == 1
        assert fake.sent() == []
        assert _journal_sids(tmp_path) == []
        assert _waiting_tasks(tmp_path) == []
        fake.down = False
        async with phone.running():
            await eventually(lambda: len(fake.sent()) == 1)
            await eventually(lambda: _journal_sids(tmp_path) == [sid])
        assert [m["body"] for m in fake.sent()] == [f"From {FRIEND}: are you ok?"]

    run_with_fake(test)


def _journal_sids(tmp_path: Path) -> list[str]:
    """The SIDs the journal records handled."""
    journal, entries = Journal.open(tmp_path / "sms" / JOURNAL)
    journal.close()
    return [e["sid"] for e in entries if "sid" in e]


def _waiting_tasks(tmp_path: Path) -> list[str]:
    """The outbox tasks the journal holds without a done line."""
    journal, entries = Journal.open(tmp_path / "sms" / JOURNAL)
    journal.close()
    done = {e["done"] for e in entries if "done" in e}
    return [e["task"] for e in entries if "task" in e and e["task"] not in done]


def test_missed_webhooks_are_picked_up_by_reconciliation(tmp_path: Path) -> None:
    """Texts and calls that arrived while the daemon was down are sealed or passed on."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            pass  # first start: the checkpoint is set
        held_sid, _ = fake.inbound_message(
            sender=MARK, to=NUMBER, body="CANARY", media=[("image/png", PICTURE)]
        )
        fake.inbound_message(sender=FRIEND, to=NUMBER, body="call me")
        held_call, _ = fake.inbound_call(sender=MARK, to=NUMBER)
        fake.finish_call(held_call)
        allowed_call, _ = fake.inbound_call(sender=FRIEND, to=NUMBER)
        fake.finish_call(allowed_call, status="no-answer")
        async with phone.running() as runner:  # a pass runs at start
            await eventually(lambda: len(fake.sent()) == 2)
            await eventually(lambda: held_sid not in fake.messages)
            assert await runner.reconciler.pass_once()  # a second pass changes nothing
        bodies = sorted(str(m["body"]) for m in fake.sent())
        assert bodies == [f"From {FRIEND}: call me", f"Missed call from {FRIEND}"]
        held = phone.held()
        assert sorted(m["provider_id"] for m, _ in held) == sorted([held_sid, held_call])
        text = next(raw for m, raw in held if m["provider_id"] == held_sid)
        parts = _parts(text)
        assert parts["record"]["body"] == "CANARY"
        assert PICTURE in parts.values()

    run_with_fake(test)


def test_reconciliation_passes_asked_for_together_run_one_at_a_time(tmp_path: Path) -> None:
    """A pass asked for while another runs (the one at start, say) waits for it: two never
    race on the checkpoint file or share what the other could not handle."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:
            fake.inbound_message(sender=FRIEND, to=NUMBER, body="call me")
            reconciler = runner.reconciler
            reading_texts = reconciler._texts
            running, most = [0], [0]

            async def texts(since: datetime, reach: datetime) -> None:
                running[0] += 1
                most[0] = max(most[0], running[0])
                try:
                    await asyncio.sleep(0.05)  # long enough for the others to start
                    await reading_texts(since, reach)
                finally:
                    running[0] -= 1

            reconciler._texts = texts  # type: ignore[method-assign]
            done = await asyncio.gather(*(reconciler.pass_once() for _ in range(3)))
            assert done == [True, True, True]
            assert most[0] == 1
            await eventually(lambda: len(fake.sent()) == 1)
        assert [str(m["body"]) for m in fake.sent()] == [f"From {FRIEND}: call me"]
        assert not list((tmp_path / "sms").glob("*.tmp"))

    run_with_fake(test)


@pytest.mark.parametrize(
    "written", ["(555) 010-0199", "555.010.0199", "+1 555 010 0199", "1-555-010-0199"]
)
def test_numbers_in_any_written_form_match_e164_senders(tmp_path: Path, written: str) -> None:
    """However his number is written in the config, his E.164 texts are held."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        people = [{"id": "mark", "name": "Mark Smith", "phones": [written]}]
        async with phone.running(people=people):
            _, params = fake.inbound_message(sender=MARK, to=NUMBER, body="hey")
            assert await phone.post("/sms", params) == (200, EMPTY)
        assert len(phone.held()) == 1
        assert fake.sent() == []

    run_with_fake(test)


def test_sealing_failure_is_503_and_reconciliation_keeps_it_later(tmp_path: Path) -> None:
    """If the archive cannot take it, Twilio gets 503; the next pass seals it, once."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:
            sid, params = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY")
            archive = runner._archive  # the fault is injected here
            real_append = archive.append

            async def broken(*args: object, **kwargs: object) -> Any:
                raise OSError(28, "No space left on device")

            archive.append = broken  # type: ignore[method-assign]
            status, _ = await phone.post("/sms", params)
            assert status == 503
            assert fake.messages[sid]["body"] == "CANARY"  # nothing wiped before it is kept
            archive.append = real_append  # type: ignore[method-assign]
            assert await runner.reconciler.pass_once()
            assert await phone.post("/sms", params) == (200, EMPTY)
        assert [m["provider_id"] for m, _ in phone.held()] == [sid]

    run_with_fake(test)


def test_logs_say_the_same_for_held_and_allowed_and_never_who(tmp_path: Path) -> None:
    """Log lines for a held and an allowed text are identical and name no one."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            _, held = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY-HELD")
            _, allowed = fake.inbound_message(sender=FRIEND, to=NUMBER, body="CANARY-OK")
            with capture_logs(processors=[logs.redact]) as held_lines:
                await phone.post("/sms", held)
                await asyncio.sleep(0.3)
            with capture_logs(processors=[logs.redact]) as allowed_lines:
                await phone.post("/sms", allowed)
                await asyncio.sleep(0.3)
        assert held_lines == allowed_lines
        text = repr(held_lines + allowed_lines)
        for canary in ("CANARY", "0199", "3456", "SM", "MM"):
            assert canary not in text

    run_with_fake(test)


def test_ledger_hands_an_older_versions_held_sids_to_the_archive(tmp_path: Path) -> None:
    """An older journal's `"held": true` lines and sealing notes become the archive's marks
    (a note only if the archive holds exactly those sealed bytes); the rewritten journal
    records every handled SID alike."""
    path = tmp_path / JOURNAL
    path.write_text(
        '{"sid":"SMold","held":true}\n{"sid":"SMfine","held":false}\n'
        f'{{"sid":"SMstored","sealed":"{"a" * 64}","at":7}}\n'
        f'{{"sid":"SMlost","sealed":"{"b" * 64}","at":9}}\n'
    )
    adopted: list[str] = []
    asked: list[int] = []

    def stored(since: int) -> set[str]:
        asked.append(since)
        return {"a" * 64}

    journal, entries = Journal.open(path)
    ledger = Ledger.restore(journal, entries, sealed=lambda mark: mark in adopted,
                            stored=stored, adopt=adopted.extend)  # fmt: skip
    journal.compact(ledger.lines())
    journal.close()
    assert sorted(adopted) == ["twilio:SMold", "twilio:SMstored"]
    assert asked == [7]
    assert [ledger.held(sid) for sid in ("SMold", "SMstored", "SMfine")] == [True, True, False]
    assert [ledger.handled(sid) for sid in ("SMfine", "SMlost")] == [True, False]
    assert sorted(path.read_text().splitlines()) == [
        '{"sid":"SMfine"}', '{"sid":"SMold"}', '{"sid":"SMstored"}'
    ]  # fmt: skip


def test_long_texts_are_split_within_the_provider_limit() -> None:
    """A forward longer than 1,600 characters is split into numbered parts, losing nothing."""
    text = "x" * 4000
    bodies = forward_bodies(FRIEND, text)
    assert all(len(body) <= 1600 for body in bodies)
    assert len(bodies) == 3
    assert "".join(b.split(") ", 1)[1] for b in bodies) == text
    assert forward_bodies(FRIEND, "hi") == [f"From {FRIEND}: hi"]


def _daemon_config(path: Path, fake: FakeTwilio, port: int, forward_to: str) -> None:
    write_secret(path.parent / "token", TOKEN)
    data = config_data(
        archive={"path": str(path.parent / "archive")},
        contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}],
        channels={"sms": {
            "listen": f"127.0.0.1:{port}", "public_url": PUBLIC, "account_sid": ACCOUNT,
            "auth_token_file": str(path.parent / "token"), "number": NUMBER,
            "forward_to": forward_to, "api_base_url": fake.base_url,
            "state_dir": str(path.parent / "sms"), "reconcile_every": 3600,
        }},
    )  # fmt: skip
    path.write_text(yaml.safe_dump(data))


async def _listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.05)
    raise AssertionError("daemon did not start listening")


def test_daemon_runs_sms_alone_reloads_forward_to_and_stops_cleanly(tmp_path: Path) -> None:
    """`nocontact run` with only channels.sms: held and forwarded; SIGHUP moves forwards; exit 0."""

    async def test(fake: FakeTwilio) -> None:
        port, config = free_port(), tmp_path / "config.yaml"
        _daemon_config(config, fake, port, PHONE)
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "-c", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        local = f"http://127.0.0.1:{port}/sms"
        try:
            await _listening(port, process)
            async with aiohttp.ClientSession() as session:

                async def post(params: dict[str, str]) -> tuple[int, str]:
                    return await post_webhook(
                        session, public_url=PUBLIC + "/sms", local_url=local, params=params,
                        auth_token=TOKEN,
                    )  # fmt: skip

                _, held = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY")
                _, first = fake.inbound_message(sender=FRIEND, to=NUMBER, body="one")
                assert await post(held) == (200, EMPTY)
                assert await post(first) == (200, EMPTY)
                await eventually(lambda: len(fake.sent()) == 1)
                _daemon_config(config, fake, port, "+15550109999")
                process.send_signal(signal.SIGHUP)
                await asyncio.sleep(1.0)
                _, second = fake.inbound_message(sender=FRIEND, to=NUMBER, body="two")
                assert await post(second) == (200, EMPTY)
                await eventually(lambda: len(fake.sent()) == 2)
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
            assert process.returncode == 0, stderr
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert [m["to"] for m in fake.sent()] == [PHONE, "+15550109999"]
        assert len(held_items(tmp_path / "archive")) == 1
        # a timestamp's digits may spell a canary ("06:01:02.019912"): they are not checked
        lines = re.sub(r'"timestamp": ?"[^"]*"', "", stderr)
        assert "CANARY" not in lines
        assert "0199" not in lines

    run_with_fake(test)


def test_redaction_off_keeps_texts_at_the_provider_and_a_later_pass_catches_up(
    tmp_path: Path,
) -> None:
    """redact_at_provider off: a held text stays at Twilio; turned on, the next pass wipes it."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake, redact_at_provider=False)
        async with phone.running():
            sid, params = fake.inbound_message(
                sender=MARK, to=NUMBER, body="CANARY", media=[("image/png", PICTURE)]
            )
            assert await phone.post("/sms", params) == (200, EMPTY)
            await asyncio.sleep(QUIET + 0.3)
        assert fake.messages[sid]["body"] == "CANARY"
        assert len(fake.media[sid]) == 1
        phone = Phone(tmp_path, fake)  # redact_at_provider: true (the default)
        async with phone.running():
            await eventually(lambda: sid not in fake.messages and not fake.media.get(sid))
        assert len(phone.held()) == 1  # cleaned up, not sealed again

    run_with_fake(test)


def test_media_the_provider_lost_is_recorded_missing_and_the_text_kept(tmp_path: Path) -> None:
    """A held MMS whose picture is gone at the provider (404) is sealed, with the gap noted."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            sid, params = fake.inbound_message(
                sender=MARK, to=NUMBER, body="CANARY", media=[("image/png", PICTURE)]
            )
            fake.media[sid] = []  # lost at the provider before we could fetch it
            assert await phone.post("/sms", params) == (200, EMPTY)
        [(_, raw)] = phone.held()
        media: list[dict[str, Any]] = read_capture(raw)["media"]  # type: ignore[assignment]
        assert len(media) == 1
        assert "404" in media[0]["missing"]
        assert urllib.parse.parse_qs(_parts(raw)["webhook"].decode())["Body"] == ["CANARY"]

    run_with_fake(test)


def test_one_failing_message_does_not_stop_reconciliation_of_the_others(tmp_path: Path) -> None:
    """A message that fails is left for the next pass (the checkpoint waits for it); the
    others are handled now, and the failed one is sealed once it can be."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:  # after the pass made at start
            stubborn, _ = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY one")
            other, _ = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY two")
            fake.inbound_message(sender=FRIEND, to=NUMBER, body="hello")
            line, real = runner.line, runner.line.evidence

            async def failing(arrival: Any) -> bytes:
                if arrival.sid == stubborn:
                    raise OSError(5, "Input/output error")
                return await real(arrival)

            line.evidence = failing  # type: ignore[method-assign]
            asked_at = datetime.now(UTC)
            assert await runner.reconciler.pass_once() is False
            assert runner.reconciler.checkpoint <= asked_at  # held back to the stubborn one
            assert [m["provider_id"] for m, _ in phone.held()] == [other]
            await eventually(lambda: len(fake.sent()) == 1)
            line.evidence = real  # type: ignore[method-assign]
            assert await runner.reconciler.pass_once() is True
        assert sorted(m["provider_id"] for m, _ in phone.held()) == sorted([stubborn, other])
        assert len(fake.sent()) == 1

    run_with_fake(test)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(
        st.tuples(st.sampled_from(["Body", "From", "To", "MediaUrl0", "X"]), st.text(max_size=12)),
        max_size=6,
    ),
    host=st.sampled_from(["home.example", "home.example:443", "home.example:8443"]),
    scheme=st.sampled_from(["https", "http"]),
    signed_as=st.sampled_from(["without port", "with port", "as given", "other token", "empty"]),
)
def test_signed_params_accepts_exactly_what_request_validator_accepts(
    fields: list[tuple[str, str]], host: str, scheme: str, signed_as: str
) -> None:
    """The webhook's signature check is RequestValidator.validate's, field for field."""
    validator = RequestValidator(TOKEN)
    url = f"{scheme}://{host}/twilio/sms"
    parsed = urllib.parse.urlparse(url)
    body = urllib.parse.urlencode(fields).encode()
    form = MultiDict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
    signer = RequestValidator("another-token" if signed_as == "other token" else TOKEN)
    signed_url = {"without port": remove_port(parsed), "with port": add_port(parsed)}.get(
        signed_as, url
    )
    signature = "" if signed_as == "empty" else signer.compute_signature(signed_url, form)
    expected = bool(signature) and validator.validate(url, form, signature)
    assert (signed_params(validator, url, body, signature) is not None) == expected
    if signed_as in ("without port", "with port", "as given"):
        assert expected


def test_journal_keeps_a_hint_it_cannot_write_and_refuses_a_durable_line(tmp_path: Path) -> None:
    """A full or failing disk never stops the outbox over a 'done' line, never lets a line
    that must be durable pass as written, and loses no line once the disk works again."""

    async def test() -> None:
        journal, _ = Journal.open(tmp_path / JOURNAL)
        good = journal._fd  # a descriptor that cannot be written stands in for a failing disk
        journal._fd = os.open(journal.path, os.O_RDONLY)
        await journal.append([{"done": "task"}], durable=False)
        with pytest.raises(JournalUnavailable):
            await journal.append([{"task": "forward"}], durable=True)
        journal.write([{"sid": "SM1", "sealed": "a" * 64, "at": 0}])
        with pytest.raises(JournalUnavailable):  # the archive's writer: the note is not durable
            journal.sync_now()
        os.close(journal._fd)
        journal._fd = good
        await journal.append([{"sid": "SM2", "held": True}], durable=True)
        _, entries = Journal.open(tmp_path / JOURNAL)  # synced: there before close
        assert entries == [{"done": "task"}, {"task": "forward"},
                           {"sid": "SM1", "sealed": "a" * 64, "at": 0},
                           {"sid": "SM2", "held": True}]  # fmt: skip
        journal.close()

    asyncio.run(test())


def test_journal_refuses_every_sync_after_one_failed_and_after_close(tmp_path: Path) -> None:
    """After a failed fdatasync the kernel may have dropped lines a later one would not
    vouch for: every sync after it is refused. A closed journal refuses too (the archive's
    writer may still ask)."""

    async def test() -> None:
        journal, _ = Journal.open(tmp_path / JOURNAL)
        good = journal._fd
        read_end, journal._fd = os.pipe()  # takes the write, refuses fdatasync (EINVAL)
        with pytest.raises(JournalUnavailable):
            await journal.append([{"task": "forward"}], durable=True)
        os.close(journal._fd)
        os.close(read_end)
        journal._fd = good
        with pytest.raises(JournalUnavailable):
            await journal.append([{"sid": "SM2", "held": False}], durable=True)
        journal.close()
        with pytest.raises(JournalUnavailable):
            journal.sync_now()

    asyncio.run(test())


def test_journal_closed_from_the_loop_keeps_a_line_no_one_waited_for(tmp_path: Path) -> None:
    """A hint still queued at shutdown (its flush timer pending) reaches the file, and the
    timer is cancelled on its own loop, not from the closing thread."""

    async def test() -> None:
        journal, _ = Journal.open(tmp_path / JOURNAL)
        journal.write([{"done": "task"}])
        timer = journal._flush_timer
        assert timer is not None
        await journal.aclose()
        assert timer.cancelled()
        assert journal._flush_timer is None
        _, entries = Journal.open(tmp_path / JOURNAL)
        assert entries == [{"done": "task"}]

    asyncio.run(test())


def test_unsigned_requests_do_not_put_off_the_cleanup_of_held_texts(tmp_path: Path) -> None:
    """Cleanup waits for a quiet moment between webhooks; a flood of unsigned requests (403
    each) is no webhook, and the held text is still deleted at the provider."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            sid, params = fake.inbound_message(sender=MARK, to=NUMBER, body="CANARY")
            assert await phone.post("/sms", params) == (200, EMPTY)
            deadline = asyncio.get_running_loop().time() + QUIET * 6
            while asyncio.get_running_loop().time() < deadline and sid in fake.messages:
                assert (await phone.post("/sms", params, signature="forged"))[0] == 403
                await asyncio.sleep(QUIET / 5)
            assert sid not in fake.messages

    run_with_fake(test)


def test_reconciliation_takes_only_this_numbers_voicemails(tmp_path: Path) -> None:
    """A recording of a call to another number of the same account is neither sealed, nor
    deleted, nor touched; this number's held voicemail is sealed and deleted."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            pass  # first start: the checkpoint is set
        theirs, _ = fake.inbound_call(sender=MARK, to="+15550109999")
        fake.finish_call(theirs)
        other, _ = fake.recording(call_sid=theirs, audio=b"RIFF-theirs")
        ours, _ = fake.inbound_call(sender=MARK, to=NUMBER)
        fake.finish_call(ours)
        mine, _ = fake.recording(call_sid=ours, audio=b"RIFF-ours")
        async with phone.running() as runner:
            await eventually(lambda: mine not in fake.recordings)
            assert await runner.reconciler.pass_once()
        assert other in fake.recordings
        assert fake.audio[other] == b"RIFF-theirs"
        sealed = {m["provider_id"] for m, _ in phone.held()}
        assert mine in sealed
        assert other not in sealed

    run_with_fake(test)
