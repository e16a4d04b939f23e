"""Signed checkpoints in the C2SP formats: signed-note (Ed25519) and tlog-checkpoint.

Rules this module keeps:
1. Formats are the published C2SP specs, so a stock verifier (Go's golang.org/x/mod/sumdb
   /note, the transparency-dev tools) can check our checkpoints:
   - a checkpoint body is "<origin>\n<tree size>\n<base64 root hash>\n" plus extension
     lines; ours adds one, "time <RFC 3339 UTC>";
   - a signed note is the body, a blank line, and one line per signature:
     "— <key name> <base64(4-byte key id || Ed25519 signature)>";
   - the key id is the first 4 bytes of SHA-256(name || "\n" || 0x01 || public key), and
     a verifier key is written "<name>+<hex key id>+<base64(0x01 || public key)>".
2. The signing key opens nothing: it only signs. It is created once, kept mode 0600, and
   never leaves the archive directory through our code.
3. Parsing is strict: anything not exactly in format is an error, never a best guess.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

_ED25519 = 0x01
_DASH = "\u2014 "


class NoteError(ValueError):
    """A note, checkpoint or key that is not in format or does not verify."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A tree head: this many entries hash to this root, as of this time."""

    origin: str
    size: int
    root: bytes
    time: datetime

    def body(self) -> str:
        stamp = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\ntime {stamp}\n"


def key_id(name: str, key_type: int, public: bytes) -> bytes:
    """A signed-note key ID: the first 4 bytes of SHA-256(name || "\n" || type || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public).digest()[:4]


def encode_vkey(name: str, key_type: int, public: bytes) -> str:
    """A verifier key as signed notes write one: name+hex key ID+base64(type || key)."""
    raw = base64.b64encode(bytes([key_type]) + public).decode()
    return f"{name}+{key_id(name, key_type, public).hex()}+{raw}"


class VkeyProblem(ValueError):
    """Why text is not a verifier key of the type asked for: "format", "type" or "id"."""


def decode_vkey(text: str, key_type: int) -> tuple[str, bytes]:
    """(name, 32-byte public key) of a verifier key of `key_type`, or VkeyProblem; the
    caller checks the name and words its own error."""
    try:
        name, hex_id, raw = text.strip().split("+", 2)
        blob = base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        raise VkeyProblem("format") from None
    if len(blob) != 33 or blob[0] != key_type:
        raise VkeyProblem("type")
    if key_id(name, key_type, blob[1:]).hex() != hex_id.lower():
        raise VkeyProblem("id")
    return name, blob[1:]


_VKEY_PROBLEMS = {
    "format": "verifier key is not name+keyid+base64",
    "type": "verifier key is not an Ed25519 key",
    "id": "verifier key id does not match its key",
}


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True, slots=True)
class Verifier:
    """A public key that checks signatures made by one named signer."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, _ED25519, self.public)

    def encode(self) -> str:
        return encode_vkey(self.name, _ED25519, self.public)

    @classmethod
    def decode(cls, text: str) -> Verifier:
        try:
            name, public = decode_vkey(text, _ED25519)
        except VkeyProblem as problem:
            raise NoteError(_VKEY_PROBLEMS[str(problem)]) from None
        _check_name(name)
        return cls(name, public)

    def open(self, note: bytes) -> str:
        """The text of `note` if it carries a valid signature by this key; else NoteError."""
        try:
            text = note.decode("utf-8")
        except UnicodeDecodeError as error:
            raise NoteError("note is not UTF-8") from error
        body, sep, signatures = text.rpartition("\n\n")
        if not sep or not signatures.endswith("\n"):
            raise NoteError("note has no signature block")
        body += "\n"
        key = Ed25519PublicKey.from_public_bytes(self.public)
        for line in signatures[:-1].split("\n"):
            if not line.startswith(_DASH):
                raise NoteError("malformed signature line")
            name, _, encoded = line[len(_DASH) :].partition(" ")
            try:
                blob = base64.b64decode(encoded, validate=True)
            except binascii.Error as error:
                raise NoteError("signature is not base64") from error
            if name != self.name or blob[:4] != self.key_id:
                continue
            try:
                key.verify(blob[4:], body.encode())
            except InvalidSignature as error:
                raise NoteError("signature does not verify") from error
            return body
        raise NoteError(f"note is not signed by {self.name}")


class Signer:
    """The archive's Ed25519 signing key, with the name its signatures carry."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        _check_name(name)
        self.name = name
        self._key = key
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name, public)

    @classmethod
    def generate(cls, name: str) -> Signer:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, name: str, pem: bytes) -> Signer:
        try:
            key = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise NoteError("signing key file is not a PEM private key") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise NoteError("signing key is not an Ed25519 key")
        return cls(name, key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def derive_key(self, purpose: bytes) -> bytes:
        """A 32-byte key for `purpose`, derived from the signing key (HKDF-SHA256): secret
        wherever the signing key is, and never usable to sign."""
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(raw)

    def sign(self, body: str) -> bytes:
        """The signed note: `body` (ending in a newline), a blank line, our signature."""
        if not body.endswith("\n"):
            raise NoteError("note body must end with a newline")
        signature = self._key.sign(body.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{body}\n{_DASH}{self.name} {encoded}\n".encode()


def parse_checkpoint(body: str) -> Checkpoint:
    """Read a tlog-checkpoint body (already signature-checked) into a Checkpoint."""
    lines = body.split("\n")
    if len(lines) != 5 or lines[4] != "" or not lines[3].startswith("time "):
        raise NoteError("checkpoint body is not origin, size, root, time")
    origin, size_text, root_text, time_line = lines[:4]
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise NoteError("checkpoint tree size is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
        stamp = datetime.strptime(time_line[5:], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except (binascii.Error, ValueError) as error:
        raise NoteError("checkpoint root or time is malformed") from error
    if len(root) != 32:
        raise NoteError("checkpoint root is not a SHA-256 hash")
    return Checkpoint(origin=origin, size=int(size_text), root=root, time=stamp)
