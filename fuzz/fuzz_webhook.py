"""Fuzz target: a Twilio webhook request through the pure parts of the SMS channel.

The input is a request as the channel sees it: its first line is the query string of
the URL Twilio asked for (the router admits only the four paths, so only the query is the
sender's; read as aiohttp's pure-Python parser reads a request line: UTF-8 with surrogate
escapes), its second line the X-Twilio-Signature header (the same), the rest the form
body, byte for byte. For each input this checks that:
1. `signed_params` returns the form or None and never raises, with the signature given
   and with the one Twilio would have computed; with the right signature, over the URL
   with or without its port, it returns the form (a request Twilio signed is never refused);
2. the form's fields are read by `_field` and `_media` (as the /sms route reads them),
   which raise nothing but `_Unusable` (answered 400);
3. the text it carries goes through normalize_sms, decide and `forward_bodies`, and the
   sealed capture is built, without raising;
4. every string produced encodes as UTF-8, and all of it takes under
   `fuzz.invariants.LIMIT_SECONDS`.

Run with `scripts/fuzz webhook [SECONDS]`.
"""

from __future__ import annotations

import urllib.parse

from multidict import MultiDict
from twilio.request_validator import RequestValidator

from fuzz.invariants import RECEIVED_AT, InvariantBroken, assert_utf8, guarded, rulebook, timed
from proxy.channels.sms import webhooks
from proxy.channels.sms.capture import ArrivalKind, Webhook, capture
from proxy.channels.sms.line import forward_bodies
from proxy.normalize import normalize_sms
from proxy.rules import decide

RULES = rulebook()
_VALIDATOR = RequestValidator("fuzz-auth-token")
_PUBLIC_URLS = (
    "https://sms.home.example",
    "https://sms.home.example:8443/hooks",
    "http://[::1]:80/t",
)
_ROUTES = ("/sms", "/voice", "/voice/recording", "/voice/done")


def check(data: bytes) -> None:
    """Every invariant of the module docstring, for one request."""
    query, _, rest = data.partition(b"\n")
    header, _, body = rest.partition(b"\n")
    route = _ROUTES[len(data) % len(_ROUTES)]
    path_qs = route + ("?" + query.decode("utf-8", "surrogateescape") if query else "")
    signature = header.decode("utf-8", "surrogateescape")
    url = _PUBLIC_URLS[len(data) // len(_ROUTES) % len(_PUBLIC_URLS)] + path_qs
    with timed(len(data)):
        webhooks.signed_params(_VALIDATOR, url, body, signature)
        form = webhooks.signed_params(_VALIDATOR, url, body, "x")
        if form is not None:
            raise InvariantBroken("a made-up signature was accepted")
        if _twilio_would_sign(url):
            for signed_url in webhooks._url_forms(url):
                params = MultiDict(_parsed(body))
                good = _VALIDATOR.compute_signature(signed_url, params)
                form = webhooks.signed_params(_VALIDATOR, url, body, good)
                if form is None:
                    raise InvariantBroken("the signature Twilio computes was refused")
                _read_text(form, Webhook(url=url, body=body, signature=good))


def _twilio_would_sign(url: str) -> bool:
    """Twilio signs a URL it could send: UTF-8 text that urllib can take apart."""
    try:
        url.encode("utf-8")
        webhooks._url_forms(url)
    except (UnicodeEncodeError, ValueError):
        return False
    return True


def _parsed(body: bytes) -> list[tuple[str, str]]:
    """The form as Twilio meant it (what it signed)."""
    return urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def _read_text(form: MultiDict[str], webhook: Webhook) -> None:
    """What the /sms route does with a signed form, up to the pipeline."""
    try:
        sid, sender = webhooks._field(form, "MessageSid"), webhooks._field(form, "From")
        webhooks._media(form)
    except webhooks._Unusable:
        return
    text = form.get("Body", "")
    message = normalize_sms(
        sender=sender, recipient=form.get("To", ""), text=text, raw=b"",
        received_at=RECEIVED_AT, default_region="US", provider_id=sid,
    )  # fmt: skip
    decision = decide(message, RULES)
    sealed = capture(kind=ArrivalKind.TEXT, webhook=webhook)
    assert_utf8((message, decision, forward_bodies(sender, text), sealed.decode()), "text")


test_one_input = guarded(check)
