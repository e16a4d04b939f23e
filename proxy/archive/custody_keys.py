"""Contacts' custody keys: the public half that checks a signed custody record.

Rules this module keeps:
1. A contact signs each custody record with an Ed25519 key derived from their age
   identity (proxy.access.keys.custody_signing_key); the archive side holds only public
   keys, written in one line form: "ed25519:" then the base64 of the 32-byte key.
2. What is signed is one exact encoding (`signed_bytes`): a header line, then JSON with
   sorted keys, no spaces and ASCII only, of contact, action, items, reason and nonce.
   The time is not in it: the archive's writer stamps that. The offline verify.py in an
   evidence bundle recomputes the same bytes with the standard library.
3. The contacts' custody keys are published beside the log (`custody-keys`: one line per
   contact, "<fingerprint> ed25519:..."), so a contact's tools working on a copy of the
   archive, and the daemon's own check, use the keys the survivor's config names.
4. A record is accepted only if its contact fingerprint has a published key and the
   signature verifies under it (`check_request`); otherwise `CustodyRefused` says why in
   one line. Pure: values in, values out, no IO but reading the published file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.archive import layout
from proxy.errors import NocontactError

PREFIX = "ed25519:"
HEADER = b"nocontact custody record v1\n"
# "release" is recorded before a released item is delivered, "release-failed" after its
# delivery failed (proxy/access/release.py): the log says whether it reached her. "relay"
# (a contact's summary for her, proxy/access/relaying.py) and "relay-failed" likewise, and
# "reply" (a contact's answer to him, proxy/access/replying.py) and "reply-failed".
ACTIONS = frozenset({"list", "show", "export", "report", "release", "release-failed", "custody",
                     "relay", "relay-failed", "reply", "reply-failed"})  # fmt: skip
MAX_REASON = 4000


class CustodyRefused(NocontactError):
    """A custody record the archive will not store; the message says why in one line."""


def parse_key(text: str) -> bytes:
    """The 32-byte public key of a line "ed25519:<base64>"; ValueError if it is not one."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise ValueError(f"not a custody key (expected '{PREFIX}...', as keygen prints)")
    try:
        raw = base64.b64decode(text[len(PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("custody key is not base64") from None
    if len(raw) != 32:
        raise ValueError("custody key is not a 32-byte Ed25519 key")
    return raw


def encode_key(public: bytes) -> str:
    """The one line form of a custody public key."""
    return PREFIX + base64.b64encode(public).decode()


def key_fingerprint(line: str) -> str:
    """A custody key's short name, for comparing out of band: SHA-256 of its line, 16 hex."""
    return hashlib.sha256(line.strip().encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyRequest:
    """A contact's signed custody record, before the archive's writer stamps its time."""

    contact: str  # the contact's age key fingerprint
    action: str
    items: tuple[int, ...]
    reason: str
    nonce: str  # random, chosen by the contact's tool: no two records sign the same bytes
    signature: str = ""  # base64 Ed25519 signature of `signed_bytes`

    def to_json(self) -> dict[str, object]:
        return {"contact": self.contact, "action": self.action, "items": list(self.items),
                "reason": self.reason, "nonce": self.nonce,
                "signature": self.signature}  # fmt: skip

    @classmethod
    def from_json(cls, data: object) -> CustodyRequest:
        """A request as sent over the custody socket; ValueError if malformed."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        fields = {k: data.get(k) for k in ("contact", "action", "reason", "nonce", "signature")}
        items = data.get("items")
        if not all(isinstance(value, str) for value in fields.values()):
            raise ValueError("a field is missing or not text")
        if not isinstance(items, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items
        ):
            raise ValueError("items is not a list of entry numbers")
        return cls(contact=str(fields["contact"]), action=str(fields["action"]),
                   items=tuple(items), reason=str(fields["reason"]), nonce=str(fields["nonce"]),
                   signature=str(fields["signature"]))  # fmt: skip


def signed_bytes(
    *, contact: str, action: str, items: tuple[int, ...] | list[int], reason: str, nonce: str
) -> bytes:
    """The exact bytes a contact's custody signature covers (rule 2)."""
    body = {"action": action, "contact": contact, "items": list(items), "nonce": nonce,
            "reason": reason}  # fmt: skip
    return HEADER + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def request_bytes(request: CustodyRequest) -> bytes:
    return signed_bytes(contact=request.contact, action=request.action, items=request.items,
                        reason=request.reason, nonce=request.nonce)  # fmt: skip


def signature_verifies(key_line: str, message: bytes, signature: str) -> bool:
    """Whether `signature` (base64) is the custody key's signature of `message`."""
    try:
        public = Ed25519PublicKey.from_public_bytes(parse_key(key_line))
        public.verify(base64.b64decode(signature, validate=True), message)
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


def check_request(request: CustodyRequest, keys: Mapping[str, str]) -> None:
    """Raise `CustodyRefused` unless `request` is well formed and signed by the custody
    key published for its contact (rule 4)."""
    if request.action not in ACTIONS:
        raise CustodyRefused(f"unknown custody action {request.action[:20]!r}; nothing stored")
    if len(request.reason) > MAX_REASON or not 16 <= len(request.nonce) <= 64:
        raise CustodyRefused("the custody record's reason or nonce is malformed; nothing stored")
    key = keys.get(request.contact)
    if key is None:
        raise CustodyRefused(
            f"no custody key is configured for contact {request.contact[:16]}: nothing stored "
            "(the survivor's config must give this contact's custody_key)"
        )
    if not signature_verifies(key, request_bytes(request), request.signature):
        raise CustodyRefused(
            f"the custody record is not signed by contact {request.contact[:16]}'s custody "
            "key: nothing stored"
        )


def keys_file_bytes(keys: Mapping[str, str]) -> bytes:
    """The `custody-keys` file's exact form: sorted "<fingerprint> <key>" lines."""
    return "".join(f"{fp} {keys[fp].strip()}\n" for fp in sorted(keys)).encode()


def read_published(root: Path) -> dict[str, str]:
    """The custody keys published beside the archive at `root` (none if the file is absent);
    lines that are not "<fingerprint> ed25519:..." are skipped."""
    try:
        text = (root / layout.CUSTODY_KEYS).read_text(errors="replace")
    except FileNotFoundError:
        return {}
    found = {}
    for line in text.splitlines():
        fingerprint, _, key = line.strip().partition(" ")
        try:
            parse_key(key)
        except ValueError:
            continue
        found[fingerprint] = key.strip()
    return found
