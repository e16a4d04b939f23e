"""The C2SP tlog-tiles layout: which tiles and entry bundles a tree has, their paths and bytes.

Rules this module keeps:
1. Pure: sizes, hashes and bytes in, values out; no IO. The store moves the bytes.
2. The layout is C2SP tlog-tiles (https://c2sp.org/tlog-tiles), hashing RFC 6962: tiles are
   256 hashes wide; the i-th hash of tile N at level L is the Merkle Tree Hash of the
   leaves [(N*256 + i) * 256**L, (N*256 + i + 1) * 256**L). Level 0 holds leaf hashes.
3. Paths are the spec's: `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]`, with N
   written as zero-padded 3-digit elements, all but the last prefixed with `x`
   (1234067 -> `x001/x234/067`). `parse_path` is the exact inverse of `Tile.path`: any
   other spelling (leading zeroes, a width of 0 or 256, a level over 63) is refused.
4. A tree of size S has, at each level L while S >> 8L is not zero, (S >> 8L) // 256 full
   tiles and, when (S >> 8L) % 256 is not zero, one partial tile of that width. Empty
   tiles do not exist. Entry bundles follow level 0.
5. An entry bundle is each entry as a big-endian uint16 length then its bytes. An entry
   over 65,535 bytes is refused with `TileError`, never cut; decoding refuses trailing or
   missing bytes and a count other than the bundle's width.
6. Every malformed input raises `TileError` (a `NocontactError`) with one line that names
   the tile, never a traceback from deeper code.
7. The entry bundles of a version 1 or 2 archive, whose leaves are over the whole body and
   so are not tlog-tiles bundles, are the same bundles of the same 41-byte entries at
   nocontact's own path `index/<N>[.p/<W>]` (a `Tile` with `own_path`): N and the width
   spelt as in rule 3, and `parse_path` reads both spellings. Tiles are never there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from proxy.archive.merkle import leaf_hash, node_hash
from proxy.errors import NocontactError

HEIGHT = 8
WIDTH = 1 << HEIGHT  # 256 hashes in a full tile
HASH_BYTES = 32
MAX_LEVEL = 63
MAX_ENTRY = 0xFFFF  # the uint16 length prefix of an entry bundle
ENTRIES = "entries"  # the "level" of entry bundles in their path
INDEX = "index"  # where a version 1 or 2 archive's bundles go instead (rule 7)

_PATH = re.compile(
    r"(?:tile/(0|[1-9][0-9]?|entries)|(index))/((?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/([1-9][0-9]{0,2}))?"
)


class TileError(NocontactError):
    """Tile or bundle bytes, or a path, that do not fit the tlog-tiles layout."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tile:
    """One tile (level 0..63) or, with `level=None`, one entry bundle; `width` < 256 is
    partial. A bundle with `own_path` is at `index/` (rule 7)."""

    level: int | None
    index: int
    width: int = WIDTH
    own_path: bool = False

    def __post_init__(self) -> None:
        if self.own_path and self.level is not None:
            raise TileError(f"a tile of level {self.level} never goes under {INDEX}/")
        if self.level is not None and not 0 <= self.level <= MAX_LEVEL:
            raise TileError(f"tile level {self.level} is not between 0 and {MAX_LEVEL}")
        if self.index < 0:
            raise TileError(f"tile index {self.index} is negative")
        if not 1 <= self.width <= WIDTH:
            raise TileError(f"tile width {self.width} is not between 1 and {WIDTH}")

    @property
    def partial(self) -> bool:
        return self.width < WIDTH

    @property
    def path(self) -> str:
        if self.own_path:
            directory = INDEX
        else:
            directory = f"tile/{ENTRIES if self.level is None else self.level}"
        suffix = f".p/{self.width}" if self.partial else ""
        return f"{directory}/{encode_index(self.index)}{suffix}"

    @property
    def start(self) -> int:
        """The first hash (at this tile's level) the tile holds."""
        return self.index * WIDTH


def encode_index(index: int) -> str:
    """The spec's N: 3-digit groups, all but the last prefixed `x` (1234 -> `x001/234`)."""
    if index < 0:
        raise TileError(f"tile index {index} is negative")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(groups))


def parse_path(path: str) -> Tile:
    """The tile or bundle at `path` (rule 3), or `TileError`."""
    match = _PATH.fullmatch(path)
    if match is None:
        raise TileError(f"{path[:120]!r} is not a tile path")
    level_text, own_text, index_text, width_text = match.groups()
    groups = index_text.replace("x", "").split("/")
    if len(groups) > 1 and groups[0] == "000":  # x000/... is a second spelling of a number
        raise TileError(f"{path[:120]!r} is not a tile path: the index has leading zeroes")
    index = int("".join(groups))
    level = None if own_text or level_text == ENTRIES else int(level_text)
    width = WIDTH if width_text is None else int(width_text)
    if (width_text is not None and width >= WIDTH) or (level is not None and level > MAX_LEVEL):
        raise TileError(f"{path[:120]!r} is not a tile path")
    return Tile(level=level, index=index, width=width, own_path=own_text is not None)


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile a tree of `size` leaves has, level by level, full ones then the partial."""
    if size < 0:
        raise TileError(f"a tree cannot have {size} leaves")
    tiles: list[Tile] = []
    level = 0
    while hashes := size >> (HEIGHT * level):
        tiles.extend(_row(level, hashes))
        level += 1
    return tiles


def bundles_for_size(size: int, *, own_path: bool = False) -> list[Tile]:
    """Every entry bundle a tree of `size` leaves has: level 0's shape, under `entries`
    (or, with `own_path`, under `index/`: rule 7)."""
    if size < 0:
        raise TileError(f"a tree cannot have {size} leaves")
    return list(_row(None, size, own_path=own_path))


def last_bundle(size: int, *, own_path: bool = False) -> Tile:
    """The last entry bundle of a tree of `size` > 0 leaves."""
    if size <= 0:
        raise TileError(f"a tree of {size} leaves has no entry bundle")
    return Tile(level=None, index=(size - 1) // WIDTH, width=size % WIDTH or WIDTH,
                own_path=own_path)  # fmt: skip


def bundle_of(index: int, *, own_path: bool = False) -> Tile:
    """The full entry bundle that holds entry `index`."""
    return Tile(level=None, index=index // WIDTH, own_path=own_path)


def _row(level: int | None, hashes: int, *, own_path: bool = False) -> Iterator[Tile]:
    full, width = divmod(hashes, WIDTH)
    for index in range(full):
        yield Tile(level=level, index=index, own_path=own_path)
    if width:
        yield Tile(level=level, index=full, width=width, own_path=own_path)


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """The root over a power-of-two count of hashes (a full tile, or part of one)."""
    row = list(hashes)
    if not row or len(row) & (len(row) - 1):
        raise TileError(f"{len(row)} hashes are not a complete subtree")
    while len(row) > 1:
        row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
    return row[0]


def build_tiles(leaf_hashes: Sequence[bytes]) -> dict[Tile, bytes]:
    """The bytes of every tile of the tree over `leaf_hashes` (rule 2), keyed by tile."""
    tiles: dict[Tile, bytes] = {}
    row = list(leaf_hashes)
    level = 0
    while row:
        for tile in _row(level, len(row)):
            tiles[tile] = b"".join(row[tile.start : tile.start + tile.width])
        # The level above hashes only full tiles (a partial tile is never hashed upward).
        row = [subtree_root(row[i : i + WIDTH]) for i in range(0, len(row) - WIDTH + 1, WIDTH)]
        level += 1
    return tiles


def decode_tile(tile: Tile, data: bytes) -> list[bytes]:
    """The hashes of a tile, checked to be exactly `tile.width` of them."""
    if tile.level is None:
        raise TileError(f"{tile.path} is an entry bundle, not a tile of hashes")
    if len(data) != tile.width * HASH_BYTES:
        raise TileError(
            f"{tile.path} has {len(data)} bytes, not {tile.width * HASH_BYTES} "
            f"({tile.width} hashes)"
        )
    return [data[i : i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length, then its bytes (rule 5)."""
    if not 1 <= len(entries) <= WIDTH:
        raise TileError(f"an entry bundle holds 1 to {WIDTH} entries, not {len(entries)}")
    parts: list[bytes] = []
    for number, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY:
            raise TileError(
                f"entry {number} of the bundle has {len(entry)} bytes, over the "
                f"{MAX_ENTRY} an entry bundle can carry"
            )
        parts += (len(entry).to_bytes(2, "big"), entry)
    return b"".join(parts)


def decode_bundle(bundle: Tile, data: bytes) -> list[bytes]:
    """The entries of a bundle, checked to be exactly `bundle.width` with no bytes left."""
    if bundle.level is not None:
        raise TileError(f"{bundle.path} is a tile of hashes, not an entry bundle")
    entries: list[bytes] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2:
            raise TileError(f"{bundle.path} ends inside an entry's length")
        length = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if len(data) - offset < length:
            raise TileError(f"{bundle.path} ends inside an entry")
        entries.append(data[offset : offset + length])
        offset += length
        if len(entries) > bundle.width:
            break
    if len(entries) > bundle.width:
        raise TileError(f"{bundle.path} holds more than {bundle.width} entries")
    if len(entries) < bundle.width:
        raise TileError(f"{bundle.path} holds {len(entries)} entries, not {bundle.width}")
    return entries


def bundle_leaf_hashes(bundle: Tile, data: bytes) -> list[bytes]:
    """The RFC 6962 leaf hashes of a bundle's entries: what its level 0 tile must hold."""
    return [leaf_hash(entry) for entry in decode_bundle(bundle, data)]
