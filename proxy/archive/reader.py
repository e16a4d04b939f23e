"""Reading records out of segment files, for recovery, verification and contact tools.

Rules this module keeps:
1. Read-only: segments are mapped read-only; nothing here writes.
2. A segment is records then zeros. `scan` yields each record and stops at the zeros, or
   raises `Damage` at the first bytes that are not a whole, well-framed record; what the
   damage means (a torn write or tampering) is for the caller to judge.
3. The stored hash is returned as stored; checking it is the caller's choice, because
   recovery checks only the unsigned tail while `verify` checks everything.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.archive.records import (
    HASH_BYTES,
    HEADER_BYTES,
    MAGIC,
    MAX_BODY,
    OVERHEAD,
    EntryKind,
    Header,
)
from proxy.archive.segments import segment_name, segment_numbers


class Damage(Exception):
    """Bytes in a segment that are not a whole record."""

    def __init__(self, segment: int, offset: int, reason: str) -> None:
        super().__init__(f"segment {segment} at byte {offset}: {reason}")
        self.segment = segment
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """One record as found on disk (the body is a view into the mapped segment)."""

    segment: int
    offset: int
    header: Header
    body: memoryview
    stored_hash: bytes


@contextmanager
def mapped(path: Path) -> Iterator[memoryview]:
    """A read-only view of a whole file (empty for an empty file)."""
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            yield memoryview(b"")
            return
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapping)
        try:
            yield view
        finally:
            try:
                view.release()
                mapping.close()
            except BufferError:  # a caller still holds a record's body; GC unmaps it
                pass


def contiguous_segments(log_dir: Path) -> list[int]:
    """Segment numbers 1..n; a gap or a missing first segment is `Damage`."""
    numbers = segment_numbers(log_dir)
    for expected, number in enumerate(numbers, start=1):
        if number != expected:
            raise Damage(expected, 0, f"segment file {segment_name(expected)} is missing")
    return numbers


Frame = tuple[int, EntryKind, int, int]  # offset, kind, index, body length

_FRAME = struct.Struct(">4sB3sQI4s")
_KINDS = {int(kind): kind for kind in EntryKind}
_PAD3, _PAD4 = bytes(3), bytes(4)
_ZERO_FRAME = _FRAME.unpack(bytes(_FRAME.size))


def frames(
    buffer: memoryview, number: int, start: int = 0
) -> tuple[list[Frame], int, Damage | None]:
    """Every whole record of a segment (from `start`), where they end, and the damage after.

    The lean path of the hot loops (recovery, verify): one struct unpack per record.
    """
    found: list[Frame] = []
    offset, size = start, len(buffer)
    while offset + HEADER_BYTES <= size:
        fields = _FRAME.unpack_from(buffer, offset)
        if fields == _ZERO_FRAME:
            return found, offset, None
        magic, kind, pad3, index, length, pad4 = fields
        entry_kind = _KINDS.get(kind)
        if magic != MAGIC or entry_kind is None or pad3 != _PAD3 or pad4 != _PAD4:
            return found, offset, Damage(number, offset, "not a record header")
        if length > MAX_BODY or offset + OVERHEAD + length > size:
            return found, offset, Damage(number, offset, "a record runs past its segment")
        found.append((offset, entry_kind, index, length))
        offset += OVERHEAD + length
    if offset < size and any(buffer[offset:size]):
        return found, offset, Damage(number, offset, "a partial header")
    return found, offset, None


class SegmentScan:
    """Iterate one mapped segment's records; afterwards `end` is where the zeros begin."""

    def __init__(self, number: int, buffer: memoryview) -> None:
        self.number = number
        self.buffer = buffer
        self.end = 0

    def __iter__(self) -> Iterator[Record]:
        found, end, damage = frames(self.buffer, self.number)
        buffer = self.buffer
        for offset, kind, index, length in found:
            body_start = offset + HEADER_BYTES
            body_end = body_start + length
            yield Record(
                segment=self.number,
                offset=offset,
                header=Header(kind=kind, index=index, length=length),
                body=buffer[body_start:body_end],
                stored_hash=bytes(buffer[body_end : body_end + HASH_BYTES]),
            )
            self.end = body_end + HASH_BYTES
        self.end = end
        if damage is not None:
            raise damage


def zeros_from(buffer: memoryview, offset: int) -> bool:
    """True when every byte of `buffer` from `offset` on is zero."""
    chunk = 1 << 20
    zero = bytes(chunk)
    for start in range(offset, len(buffer), chunk):
        piece = bytes(buffer[start : start + chunk])  # bytes == bytes is one memcmp
        if piece != zero[: len(piece)]:
            return False
    return True


def item_digests(log_dir: Path, since: int) -> set[str]:
    """SHA-256 (hex) of every item's sealed bytes from entry `since` on.

    Channels use it after a crash to settle their pending notes: which sealed bytes did
    reach the archive. A live writer's unfinished tail is simply not counted.
    """
    found: set[str] = set()
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            scan = SegmentScan(number, buffer)
            try:
                for record in scan:
                    header = record.header
                    if header.kind is EntryKind.SEALED and header.index >= since:
                        found.add(hashlib.sha256(record.body).hexdigest())
                    del record
            except Damage:
                pass
    return found
