"""What a seal says about its contents: one typed schema, one writer, one reader.

Rules this module keeps:
1. One schema per sealed kind: `SealedItem` (a held message) and `SealedCustody` (a
   contact's access to the archive). `to_json` is the metadata the seal writes, keys in
   the order docs/archive-format.md lists them (what every earlier version wrote, byte
   for byte once `seal` adds `payload_bytes` and `payload_sha256` last); `from_json` is
   the only reader of it. A well-formed metadata reads back equal and writes back the same.
2. The reader is total: any JSON object parses, nothing raises. `kind` decides the class
   ("custody" a custody record; anything else an item). A missing key takes its default;
   a value of the wrong type is coerced where its meaning is plain (a number where text
   belongs) or dropped; a channel, identity kind or rule kind this version does not know
   reads as None. Keys it does not know (a channel's own: `imap`, `peer`, `helo`,
   `provider`, `voicemail`) are kept in `extras`, in order, so nothing a seal says is lost.
3. Who sent an item has one reading, `SealedItem.main_sender`: every listing, report and
   manifest names an item by it.
4. Pure: values in, values out. No clock, no IO, no key.
5. An item's `assessment` (how urgent it is, `proxy.alerts.tiers`) is written only when it
   has reasons: `{"tier": "urgent", "reasons": ["urgent:threat", ...]}`, after the rest of
   the schema and before a channel's keys. A digest item is written exactly as items were
   before assessments existed, and an item sealed then reads as digest with no reason.
6. An item from a person with a court order carries its `order` mark
   (`proxy.alerts.order_mark`): `{"person": "mark", "topic": "children", "logistics":
   true, "channel_allowed": true}`, after the assessment and before a channel's keys. It
   is written only when there is one, so every other item is written as before; one this
   version cannot read reads as None.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from proxy.alerts.order_mark import OrderMark
from proxy.alerts.tiers import NOTHING_FOUND, Assessment, Reason, Tier
from proxy.message import Channel, IdentityKind, Kind

# The senders a reader names an item by, most trusted first: the author, then the envelope.
_MAIN_SOURCES = ("from", "caller", "envelope")
_PAYLOAD_KEYS = ("payload_bytes", "payload_sha256")  # written by `seal`, beside the schema
_Member = TypeVar("_Member", bound=enum.StrEnum)


class SealedKind(enum.StrEnum):
    """What a seal holds, as its metadata's `kind` says."""

    ITEM = "item"
    CUSTODY = "custody"


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedIdentity:
    """One identity of a sender (with the `source` it was read from) or a mention (none)."""

    kind: IdentityKind | None  # None: a kind this version does not know
    value: str
    source: str | None = None

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {"kind": _value(self.kind), "value": self.value}
        if self.source is not None:
            found["source"] = self.source
        return found

    @classmethod
    def from_json(cls, data: object) -> SealedIdentity | None:
        if not isinstance(data, Mapping):
            return None
        return cls(kind=_member(IdentityKind, data.get("kind")), value=_text(data.get("value")),
                   source=_maybe_text(data.get("source")))  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedEnvelope:
    sender: str = ""
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedRule:
    """The rule that held the item: its config id, its family and why it matched."""

    id: str | None = None
    kind: Kind | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedItem:
    """Everything a seal records about a held message, besides its bytes."""

    channel: Channel | None = None
    received_at: datetime | None = None
    sealed_at: datetime | None = None
    senders: tuple[SealedIdentity, ...] = ()
    mentions: tuple[SealedIdentity, ...] = ()
    subject: str = ""
    envelope: SealedEnvelope = SealedEnvelope()
    rule: SealedRule = SealedRule()
    provider_id: str | None = None
    authentication_results: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    extras: Mapping[str, object] = field(default_factory=dict)  # a channel's own keys
    payload_bytes: int | None = None  # as read from a seal; `seal` writes them
    payload_sha256: str | None = None
    assessment: Assessment = NOTHING_FOUND  # how urgent (rule 5)
    order: OrderMark | None = None  # what his court order makes of it (rule 6)

    @property
    def main_sender(self) -> str:
        """The identity the item is listed under: the first address or number from From,
        the caller, or the envelope (a display name names no one reliably); else the first
        identity of any kind; else ""."""
        for source in _MAIN_SOURCES:
            for identity in self.senders:
                if identity.source == source and identity.kind is not IdentityKind.DISPLAY_NAME:
                    return identity.value
        return self.senders[0].value if self.senders else ""

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {
            "kind": SealedKind.ITEM.value,
            "channel": _value(self.channel),
            "received_at": rfc3339(self.received_at),
            "sealed_at": rfc3339(self.sealed_at),
            "senders": [identity.to_json() for identity in self.senders],
            "mentions": [identity.to_json() for identity in self.mentions],
            "subject": self.subject,
            "envelope": {
                "sender": self.envelope.sender,
                "recipients": list(self.envelope.recipients),
            },
            "rule": {
                "id": self.rule.id,
                "kind": _value(self.rule.kind),
                "reason": self.rule.reason,
            },
            "provider_id": self.provider_id,
            "authentication_results": list(self.authentication_results),
            "defects": list(self.defects),
        }
        if self.assessment.reasons:  # rule 5: a digest item is written as before
            found["assessment"] = {
                "tier": self.assessment.tier.label,
                "reasons": [str(reason) for reason in self.assessment.reasons],
            }
        if self.order is not None:  # rule 6
            found["order"] = self.order.to_json()
        found.update(self.extras)  # as channels always added them: after, and over, the rest
        return _with_payload(found, self.payload_bytes, self.payload_sha256)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SealedItem:
        envelope, rule = _mapping(data.get("envelope")), _mapping(data.get("rule"))
        return cls(
            channel=_member(Channel, data.get("channel")),
            received_at=_moment(data.get("received_at")),
            sealed_at=_moment(data.get("sealed_at")),
            senders=_identities(data.get("senders")),
            mentions=_identities(data.get("mentions")),
            subject=_text(data.get("subject")),
            envelope=SealedEnvelope(sender=_text(envelope.get("sender")),
                                    recipients=_texts(envelope.get("recipients"))),
            rule=SealedRule(id=_maybe_text(rule.get("id")), kind=_member(Kind, rule.get("kind")),
                            reason=_text(rule.get("reason"))),
            provider_id=_maybe_text(data.get("provider_id")),
            authentication_results=_texts(data.get("authentication_results")),
            defects=_texts(data.get("defects")),
            extras={key: value for key, value in data.items() if key not in _ITEM_KEYS},
            payload_bytes=_count(data.get("payload_bytes")),
            payload_sha256=_maybe_text(data.get("payload_sha256")),
            assessment=_assessment(data.get("assessment")),
            order=OrderMark.from_json(data.get("order")),
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedCustody:
    """Everything a seal records about a custody record (it has no payload)."""

    contact: str = ""  # the contact key's fingerprint
    action: str = ""  # list, show, export, report, release, ...
    items: tuple[int, ...] = ()
    at: datetime | None = None
    reason: str = ""
    nonce: str = ""  # a signed record's (none: the daemon's own, or an older version's)
    signature: str = ""  # the contact's custody key's, base64 (custody_keys.py rule 2)
    payload_bytes: int | None = None
    payload_sha256: str | None = None

    def to_json(self) -> dict[str, object]:
        found: dict[str, object] = {
            "kind": SealedKind.CUSTODY.value,
            "contact": self.contact,
            "action": self.action,
            "items": list(self.items),
            "at": rfc3339(self.at),
            "reason": self.reason,
        }
        if self.signature:  # unsigned records are written as every earlier version wrote them
            found["nonce"] = self.nonce
            found["signature"] = self.signature
        return _with_payload(found, self.payload_bytes, self.payload_sha256)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> SealedCustody:
        items = data.get("items")
        numbers = [_count(i) for i in items] if isinstance(items, list) else []
        return cls(
            contact=_text(data.get("contact")), action=_text(data.get("action")),
            items=tuple(n for n in numbers if n is not None), at=_moment(data.get("at")),
            reason=_text(data.get("reason")), nonce=_text(data.get("nonce")),
            signature=_text(data.get("signature")),
            payload_bytes=_count(data.get("payload_bytes")),
            payload_sha256=_maybe_text(data.get("payload_sha256")),
        )  # fmt: skip


def from_json(data: Mapping[str, object]) -> SealedItem | SealedCustody:
    """A seal's metadata, read (rule 2): its `kind` decides which."""
    if data.get("kind") == SealedKind.CUSTODY.value:
        return SealedCustody.from_json(data)
    return SealedItem.from_json(data)


def rfc3339(moment: datetime | None) -> str | None:
    """A time as the seal writes it: UTC, "Z"."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _with_payload(
    found: dict[str, object], size: int | None, sha256: str | None
) -> dict[str, object]:
    if size is not None:
        found["payload_bytes"] = size
    if sha256 is not None:
        found["payload_sha256"] = sha256
    return found


def _value(member: enum.StrEnum | None) -> str | None:
    return None if member is None else member.value


def _member(kind: type[_Member], value: object) -> _Member | None:
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            return None
    return None


def _maybe_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _text(value: object) -> str:
    return _maybe_text(value) or ""


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(text for text in map(_maybe_text, value) if text is not None)


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _assessment(value: object) -> Assessment:
    """An item's assessment as sealed (rule 5): its reasons, each `tier:code`; one this
    version cannot read is left out, and the tier is the highest of those read."""
    reasons = _mapping(value).get("reasons")
    if not isinstance(reasons, list):
        return Assessment()
    found = []
    for reason in reasons:
        tier, _, code = reason.partition(":") if isinstance(reason, str) else ("", "", "")
        if tier in _TIERS and _REASON_CODE.fullmatch(code):
            found.append(Reason(tier=_TIERS[tier], code=code))
    return Assessment.of(found)


_TIERS = {tier.label: tier for tier in Tier}
_REASON_CODE = re.compile(r"[a-z][a-z_]{0,31}")


def _identities(value: object) -> tuple[SealedIdentity, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(i for i in map(SealedIdentity.from_json, value) if i is not None)


# The keys the schema reads; any other key of an item is a channel's own (`extras`).
_ITEM_KEYS = frozenset([*SealedItem().to_json(), *_PAYLOAD_KEYS, "assessment", "order"])
