"""What is sealed for a text, a call or a voicemail: the provider's own words, and the media.

Rules this module keeps:
1. The payload is a MIME multipart/mixed document (stdlib `email`), so any mail tool or a
   court's IT can open it. Its first part is exactly what the provider sent: the webhook's
   form body byte for byte (with the URL and X-Twilio-Signature in the headers, so the
   signature can be checked again later with the account's auth token), or the JSON
   record read from the REST API by reconciliation.
2. Every piece of media or audio follows as its own part, with the provider's content type
   and SID, base64-encoded (which decodes to exactly the bytes downloaded) and its SHA-256.
3. Pure: values in, bytes out.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP

from proxy.channels.sms.provider import Media


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """A signed webhook request, as received."""

    url: str  # as the provider signed it: the public URL
    body: bytes
    signature: str


def _part(document: EmailMessage, data: bytes, content_type: str, filename: str) -> None:
    maintype, _, subtype = content_type.partition("/")
    if not maintype or not subtype:
        maintype, subtype = "application", "octet-stream"
    document.add_attachment(
        data, maintype=maintype, subtype=subtype, filename=filename,
        headers=[f"X-SHA256: {hashlib.sha256(data).hexdigest()}"],
    )  # fmt: skip


def capture(
    *,
    kind: str,
    webhook: Webhook | None = None,
    record: Mapping[str, object] | None = None,
    media: Sequence[Media] = (),
) -> bytes:
    """The bytes to seal for one text, call or voicemail (`kind`), as described above."""
    document = EmailMessage(policy=SMTP)
    document["X-Nocontact-Capture"] = f"twilio {kind}"
    if webhook is not None:
        document["X-Webhook-Url"] = webhook.url
        document["X-Twilio-Signature"] = webhook.signature
    document.set_content("Captured by nocontact; the parts below are as the provider sent them.")
    document.make_mixed()
    if webhook is not None:
        _part(document, webhook.body, "application/x-www-form-urlencoded", "webhook.txt")
    if record is not None:
        data = json.dumps(record, indent=2, sort_keys=True).encode()
        _part(document, data, "application/json", "record.json")
    for piece in media:
        extension = mimetypes.guess_extension(piece.content_type) or ".bin"
        _part(document, piece.data, piece.content_type, f"{piece.sid}{extension}")
    return document.as_bytes()
