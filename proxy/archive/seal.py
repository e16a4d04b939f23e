"""Sealing: a held item or a custody record, encrypted with age to every contact.

Rules this module keeps:
1. Everything about an item is inside the seal: who sent it (every identity), to whom,
   the subject, the rule and reason, the times, the envelope, provider ids, authentication
   results, and the original bytes exactly as received. Nothing of it is ever written
   anywhere in the clear.
2. Sealing uses age (pyrage) with X25519 recipients only: the daemon holds public keys,
   and no key on the server opens what it sealed.
3. The plaintext format is versioned and documented in docs/archive-format.md:
     "NOCONTACT-SEALED 1\n" || one line of JSON metadata || "\n" || payload || zero padding
   The padding takes the plaintext to a multiple of 1 KiB so sizes on disk say less.
4. `parse_sealed` reads the format back (for the contact's tools, after they decrypt);
   it is pure and holds no key. What the metadata line means has one schema and one
   reader, `proxy.archive.metadata`; `open_sealed` reads a seal into it.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyrage

from proxy.archive.metadata import (
    SealedCustody,
    SealedEnvelope,
    SealedIdentity,
    SealedItem,
    SealedRule,
    from_json,
)
from proxy.message import Decision, InboundMessage

MAGIC = b"NOCONTACT-SEALED 1\n"
_STREAM_BYTES = 1 << 20
PAD_TO = 1024


class SealedFormatError(ValueError):
    """Decrypted bytes that are not a sealed item in our format."""


@dataclass(frozen=True, slots=True)
class Recipients:
    """The contacts' age public keys, parsed once."""

    keys: tuple[Any, ...]

    @classmethod
    def parse(cls, recipients: Sequence[str]) -> Recipients:
        if not recipients:
            raise ValueError("at least one contact recipient is needed to seal anything")
        return cls(tuple(pyrage.x25519.Recipient.from_str(r) for r in recipients))


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyRecord:
    """Who did what to which items, when and why (a contact's access to the archive)."""

    contact: str  # the contact key's fingerprint
    action: str  # list, show, export, report, release
    items: tuple[int, ...]
    at: datetime  # stamped by the archive's writer (writer.py rule 8)
    reason: str = ""
    nonce: str = ""  # with `signature`: the contact's signed request (custody_keys.py)
    signature: str = ""  # none in records the daemon makes, or older versions wrote


def fingerprint(recipient: str) -> str:
    """A contact's short name for a public key: its hash (it opens nothing)."""
    return hashlib.sha256(recipient.strip().encode()).hexdigest()[:16]


def item_metadata(
    message: InboundMessage,
    decision: Decision,
    *,
    sealed_at: datetime,
    extras: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Everything the seal records about a held message, besides its bytes (the schema is
    `proxy.archive.metadata.SealedItem`)."""
    return SealedItem(
        channel=message.channel,
        received_at=message.received_at,
        sealed_at=sealed_at,
        senders=tuple(SealedIdentity(kind=i.kind, value=i.value, source=i.source)
                      for i in message.senders),
        mentions=tuple(SealedIdentity(kind=i.kind, value=i.value) for i in message.mentions),
        subject=message.subject,
        envelope=SealedEnvelope(sender=message.envelope.sender,
                                recipients=message.envelope.recipients),
        rule=SealedRule(id=decision.rule_id, kind=decision.kind, reason=decision.reason),
        provider_id=message.provider_id,
        authentication_results=message.authentication_results,
        defects=message.defects,
        extras=dict(extras or {}),
        assessment=decision.assessment,
        order=decision.order,
    ).to_json()  # fmt: skip


def seal_item(
    message: InboundMessage,
    decision: Decision,
    recipients: Recipients,
    *,
    sealed_at: datetime,
    extras: Mapping[str, object] | None = None,
) -> bytes:
    """The age ciphertext of a held message: metadata and original bytes."""
    metadata = item_metadata(message, decision, sealed_at=sealed_at, extras=extras)
    return seal(metadata, message.raw, recipients)


def custody_metadata(record: CustodyRecord) -> dict[str, object]:
    """Everything the seal records about a custody record (it has no payload; the schema
    is `proxy.archive.metadata.SealedCustody`)."""
    return SealedCustody(contact=record.contact, action=record.action, items=record.items,
                         at=record.at, reason=record.reason, nonce=record.nonce,
                         signature=record.signature).to_json()  # fmt: skip


def seal_custody(record: CustodyRecord, recipients: Recipients) -> bytes:
    """The age ciphertext of a custody record."""
    return seal(custody_metadata(record), b"", recipients)


def seal(metadata: Mapping[str, object], payload: bytes, recipients: Recipients) -> bytes:
    """Encrypt metadata and payload, in the sealed format, to every recipient."""
    described = {
        **metadata,
        "payload_bytes": len(payload),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    # Values are valid text by the time they get here (proxy.normalize.valid); should one
    # not be, a '?' in the metadata beats a seal that fails for ever (the bytes are intact).
    line = json.dumps(described, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", errors="replace"
    )
    length = len(MAGIC) + len(line) + 1 + len(payload)
    parts = (MAGIC, line, b"\n", payload, bytes(-length % PAD_TO))
    if len(payload) < _STREAM_BYTES:
        ciphertext: bytes = pyrage.encrypt(b"".join(parts), list(recipients.keys))
        return ciphertext
    # A large item is encrypted as a stream of its parts: no joined copy of the plaintext.
    sealed = io.BytesIO()
    pyrage.encrypt_io(_Chain(parts), sealed, list(recipients.keys))
    return sealed.getvalue()


class _Chain(io.RawIOBase):
    """A readable stream over several byte strings, without joining them."""

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        self._parts = [memoryview(part) for part in parts if part]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while self._parts and filled < len(target):
            part = self._parts[0]
            step = min(len(part), len(target) - filled)
            target[filled : filled + step] = part[:step]
            filled += step
            if step == len(part):
                self._parts.pop(0)
            else:
                self._parts[0] = part[step:]
        return filled


def open_sealed(plaintext: bytes) -> tuple[SealedItem | SealedCustody, bytes]:
    """(metadata, payload) from a decrypted seal, its metadata read by the one schema."""
    metadata, payload = parse_sealed(plaintext)
    return from_json(metadata), payload


def parse_sealed(plaintext: bytes) -> tuple[dict[str, Any], bytes]:
    """(metadata, payload) from a decrypted seal; checks the payload's length and hash."""
    if not plaintext.startswith(MAGIC):
        raise SealedFormatError("not a nocontact seal (or a newer format)")
    end = plaintext.find(b"\n", len(MAGIC))
    if end < 0:
        raise SealedFormatError("seal has no metadata line")
    try:
        metadata = json.loads(plaintext[len(MAGIC) : end])
    except ValueError as error:
        raise SealedFormatError("seal metadata is not JSON") from error
    if not isinstance(metadata, dict) or not isinstance(metadata.get("payload_bytes"), int):
        raise SealedFormatError("seal metadata has no payload length")
    payload = plaintext[end + 1 : end + 1 + metadata["payload_bytes"]]
    if hashlib.sha256(payload).hexdigest() != metadata.get("payload_sha256"):
        raise SealedFormatError("seal payload does not match its recorded hash")
    if plaintext[end + 1 + len(payload) :].strip(b"\0"):
        raise SealedFormatError("seal padding is not zeros")
    return metadata, payload
