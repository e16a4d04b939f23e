"""A held item as safe text for a person to read, and the files its original is made of.

Rules this module keeps:
1. Safe: text only. HTML is reduced to its visible text (nothing is fetched: no images,
   no remote content, no links followed); attachments and media are listed by name,
   type, size and SHA-256, never opened; control characters are shown as escapes.
2. A rendering is derived and says so; the original is kept separately, byte for byte
   (`original_files`): an email as .eml exactly as received; a text or call as the
   provider's parameters in JSON (with the signed request's URL and signature); MMS media
   and voicemail audio as their own files.
3. Pure: an item's metadata and payload in, text or (name, bytes) out. Broken input
   renders as what could be read, never raises.
4. The rendering's head says how urgent the item was found when it was held, in one
   line of reason codes (`Urgency: urgent (threat)`), never the words that matched; an
   item sealed before assessments existed reads `digest`.
"""

from __future__ import annotations

import base64
import binascii
import email
import hashlib
import json
import mimetypes
import urllib.parse
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any, NamedTuple

from proxy.alerts.tiers import Assessment
from proxy.archive.metadata import SealedItem, rfc3339
from proxy.message import Channel
from proxy.normalize.html import html_to_text

MAX_LINES = 400
# What reaches the contact's terminal escaped, never acted on: C0 controls but tab and
# line feed (a lone CR too: the rest of a line would overwrite what came before), DEL,
# the C1 controls (0x80-0x9f: some terminals take 0x9b as an escape sequence), and the
# bidirectional controls ('\u202e' shows "exe.txt" for "txt.exe", and can turn a line of
# the listing around).
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL = {
    c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
    for c in (*range(0, 9), *range(11, 32), *range(127, 160), *_BIDI)
}


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").translate(_CONTROL)


def _capture(payload: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    if isinstance(document, dict) and str(document.get("capture", "")).startswith("nocontact"):
        return document
    return None


def _params(document: dict[str, Any]) -> dict[str, str]:
    webhook = document.get("webhook")
    if isinstance(webhook, dict):
        try:
            body = base64.b64decode(str(webhook.get("body_base64", "")))
        except binascii.Error:
            return {}
        return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    record = document.get("record")
    return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) else {}


def _media(document: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    """(sid, content type, bytes) of every piece the capture holds (not the missing ones)."""
    found = []
    for piece in document.get("media") or []:
        if piece.get("missing"):
            continue
        try:
            data = base64.b64decode(str(piece.get("base64", "")))
        except binascii.Error:
            data = b""
        found.append((str(piece.get("sid", "media")), str(piece.get("content_type", "")), data))
    return found


def _size(data: bytes) -> str:
    return f"{len(data):,} bytes, SHA-256 {hashlib.sha256(data).hexdigest()}"


def original_files(stem: str, metadata: SealedItem, payload: bytes) -> list[tuple[str, bytes]]:
    """The original as files named from `stem` (e.g. "NC-000001"); the first is the
    payload exactly as sealed (its SHA-256 is the seal's `payload_sha256`)."""
    document = _capture(payload) if metadata.channel is not Channel.EMAIL else None
    if document is None:
        return [(f"{stem}.eml", payload)]
    readable: dict[str, Any] = {"capture": document.get("capture"), "parameters": _params(document)}
    webhook = document.get("webhook")
    if isinstance(webhook, dict):
        readable["webhook"] = {k: v for k, v in webhook.items() if k != "body_base64"}
    readable["media"] = [
        {k: v for k, v in piece.items() if k != "base64"} for piece in document.get("media") or []
    ]
    files = [
        (f"{stem}.json", payload),
        (f"{stem}-parameters.json", json.dumps(readable, indent=2, ensure_ascii=False).encode()),
    ]
    for sid, content_type, data in _media(document):
        extension = mimetypes.guess_extension(content_type) or ".bin"
        files.append((f"{stem}-{sid}{extension}", data))
    return files


class PhoneWords(NamedTuple):
    """What a text, call or voicemail capture says, as the provider gave it: `kind` is
    text, call or voicemail; `media` counts the pieces kept (a text's pictures)."""

    kind: str
    sender: str
    recipient: str
    text: str
    media: int


def phone_words(payload: bytes) -> PhoneWords | None:
    """The provider's own words in a phone capture (a webhook's form, or a record read by
    reconciliation, whose keys are lowercase); None if `payload` is not a capture."""
    document = _capture(payload)
    if document is None:
        return None
    params = _params(document)

    def said(name: str) -> str:
        return params.get(name) or params.get(name.lower()) or ""

    kind = str(document.get("capture", "")).rpartition(" ")[2]
    return PhoneWords(kind=kind, sender=said("From"), recipient=said("To"), text=said("Body"),
                      media=len(_media(document)))  # fmt: skip


class Part(NamedTuple):
    """One attachment, MMS picture or voicemail recording of an item, as its sender named it
    (`name` may be anything: it is the sender's text, never a path to use as is)."""

    name: str
    content_type: str
    data: bytes


def parts(metadata: SealedItem, payload: bytes) -> list[Part]:
    """The item's attachments (an email's non-text or named parts, the ones `render` lists
    as "[attachment ...]") or its media (MMS pictures, voicemail audio), in order."""
    document = _capture(payload) if metadata.channel is not Channel.EMAIL else None
    if document is not None:
        return [Part(sid, content_type, data) for sid, content_type, data in _media(document)]
    found = []
    for part in email.message_from_bytes(payload).walk():
        if part.is_multipart():
            continue
        content_type, filename = part.get_content_type(), _filename(part)
        if filename or not content_type.startswith("text/"):
            found.append(Part(filename or "", content_type, _decoded(part)))
    return found


def _filename(part: Any) -> str:
    try:
        return str(part.get_filename() or "")
    except Exception:  # a name the parser cannot decode: none
        return ""


def _decoded(part: Any) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


def sender_as_written(metadata: SealedItem, payload: bytes, canonical: str) -> str:
    """An email's From address exactly as written (the seal keeps identities in their
    matching form: no dots for Gmail, lowercase); anything else, `canonical`."""
    if metadata.channel is not Channel.EMAIL:
        return canonical
    try:
        headers = BytesHeaderParser().parsebytes(payload)
        written = [address for _, address in getaddresses(headers.get_all("From") or []) if address]
    except Exception:  # a header the parser cannot read: the matching form will do
        return canonical
    return _clean(written[0]) if written else canonical


def summary(metadata: SealedItem, payload: bytes) -> str:
    """The subject, or the first line of the text: one line."""
    if metadata.subject:
        return _clean(" ".join(metadata.subject.split()))[:200]
    document = _capture(payload)
    if document is not None:
        text = _params(document).get("Body", "")
        if document.get("capture", "").endswith("voicemail"):
            return "(voicemail)"
        if document.get("capture", "").endswith("call"):
            return "(call)"
        first = next((line for line in text.splitlines() if line.strip()), "")
        return _clean(first.strip())[:200] or ("(media only)" if _media(document) else "")
    return ""


def urgency(assessment: Assessment) -> str:
    """An item's tier and reasons in one line: `urgent (threat, weapon; elevated:
    children)`, or `digest` (docs/threats.md)."""
    if not assessment.reasons:
        return assessment.tier.label
    groups: dict[str, list[str]] = {}
    for reason in assessment.reasons:
        groups.setdefault(reason.tier.label, []).append(reason.code)
    first, *rest = groups.items()
    said = [", ".join(first[1]), *(f"{tier}: {', '.join(codes)}" for tier, codes in rest)]
    return f"{first[0]} ({'; '.join(said)})"


def render(metadata: SealedItem, payload: bytes) -> str:
    """The whole item as text, headed by what the seal recorded about it."""
    rule, channel = metadata.rule, metadata.channel
    lines = [
        f"Received: {rfc3339(metadata.received_at) or ''}",
        f"Channel:  {'' if channel is None else channel.value}",
        f"Rule:     {rule.id or '-'} ({rule.reason})",
        f"Urgency:  {urgency(metadata.assessment)}",
    ]
    document = _capture(payload) if metadata.channel is not Channel.EMAIL else None
    lines += _render_phone(document) if document is not None else _render_email(payload)
    if len(lines) > MAX_LINES:
        lines = [*lines[:MAX_LINES], "[rendering shortened; the original is complete]"]
    return _clean("\n".join(lines))


def _render_phone(document: dict[str, Any]) -> list[str]:
    params = _params(document)
    lines = [f"From:     {params.get('From', '')}", f"To:       {params.get('To', '')}", ""]
    kind = str(document.get("capture", ""))
    if kind.endswith("text"):
        lines += params.get("Body", "").splitlines() or ["(no text)"]
    elif kind.endswith("call"):
        lines.append(f"A call ({params.get('CallStatus') or params.get('status', '')}).")
    else:
        lines.append("A voicemail (the recording is in the original's audio file).")
    for sid, content_type, data in _media(document):
        lines.append(f"[media {sid}: {content_type}, {_size(data)}]")
    for piece in document.get("media") or []:
        if piece.get("missing"):
            lines.append(f"[media {piece.get('sid')}: not kept: {piece.get('missing')}]")
    return lines


def _render_email(payload: bytes) -> list[str]:
    # compat32, decoding only the headers shown: policy.default's header objects cost 3x.
    message = email.message_from_bytes(payload)
    lines = []
    for name in ("From", "Sender", "Reply-To", "To", "Cc", "Date", "Subject", "Message-ID"):
        value = message.get(name)
        if value is None:
            continue
        try:
            shown = str(make_header(decode_header(str(value))))
        except Exception:  # a header the decoder cannot represent: show it as it came
            shown = str(value)
        lines.append(f"{name + ':':<10}{' '.join(shown.split())}")
    lines.append("")
    for part in message.walk():
        if part.is_multipart():
            continue
        lines += _render_part(part)
    return lines


def _render_part(part: Any) -> list[str]:
    content_type = part.get_content_type()
    filename = part.get_filename()
    try:
        data = part.get_payload(decode=True) or b""
    except Exception:
        data = b""
    if filename or not content_type.startswith("text/"):
        return [f"[attachment {filename or '(no name)'}: {content_type}, {_size(data)}]"]
    charset = part.get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    if content_type == "text/html":
        text = html_to_text(text).text
    return [*text.splitlines(), ""]
