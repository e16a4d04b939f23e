"""Signed notes and checkpoints as a witness reads them (C2SP signed-note, tlog-checkpoint).

Rules this module keeps:
1. Total and bounded: any bytes give a `Signed` or a `Malformed` naming what is wrong,
   never another exception. A note is at most `MOST_NOTE_BYTES` and carries at most
   `MOST_SIGNATURES` signature lines (the spec asks for at least 16).
2. The note is valid UTF-8 without ASCII control characters other than newline; its text
   ends at the last blank line, every signature line is "— <name> <base64>", and a key
   name is non-empty, without spaces or '+'.
3. A checkpoint is read by its first three lines only (origin, decimal size without
   leading zeros, base64 SHA-256 root); extension lines are kept in the body and signed
   over, never interpreted: any log's checkpoints can be witnessed, not only ours.
4. The log's own signature is an Ed25519 note signature (type 0x01); a line by a key the
   witness does not trust is ignored; a trusted key's line that fails makes the note
   unsigned for that key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.archive.note import Verifier
from proxy.witness.cosignature import DASH

MOST_NOTE_BYTES = 16 * 1024
MOST_SIGNATURES = 64
MOST_SIZE = (1 << 63) - 1


class Malformed(ValueError):
    """A note or checkpoint not in format; the message says what, never echoes input."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """One signature line of a note, split: who, which key, the bytes after the key id."""

    name: str
    key_id: bytes
    signature: bytes
    line: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    """A checkpoint note, split: its body, its tree head, its signature lines."""

    body: str
    origin: str
    size: int
    root: bytes
    signatures: tuple[Signature, ...]

    def signed_by(self, keys: Sequence[Verifier]) -> bool:
        """Whether a line by one of `keys` verifies over the body (rule 4)."""
        for key in keys:
            for line in self.signatures:
                if line.name != key.name or line.key_id != key.key_id:
                    continue
                try:
                    public = Ed25519PublicKey.from_public_bytes(key.public)
                    public.verify(line.signature, self.body.encode())
                except (InvalidSignature, ValueError):
                    continue
                return True
        return False


def decimal(text: str) -> int:
    """A size written in ASCII decimal without leading zeros, up to 2^63-1; else Malformed."""
    if not text or len(text) > 19 or not (text.isascii() and text.isdigit()):
        raise Malformed("a size is a decimal number")
    if text != "0" and text.startswith("0"):
        raise Malformed("a size has no leading zeros")
    value = int(text)
    if value > MOST_SIZE:
        raise Malformed("a size is at most 2^63-1")
    return value


def hash_line(text: str) -> bytes:
    """A base64 SHA-256 hash; else Malformed."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise Malformed("a hash is not base64") from None
    if len(raw) != 32:
        raise Malformed("a hash is not 32 bytes")
    return raw


def _signature(line: str) -> Signature:
    if not line.startswith(DASH):
        raise Malformed("a signature line starts with an em dash and a space")
    name, space, encoded = line[len(DASH) :].partition(" ")
    if not space or not name or any(c.isspace() or c == "+" for c in name):
        raise Malformed("a signature line is a key name and a signature")
    try:
        blob = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise Malformed("a signature is not base64") from None
    if len(blob) < 5:
        raise Malformed("a signature is a key id and a signature")
    return Signature(name=name, key_id=blob[:4], signature=blob[4:], line=line)


def read_note(data: bytes) -> Signed:
    """The checkpoint note in `data`, split (rules 1-3); else Malformed."""
    if len(data) > MOST_NOTE_BYTES:
        raise Malformed("the checkpoint is too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the checkpoint is not UTF-8") from None
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise Malformed("the checkpoint holds control characters")
    body, blank, block = text.rpartition("\n\n")
    if not blank or not body or not block.endswith("\n"):
        raise Malformed("the checkpoint has no signature block")
    body += "\n"
    lines = block[:-1].split("\n")
    if len(lines) > MOST_SIGNATURES:
        raise Malformed("the checkpoint has too many signatures")
    signatures = tuple(_signature(line) for line in lines)
    head = body.split("\n")
    if len(head) < 4 or not head[0]:
        raise Malformed("a checkpoint begins with an origin, a size and a root hash")
    if any(not line for line in head[3:-1]):
        raise Malformed("a checkpoint's extension lines are not empty")
    return Signed(body=body, origin=head[0], size=decimal(head[1]), root=hash_line(head[2]),
                  signatures=signatures)  # fmt: skip
