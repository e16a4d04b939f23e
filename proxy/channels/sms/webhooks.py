"""Twilio's webhooks (aiohttp): translate a signed request into an arrival, a decision into TwiML.

Rules this module keeps:
1. Thin: no policy here. Every POST's X-Twilio-Signature is checked (twilio's
   RequestValidator, against `public_url` + the path and query as Twilio requested them)
   before anything is read into a message; a bad or missing signature gets 403 and nothing
   is stored or logged beyond the refusal itself.
2. Silent to the sender: every text gets the same empty `<Response/>`, held or not. Every
   call is answered at once and rings for `ring_seconds` (15 to 30 s, unpredictable, the
   same for a replay of the same call) in the configured ring tone: a held caller hears
   our own copy of that tone (`<Play>`, then `<Redirect>`), an allowed one Twilio's while
   it dials her phone (`<Dial timeout ringTone action>`). When the ringing ends unanswered
   both come back here (/voice/voicemail) and get the very same greeting and `<Record>`,
   differing only in the recording callback's `call` query, which Twilio signs. The only
   other answer is 503, when a text or a voicemail is not yet durable: Twilio then tries
   its fallback (the sender sees nothing), and reconciliation picks the message up from
   the provider's log. A call is never answered 503 (Twilio would tell the caller of an
   error): it gets its usual answer, and reconciliation keeps it.
3. The routes: POST /sms (texts and MMS), /voice (calls), /voice/voicemail?call=held|allowed
   (the ringing is over: greeting and Record, or hang up after she answered),
   /voice/recording?call=held|allowed (a voicemail is ready: held if its call was, else
   decided by the rules in force), /voice/done (after the voicemail: hang up); GET
   /voice/ringback/<tone>/<seconds>.wav, the held caller's ringing: unsigned (it says
   nothing of anyone), and total: anything but a playable tone and 15..30 s is 404.
4. Bounded: a request body over `MAX_BODY` (1 MiB; Twilio's largest is a few KiB) is
   refused with 413 by aiohttp before it is read whole; form values are read as the
   pipeline reads every text (`proxy.normalize.valid`: never a lone surrogate).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator, add_port, compare, remove_port
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from proxy.channels.sms.capture import ArrivalKind, Webhook
from proxy.channels.sms.line import MediaRef, TwilioArrival, TwilioLine
from proxy.channels.sms.provider import Provider
from proxy.channels.sms.ringback import RING_SECONDS, ringback_wav
from proxy.logs import get_logger
from proxy.message import Channel
from proxy.pipeline import Pipeline

_log = get_logger("sms")
_XML = "text/xml"
MAX_BODY = 1 << 20
EMPTY = str(MessagingResponse())


def _hang_up() -> str:
    response = VoiceResponse()
    response.hangup()  # returns the <Hangup/> element, not the response: never str() it
    return str(response)


_HANG_UP = _hang_up()
_MAX_VOICEMAIL_SECONDS = 180
_HELD, _ALLOWED = "held", "allowed"  # the `call` query: which way a voicemail's call went
_ANSWERED = frozenset({"completed", "answered"})  # DialCallStatus: she picked up
_RINGBACK = re.compile(r"(1[5-9]|2[0-9]|30)\.wav")


@dataclass(frozen=True, slots=True, kw_only=True)
class Answering:
    """What the webhooks need to know of the config (replaced on reload)."""

    public_url: str
    forward_to: str
    voicemail_greeting: str
    ring_tone: str = "us"


def ringing(answering: Answering, seconds: int) -> str:
    """A held call: `seconds` of ringing, then back here for the greeting, as after a Dial."""
    response = VoiceResponse()
    response.play(f"{answering.public_url}/voice/ringback/{answering.ring_tone}/{seconds}.wav")
    response.redirect(f"{answering.public_url}/voice/voicemail?call={_HELD}")
    return str(response)


def put_through(answering: Answering, caller: str, seconds: int) -> str:
    """An allowed call: her phone rings for `seconds`; then back here for the greeting."""
    response = VoiceResponse()
    response.dial(
        answering.forward_to, caller_id=caller or None, timeout=seconds,
        ring_tone=answering.ring_tone,
        action=f"{answering.public_url}/voice/voicemail?call={_ALLOWED}",
    )  # fmt: skip
    return str(response)


def voicemail(answering: Answering, call: str = _HELD) -> str:
    """The greeting and the recording, the same for a held call and an unanswered allowed
    one but for the `call` query of the recording callback."""
    response = VoiceResponse()
    response.say(answering.voicemail_greeting)
    response.record(
        action=f"{answering.public_url}/voice/done",
        recording_status_callback=f"{answering.public_url}/voice/recording?call={call}",
        recording_status_callback_event="completed",
        max_length=_MAX_VOICEMAIL_SECONDS,
        play_beep=True,
    )
    response.hangup()
    return str(response)


def signed_params(
    validator: RequestValidator, url: str, body: bytes, signature: str
) -> MultiDict[str] | None:
    """The form's parameters if `signature` is Twilio's over `url` and them, else None.

    The same test as `RequestValidator.validate` for a form body, built from the library's
    own parts: the signature must match the URL without its port or with it. The URL's two
    forms are worked out once per URL, and the second signature is computed only when the
    first does not match. A MultiDict keeps a repeated field's every value, as Twilio
    signs them, and RequestValidator reads it without two exceptions per field.
    """
    text = body.decode("utf-8", "replace")
    params = MultiDict(urllib.parse.parse_qsl(text, keep_blank_values=True))
    if not signature or not _signable(url):
        return None
    for form in _url_forms(url):
        if compare(validator.compute_signature(form, params), signature):
            return params
    return None


def _signable(url: str) -> bool:
    """Whether Twilio could have signed `url`: it signs UTF-8 text, and aiohttp's pure-Python
    parser hands on a request line's undecodable bytes as lone surrogates (fuzzing found it)."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@functools.lru_cache(maxsize=64)
def _url_forms(url: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(url)
    return remove_port(parsed), add_port(parsed)


class _Unusable(Exception):
    """A signed request without the fields its route needs."""


def _media(params: Mapping[str, str]) -> tuple[MediaRef, ...]:
    try:
        count = int(params.get("NumMedia", "0") or "0")
    except ValueError:
        raise _Unusable from None
    pieces = []
    for n in range(min(count, 10)):
        url = params.get(f"MediaUrl{n}", "")
        kind = params.get(f"MediaContentType{n}", "application/octet-stream")
        sid = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        if not url or not sid:
            raise _Unusable
        pieces.append((sid, kind, url))
    return tuple(pieces)


def _call_path(webhook: Webhook) -> str:
    """Which way a voicemail's call went, from the signed URL's `call` query: "allowed" only
    when it says exactly that; anything else (an older version's URL had none) is held."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(webhook.url).query)
    return _ALLOWED if query.get("call") == [_ALLOWED] else _HELD


def _seconds(params: Mapping[str, str], name: str) -> int:
    try:
        return max(0, int(params.get(name, "0") or "0"))
    except ValueError:
        return 0


def _field(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise _Unusable
    return value


class Webhooks:
    def __init__(
        self, *, pipeline: Pipeline, line: TwilioLine, provider: Provider, auth_token: str,
        answering: Callable[[], Answering],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:  # fmt: skip
        self._pipeline, self._line, self._provider = pipeline, line, provider
        self._validator = RequestValidator(auth_token)
        self._answering = answering
        self._clock = clock
        self._ring_key = secrets.token_bytes(32)

    def ring_seconds(self, call_sid: str) -> int:
        """How long a call rings before the greeting: 15 to 30 s, uniform, unpredictable to
        the caller (a key made at start), and the same for a replayed webhook of the call."""
        digest = hmac.new(self._ring_key, call_sid.encode(), hashlib.sha256).digest()
        return RING_SECONDS[int.from_bytes(digest) % len(RING_SECONDS)]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        routes = {
            "/sms": self._text, "/voice": self._call,
            "/voice/voicemail": self._voicemail, "/voice/recording": self._recording,
            "/voice/done": self._done,
        }  # fmt: skip
        for path, handler in routes.items():
            app.router.add_post(path, self._signed(handler))
        app.router.add_get("/voice/ringback/{tone}/{name}", self._ringback)
        return app

    async def _ringback(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = _RINGBACK.fullmatch(name)
        try:
            wav = ringback_wav(request.match_info["tone"], int(found[1]) if found else 0)
        except ValueError:
            return web.Response(status=404)
        # The same URL is always the same bytes: Twilio may keep it as long as it likes.
        return web.Response(body=wav, content_type="audio/wav",
                            headers={"Cache-Control": "public, max-age=31536000"})  # fmt: skip

    def _signed(
        self, handler: Callable[[Webhook, Mapping[str, str]], Awaitable[str]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            body = await request.read()
            url = self._answering().public_url + request.path_qs
            signature = request.headers.get("X-Twilio-Signature", "")
            params = signed_params(self._validator, url, body, signature)
            if params is None:
                _log.warning("webhook refused: bad or missing signature")
                return web.Response(status=403)
            # Only a signed request is an arrival: unsigned ones, sent without pause, would
            # otherwise put off the cleanup of held texts at the provider for ever.
            self._line.outbox.arrival()
            try:
                twiml = await handler(Webhook(url=url, body=body, signature=signature), params)
            except _Unusable:
                _log.warning("webhook refused: a field it needs is missing")
                return web.Response(status=400)
            except Exception:  # NocontactError (RetryLater) or a fault: never a 2xx, never why
                _log.error("webhook not answered: not yet durable; the provider falls back "
                           "and reconciliation picks it up")  # fmt: skip
                return web.Response(status=503)
            return web.Response(text=twiml, content_type=_XML)

        return checked

    async def _text(self, webhook: Webhook, params: Mapping[str, str]) -> str:
        arrival = TwilioArrival(
            sid=_field(params, "MessageSid"), channel=Channel.SMS, kind=ArrivalKind.TEXT,
            sender=_field(params, "From"), recipient=params.get("To", ""),
            text=params.get("Body", ""), received_at=self._clock(), webhook=webhook,
            media=_media(params),
        )  # fmt: skip
        await self._pipeline.receive_phone(arrival, self._line)
        return EMPTY

    async def _call(self, webhook: Webhook, params: Mapping[str, str]) -> str:
        caller = params.get("From", "")
        arrival = TwilioArrival(
            sid=_field(params, "CallSid"), channel=Channel.VOICE, kind=ArrivalKind.CALL,
            sender=caller, recipient=params.get("To", ""), text="", received_at=self._clock(),
            webhook=webhook,
        )  # fmt: skip
        try:
            decision = await self._pipeline.receive_phone(arrival, self._line)
        except Exception:
            # A 5xx would make Twilio say "an application error has occurred" to the caller:
            # a signal (rule 2). The caller gets the usual answer; the call stays in the
            # provider's log, where reconciliation finds it and keeps it.
            _log.error("a call is not yet durable; reconciliation picks it up")
            decision = self._pipeline.decide_phone(arrival)[1]
        answering, seconds = self._answering(), self.ring_seconds(arrival.sid)
        if decision.held:
            return ringing(answering, seconds)
        return put_through(answering, caller, seconds)

    async def _voicemail(self, webhook: Webhook, params: Mapping[str, str]) -> str:
        if params.get("DialCallStatus", "") in _ANSWERED:
            return _HANG_UP  # she took the call, and it is over
        return voicemail(self._answering(), _call_path(webhook))

    async def _recording(self, webhook: Webhook, params: Mapping[str, str]) -> str:
        if params.get("RecordingStatus", "completed") != "completed":
            return EMPTY  # "absent" or "failed": there is no audio to keep
        call_sid, sid = _field(params, "CallSid"), _field(params, "RecordingSid")
        if self._line.ledger.handled(sid):
            return EMPTY  # a replay: its call may be gone from the provider by now
        call = await self._provider.call(call_sid)
        arrival = TwilioArrival(
            sid=sid, channel=Channel.VOICE, kind=ArrivalKind.VOICEMAIL, voicemail=True,
            sender=str(call.get("from") or ""), recipient=str(call.get("to") or ""), text="",
            received_at=self._clock(), webhook=webhook, call_sid=call_sid,
            media=((sid, "audio/x-wav", _field(params, "RecordingUrl") + ".wav"),),
            call_allowed=_call_path(webhook) == _ALLOWED,
            seconds=_seconds(params, "RecordingDuration"),
        )  # fmt: skip
        await self._pipeline.receive_phone(arrival, self._line)
        return EMPTY

    async def _done(self, webhook: Webhook, params: Mapping[str, str]) -> str:
        return _HANG_UP
