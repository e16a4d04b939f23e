"""The witnesses' cosignatures in the replica: `witnessed/<size>/<sha256>`.

The archive keeps, per tree size, its checkpoint note with every cosignature it got
(`<archive>/witnessed/<size>`, proxy/witness/witnessed.py). Evidence bundles carry them,
so they must outlive the server as the log does.

Rules this module keeps:
1. A copy's key is `witnessed/<size>/<hex SHA-256 of its bytes>` (the size in decimal,
   no leading zeroes, at most `MOST_DIGITS` digits): each state of the local
   file (the note, then the note with more cosignatures) is its own object, written once
   and locked like every other; nothing is replaced. The best copy of a size is the one
   with the most signature lines (then the smallest key, so the choice is fixed).
2. The replicator uploads a local file only when its size is at or below the bucket's
   newest checkpoint (so a reader can check its root against the tree), and only when it
   changed since it was last seen (mtime and length); the first pass of a process lists
   the bucket's `witnessed/` once and uploads only what is not there. A file already seen
   is looked at again only while it is among the `RECENT` newest sizes: a cosignature
   comes for a checkpoint just signed, and the directory gains a file per tick, so a
   pass reads names, not every file. A file that is
   unreadable or not a decimal size is passed over: it is not the log, and the log's
   replication never waits for it.
3. A copy is good when its bytes hash to its name, it is a note signed by the archive's
   key naming its origin, its size is the key's size, no larger than the replica's root,
   and its root is the replica tree's at that size. Anything else is a problem naming the
   key. Cosignatures are not checked here: that needs the witnesses' keys, which the
   bundle's verifier is given (access/witnessing.py rule 3).
4. Bounded: a copy over `MOST_BYTES` is passed over by the replicator and a problem for
   the reader.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from proxy.archive.merkle import MerkleTree
from proxy.archive.note import Verifier
from proxy.witness.signed import Malformed, read_note
from proxy.witness.witnessed import DIRECTORY

PREFIX = "witnessed/"
MOST_BYTES = 1024 * 1024
RECENT = 64  # the newest files looked at again on every pass (rule 2)
MOST_DIGITS = 19  # 2**63 - 1, the largest tree size


def copy_key(size: int, data: bytes) -> str:
    return f"{PREFIX}{size}/{hashlib.sha256(data).hexdigest()}"


def parse_key(key: str) -> tuple[int, str] | None:
    """(size, hex) of a copy's key, or None when `key` is not in that form."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] + "/" != PREFIX:
        return None
    size, digest = parts[1], parts[2]
    if not (
        size.isascii() and size.isdigit() and len(size) <= MOST_DIGITS and str(int(size)) == size
    ):
        return None
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        return None
    return int(size), digest


def _decimal(name: str) -> int | None:
    return int(name) if name.isascii() and name.isdigit() and str(int(name)) == name else None


@dataclass(frozen=True, slots=True)
class LocalCopy:
    key: str
    data: bytes


class LocalWitnessed:
    """What of an archive's `witnessed/` is new to the bucket (rule 2)."""

    def __init__(self, archive_root: Path) -> None:
        self._directory = archive_root / DIRECTORY
        self._seen: dict[str, tuple[int, int]] = {}  # file name -> (mtime_ns, length)
        self._uploaded: set[str] | None = None  # keys known to be in the bucket

    @property
    def knows_bucket(self) -> bool:
        return self._uploaded is not None

    def know_bucket(self, keys: Iterable[str]) -> None:
        self._uploaded = {key for key in keys if parse_key(key) is not None}

    def forget(self) -> None:
        """After a failed pass: look at everything again, and list the bucket again."""
        self._seen.clear()
        self._uploaded = None

    def changed(self, up_to: int) -> Iterator[LocalCopy]:
        """The copies to upload: files of sizes <= `up_to` changed since seen, not in the
        bucket. Call `uploaded` for each once it is there."""
        try:
            names = [entry.name for entry in os.scandir(self._directory)]
        except OSError:
            return
        sizes = {name: size for name in names if (size := _decimal(name)) is not None}
        candidates = sorted((n for n in sizes if sizes[n] <= up_to), key=sizes.__getitem__)
        # Rule 2: a file seen before can change only while it is among the newest.
        recent = set(candidates[-RECENT:])
        for name in candidates:
            if name in self._seen and name not in recent:
                continue
            found = self._read(name)
            if found is None:
                continue
            mark, data = found
            if self._seen.get(name) == mark:
                continue
            self._seen[name] = mark
            key = copy_key(sizes[name], data)
            if key not in (self._uploaded or ()):
                yield LocalCopy(key=key, data=data)

    def _read(self, name: str) -> tuple[tuple[int, int], bytes] | None:
        """The file's (mtime, length) and bytes; None when unreadable or too large."""
        try:
            with open(self._directory / name, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size > MOST_BYTES:
                    return None
                data = handle.read(MOST_BYTES + 1)
        except OSError:
            return None
        return ((stat.st_mtime_ns, stat.st_size), data) if len(data) <= MOST_BYTES else None

    def uploaded(self, key: str) -> None:
        if self._uploaded is not None:
            self._uploaded.add(key)


def signature_lines(data: bytes) -> int:
    """How many signature lines a note has (0 when it is not one)."""
    try:
        return len(read_note(data).signatures)
    except Malformed:
        return 0


def copy_problem(
    key: str, data: bytes, *, verifier: Verifier, origin: str, tree: MerkleTree, root_size: int
) -> str | None:
    """Why the copy at `key` is not good (rule 3), or None when it is."""
    parsed = parse_key(key)
    if parsed is None:
        return "not a witnessed copy's name (witnessed/<size>/<sha256>)"
    size, digest = parsed
    if len(data) > MOST_BYTES or hashlib.sha256(data).hexdigest() != digest:
        return "altered: its SHA-256 is not its name"
    try:
        note = read_note(data)
    except Malformed as error:
        return f"not a signed checkpoint note ({error})"
    checks: tuple[tuple[Callable[[], bool], str], ...] = (
        (lambda: note.origin == origin and note.signed_by([verifier]),
         "not a checkpoint signed by this archive's key"),
        (lambda: note.size == size, f"its checkpoint is of size {note.size}, not {size}"),
        (lambda: 0 < size <= root_size,
         f"size {size} is not in the replica's tree (0 < size <= {root_size})"),
        (lambda: note.root == tree.root(size), "its root is not the replica tree's at that size"),
    )  # fmt: skip
    return next((why for holds, why in checks if not holds()), None)


def best_copies(copies: dict[str, bytes]) -> dict[int, bytes]:
    """The best good copy of each size (rule 1), from key -> bytes of good copies."""
    ranked = sorted(copies.items(), key=lambda item: (-signature_lines(item[1]), item[0]))
    best: dict[int, bytes] = {}
    for key, data in ranked:
        parsed = parse_key(key)
        if parsed is not None:
            best.setdefault(parsed[0], data)
    return best
