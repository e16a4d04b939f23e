"""Cosignatures (C2SP tlog-cosignature, cosignature/v1 with Ed25519): made and checked.

Rules this module keeps:
1. Exactly the published format, so any C2SP client checks our cosignatures:
   - the signed message is "cosignature/v1\n", "time <POSIX seconds>\n", then the whole
     checkpoint body (every line, extensions included, ending in a newline);
   - a signature line is "— <name> base64(key id || timestamp || signature)": a 4-byte key
     id, an 8-byte big-endian timestamp, a 64-byte Ed25519 signature;
   - the key id is the first 4 bytes of SHA-256(name || "\n" || 0x04 || public key), and a
     verifier key is written "<name>+<hex key id>+<base64(0x04 || public key)>".
2. Checking is total: any line or key that is not exactly in format is a
   `CosignatureError`, never another exception. Lines by other keys are ignored.
3. The witness's signing key signs cosignatures only; it is created once, mode 0600.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from proxy.archive.note import VkeyProblem, decode_vkey, encode_vkey, key_id

COSIGNATURE_V1 = 0x04
DASH = "\u2014 "
_HEADER = "cosignature/v1\n"
_MAX_TIME = (1 << 63) - 1
_BLOB_BYTES = 4 + 8 + 64


class CosignatureError(ValueError):
    """A cosignature, line or key that is not in format or does not verify."""


def check_name(name: str) -> str:
    """`name` if it can name a key in a note; else CosignatureError."""
    if not name or len(name) > 256 or any(c.isspace() or c == "+" for c in name):
        raise CosignatureError("a key name must be 1-256 characters, without spaces or '+'")
    return name


_VKEY_PROBLEMS = {
    "format": "a witness key is name+keyid+base64",
    "type": "a witness key is an Ed25519 cosignature/v1 key (type 0x04)",
    "id": "the witness key's id does not match its key",
}


def signed_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: header, time line, the checkpoint body (rule 1)."""
    return f"{_HEADER}time {timestamp}\n{body}".encode()


@dataclass(frozen=True, slots=True)
class Cosigned:
    """One checked cosignature: who, and the time it states."""

    name: str
    timestamp: int
    line: str


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness's public key: checks the cosignatures it makes."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, COSIGNATURE_V1, self.public)

    def encode(self) -> str:
        return encode_vkey(self.name, COSIGNATURE_V1, self.public)

    @classmethod
    def decode(cls, text: str) -> WitnessKey:
        """A verifier key "<name>+<hex id>+<base64(0x04 || key)>", or CosignatureError."""
        try:
            name, public = decode_vkey(text, COSIGNATURE_V1)
        except VkeyProblem as problem:
            raise CosignatureError(_VKEY_PROBLEMS[str(problem)]) from None
        return cls(check_name(name), public)

    def check(self, line: str, body: str) -> Cosigned | None:
        """The cosignature in `line` if it is this key's; None if it is another key's;
        CosignatureError if it is this key's and does not verify, or is not in format."""
        if not line.startswith(DASH):
            raise CosignatureError("a signature line starts with an em dash and a space")
        name, space, encoded = line[len(DASH) :].partition(" ")
        if not space:
            raise CosignatureError("a signature line is a name and a signature")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise CosignatureError("a signature is not base64") from None
        if name != self.name or blob[:4] != self.key_id:
            return None
        if len(blob) != _BLOB_BYTES:
            raise CosignatureError("a cosignature is a key id, a time and an Ed25519 signature")
        timestamp = int.from_bytes(blob[4:12], "big")
        if timestamp > _MAX_TIME:
            raise CosignatureError("a cosignature's time is out of range")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public)
            key.verify(blob[12:], signed_message(body, timestamp))
        except (InvalidSignature, ValueError):
            raise CosignatureError("the cosignature does not verify") from None
        return Cosigned(name=name, timestamp=timestamp, line=line)


class Cosigner:
    """A witness's Ed25519 key, with the name its cosignatures carry."""

    def __init__(self, name: str, key: Ed25519PrivateKey) -> None:
        self.name = check_name(name)
        self._key = key
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key = WitnessKey(name, public)

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, name: str, pem: bytes) -> Cosigner:
        try:
            key = load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise CosignatureError("the key file is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CosignatureError("the key file does not hold an Ed25519 key")
        return cls(name, key)

    def to_pem(self) -> bytes:
        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line (with its newline) cosigning checkpoint `body` at `timestamp`."""
        if not body.endswith("\n") or not 0 <= timestamp <= _MAX_TIME:
            raise CosignatureError("a checkpoint body ends in a newline; a time is 0..2^63-1")
        signature = self._key.sign(signed_message(body, timestamp))
        blob = self.key.key_id + timestamp.to_bytes(8, "big") + signature
        return f"{DASH}{self.name} {base64.b64encode(blob).decode()}\n"
