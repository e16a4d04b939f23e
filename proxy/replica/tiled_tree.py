"""A tree read back from its tiles: root, inclusion and consistency proofs, and a full check.

Rules this module keeps:
1. Pure: a tree size and the tiles' bytes in, hashes out; no IO. Whoever fetched the tiles
   (from the bucket, from a copy) hands them over as a mapping from `Tile` to bytes.
2. Any complete, aligned subtree of height h is read from one tile: level h // 8, where
   it spans 2**(h % 8) consecutive hashes, hashed together. Every other Merkle Tree Hash
   is RFC 6962's recursion over those, so roots and proofs equal `MerkleTree`'s exactly.
3. Only the tiles of this size are used: a tile is read at the width a tree of `size`
   gives it (full, or the one partial width), never a wider or narrower one.
4. `check` binds every tile to the root it returns: each full tile must hash to its
   entry in the level above, each partial tile is consumed by the root itself, and each
   entry bundle must hash to its level 0 tile. A missing, short, altered or extra-wide
   tile is a `TileError` naming the tile; the caller compares the root to a checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.archive.merkle import EMPTY_ROOT, consistency_path, inclusion_path, node_hash
from proxy.replica.tiles import (
    HEIGHT,
    WIDTH,
    Tile,
    TileError,
    bundle_leaf_hashes,
    bundles_for_size,
    decode_tile,
    subtree_root,
    tiles_for_size,
)


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class TiledTree:
    """The tree of `size` leaves whose tiles are `tiles` (rule 1)."""

    __slots__ = ("_decoded", "_tiles", "size")

    def __init__(self, size: int, tiles: Mapping[Tile, bytes]) -> None:
        if size < 0:
            raise TileError(f"a tree cannot have {size} leaves")
        self.size = size
        self._tiles = tiles
        self._decoded: dict[Tile, list[bytes]] = {}

    def _sized(self, level: int, index: int) -> Tile:
        """Tile `index` at `level`, at the width this size gives it (rule 3)."""
        hashes = self.size >> (HEIGHT * level)
        full = hashes // WIDTH
        if index > full or (index == full and hashes % WIDTH == 0):
            raise TileError(f"a tree of {self.size} has no tile {index} at level {level}")
        return Tile(level=level, index=index, width=WIDTH if index < full else hashes % WIDTH)

    def _tile(self, level: int, index: int) -> list[bytes]:
        """The hashes of tile `index` at `level`, read once and checked for length."""
        tile = self._sized(level, index)
        if tile not in self._decoded:
            data = self._tiles.get(tile)
            if data is None:
                raise TileError(f"{tile.path} is missing")
            self._decoded[tile] = decode_tile(tile, data)
        return self._decoded[tile]

    def _complete(self, start: int, count: int) -> bytes:
        """The hash of the complete, aligned subtree over leaves [start, start + count)."""
        height = count.bit_length() - 1
        level, rest = divmod(height, HEIGHT)
        first = start >> (HEIGHT * level)  # the subtree's first hash at that level
        hashes = self._tile(level, first // WIDTH)
        offset = first % WIDTH
        return subtree_root(hashes[offset : offset + (1 << rest)])

    def _subtree(self, start: int, end: int) -> bytes:
        """RFC 6962 MTH(D[start:end]) for 0 <= start < end <= size."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self._complete(start, n)
        k = _split(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def root(self) -> bytes:
        """The root hash of the whole tree."""
        return EMPTY_ROOT if self.size == 0 else self._subtree(0, self.size)

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        if not 0 <= index < self.size:
            raise TileError(f"no leaf {index} in a tree of {self.size}")
        return self._complete(index, 1)

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 6962 2.1.1 PATH(index, D[size]), as `MerkleTree.inclusion_proof` gives it."""
        if not 0 <= index < self.size:
            raise TileError(f"no leaf {index} in a tree of {self.size}")
        return inclusion_path(index, self.size, self._subtree)

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """RFC 6962 2.1.2 PROOF(old_size, D[size]): every hash it needs is in these tiles."""
        if not 0 < old_size <= self.size:
            raise TileError(f"no consistency proof from {old_size} to {self.size}")
        return consistency_path(old_size, self.size, self._subtree)

    def check(self, bundles: Mapping[Tile, bytes] | None = None) -> bytes:
        """Every tile (and bundle, if given) bound to the root, which is returned (rule 4)."""
        for tile in tiles_for_size(self.size):
            level = tile.level if tile.level is not None else 0  # tiles_for_size: never None
            hashes = self._tile(level, tile.index)
            if tile.partial:
                continue  # the root itself consumes every hash of a partial tile
            parent = self._sized(level + 1, tile.index // WIDTH)
            if subtree_root(hashes) != self._tile(level + 1, parent.index)[tile.index % WIDTH]:
                raise TileError(f"{tile.path} does not hash to its entry in {parent.path}")
        if bundles is not None:
            for bundle in bundles_for_size(self.size):
                data = bundles.get(bundle)
                if data is None:
                    raise TileError(f"{bundle.path} is missing")
                if bundle_leaf_hashes(bundle, data) != self._tile(0, bundle.index):
                    raise TileError(f"{bundle.path} does not hash to its level 0 tile")
        return self.root()
