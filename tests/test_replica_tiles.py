"""The tlog-tiles layout: paths, which tiles a tree has, tile and bundle bytes, read-back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.archive.merkle import MerkleTree, leaf_hash, verify_inclusion
from proxy.replica.tiled_tree import TiledTree
from proxy.replica.tiles import (
    MAX_ENTRY,
    Tile,
    TileError,
    build_tiles,
    bundles_for_size,
    decode_bundle,
    encode_bundle,
    encode_index,
    parse_path,
    tiles_for_size,
)


def _leaves(size: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(8, "big")) for i in range(size)]


@pytest.mark.parametrize(
    ("index", "text"),
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234, "x001/234"),
     (1234067, "x001/x234/067"), (10**9, "x001/x000/x000/000")],
)  # fmt: skip
def test_index_is_written_in_x_prefixed_groups(index: int, text: str) -> None:
    """N is zero-padded 3-digit groups, all but the last prefixed with x (the spec's example)."""
    assert encode_index(index) == text


def test_paths_of_tiles_and_bundles() -> None:
    """Full and partial tiles and bundles have the spec's paths."""
    assert Tile(level=0, index=1234).path == "tile/0/x001/234"
    assert Tile(level=2, index=3, width=17).path == "tile/2/003.p/17"
    assert Tile(level=None, index=1234067).path == "tile/entries/x001/x234/067"
    assert Tile(level=None, index=0, width=1).path == "tile/entries/000.p/1"


def test_a_version_1_or_2_archives_bundles_are_under_index() -> None:
    """Bundles with `own_path` are at index/<N>[.p/<W>], N and W spelt as for tiles; the
    same row as level 0; a tile of hashes never goes there."""
    assert Tile(level=None, index=1234067, own_path=True).path == "index/x001/x234/067"
    assert Tile(level=None, index=2, width=17, own_path=True).path == "index/002.p/17"
    assert [t.path for t in bundles_for_size(300, own_path=True)] == ["index/000", "index/001.p/44"]
    assert parse_path("index/001.p/44") == Tile(level=None, index=1, width=44, own_path=True)
    with pytest.raises(TileError, match="never goes under index/"):
        Tile(level=0, index=0, own_path=True)


@given(
    level=st.none() | st.integers(0, 63),
    index=st.integers(0, 10**15),
    width=st.integers(1, 256),
    own_path=st.booleans(),
)
def test_parse_path_inverts_path(level: int | None, index: int, width: int, own_path: bool) -> None:
    """Every tile's and bundle's path parses back to the same tile or bundle."""
    tile = Tile(level=level, index=index, width=width, own_path=own_path and level is None)
    assert parse_path(tile.path) == tile


@pytest.mark.parametrize(
    "path",
    ["tile/0/1234", "tile/0/x001/23", "tile/0/001/234", "tile/00/000", "tile/64/000",
     "tile/0/000.p/0", "tile/0/000.p/256", "tile/0/000.p/012", "tile/0/x000/001",
     "tile/entries/000.p/", "tile/0/000/", "/tile/0/000", "tile/-1/000", "tile/0/x001",
     "index/0/000", "index/x000/001", "index/000.p/256", "tile/index/000", "index/entries/000",
     "checkpoint", ""],
)  # fmt: skip
def test_other_spellings_are_not_tile_paths(path: str) -> None:
    """A path the spec would not write is refused, so one tile never has two keys."""
    with pytest.raises(TileError):
        parse_path(path)


def test_a_tree_of_70000_has_the_spec_tiles() -> None:
    """The spec's example: 273 full level 0 tiles, partials of 112, 1 full + 17, and 1."""
    tiles = tiles_for_size(70_000)
    level0 = [t for t in tiles if t.level == 0]
    assert len(level0) == 274
    assert [t.width for t in level0 if t.partial] == [112]
    assert [(t.index, t.width) for t in tiles if t.level == 1] == [(0, 256), (1, 17)]
    assert [(t.index, t.width) for t in tiles if t.level == 2] == [(0, 1)]
    assert len(bundles_for_size(70_000)) == 274


def test_small_trees() -> None:
    """An empty tree has no tiles; 256 leaves are a full tile and a level 1 tile of width 1."""
    assert tiles_for_size(0) == []
    assert bundles_for_size(0) == []
    assert tiles_for_size(256) == [Tile(level=0, index=0), Tile(level=1, index=0, width=1)]
    assert tiles_for_size(3) == [Tile(level=0, index=0, width=3)]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 1400), data=st.data())
def test_tiles_give_merkle_trees_root_and_proofs(size: int, data: st.DataObject) -> None:
    """Read back from its tiles, a tree has MerkleTree's root, inclusion and consistency proofs."""
    leaves = _leaves(size)
    reference = MerkleTree(leaves)
    tiles = build_tiles(leaves)
    assert set(tiles) == set(tiles_for_size(size))
    tree = TiledTree(size, tiles)
    root = tree.check()
    assert root == reference.root()
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index)
    assert proof == reference.inclusion_proof(index)
    assert tree.leaf(index) == leaves[index]
    assert verify_inclusion(leaves[index], index, size, proof, root)
    old = data.draw(st.integers(1, size))
    assert tree.consistency_proof(old) == reference.consistency_proof(old, size)


@pytest.mark.parametrize("size", [65_535, 65_536, 65_537, 70_000])
def test_three_levels_give_merkle_trees_root(size: int) -> None:
    """Across the level 2 boundary the tiles still give the same root and proofs."""
    leaves = _leaves(size)
    reference = MerkleTree(leaves)
    tree = TiledTree(size, build_tiles(leaves))
    assert tree.check() == reference.root()
    for index in (0, 255, 256, 65_535, size - 1):
        if index < size:
            assert tree.inclusion_proof(index) == reference.inclusion_proof(index)


def test_the_empty_tree() -> None:
    """No tiles, and the root of the empty tree."""
    assert TiledTree(0, {}).check() == MerkleTree().root()


def _checked(tree: TiledTree) -> bytes | str:
    """The checked root, or the line of the error that refused it."""
    try:
        return tree.check()
    except TileError as error:
        return str(error)


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 1400), data=st.data())
def test_an_altered_or_missing_tile_is_detected(size: int, data: st.DataObject) -> None:
    """A changed byte in any tile changes or refuses the checked root; a missing tile is named."""
    leaves = _leaves(size)
    root = MerkleTree(leaves).root()
    tiles = build_tiles(leaves)
    victim = data.draw(st.sampled_from(sorted(tiles, key=lambda t: t.path)))
    position = data.draw(st.integers(0, len(tiles[victim]) - 1))
    altered = bytearray(tiles[victim])
    altered[position] ^= 1
    outcome = _checked(TiledTree(size, {**tiles, victim: bytes(altered)}))
    assert outcome != root
    assert isinstance(outcome, bytes) or victim.path in outcome
    missing = {tile: data for tile, data in tiles.items() if tile != victim}
    with pytest.raises(TileError, match=f"{victim.path} is missing"):
        TiledTree(size, missing).check()
    with pytest.raises(TileError, match="bytes, not"):
        TiledTree(size, {**tiles, victim: tiles[victim][:-1]}).check()


def test_tiles_of_another_width_are_not_read() -> None:
    """A tree reads only the partial width its size gives, not a tile of a larger tree."""
    larger = build_tiles(_leaves(300))
    with pytest.raises(TileError, match="missing"):
        TiledTree(290, larger).root()


def test_bundles_round_trip_and_bind_to_level_0() -> None:
    """Entry bundles decode to their entries and hash to the level 0 tile; a changed one fails."""
    entries = [bytes([i % 251]) * (i * 97 % 3000) for i in range(300)]
    leaves = [leaf_hash(entry) for entry in entries]
    bundles = {
        bundle: encode_bundle(entries[bundle.start : bundle.start + bundle.width])
        for bundle in bundles_for_size(300)
    }
    assert [decode_bundle(b, bundles[b]) for b in bundles_for_size(300)] == [
        entries[:256],
        entries[256:],
    ]
    tree = TiledTree(300, build_tiles(leaves))
    assert tree.check(bundles) == MerkleTree(leaves).root()
    first = Tile(level=None, index=0)
    with pytest.raises(TileError, match="does not hash to its level 0 tile"):
        tree.check({**bundles, first: encode_bundle([b"x", *entries[1:256]])})
    with pytest.raises(TileError, match="missing"):
        tree.check({first: bundles[first]})


def test_an_entry_over_65535_bytes_is_refused() -> None:
    """The uint16 length caps an entry: 65,535 bytes fit, one more is refused, never cut."""
    bundle = Tile(level=None, index=0, width=1)
    assert decode_bundle(bundle, encode_bundle([bytes(MAX_ENTRY)])) == [bytes(MAX_ENTRY)]
    with pytest.raises(TileError, match="65536 bytes"):
        encode_bundle([bytes(MAX_ENTRY + 1)])
    with pytest.raises(TileError):
        encode_bundle([])


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"\x00", "inside an entry's length"), (b"\x00\x05abc", "inside an entry"),
     (b"\x00\x01a", "1 entries, not 2"), (b"\x00\x01a\x00\x01b\x00\x00", "more than 2"),
     (b"", "0 entries")],
)  # fmt: skip
def test_malformed_bundles_are_refused(data: bytes, message: str) -> None:
    """Short, long and truncated bundles are one clear error each."""
    with pytest.raises(TileError, match=message):
        decode_bundle(Tile(level=None, index=0, width=2), data)
