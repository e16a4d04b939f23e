"""The Twilio fake, driven by the real twilio-python async client and plain aiohttp.

Rules these tests keep:
1. Everything goes over loopback HTTP through the library production code uses, so a shape
   twilio-python cannot deserialize fails here before it fails in a channel test.
2. Webhook signatures are checked with twilio's own RequestValidator, never recomputed by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.twilio_fake import FakeTwilio, post_webhook, signature

ACCOUNT = "AC" + "5" * 32
TOKEN = "fake-auth-token-0123456789abcdef"
OURS = "+15550001111"
THEM = "+15557654321"
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
BASIC = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT, TOKEN)}


def drive(
    scenario: Callable[[FakeTwilio, Any], Awaitable[None]], *, token: str = TOKEN
) -> FakeTwilio:
    """Run `scenario(fake, client)` against a fresh fake with a real async twilio Client."""

    async def main() -> FakeTwilio:
        async with FakeTwilio(ACCOUNT, TOKEN) as fake:
            http = AsyncTwilioHttpClient()
            client = Client(ACCOUNT, token, http_client=http)
            client.api.base_url = fake.base_url
            try:
                await scenario(fake, client)
            finally:
                await http.close()
        return fake

    return asyncio.run(main())


def test_create_message_is_queued_and_recorded() -> None:
    """POST Messages.json answers 201 with a queued outbound MMS and keeps the form it got."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        urls = ["https://example.test/a.jpg", "https://example.test/b.png"]
        made = await client.messages.create_async(to=THEM, from_=OURS, body="hi", media_url=urls)
        assert made.sid.startswith("MM")
        assert len(made.sid) == 34
        assert (made.status, made.direction, made.num_media) == ("queued", "outbound-api", "2")
        assert made.date_created is not None
        assert made.date_sent is None
        assert [m["sid"] for m in fake.sent()] == [made.sid]
        (asked,) = fake.asked("POST", "/Messages.json")
        assert asked.form["MediaUrl"] == urls
        assert asked.form["To"] == [THEM]

    drive(scenario)


def test_body_over_1600_characters_is_refused() -> None:
    """A body over 1600 characters is refused with 400 and code 21617, and nothing is sent."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        await client.messages.create_async(to=THEM, from_=OURS, body="x" * 1600)
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to=THEM, from_=OURS, body="x" * 1601)
        assert (refused.value.status, refused.value.code) == (400, 21617)
        assert len(fake.sent()) == 1

    drive(scenario)


@pytest.mark.parametrize(
    ("after", "expected"),
    [(T0, 120), ("2026-11-24", 125), (T0 + timedelta(minutes=70), 50), ("2026-11-25", 0)],
)
def test_inbound_listing_filters_by_date_and_follows_pages(
    after: datetime | str, expected: int
) -> None:
    """DateSent> is inclusive (a day or an instant), and PageSize=50 pages are all followed."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        for minute in range(-5, 120):
            fake.inbound_message(
                sender=THEM, to=OURS, body=f"m{minute}", at=T0 + timedelta(minutes=minute)
            )
        fake.inbound_message(sender=THEM, to="+15550009999", body="other line", at=T0)
        found = await client.messages.list_async(to=OURS, date_sent_after=after, page_size=50)
        assert len(found) == expected == len({m.sid for m in found})
        stamps = [m.date_sent for m in found]
        assert stamps == sorted(stamps, reverse=True)
        assert all(m.direction == "inbound" and m.to == OURS for m in found)
        assert len(fake.asked("GET", "/Messages.json")) == max(1, -(-expected // 50))

    drive(scenario)


def test_paging_by_cursor_survives_deleting_what_was_read() -> None:
    """Deleting a page's messages before fetching the next page skips none of the rest."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        for minute in range(120):
            fake.inbound_message(sender=THEM, to=OURS, body="b", at=T0 + timedelta(minutes=minute))
        seen: list[str] = []
        page = await client.messages.page_async(to=OURS, page_size=50)
        while page is not None:
            batch = list(page)
            seen += [m.sid for m in batch]
            for message in batch:
                assert await client.messages(message.sid).delete_async()
            page = await page.next_page_async()
        assert len(seen) == len(set(seen)) == 120
        assert fake.messages == {}

    drive(scenario)


def test_the_account_is_fetched_with_its_status_and_refused_without_the_token() -> None:
    """GET Accounts/<sid>.json answers the account with its status; a wrong token is 401/20003."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        account = await client.api.v2010.accounts(ACCOUNT).fetch_async()
        assert (account.sid, account.status) == (ACCOUNT, "active")
        fake.status = "suspended"
        assert (await client.api.v2010.accounts(ACCOUNT).fetch_async()).status == "suspended"

    async def wrong(fake: FakeTwilio, client: Any) -> None:
        with pytest.raises(TwilioRestException) as refused:
            await client.api.v2010.accounts(ACCOUNT).fetch_async()
        assert (refused.value.status, refused.value.code) == (401, 20003)

    drive(scenario)
    drive(wrong, token="not-the-token")


def test_media_is_listed_downloaded_and_deleted() -> None:
    """Media lists under media_list, downloads with BasicAuth only, and deletes one at a time."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        files = [("image/jpeg", b"\xff\xd8jpeg"), ("audio/amr", b"#!AMR")]
        sid, params = fake.inbound_message(sender=THEM, to=OURS, body="", media=files)
        assert sid.startswith("MM")
        assert params["NumMedia"] == "2"
        listed = await client.messages(sid).media.list_async()
        assert [(m.content_type, m.parent_sid) for m in listed] == [(t, sid) for t, _ in files]
        async with aiohttp.ClientSession() as web_client:
            for i, (kind, data) in enumerate(files):
                async with web_client.get(params[f"MediaUrl{i}"], headers=BASIC) as got:
                    assert (got.status, got.content_type) == (200, kind)
                    assert await got.read() == data
            async with web_client.get(params["MediaUrl0"]) as anonymous:
                assert anonymous.status == 401
            assert await client.messages(sid).media(listed[0].sid).delete_async()
            async with web_client.get(params["MediaUrl0"], headers=BASIC) as gone:
                assert gone.status == 404
                assert (await gone.json())["code"] == 20404
        assert (await client.messages(sid).fetch_async()).num_media == "1"
        assert [m.sid for m in await client.messages(sid).media.list_async()] == [listed[1].sid]

    drive(scenario)


def test_redaction_empties_the_body_and_refuses_anything_else() -> None:
    """POST Body="" redacts a message; any other body is refused with 400."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        sid, _ = fake.inbound_message(sender=THEM, to=OURS, body="threat")
        redacted = await client.messages(sid).update_async(body="")
        assert redacted.body == ""
        assert fake.messages[sid]["body"] == ""
        with pytest.raises(TwilioRestException) as refused:
            await client.messages(sid).update_async(body="rewritten")
        assert refused.value.status == 400

    drive(scenario)


def test_deleting_a_message_deletes_its_media() -> None:
    """DELETE Messages/{Sid}.json answers 204 and takes the message's media with it."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        sid, params = fake.inbound_message(
            sender=THEM, to=OURS, body="", media=[("image/png", b"p")]
        )
        assert await client.messages(sid).delete_async()
        assert sid not in fake.messages
        assert sid not in fake.media
        async with (
            aiohttp.ClientSession() as web_client,
            web_client.get(params["MediaUrl0"], headers=BASIC) as gone,
        ):
            assert gone.status == 404
        with pytest.raises(TwilioRestException) as missing:
            await client.messages(sid).fetch_async()
        assert (missing.value.status, missing.value.code) == (404, 20404)

    drive(scenario)


def test_calls_and_recordings_are_listed_fetched_and_deleted() -> None:
    """Calls filter by status and start time; recordings by call, download as wav/mp3, delete."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        done, _ = fake.inbound_call(sender=THEM, to=OURS, at=T0)
        fake.finish_call(done, duration=30)
        ringing, hook = fake.inbound_call(sender=THEM, to=OURS, at=T0 + timedelta(hours=1))
        assert hook["CallSid"] == ringing
        assert hook["Direction"] == "inbound"
        finished = await client.calls.list_async(status="completed")
        assert [c.sid for c in finished] == [done]
        assert finished[0].duration == "30"
        assert finished[0].end_time == T0 + timedelta(seconds=30)
        later = await client.calls.list_async(start_time_after=T0 + timedelta(minutes=1))
        assert [c.sid for c in later] == [ringing]
        rec, callback = fake.recording(call_sid=done, audio=b"RIFFwav", at=T0)
        assert callback["RecordingUrl"].endswith(f"/Recordings/{rec}")
        (listed,) = await client.recordings.list_async(call_sid=done)
        assert (listed.sid, listed.channels, listed.status) == (rec, 1, "completed")
        async with aiohttp.ClientSession() as web_client:
            for suffix, kind in ((".wav", "audio/x-wav"), (".mp3", "audio/mpeg")):
                async with web_client.get(callback["RecordingUrl"] + suffix, headers=BASIC) as got:
                    assert (got.content_type, await got.read()) == (kind, b"RIFFwav")
        assert await client.recordings(rec).delete_async()
        assert rec not in fake.recordings
        assert rec not in fake.audio
        assert await client.calls(done).delete_async()
        assert [c.sid for c in await client.calls.list_async()] == [ringing]

    drive(scenario)


def test_a_dial_that_ended_stores_its_child_call_and_posts_the_action_form() -> None:
    """<Dial action>'s form: the call's own fields plus DialCallStatus and the child call,
    which is listed outbound-dial to the dialled number, not to ours."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        sid, hook = fake.inbound_call(sender=THEM, to=OURS, at=T0)
        assert fake.call_form(sid) == hook  # a <Redirect> posts what the voice URL got
        form = fake.dial_ended(sid, to="+15550108888", status="no-answer")
        assert form["CallSid"] == sid
        assert (form["DialCallStatus"], form["DialBridged"]) == ("no-answer", "false")
        assert "DialCallDuration" not in form
        assert form["CallStatus"] == "in-progress"
        (child,) = await client.calls.list_async(to="+15550108888")
        assert (child.sid, child.parent_call_sid) == (form["DialCallSid"], sid)
        assert (child.direction, child.status) == ("outbound-dial", "no-answer")
        assert [c.sid for c in await client.calls.list_async(to=OURS)] == [sid]
        answered = fake.dial_ended(sid, to="+15550108888", status="completed", duration=40)
        assert (answered["DialCallStatus"], answered["DialCallDuration"]) == ("completed", "40")

    drive(scenario)


def test_outage_answers_503_and_is_still_recorded() -> None:
    """With `down` set every request answers 503, and the request is still recorded."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        fake.down = True
        with pytest.raises(TwilioRestException) as outage:
            await client.messages.create_async(to=THEM, from_=OURS, body="hi")
        assert outage.value.status == 503
        assert fake.asked("POST", "/Messages.json")
        assert fake.sent() == []

    drive(scenario)


def test_wrong_token_answers_401() -> None:
    """A wrong auth token answers 401 with Twilio's code 20003, on records and on lists alike."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to=THEM, from_=OURS, body="hi")
        assert (refused.value.status, refused.value.code) == (401, 20003)
        # twilio-python raises a bare TwilioException for a refused list page, response attached.
        with pytest.raises(TwilioException) as page_refused:
            await client.messages.list_async()
        assert page_refused.value.args[1].status_code == 401

    drive(scenario, token="not-the-token")


def test_another_account_in_the_path_answers_404() -> None:
    """Right credentials but another AccountSid in the path answers 404."""

    async def scenario(fake: FakeTwilio, client: Any) -> None:
        with pytest.raises(TwilioRestException) as refused:
            await client.api.v2010.accounts("AC" + "6" * 32).messages("SM" + "0" * 32).fetch_async()
        assert (refused.value.status, refused.value.code) == (404, 20404)

    drive(scenario)


def test_signature_is_what_twilio_validates() -> None:
    """signature() passes RequestValidator.validate, and fails it once a parameter changes."""
    _, params = FakeTwilio(ACCOUNT, TOKEN).inbound_message(sender=THEM, to=OURS, body="héllo")
    url = "https://nocontact.example/twilio/sms"
    signed = signature(TOKEN, url, params)
    assert RequestValidator(TOKEN).validate(url, params, signed)
    assert not RequestValidator(TOKEN).validate(url, {**params, "Body": "hello"}, signed)
    assert not RequestValidator("other-token").validate(url, params, signed)


def test_post_webhook_signs_over_the_public_url() -> None:
    """post_webhook posts the form locally, signed over the public URL, or unsigned on request."""
    public = "https://nocontact.example/twilio/sms"
    got: list[tuple[str | None, dict[str, str]]] = []

    async def receive(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        got.append((request.headers.get("X-Twilio-Signature"), form))
        return web.Response(text="<Response/>", content_type="text/xml")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/twilio/sms", receive)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        local = f"http://127.0.0.1:{runner.addresses[0][1]}/twilio/sms"
        _, params = FakeTwilio(ACCOUNT, TOKEN).inbound_message(sender=THEM, to=OURS, body="é")
        try:
            async with aiohttp.ClientSession() as session:
                answer = await post_webhook(
                    session, public_url=public, local_url=local, params=params, auth_token=TOKEN
                )
                assert answer == (200, "<Response/>")
                await post_webhook(
                    session, public_url=public, local_url=local, params=params,
                    auth_token=TOKEN, signature=None,
                )  # fmt: skip
        finally:
            await runner.cleanup()
        assert got[0][1] == params
        assert got[1][1] == params
        assert got[0][0] is not None
        assert RequestValidator(TOKEN).validate(public, params, got[0][0])
        assert got[1][0] is None

    asyncio.run(main())
