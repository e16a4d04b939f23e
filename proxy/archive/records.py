"""The archive's on-disk entry framing: what one record is, byte for byte.

Rules this module keeps:
1. Pure: bytes in, values out. The layout is documented in docs/archive-format.md and
   versioned by the magic (NCE1); a change of layout is a new magic.
2. A record is header (24 bytes) || body || leaf hash (32 bytes):
     magic "NCE1" | kind u8 | 3 zero bytes | index u64 | body length u32 | 4 zero bytes
   all big-endian. The leaf hash commits to each entry's kind and position as well as its
   bytes, so a swapped, duplicated or re-kinded entry no longer matches. It is RFC 6962's
   leaf hash SHA-256(0x00 || entry data) under one of two rules (`LeafRule`), the same
   framing for both: which one an archive uses, its `archive.json` version says
   (layout.py), never the record, and every caller that hashes an entry passes it.
   - `BODY` (format versions 1 and 2): the entry data is kind || index || body.
   - `BODY_SHA256` (version 3): the entry data is the 41-byte `tile_entry`,
     kind || index || SHA-256(body), so a C2SP tlog-tiles replica's entry bundles can
     carry every entry whatever its body's size (docs/replication.md). The body is still
     bound: changing one byte changes its SHA-256, hence the leaf.
3. In the clear there is only what verification needs: kind, index, length and hash. The
   kind says only "sealed" or "checkpoint": an item and a custody record look alike
   outside the seal (which one it is, is in its sealed metadata). Version 1 archives
   wrote custody records as kind 2; those entries stay valid, and nothing writes kind 2 now.
   The body of a sealed entry is an age ciphertext; a checkpoint's is a signed note.
4. All-zero bytes where a header should be mean "no more records" (segments are zeroed
   before use); anything else that is not a valid header is an error.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass

MAGIC = b"NCE1"
HEADER = struct.Struct(">4sB3xQI4x")
HEADER_BYTES = HEADER.size
HASH_BYTES = 32
OVERHEAD = HEADER_BYTES + HASH_BYTES
MAX_BODY = 1 << 30
_ZERO_HEADER = bytes(HEADER_BYTES)


class EntryKind(enum.IntEnum):
    """What an entry is, as far as anyone without a contact's key can tell."""

    SEALED = 1  # a held item or a custody record: which one, only the seal says
    CUSTODY = 2  # a custody record written by format version 1 (never written now)
    CHECKPOINT = 3


class RecordError(ValueError):
    """Bytes that are not a well-formed record."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    kind: EntryKind
    index: int
    length: int

    @property
    def size(self) -> int:
        """Bytes the whole record takes on disk."""
        return OVERHEAD + self.length


class LeafRule(enum.Enum):
    """What an archive's leaf hash is taken over (rule 2)."""

    BODY = "SHA-256(0x00 || kind || index || body)"  # format versions 1 and 2
    BODY_SHA256 = "SHA-256(0x00 || kind || index || SHA-256(body))"  # version 3


TILE_ENTRY_BYTES = 1 + 8 + HASH_BYTES


def tile_entry(kind: EntryKind, index: int, body: bytes | memoryview) -> bytes:
    """The 41-byte entry a tlog-tiles replica serves for a version 3 entry:
    kind || index (8 bytes, big-endian) || SHA-256(body)."""
    return bytes([kind]) + index.to_bytes(8, "big") + hashlib.sha256(body).digest()


def entry_hash(kind: EntryKind, index: int, body: bytes | memoryview, *, rule: LeafRule) -> bytes:
    """The RFC 6962 leaf hash of an entry under `rule` (rule 2)."""
    if rule is LeafRule.BODY_SHA256:
        return hashlib.sha256(b"\x00" + tile_entry(kind, index, body)).digest()
    digest = hashlib.sha256(b"\x00" + bytes([kind]) + index.to_bytes(8, "big"))
    digest.update(body)
    return digest.digest()


Parts = tuple[bytes, bytes, bytes]  # header, body, leaf hash: a record without a copy


def encode_parts(
    kind: EntryKind, index: int, body: bytes, *, rule: LeafRule
) -> tuple[Parts, bytes]:
    """(the record as its three parts, leaf hash): written with pwritev, never joined, so a
    50 MB item is not copied again on its way to disk."""
    if len(body) > MAX_BODY:
        raise RecordError(f"entry body of {len(body)} bytes is over the {MAX_BODY} limit")
    digest = entry_hash(kind, index, body, rule=rule)
    return (HEADER.pack(MAGIC, kind, index, len(body)), body, digest), digest


def encode(kind: EntryKind, index: int, body: bytes, *, rule: LeafRule) -> tuple[bytes, bytes]:
    """(record bytes, leaf hash) for one entry."""
    parts, digest = encode_parts(kind, index, body, rule=rule)
    return b"".join(parts), digest


def decode_header(buffer: bytes | memoryview, offset: int = 0) -> Header | None:
    """The header at `offset`; None where the bytes are zero (the end of the records)."""
    raw = bytes(buffer[offset : offset + HEADER_BYTES])
    if len(raw) < HEADER_BYTES:
        if raw.count(0) == len(raw):
            return None
        raise RecordError("a partial header")
    if raw == _ZERO_HEADER:
        return None
    if raw[4 + 1 : 4 + 4] != b"\0\0\0" or raw[20:24] != b"\0\0\0\0":
        raise RecordError("header padding is not zero")
    magic, kind, index, length = HEADER.unpack(raw)
    if magic != MAGIC:
        raise RecordError("bad magic")
    try:
        entry_kind = EntryKind(kind)
    except ValueError as error:
        raise RecordError(f"unknown entry kind {kind}") from error
    if length > MAX_BODY:
        raise RecordError("body length over the limit")
    return Header(kind=entry_kind, index=index, length=length)
