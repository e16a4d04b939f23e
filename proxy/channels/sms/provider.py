"""Twilio's REST API, as nocontact uses it: through the official twilio library.

Rules this module keeps:
1. Every request goes to the configured `api_base_url` (the real API by default). A media
   or recording address that came in a webhook is trusted for its path only: credentials
   are never sent to any other host.
2. Errors come out as two kinds: `ProviderUnavailable` (a RetryLater: network down, a
   timeout, 5xx, 429) and `ProviderRefused` (the provider said no, 4xx: it will say no
   again). Deleting something already gone counts as done.
3. Records read from the provider are plain dicts of what it said (JSON-ready), so they
   can be sealed as evidence exactly as read.
4. Nothing here logs: what the provider was asked about says which items were held.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from proxy.errors import NocontactError, RetryLater

_TIMEOUT = aiohttp.ClientTimeout(total=30)
_MESSAGE_FIELDS = (
    "sid", "account_sid", "messaging_service_sid", "from_", "to", "body", "num_media",
    "num_segments", "direction", "status", "date_created", "date_sent", "date_updated",
    "error_code", "error_message", "uri", "api_version",
)  # fmt: skip
_CALL_FIELDS = (
    "sid", "account_sid", "_from", "to", "from_formatted", "caller_name", "direction",
    "status", "start_time", "end_time", "duration", "date_created", "answered_by", "uri",
    "parent_call_sid", "api_version",
)  # fmt: skip
_RECORDING_FIELDS = (
    "sid", "account_sid", "call_sid", "status", "source", "channels", "duration",
    "date_created", "start_time", "uri", "api_version",
)  # fmt: skip


class ProviderUnavailable(RetryLater):
    """The provider could not be reached or answered 5xx/429: try again later."""


class ProviderRefused(NocontactError):
    """The provider refused a request (4xx); `code` is Twilio's error code."""

    def __init__(self, status: int, code: int | None) -> None:
        super().__init__(f"the provider refused the request (HTTP {status}, code {code})")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One piece of MMS media or a recording, downloaded."""

    sid: str
    content_type: str
    data: bytes
    missing: str = ""  # why there is no data: the provider no longer had it


def _plain(instance: object, fields: Sequence[str]) -> dict[str, object]:
    record: dict[str, object] = {}
    for name in fields:
        value = getattr(instance, name, None)
        if isinstance(value, datetime):
            value = value.isoformat()
        record[name.strip("_")] = value  # twilio names it from_ or _from
    return record


def _refused(error: TwilioException) -> NocontactError:
    if isinstance(error, TwilioRestException):
        status, code = int(error.status), error.code
    else:  # a list page that was not 200: TwilioException("Unable to fetch page", response)
        response = error.args[1] if len(error.args) > 1 else None
        status, code = int(getattr(response, "status_code", 503)), None
    if status == 429 or status >= 500:
        return ProviderUnavailable(f"the provider answered HTTP {status}")
    return ProviderRefused(status, code)


class Provider:
    """One Twilio account; open it on the event loop that uses it."""

    def __init__(self, *, account_sid: str, auth_token: str, api_base_url: str) -> None:
        self.account_sid = account_sid
        self._base = api_base_url.rstrip("/")
        self._http = AsyncTwilioHttpClient(timeout=30)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._client.api.base_url = self._base
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._authorization = {"Authorization": f"Basic {credentials}"}
        self._session = aiohttp.ClientSession(timeout=_TIMEOUT)

    async def close(self) -> None:
        await self._http.close()
        await self._session.close()

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except TwilioException as error:
            raise _refused(error) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise ProviderUnavailable("the provider could not be reached") from error

    async def _gone_ok(self, request: Any) -> None:
        try:
            await self._call(request)
        except ProviderRefused as error:
            if error.status != 404:
                raise

    # -- sending ---------------------------------------------------------------------------

    async def send_text(
        self, *, to: str, sender: str, body: str, media_urls: Sequence[str] = ()
    ) -> str:
        """Send one text (with media); returns its SID once the provider accepted it."""
        kwargs: dict[str, object] = {"to": to, "from_": sender, "body": body}
        if media_urls:
            kwargs["media_url"] = list(media_urls)
        message = await self._call(self._client.messages.create_async(**kwargs))
        return str(message.sid)

    # -- reading ---------------------------------------------------------------------------

    def _url(self, address: str) -> str:
        """The API address for `address`, a full URL or a path: only its path is used."""
        path = urllib.parse.urlsplit(address).path
        if not path.startswith(f"/2010-04-01/Accounts/{self.account_sid}/"):
            raise ProviderRefused(400, None)
        return self._base + path

    def public_address(self, address: str) -> str:
        """`address` as a full URL (a path is read against the API base)."""
        if urllib.parse.urlsplit(address).scheme:
            return address
        return self._base + address

    async def download(self, address: str, *, sid: str, content_type: str) -> Media:
        """Fetch media or a recording's audio with the account's credentials."""
        try:
            async with self._session.get(
                self._url(address), headers=self._authorization
            ) as response:
                if response.status == 429 or response.status >= 500:
                    raise ProviderUnavailable(f"the provider answered HTTP {response.status}")
                if response.status >= 400:
                    raise ProviderRefused(response.status, None)
                data = await response.read()
                kind = response.headers.get("Content-Type", content_type) or content_type
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise ProviderUnavailable("the provider could not be reached") from error
        return Media(sid=sid, content_type=kind.split(";")[0].strip(), data=data)

    async def media_of(self, message_sid: str) -> list[tuple[str, str, str]]:
        """(media sid, content type, address) of each piece of a message's media."""
        listed = await self._call(self._client.messages(message_sid).media.list_async())
        return [(str(m.sid), str(m.content_type), str(m.uri).removesuffix(".json")) for m in listed]

    async def text(self, sid: str) -> dict[str, object]:
        return _plain(await self._call(self._client.messages(sid).fetch_async()), _MESSAGE_FIELDS)

    async def call(self, sid: str) -> dict[str, object]:
        return _plain(await self._call(self._client.calls(sid).fetch_async()), _CALL_FIELDS)

    async def texts_to(self, number: str, since: datetime) -> list[dict[str, object]]:
        """Inbound messages to `number` sent since `since`, oldest first."""
        found = await self._call(
            self._client.messages.list_async(to=number, date_sent_after=since, page_size=200)
        )
        records = [_plain(m, _MESSAGE_FIELDS) for m in found]
        return sorted((r for r in records if r["direction"] == "inbound"), key=_when)

    async def calls_to(self, number: str, since: datetime) -> list[dict[str, object]]:
        """Inbound calls to `number` started since `since`, oldest first."""
        found = await self._call(
            self._client.calls.list_async(to=number, start_time_after=since, page_size=200)
        )
        records = [_plain(c, _CALL_FIELDS) for c in found]
        return sorted((r for r in records if r["direction"] == "inbound"), key=_when)

    async def recordings_since(self, since: datetime) -> list[dict[str, object]]:
        found = await self._call(
            self._client.recordings.list_async(date_created_after=since, page_size=200)
        )
        return sorted((_plain(r, _RECORDING_FIELDS) for r in found), key=_when)

    # -- redacting -------------------------------------------------------------------------

    async def blank_text(self, sid: str) -> None:
        """Redact a message's body in the provider's logs (a task queued by an older
        version; held texts are now deleted whole)."""
        await self._gone_ok(self._client.messages(sid).update_async(body=""))

    async def delete_text(self, sid: str) -> None:
        """Delete a message's record, and with it its media, from the provider's logs."""
        await self._gone_ok(self._client.messages(sid).delete_async())

    async def delete_media(self, message_sid: str, media_sid: str) -> None:
        await self._gone_ok(self._client.messages(message_sid).media(media_sid).delete_async())

    async def delete_recording(self, sid: str) -> None:
        await self._gone_ok(self._client.recordings(sid).delete_async())

    async def delete_call(self, sid: str) -> None:
        await self._gone_ok(self._client.calls(sid).delete_async())


def _when(record: dict[str, object]) -> str:
    for key in ("date_sent", "start_time", "date_created"):
        value = record.get(key)
        if isinstance(value, str):
            return value
    return ""
