"""Sealed once: which arrivals the archive already holds, kept beside the log.

Every channel can meet the same arrival twice: an IMAP folder scanned again after a crash or
a restored backup, a webhook Twilio retries, a reconciliation pass. Each arrival has a
*mark* the channel derives from it (`imap:<SHA-256 of the message>`, `twilio:<SID>`), and
the archive keeps the marks of what it sealed, so the same arrival is sealed once, ever.

Rules this module keeps:
1. The marks live in the archive directory (`sealed`), not in the channels' state: a
   channel's state then records every message the same way whatever became of it. The
   file tells no more than the log beside it, which already grows by one entry per item:
   each line is an HMAC of a mark under a key derived from the archive's signing key, so
   a message or a SID cannot be looked up in it without that key.
2. Crash-safe order, the same for every channel: the marks of a batch are *noted* with the
   SHA-256 of their sealed bytes and the log's size, and synced, before the log stores
   those bytes; after the log's own sync a *settled* line follows (not synced). Opening
   checks every note after the last settled line against the log itself: a note whose
   sealed bytes are in the log from its size on stands; one whose bytes are not was never
   acknowledged and is dropped, so that arrival is sealed when it comes back. After a
   batch that failed, no settled line is written again until the archive is reopened (a
   later one would vouch for the failed batch's notes too), so they are all checked. The
   file is rewritten compactly at opening (replace, fsync, directory fsync).
3. `holds` answers from memory, from any thread; `note` and `settle` run on the archive's
   writer thread only.
4. A line that cannot be parsed (a torn last line) is ignored: nothing relied on it,
   because no entry of its batch was stored before the note was synced.
5. The file tells no more than the segments do by its size or times: like them it is
   made in whole blocks of zeros (`BLOCK`, 64 KiB) that lines are written into, so its
   size grows by a block only every few hundred held arrivals; after every write its
   modification time is set back to the latest checkpoint's, and at every checkpoint it
   is touched, so its change time moves at the ticks as the log's does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from proxy.disk import replace_file

FILE = "sealed"
BLOCK = 64 << 10
_NOTE = b"n"
_SETTLED = b"s\n"
_KEPT = b"k"


class SealedMarks:
    """The marks of every arrival the archive holds."""

    def __init__(self, path: Path, key: bytes, marks: set[bytes], end: int) -> None:
        self._path = path
        self._key = key
        self._marks = marks
        self._doubt = False  # a batch failed since opening: settle nothing more (rule 2)
        self._fd = os.open(path, os.O_WRONLY)
        self._end = end  # where the next line goes; zeros from here on (rule 5)
        self._size = os.fstat(self._fd).st_size
        self._signed_at = 0  # the latest checkpoint's time, ns (rule 5)

    @classmethod
    def open(cls, root: Path, key: bytes, stored: Callable[[int], set[str]]) -> SealedMarks:
        """The marks at `root`, notes a crash left unsettled checked against the log
        (`stored(since)`: the SHA-256 of every sealed entry from index `since` on)."""
        path = root / FILE
        marks: set[bytes] = set()
        unsettled: list[tuple[bytes, str, int]] = []
        data = path.read_bytes().split(b"\0", 1)[0] if path.exists() else b""
        for line in data.split(b"\n"):
            fields = line.split(b" ")
            if fields[0] == _KEPT and len(fields) == 2:
                marks.add(fields[1])
            elif fields[0] == _NOTE and len(fields) == 4 and fields[3].isdigit():
                unsettled.append((fields[1], fields[2].decode("ascii", "replace"), int(fields[3])))
            elif line + b"\n" == _SETTLED:
                marks.update(mark for mark, _, _ in unsettled)
                unsettled.clear()
        if unsettled:
            found = stored(min(at for _, _, at in unsettled))
            marks.update(mark for mark, digest, _ in unsettled if digest in found)
        kept = b"".join(_KEPT + b" " + mark + b"\n" for mark in sorted(marks))
        blocks = max(1, -(-len(kept) // BLOCK))
        replace_file(path, kept + bytes(blocks * BLOCK - len(kept)), 0o600)
        return cls(path, key, marks, len(kept))

    def _hashed(self, mark: str) -> bytes:
        return hmac.new(self._key, mark.encode("utf-8", "surrogatepass"), hashlib.sha256) \
            .hexdigest()[:32].encode()  # fmt: skip

    def holds(self, mark: str) -> bool:
        """Whether an arrival with this mark is already sealed (or being sealed now)."""
        return self._hashed(mark) in self._marks

    def note(self, notes: Iterable[tuple[str, bytes]], size: int) -> None:
        """Note durably that sealed bytes for these marks are about to be stored at `size`."""
        lines = []
        for mark, sealed in notes:
            hashed = self._hashed(mark)
            self._marks.add(hashed)
            digest = hashlib.sha256(sealed).hexdigest().encode()
            lines.append(b" ".join((_NOTE, hashed, digest, str(size).encode())) + b"\n")
        if lines:
            self._write(b"".join(lines))
            os.fdatasync(self._fd)

    def _write(self, data: bytes) -> None:
        """Write `data` at the end of the lines, in whole blocks of zeros (rule 5)."""
        if self._end + len(data) > self._size:
            grown = self._end + len(data) + -(self._end + len(data)) % BLOCK
            os.posix_fallocate(self._fd, self._size, grown - self._size)
            self._size = grown
        written = 0
        while written < len(data):
            written += os.pwrite(self._fd, data[written:], self._end + written)
        self._end += len(data)
        os.utime(self._fd, ns=(self._signed_at, self._signed_at))

    def touch(self, signed_at: int) -> None:
        """A checkpoint was signed at `signed_at` (ns): the file's times follow (rule 5)."""
        self._signed_at = signed_at
        os.utime(self._fd, ns=(signed_at, signed_at))

    def forget(self, marks: Iterable[str]) -> None:
        """The batch these marks were noted for failed: they are not sealed (in memory; the
        notes on disk are dropped when the archive is next opened, rule 2)."""
        self._doubt = True
        for mark in marks:
            self._marks.discard(self._hashed(mark))

    def settle(self) -> None:
        """Everything noted so far is stored (a hint: see rule 2)."""
        if not self._doubt:
            self._write(_SETTLED)

    def adopt(self, marks: Iterable[str]) -> None:
        """Marks of arrivals sealed before the marks lived here (a channel's older state)."""
        lines = []
        for mark in marks:
            hashed = self._hashed(mark)
            if hashed not in self._marks:
                self._marks.add(hashed)
                lines.append(_KEPT + b" " + hashed + b"\n")
        if lines:
            self._write(b"".join(lines))
            os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)
