"""Calls and voicemail through the SMS/voice channel, against the Twilio fake, really signed.

Every caller rings for 15 to 30 s and then hears the same greeting: a held caller hears
nocontact's copy of the ringing, an allowed one Twilio's while her phone rings. A voicemail
left on a held call is sealed; one left on an allowed call she did not pick up is
forwarded to her phone.
"""

from __future__ import annotations

import asyncio
import io
import wave
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from proxy import logs
from proxy.channels.sms.outbox import QUIET
from proxy.channels.sms.ringback import RATE
from proxy.channels.sms.webhooks import EMPTY
from tests.test_sms import (
    AUDIO,
    FRIEND,
    MARK,
    NUMBER,
    PHONE,
    PUBLIC,
    TOKEN,
    Phone,
    _parts,
    eventually,
    run_with_fake,
)
from tests.twilio_fake import FakeTwilio, signature

GREETING = "Hi, leave a message."
RINGS = range(15, 31)


def _verbs(twiml: str) -> list[ET.Element]:
    root = ET.fromstring(twiml)  # noqa: S314 - our own TwiML, from our own server
    assert root.tag == "Response"
    return list(root)


def _local(url: str) -> str:
    """The path (and query) of one of our public URLs, as the test posts it."""
    assert url.startswith(PUBLIC)
    return url.removeprefix(PUBLIC)


async def _held_ring(phone: Phone, params: dict[str, str]) -> tuple[int, str]:
    """A held call's first answer: (seconds of ringing, the URL it is redirected to)."""
    status, twiml = await phone.post("/voice", params)
    assert status == 200
    play, redirect = _verbs(twiml)
    assert (play.tag, redirect.tag) == ("Play", "Redirect")
    assert play.text is not None
    prefix = f"{PUBLIC}/voice/ringback/us/"
    assert play.text.startswith(prefix)
    assert play.text.endswith(".wav")
    assert redirect.text is not None
    return int(play.text.removeprefix(prefix).removesuffix(".wav")), redirect.text


async def _allowed_ring(phone: Phone, params: dict[str, str]) -> tuple[int, str]:
    """An allowed call's first answer: (seconds her phone rings, the Dial's action URL)."""
    status, twiml = await phone.post("/voice", params)
    assert status == 200
    [dial] = _verbs(twiml)
    assert dial.tag == "Dial"
    assert dial.text == PHONE
    assert dial.get("callerId") == params["From"]
    assert dial.get("ringTone") == "us"
    assert dial.get("answerOnBridge") is None  # answered at once, as a held call is
    return int(dial.get("timeout", "0")), dial.get("action", "")


def test_every_caller_rings_15_to_30_seconds_then_hears_the_same_greeting(
    tmp_path: Path,
) -> None:
    """Held: Play of our ringback, Redirect; allowed: Dial with timeout and action. When the
    ringing ends unanswered both get byte-identical greeting+Record TwiML but for the
    recording callback's `call` query."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake, voicemail_greeting=GREETING)
        async with phone.running() as runner:
            held_sid, held = fake.inbound_call(sender=MARK, to=NUMBER)
            seconds, redirect = await _held_ring(phone, held)
            assert seconds in RINGS
            assert redirect == f"{PUBLIC}/voice/voicemail?call=held"
            assert seconds == runner.webhooks.ring_seconds(held_sid)
            assert await _held_ring(phone, held) == (seconds, redirect)  # a replay: the same
            status, held_greeting = await phone.post(_local(redirect), fake.call_form(held_sid))
            assert status == 200

            allowed_sid, allowed = fake.inbound_call(sender=FRIEND, to=NUMBER)
            seconds, action = await _allowed_ring(phone, allowed)
            assert seconds in RINGS
            assert action == f"{PUBLIC}/voice/voicemail?call=allowed"
            greetings = set()
            for outcome in ("no-answer", "busy", "failed", "canceled"):
                form = fake.dial_ended(allowed_sid, to=PHONE, status=outcome)
                status, allowed_greeting = await phone.post(_local(action), form)
                assert status == 200
                greetings.add(allowed_greeting)
        assert len(greetings) == 1
        say, record, hang_up = _verbs(held_greeting)
        assert (say.tag, say.text, hang_up.tag) == ("Say", GREETING, "Hangup")
        assert record.get("recordingStatusCallback") == f"{PUBLIC}/voice/recording?call=held"
        assert record.get("action") == f"{PUBLIC}/voice/done"
        assert held_greeting != allowed_greeting
        assert held_greeting.replace("?call=held", "?call=allowed") == allowed_greeting

    run_with_fake(test)


def test_ring_seconds_are_spread_over_15_to_30_and_fixed_per_call(tmp_path: Path) -> None:
    """Every length from 15 to 30 s occurs, none other, and a call always gets its own."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:
            ring = runner.webhooks.ring_seconds
            lengths = [ring(f"CA{n:032x}") for n in range(2000)]
            assert [ring(f"CA{n:032x}") for n in range(2000)] == lengths
        counts = {s: lengths.count(s) for s in RINGS}
        assert set(lengths) == set(RINGS)
        assert min(counts.values()) > 2000 / 16 / 2  # roughly uniform, no length starved

    run_with_fake(test)


def test_an_allowed_call_she_answers_ends_when_it_ends(tmp_path: Path) -> None:
    """DialCallStatus completed: she picked up; the caller is hung up, no greeting."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            sid, params = fake.inbound_call(sender=FRIEND, to=NUMBER)
            _, action = await _allowed_ring(phone, params)
            form = fake.dial_ended(sid, to=PHONE, status="completed", duration=40)
            status, twiml = await phone.post(_local(action), form)
        assert status == 200
        assert [verb.tag for verb in _verbs(twiml)] == ["Hangup"]

    run_with_fake(test)


def test_held_caller_gets_voicemail_which_is_sealed_then_deleted(tmp_path: Path) -> None:
    """A held call rings, then greeting + Record; the recording is fetched, sealed, deleted,
    and nothing is forwarded."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake, voicemail_greeting=GREETING)
        async with phone.running():
            call_sid, params = fake.inbound_call(sender=MARK, to=NUMBER)
            _, redirect = await _held_ring(phone, params)
            _, twiml = await phone.post(_local(redirect), fake.call_form(call_sid))
            callback_url = _verbs(twiml)[1].get("recordingStatusCallback", "")
            fake.finish_call(call_sid)
            recording_sid, callback = fake.recording(call_sid=call_sid, audio=AUDIO)
            assert await phone.post(_local(callback_url), callback) == (200, EMPTY)
            done = await phone.post("/voice/done", {"CallSid": call_sid})
            assert done[0] == 200
            assert "<Hangup" in done[1]
            await eventually(lambda: recording_sid not in fake.recordings)
            await eventually(lambda: call_sid not in fake.calls)
        held = phone.held()
        assert [m["provider_id"] for m, _ in held] == [call_sid, recording_sid]
        assert _parts(held[1][1])[recording_sid] == AUDIO
        assert held[1][0]["voicemail"] is True
        assert fake.sent() == []

    run_with_fake(test)


def test_an_unanswered_allowed_call_s_voicemail_is_forwarded_not_sealed(tmp_path: Path) -> None:
    """Her phone rang unanswered; the voicemail reaches it as an MMS with the recording,
    and stays at the provider for that MMS to fetch."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            call_sid, params = fake.inbound_call(sender="(555) 012-3456", to=NUMBER)
            _, action = await _allowed_ring(phone, params)
            form = fake.dial_ended(call_sid, to=PHONE, status="no-answer")
            _, twiml = await phone.post(_local(action), form)
            callback_url = _verbs(twiml)[1].get("recordingStatusCallback", "")
            fake.finish_call(call_sid)
            recording_sid, callback = fake.recording(call_sid=call_sid, audio=AUDIO, duration=7)
            assert await phone.post(_local(callback_url), callback) == (200, EMPTY)
            await eventually(lambda: len(fake.sent()) == 1)
            assert await phone.post(_local(callback_url), callback) == (200, EMPTY)  # replay
            await asyncio.sleep(QUIET + 0.5)
        [sent] = fake.sent()
        assert (sent["to"], sent["from"]) == (PHONE, NUMBER)
        assert sent["body"] == f"Voicemail from {FRIEND} (7 s)"
        [create] = fake.asked("POST", "/Messages.json")
        assert create.form["MediaUrl"] == [callback["RecordingUrl"] + ".wav"]
        assert phone.held() == []
        assert recording_sid in fake.recordings
        assert call_sid in fake.calls
        assert not any(a.method == "DELETE" for a in fake.requests)

    run_with_fake(test)


def test_reconciliation_leaves_an_allowed_voicemail_at_the_provider(tmp_path: Path) -> None:
    """The forward's MMS fetches the recording by URL: a pass must not delete it."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:
            call_sid, _ = fake.inbound_call(sender=FRIEND, to=NUMBER)
            fake.finish_call(call_sid)
            recording_sid, callback = fake.recording(call_sid=call_sid, audio=AUDIO)
            url = "/voice/recording?call=allowed"
            assert await phone.post(url, callback) == (200, EMPTY)
            await eventually(lambda: len(fake.sent()) == 1)
            assert await runner.reconciler.pass_once()
            await asyncio.sleep(QUIET + 0.5)
        assert recording_sid in fake.recordings

    run_with_fake(test)


def test_a_voicemail_on_the_allowed_path_is_decided_by_the_rules_in_force(
    tmp_path: Path,
) -> None:
    """A caller blocked while his allowed call rang: his voicemail is sealed, not forwarded."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            call_sid, _ = fake.inbound_call(sender=MARK, to=NUMBER)
            fake.finish_call(call_sid)
            recording_sid, callback = fake.recording(call_sid=call_sid, audio=AUDIO)
            url = "/voice/recording?call=allowed"
            assert await phone.post(url, callback) == (200, EMPTY)
            await eventually(lambda: recording_sid not in fake.recordings)
        assert [m["provider_id"] for m, _ in phone.held()] == [recording_sid]
        assert fake.sent() == []

    run_with_fake(test)


@pytest.mark.parametrize("url", ["/voice/recording?call=held", "/voice/recording"])
def test_a_voicemail_on_the_held_path_is_sealed_whatever_the_rules_say_now(
    tmp_path: Path, url: str
) -> None:
    """A voicemail whose call was held (or that came by an older version's callback, with no
    `call` query) is sealed even if its caller is allowed by the time it is ready."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            call_sid, _ = fake.inbound_call(sender=FRIEND, to=NUMBER)
            fake.finish_call(call_sid)
            recording_sid, callback = fake.recording(call_sid=call_sid, audio=AUDIO)
            assert await phone.post(url, callback) == (200, EMPTY)
            await eventually(lambda: recording_sid not in fake.recordings)
        [(meta, _)] = phone.held()
        assert meta["provider_id"] == recording_sid
        assert fake.sent() == []

    run_with_fake(test)


@pytest.mark.parametrize("forgery", ["unsigned", "query-changed", "query-added"])
def test_a_forged_recording_callback_claiming_the_allowed_path_is_refused(
    tmp_path: Path, forgery: str
) -> None:
    """The `call` query is signed with the rest of the URL: moving a held voicemail to the
    allowed path is a bad signature, 403, and nothing is kept or forwarded."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            call_sid, _ = fake.inbound_call(sender=FRIEND, to=NUMBER)
            fake.finish_call(call_sid)
            _, callback = fake.recording(call_sid=call_sid, audio=AUDIO)
            signed_over = {
                "unsigned": None,
                "query-changed": f"{PUBLIC}/voice/recording?call=held",
                "query-added": f"{PUBLIC}/voice/recording",
            }[forgery]
            sign = None if signed_over is None else signature(TOKEN, signed_over, callback)
            url = "/voice/recording?call=allowed"
            assert (await phone.post(url, callback, sign))[0] == 403
            await asyncio.sleep(QUIET + 0.5)
        assert phone.held() == []
        assert fake.sent() == []

    run_with_fake(test)


def test_the_ringback_is_a_wav_of_the_seconds_asked_and_nothing_else_is_served(
    tmp_path: Path,
) -> None:
    """GET /voice/ringback/<tone>/<seconds>.wav: a WAV that long; any other path is 404."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            base = f"http://127.0.0.1:{phone.port}/voice/ringback"
            for seconds in (15, 23, 30):
                async with phone.session.get(f"{base}/us/{seconds}.wav") as response:
                    assert response.status == 200
                    assert response.content_type == "audio/wav"
                    data = await response.read()
                with wave.open(io.BytesIO(data), "rb") as wav:
                    assert wav.getnframes() == seconds * RATE
                    assert (wav.getframerate(), wav.getsampwidth()) == (RATE, 2)
            for bad in (
                "us/14.wav", "us/31.wav", "us/0.wav", "us/-20.wav", "us/020.wav", "us/20.mp3",
                "us/20", "us/20.wav.wav", "us/2O.wav", "jp/20.wav", "xx/20.wav",
                "us/20.wav/x", "us", "", "us/" + "9" * 5000 + ".wav", "../voice/20.wav",
            ):  # fmt: skip
                async with phone.session.get(f"{base}/{bad}") as response:
                    assert response.status == 404, bad

    run_with_fake(test)


def test_a_held_call_with_voicemail_logs_what_an_allowed_call_does(tmp_path: Path) -> None:
    """Ringing, voicemail and its cleanup (even with the API down) add no log line to a held
    call that an allowed call's ringing and Dial outcome do not."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running():
            held_sid, held = fake.inbound_call(sender=MARK, to=NUMBER)
            allowed_sid, allowed = fake.inbound_call(sender=FRIEND, to=NUMBER)
            with capture_logs(processors=[logs.redact]) as held_lines:
                _, redirect = await _held_ring(phone, held)
                await phone.post(_local(redirect), fake.call_form(held_sid))
                fake.finish_call(held_sid)
                _, callback = fake.recording(call_sid=held_sid, audio=AUDIO)
                await phone.post("/voice/recording?call=held", callback)
                fake.down = True  # sealed; deleting it at the provider now fails, silently
                await phone.post("/voice/done", {"CallSid": held_sid})
                await asyncio.sleep(QUIET + 1.0)
            fake.down = False
            with capture_logs(processors=[logs.redact]) as allowed_lines:
                _, action = await _allowed_ring(phone, allowed)
                form = fake.dial_ended(allowed_sid, to=PHONE, status="completed")
                await phone.post(_local(action), form)
                await asyncio.sleep(QUIET + 1.0)
        assert held_lines == allowed_lines
        assert len(phone.held()) == 2
        assert any(a.method == "DELETE" for a in fake.requests)  # its cleanup was tried

    run_with_fake(test)


def test_a_held_call_that_cannot_be_sealed_still_rings_as_usual(tmp_path: Path) -> None:
    """No 5xx on a call (Twilio would announce an error): the usual ringing and greeting,
    and reconciliation keeps the call once it can."""

    async def test(fake: FakeTwilio) -> None:
        phone = Phone(tmp_path, fake)
        async with phone.running() as runner:
            call_sid, params = fake.inbound_call(sender=MARK, to=NUMBER)
            archive = runner._archive  # the fault is injected here
            real_append = archive.append

            async def broken(*args: object, **kwargs: object) -> Any:
                raise OSError(28, "No space left on device")

            archive.append = broken  # type: ignore[method-assign]
            seconds, redirect = await _held_ring(phone, params)
            assert seconds in RINGS
            assert redirect.endswith("?call=held")
            archive.append = real_append  # type: ignore[method-assign]
            fake.finish_call(call_sid)
            assert await runner.reconciler.pass_once()
        assert [m["provider_id"] for m, _ in phone.held()] == [call_sid]

    run_with_fake(test)
