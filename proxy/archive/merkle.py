"""The RFC 6962 Merkle tree over the archive's entries: hashes, roots and proofs.

Rules this module keeps:
1. Pure: bytes in, bytes out; no IO.
2. Hashing is exactly RFC 6962 section 2.1 (also RFC 9162 2.1.1): a leaf is
   SHA-256(0x00 || data), an interior node SHA-256(0x01 || left || right), and the tree
   over n leaves splits at the largest power of two smaller than n. Anyone with a
   standard CT library can check our roots and proofs.
3. Proof verification is RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2
   (consistency), step for step, so the offline verifier in an evidence bundle can use
   the same published algorithm.
4. `MerkleTree` keeps every complete subtree's hash, so any root, inclusion proof or
   consistency proof costs O(log n) hashes however large the archive grows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes | memoryview) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || data)."""
    digest = hashlib.sha256(b"\x00")
    digest.update(data)
    return digest.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only tree that remembers every complete subtree hash."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash; completes parents as a binary counter carries."""
        levels = self._levels
        levels[0].append(leaf)
        level, count = 0, len(levels[0])
        while count % 2 == 0:
            row = levels[level]
            parent = node_hash(row[-2], row[-1])
            level += 1
            if level == len(levels):
                levels.append([])
            levels[level].append(parent)
            count = len(levels[level])

    def complete(self, height: int, index: int) -> bytes:
        """The stored hash of the complete subtree over leaves [index * 2**height,
        (index + 1) * 2**height): a tlog-tiles tile's entry (proxy/replica/tiles.py)."""
        row = self._levels[height] if 0 <= height < len(self._levels) else []
        if not 0 <= index < len(row):
            raise ValueError(f"tree of {self.size} has no complete subtree {index} of 2**{height}")
        return row[index]

    def truncate(self, size: int) -> None:
        """Forget every leaf from `size` on (undoes appends that never reached disk)."""
        for level, row in enumerate(self._levels):
            del row[size >> level :]

    def root(self, size: int | None = None) -> bytes:
        """The root over the first `size` leaves (default: all)."""
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree has {self.size} leaves, not {size}")
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def _subtree(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:  # a complete, aligned subtree: stored
            level = n.bit_length() - 1
            return self._levels[level][start >> level]
        k = _split(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 6962 2.1.1 PATH(index, D[size]): the audit path of one leaf."""
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise ValueError(f"no leaf {index} in a tree of {size}")
        return inclusion_path(index, size, self._subtree)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 6962 2.1.2 PROOF(old_size, D[new_size])."""
        new_size = self.size if new_size is None else new_size
        if not 0 < old_size <= new_size <= self.size:
            raise ValueError(f"no consistency proof from {old_size} to {new_size}")
        return consistency_path(old_size, new_size, self._subtree)


Subtree = Callable[[int, int], bytes]  # the Merkle Tree Hash of leaves [start, end)


def inclusion_path(index: int, size: int, subtree: Subtree) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(index, D[size]) from any source of subtree hashes (this
    module's tree, or a tree read back from tlog tiles)."""
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_path(old_size: int, new_size: int, subtree: Subtree) -> list[bytes]:
    """RFC 6962 2.1.2 PROOF(old_size, D[new_size]) from any source of subtree hashes."""
    proof: list[bytes] = []

    def walk(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(subtree(start, end))
            return
        k = _split(n)
        if m <= k:
            walk(m, start, start + k, complete)
            proof.append(subtree(start + k, end))
        else:
            walk(m - k, start + k, end, False)
            proof.append(subtree(start, start + k))

    walk(old_size, 0, new_size, True)
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show leaf `index` is in the tree `root` of `size`?"""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree `new_root` an append-only extension of `old_root`?"""
    if old_size == new_size:
        return not proof and old_root == new_root
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
