"""A loopback stand-in for the Twilio REST endpoints nocontact uses, and a webhook sender.

Rules this module keeps:
1. JSON is what twilio-python 9.13 deserializes: a list holds its records under one key
   ("messages", "calls", "recordings", "media_list") beside Twilio's paging keys; dates are
   RFC 2822 in GMT ("Tue, 24 Nov 2026 10:00:00 +0000").
2. Every request is recorded before it is judged, so tests see what was asked even on 401/503.
3. Refusals come in Twilio's order: outage 503, credentials 401, account 404, resource 404.
   The account itself is fetched (GET Accounts/<sid>.json) with its `status`.
4. Lists are newest first and page by cursor (PageToken), as Twilio's do, so deleting records
   while walking the pages skips none. Deleting a message deletes its media (Twilio, 2020-10).
5. Webhooks are signed by twilio's own RequestValidator over the URL Twilio would have used.
6. A call's later requests are built from the stored call, as Twilio builds them: the form
   of a <Redirect> (`call_form`) and of a <Dial>'s action once the dialled call ended
   (`dial_ended`, which stores that child call too, outbound-dial, to the dialled number).
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Final, Self
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

API: Final = "2010-04-01"
MAX_BODY: Final = 1600  # characters; longer bodies are refused with code 21617
DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 1000
T_ACCOUNT: Final = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)  # when the fake's account was made

Row = dict[str, object]

# list key -> exact-match filters (parameter -> field), and the date filter's parameter and field
_LISTS: Final[dict[str, tuple[dict[str, str], str, str]]] = {
    "messages": ({"To": "to", "From": "from"}, "DateSent", "date_sent"),
    "calls": ({"To": "to", "From": "from", "Status": "status"}, "StartTime", "start_time"),
    "recordings": ({"CallSid": "call_sid"}, "DateCreated", "date_created"),
    "media_list": ({}, "DateCreated", "date_created"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Asked:
    """One request the fake received, with repeated query and form fields kept in order."""

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """One stored media file of a message."""

    sid: str
    content_type: str
    content: bytes
    created: datetime


def _rfc2822(when: datetime | None) -> str | None:
    return None if when is None else format_datetime(when.astimezone(UTC))


def _instant(at: datetime | None) -> datetime:
    """`at` in UTC to the second (a naive `at` is taken as UTC); now when absent."""
    when = datetime.now(UTC) if at is None else at
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.replace(microsecond=0)


def _segments(body: str) -> int:
    # ASCII stands in for GSM-7 here; anything else is UCS-2, 70 characters a segment.
    single, part = (160, 153) if body.isascii() else (70, 67)
    return 1 if len(body) <= single else math.ceil(len(body) / part)


def _passes(stamp: object, op: str, raw: str) -> bool:
    """Twilio's inclusive date filter: `Field`, `Field<` or `Field>` with a day or an instant."""
    if not isinstance(stamp, str):
        return False
    when = parsedate_to_datetime(stamp)
    if len(raw) == len("YYYY-MM-DD"):
        low = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
        high = low + timedelta(days=1, seconds=-1)
    else:
        low = high = datetime.strptime(raw, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return {"": low <= when <= high, "<": when <= high, ">": when >= low}[op]


def _lists(pairs: Iterable[tuple[str, object]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(str(value))
    return out


def _one(fields: Mapping[str, list[str]], key: str) -> str | None:
    values = fields.get(key)
    return values[0] if values else None


def _error(status: int, code: int, message: str) -> web.Response:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more_info, "status": status}
    return web.json_response(body, status=status)


def _missing() -> web.Response:
    return _error(404, 20404, "The requested resource was not found")


class FakeTwilio:
    """Twilio's Messages, Media, Calls and Recordings REST API for one account, on loopback."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.base_url = ""
        self.down = False
        self.status = "active"  # the account's own status, as GET Accounts/<sid>.json says
        self.requests: list[Asked] = []
        self.messages: dict[str, Row] = {}
        self.calls: dict[str, Row] = {}
        self.recordings: dict[str, Row] = {}
        self.media: dict[str, list[Media]] = {}
        self.audio: dict[str, bytes] = {}
        self._sent: list[Row] = []
        self._order: dict[str, tuple[datetime, int]] = {}  # sid -> sort key; outlives deletion
        self._runner: web.AppRunner | None = None
        self._account = f"/{API}/Accounts/{account_sid}"
        self._authorization = aiohttp.encode_basic_auth(account_sid, auth_token)
        sid = r"(\w+)"
        table: list[tuple[str, str, Callable[..., web.Response]]] = [
            ("POST", r"Messages\.json", self._create_message),
            ("GET", r"Messages\.json", lambda a: self._page(a, "messages", self.messages)),
            ("GET", rf"Messages/{sid}\.json", lambda _, s: self._fetch(self.messages, s)),
            ("POST", rf"Messages/{sid}\.json", self._redact_message),
            ("DELETE", rf"Messages/{sid}\.json", lambda _, s: self._delete(s, self.messages)),
            ("GET", rf"Messages/{sid}/Media\.json", self._list_media),
            ("GET", rf"Messages/{sid}/Media/{sid}(\.json|)", self._media_item),
            ("DELETE", rf"Messages/{sid}/Media/{sid}(\.json)", self._media_item),
            ("GET", r"Calls\.json", lambda a: self._page(a, "calls", self.calls)),
            ("GET", rf"Calls/{sid}\.json", lambda _, s: self._fetch(self.calls, s)),
            ("DELETE", rf"Calls/{sid}\.json", lambda _, s: self._delete(s, self.calls)),
            ("GET", r"Recordings\.json", lambda a: self._page(a, "recordings", self.recordings)),
            ("GET", rf"Recordings/{sid}\.json", lambda _, s: self._fetch(self.recordings, s)),
            ("GET", rf"Recordings/{sid}(\.wav|\.mp3|)", self._recording_audio),
            ("DELETE", rf"Recordings/{sid}\.json", lambda _, s: self._delete(s, self.recordings)),
        ]
        self._routes = [(method, re.compile(path), action) for method, path, action in table]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # What the provider's side does: people write and call, calls end, recordings appear.

    def inbound_message(
        self,
        *,
        sender: str,
        to: str,
        body: str,
        media: Sequence[tuple[str, bytes]] = (),
        at: datetime | None = None,
    ) -> tuple[str, dict[str, str]]:
        """Store an incoming SMS/MMS; return its sid and the form Twilio posts to the webhook."""
        when = _instant(at)
        sid = self._message(
            sender=sender, to=to, body=body, num_media=len(media), direction="inbound",
            status="received", at=when, sent_at=when,
        )  # fmt: skip
        self.media[sid] = [
            Media(sid=self._sid("ME", when), content_type=kind, content=data, created=when)
            for kind, data in media
        ]
        params = {
            "ToCountry": "US", "ToState": "", "SmsMessageSid": sid, "NumMedia": str(len(media)),
            "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "US", "To": to, "ToZip": "",
            "NumSegments": str(_segments(body)), "ReferralNumMedia": "0", "MessageSid": sid,
            "AccountSid": self.account_sid, "From": sender, "ApiVersion": API,
        }  # fmt: skip
        for i, item in enumerate(self.media[sid]):
            params[f"MediaContentType{i}"] = item.content_type
            params[f"MediaUrl{i}"] = f"{self.base_url}{self._media_path(sid, item.sid)}"
        return sid, params

    def inbound_call(
        self, *, sender: str, to: str, status: str = "ringing", at: datetime | None = None
    ) -> tuple[str, dict[str, str]]:
        """Store an incoming call; return its sid and the form Twilio posts to the voice URL."""
        when = _instant(at)
        sid = self._sid("CA", when)
        path = f"{self._account}/Calls/{sid}"
        self.calls[sid] = {
            "account_sid": self.account_sid, "answered_by": None, "api_version": API,
            "caller_name": None, "date_created": _rfc2822(when), "date_updated": _rfc2822(when),
            "direction": "inbound", "duration": None, "end_time": None, "forwarded_from": None,
            "from": sender, "from_formatted": sender, "group_sid": None, "parent_call_sid": None,
            "phone_number_sid": None, "price": None, "price_unit": "USD", "queue_time": "0",
            "sid": sid, "start_time": _rfc2822(when), "status": status,
            "subresource_uris": {"recordings": f"{path}/Recordings.json"}, "to": to,
            "to_formatted": to, "trunk_sid": None, "uri": f"{path}.json",
        }  # fmt: skip
        return sid, self.call_form(sid)

    def call_form(self, sid: str) -> dict[str, str]:
        """The form Twilio posts about a stored call: to the voice URL, and to any later URL
        the call's TwiML sends it to (a <Redirect>)."""
        row = self.calls[sid]
        sender, to = str(row["from"]), str(row["to"])
        return {
            "AccountSid": self.account_sid, "ApiVersion": API, "CallSid": sid,
            "CallStatus": str(row["status"]), "Called": to, "CalledCountry": "US",
            "Caller": sender, "CallerCountry": "US", "Direction": "inbound", "From": sender,
            "FromCountry": "US", "To": to, "ToCountry": "US",
        }  # fmt: skip

    def dial_ended(
        self, sid: str, *, to: str, status: str = "no-answer", duration: int = 0
    ) -> dict[str, str]:
        """A stored call's <Dial> to `to` ended with `status` (no-answer, busy, failed,
        canceled, completed): store the dialled (child) call and return the form Twilio
        posts to the Dial's action URL."""
        parent = self.calls[sid]
        parent["status"] = "in-progress"  # answered by TwiML: the caller hears the ringing
        when = _instant(None)
        child = self._sid("CA", when)
        self.calls[child] = {
            **parent, "sid": child, "parent_call_sid": sid, "direction": "outbound-dial",
            "to": to, "to_formatted": to, "status": status, "duration": str(duration),
            "start_time": _rfc2822(when), "end_time": _rfc2822(when),
            "uri": f"{self._account}/Calls/{child}.json", "subresource_uris": {},
        }  # fmt: skip
        form = {**self.call_form(sid), "DialCallSid": child, "DialCallStatus": status,
                "DialBridged": "true" if status == "completed" else "false"}  # fmt: skip
        if status == "completed":
            form["DialCallDuration"] = str(duration)
        return form

    def finish_call(self, sid: str, status: str = "completed", duration: int = 12) -> None:
        """End a stored call after `duration` seconds with a final status."""
        row = self.calls[sid]
        end = parsedate_to_datetime(str(row["start_time"])) + timedelta(seconds=duration)
        row.update(
            status=status, duration=str(duration), end_time=_rfc2822(end),
            date_updated=_rfc2822(end),
        )  # fmt: skip

    def recording(
        self, *, call_sid: str, audio: bytes, at: datetime | None = None, duration: int = 5
    ) -> tuple[str, dict[str, str]]:
        """Store a call's recording; return its sid and the recordingStatusCallback form."""
        when = _instant(at)
        sid = self._sid("RE", when)
        path = f"{self._account}/Recordings/{sid}"
        self.recordings[sid] = {
            "account_sid": self.account_sid, "api_version": API, "call_sid": call_sid,
            "channels": 1, "conference_sid": None, "date_created": _rfc2822(when),
            "date_updated": _rfc2822(when), "duration": str(duration),
            "encryption_details": None, "error_code": None, "media_url": self.base_url + path,
            "price": None, "price_unit": "USD", "sid": sid, "source": "RecordVerb",
            "start_time": _rfc2822(when), "status": "completed", "subresource_uris": {},
            "uri": f"{path}.json",
        }  # fmt: skip
        self.audio[sid] = audio
        params = {
            "AccountSid": self.account_sid, "CallSid": call_sid, "RecordingSid": sid,
            "RecordingUrl": self.base_url + path, "RecordingStatus": "completed",
            "RecordingDuration": str(duration), "RecordingChannels": "1",
            "RecordingStartTime": str(_rfc2822(when)), "RecordingSource": "RecordVerb",
        }  # fmt: skip
        return sid, params

    def sent(self) -> list[Row]:
        """Messages created through POST Messages.json, in order, deleted ones included."""
        return list(self._sent)

    def asked(self, method: str, path_suffix: str) -> list[Asked]:
        """Requests with this method whose path ends with `path_suffix`."""
        return [a for a in self.requests if a.method == method and a.path.endswith(path_suffix)]

    # The wire.

    async def _dispatch(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else None
        asked = Asked(
            method=request.method, path=request.path, query=_lists(request.query.items()),
            form=_lists(form.items()) if form is not None else {},
        )  # fmt: skip
        self.requests.append(asked)
        if self.down:
            return _error(503, 20503, "Service Unavailable")
        if request.headers.get("Authorization") != self._authorization:
            return _error(401, 20003, "Authenticate")
        if request.method == "GET" and request.path == self._account + ".json":
            return web.json_response(self._account_row())
        rest = request.path.removeprefix(self._account + "/")  # another account matches nothing
        for method, pattern, action in self._routes:
            if method == request.method and (found := pattern.fullmatch(rest)):
                return action(asked, *found.groups())
        return _missing()

    def _sid(self, prefix: str, when: datetime) -> str:
        count = len(self._order) + 1
        sid = f"{prefix}{count:032x}"
        self._order[sid] = (when, count)
        return sid

    def _message(
        self, *, sender: str, to: str, body: str, num_media: int, direction: str, status: str,
        at: datetime, sent_at: datetime | None,
    ) -> str:  # fmt: skip
        sid = self._sid("MM" if num_media else "SM", at)
        path = f"{self._account}/Messages/{sid}"
        self.messages[sid] = {
            "account_sid": self.account_sid, "api_version": API, "body": body,
            "date_created": _rfc2822(at), "date_sent": _rfc2822(sent_at),
            "date_updated": _rfc2822(at), "direction": direction, "error_code": None,
            "error_message": None, "from": sender, "messaging_service_sid": None,
            "num_media": str(num_media), "num_segments": str(_segments(body)), "price": None,
            "price_unit": "USD", "sid": sid, "status": status, "to": to, "uri": f"{path}.json",
            "subresource_uris": {
                "media": f"{path}/Media.json", "feedback": f"{path}/Feedback.json"
            },
        }  # fmt: skip
        return sid

    def _create_message(self, asked: Asked) -> web.Response:
        to, sender = _one(asked.form, "To"), _one(asked.form, "From")
        body, urls = _one(asked.form, "Body") or "", asked.form.get("MediaUrl", [])
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not sender:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body and not urls:
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return _error(400, 21617, "The concatenated message body exceeds the 1600 limit.")
        # A queued message has no date_sent yet; Twilio fills it in when the carrier takes it.
        sid = self._message(
            sender=sender, to=to, body=body, num_media=len(urls), direction="outbound-api",
            status="queued", at=_instant(None), sent_at=None,
        )  # fmt: skip
        self._sent.append(self.messages[sid])
        return web.json_response(self.messages[sid], status=201)

    def _redact_message(self, asked: Asked, sid: str) -> web.Response:
        row = self.messages.get(sid)
        if row is None:
            return _missing()
        if asked.form.get("Body") != [""]:
            return _error(400, 20001, "Body may only be set to the empty string (redaction).")
        row.update(body="", date_updated=_rfc2822(_instant(None)))
        return web.json_response(row)

    def _list_media(self, asked: Asked, sid: str) -> web.Response:
        if sid not in self.messages:
            return _missing()
        rows = {m.sid: self._media_row(sid, m) for m in self.media.get(sid, [])}
        return self._page(asked, "media_list", rows)

    def _media_item(self, asked: Asked, sid: str, media_sid: str, json: str) -> web.Response:
        """A media file's JSON (.json), its bytes (no suffix), or its deletion."""
        listed = self.media.get(sid, []) if sid in self.messages else []
        found = next((m for m in listed if m.sid == media_sid), None)
        if found is None:
            return _missing()
        if asked.method == "DELETE":
            listed.remove(found)
            self.messages[sid]["num_media"] = str(len(listed))
            return web.Response(status=204)
        if json:
            return web.json_response(self._media_row(sid, found))
        return web.Response(body=found.content, headers={"Content-Type": found.content_type})

    def _recording_audio(self, _: Asked, sid: str, extension: str) -> web.Response:
        if sid not in self.audio:
            return _missing()
        kind = "audio/mpeg" if extension == ".mp3" else "audio/x-wav"  # same bytes either way
        return web.Response(body=self.audio[sid], headers={"Content-Type": kind})

    def _media_row(self, sid: str, item: Media) -> Row:
        return {
            "account_sid": self.account_sid, "content_type": item.content_type,
            "date_created": _rfc2822(item.created), "date_updated": _rfc2822(item.created),
            "parent_sid": sid, "sid": item.sid,
            "uri": f"{self._media_path(sid, item.sid)}.json",
        }  # fmt: skip

    def _media_path(self, sid: str, media_sid: str) -> str:
        return f"{self._account}/Messages/{sid}/Media/{media_sid}"

    def _account_row(self) -> Row:
        return {
            "sid": self.account_sid, "owner_account_sid": self.account_sid,
            "friendly_name": "My first Twilio account", "status": self.status, "type": "Full",
            "auth_token": self.auth_token, "date_created": _rfc2822(T_ACCOUNT),
            "date_updated": _rfc2822(T_ACCOUNT), "uri": f"{self._account}.json",
            "subresource_uris": {}, "parent_account_sid": None,
        }  # fmt: skip

    @staticmethod
    def _fetch(table: Mapping[str, Row], sid: str) -> web.Response:
        row = table.get(sid)
        return _missing() if row is None else web.json_response(row)

    def _delete(self, sid: str, table: dict[str, Row]) -> web.Response:
        """Delete a record and what goes with it: a message's media, a recording's audio."""
        self.media.pop(sid, None)
        self.audio.pop(sid, None)
        return _missing() if table.pop(sid, None) is None else web.Response(status=204)

    def _page(self, asked: Asked, key: str, table: Mapping[str, Row]) -> web.Response:
        """One page of `table`, filtered as `_LISTS[key]` says."""
        query, (equal, param, field) = asked.query, _LISTS[key]
        tests = [(op, query[param + op][0]) for op in ("", "<", ">") if param + op in query]
        try:
            rows = [
                row for row in table.values()
                if all(row.get(f) == query[p][0] for p, f in equal.items() if p in query)
                and all(_passes(row.get(field), op, raw) for op, raw in tests)
            ]  # fmt: skip
            size = min(int(_one(query, "PageSize") or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
            number = int(_one(query, "Page") or 0)
        except ValueError as error:
            return _error(400, 20001, f"Invalid parameter: {error}")
        newest_first = key != "media_list"
        rows.sort(key=lambda row: self._order[str(row["sid"])], reverse=newest_first)
        token = _one(query, "PageToken")
        start = number * size
        if token is not None and token[2:] in self._order:
            mark = self._order[token[2:]]
            after = [(self._order[str(r["sid"])] < mark) == newest_first for r in rows]
            start = after.index(True) if True in after else len(rows)
        chunk = rows[start : start + size]
        kept = [(k, v) for k, vs in query.items() if k not in ("Page", "PageToken") for v in vs]

        def uri(page: int, token: str | None = None) -> str:
            tail = [("PageSize", str(size)), ("Page", str(page))]
            tail += [("PageToken", token)] if token else []
            return f"{asked.path}?{urlencode([*kept, *tail])}"

        later = start + size < len(rows)
        return web.json_response({
            key: chunk, "end": start + len(chunk) - 1, "first_page_uri": uri(0),
            "next_page_uri": uri(number + 1, f"PA{chunk[-1]['sid']}") if later else None,
            "page": number, "page_size": size, "previous_page_uri": None, "start": start,
            "uri": uri(number, token),
        })  # fmt: skip


class Signing(enum.Enum):
    """`post_webhook`'s default: sign the form as Twilio would."""

    COMPUTE = "compute"


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """X-Twilio-Signature for a form posted to `url`, computed by twilio's own validator."""
    return str(RequestValidator(auth_token).compute_signature(url, dict(params)))


_signature: Final = signature  # post_webhook's `signature` parameter shadows the function


async def post_webhook(
    session: aiohttp.ClientSession,
    *,
    public_url: str,
    local_url: str,
    params: Mapping[str, str],
    auth_token: str,
    signature: str | Signing | None = Signing.COMPUTE,
) -> tuple[int, str]:
    """POST `params` to `local_url` as Twilio would, signed over `public_url`; None omits the
    signature header. Returns the status and body text."""
    headers = {"User-Agent": "TwilioProxy/1.1"}
    if signature is Signing.COMPUTE:
        signature = _signature(auth_token, public_url, params)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    async with session.post(local_url, data=dict(params), headers=headers) as response:
        return response.status, await response.text()
