"""What is sealed for a text, a call or a voicemail: the provider's own words, and the media.

Rules this module keeps:
1. The payload is one JSON document (stdlib `json`, UTF-8), so any tool can read it:
     {"capture": "nocontact twilio <kind>" (text, call or voicemail),
      "webhook": {"url", "signature", "content_type", "body_base64"},   (if a webhook)
      "record": {...},                                                   (if read by
                                                                          reconciliation)
      "media": [{"sid", "content_type", "bytes", "sha256", "base64"}, ...]}
2. The webhook is kept exactly as received: its form body byte for byte (base64, which
   decodes to exactly those bytes), with the URL and X-Twilio-Signature it was signed
   with, so the signature can be checked again later with the account's auth token. A
   record read from the REST API is kept as the provider gave it.
3. Every piece of media or audio is kept whole, with the provider's content type and SID,
   its size and SHA-256; one the provider no longer had is recorded as "missing", with why.
4. Pure: values in, bytes out. (JSON rather than MIME: the stdlib's MIME generator cost
   0.17-0.73 ms per text, a fifth of the whole webhook; json.dumps costs ~10 us.)
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.channels.sms.provider import Media

FORM = "application/x-www-form-urlencoded"


class ArrivalKind(enum.StrEnum):
    """What came in on the phone line; its value names the capture ("nocontact twilio text")."""

    TEXT = "text"
    CALL = "call"
    VOICEMAIL = "voicemail"


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """A signed webhook request, as received."""

    url: str  # as the provider signed it: the public URL
    body: bytes
    signature: str


def _media(piece: Media) -> dict[str, object]:
    if piece.missing:
        return {"sid": piece.sid, "content_type": piece.content_type, "missing": piece.missing}
    return {
        "sid": piece.sid,
        "content_type": piece.content_type,
        "bytes": len(piece.data),
        "sha256": hashlib.sha256(piece.data).hexdigest(),
        "base64": base64.b64encode(piece.data).decode("ascii"),
    }


def capture(
    *,
    kind: ArrivalKind,
    webhook: Webhook | None = None,
    record: Mapping[str, object] | None = None,
    media: Sequence[Media] = (),
) -> bytes:
    """The bytes to seal for one text, call or voicemail (`kind`), as described above."""
    document: dict[str, object] = {"capture": f"nocontact twilio {kind.value}"}
    if webhook is not None:
        document["webhook"] = {
            "url": webhook.url,
            "signature": webhook.signature,
            "content_type": FORM,
            "body_base64": base64.b64encode(webhook.body).decode("ascii"),
        }
    if record is not None:
        document["record"] = dict(record)
    document["media"] = [_media(piece) for piece in media]
    return json.dumps(document, ensure_ascii=False).encode()


def read_capture(data: bytes) -> dict[str, object]:
    """A capture read back (for the contact's tools and tests): bodies and media decoded
    into bytes under "body" and "data"."""
    document: dict[str, object] = json.loads(data)
    webhook = document.get("webhook")
    if isinstance(webhook, dict):
        webhook["body"] = base64.b64decode(webhook["body_base64"])
    media = document.get("media")
    for piece in media if isinstance(media, list) else []:
        piece["data"] = base64.b64decode(piece.get("base64", ""))
    return document
