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

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.archive.records import HASH_BYTES, HEADER_BYTES, Header, RecordError, decode_header
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


class SegmentScan:
    """Iterate one mapped segment's records; afterwards `end` is where the zeros begin."""

    def __init__(self, number: int, buffer: memoryview) -> None:
        self.number = number
        self.buffer = buffer
        self.end = 0

    def __iter__(self) -> Iterator[Record]:
        buffer, offset, size = self.buffer, 0, len(self.buffer)
        while offset < size:
            try:
                header = decode_header(buffer, offset)
            except RecordError as error:
                raise Damage(self.number, offset, str(error)) from error
            if header is None:
                break
            end = offset + header.size
            if end > size:
                raise Damage(self.number, offset, "a record runs past the end of its segment")
            body = buffer[offset + HEADER_BYTES : end - HASH_BYTES]
            stored = bytes(buffer[end - HASH_BYTES : end])
            yield Record(
                segment=self.number, offset=offset, header=header, body=body, stored_hash=stored
            )
            offset = self.end = end
        self.end = offset


def zeros_from(buffer: memoryview, offset: int) -> bool:
    """True when every byte of `buffer` from `offset` on is zero."""
    chunk = 1 << 20
    zero = bytes(chunk)
    for start in range(offset, len(buffer), chunk):
        piece = buffer[start : start + chunk]
        if piece != zero[: len(piece)]:
            return False
    return True
