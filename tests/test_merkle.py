"""RFC 6962 hashing and RFC 9162 proofs, against published vectors and a reference MTH."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.archive.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# The RFC 6962 test vectors (certificate-transparency reference tests): eight leaves and the
# root over the first n of them.
LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
          "606162636465666768696a6b6c6d6e6f"]  # fmt: skip
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _reference_root(leaves: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 2.1 defines it, recursively."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


@pytest.mark.parametrize("size", range(1, 9))
def test_rfc6962_vectors(size: int) -> None:
    """Our roots equal the published RFC 6962 test vector roots."""
    tree = MerkleTree([leaf_hash(bytes.fromhex(x)) for x in LEAVES])
    assert tree.root(size).hex() == ROOTS[size - 1]


def _tree(n: int) -> tuple[MerkleTree, list[bytes]]:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    return MerkleTree(leaves), leaves


@given(st.integers(0, 300))
def test_roots_match_the_definition(n: int) -> None:
    """Every prefix root equals the recursive definition."""
    tree, leaves = _tree(n)
    for size in {0, n // 3, n // 2, n}:
        assert tree.root(size) == _reference_root(leaves[:size])


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_verify_and_bind_position(case: tuple[int, int]) -> None:
    """An inclusion proof verifies for its leaf and index only."""
    n, index = case
    tree, leaves = _tree(n)
    proof = tree.inclusion_proof(index)
    assert verify_inclusion(leaves[index], index, n, proof, tree.root())
    assert not verify_inclusion(leaf_hash(b"other"), index, n, proof, tree.root())
    if n > 1:
        other = (index + 1) % n
        assert not verify_inclusion(leaves[index], other, n, proof, tree.root())


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_verify_and_detect_rewrites(case: tuple[int, int]) -> None:
    """A consistency proof links an old root to a new one, and fails for a rewritten history."""
    old, new = case
    tree, leaves = _tree(new)
    proof = tree.consistency_proof(old, new)
    assert verify_consistency(old, new, tree.root(old), tree.root(new), proof)
    if old < new:
        forged = MerkleTree([leaf_hash(b"forged"), *leaves[1:]])
        assert not verify_consistency(old, new, forged.root(old), tree.root(new), proof)


def test_truncate_undoes_appends() -> None:
    """Truncating forgets leaves exactly, as if they had never been appended."""
    tree, _ = _tree(37)
    expected = tree.root(20)
    tree.truncate(20)
    assert tree.size == 20
    assert tree.root() == expected
    tree.append(leaf_hash(b"x"))
    assert tree.root() == _reference_root([*[tree.leaf(i) for i in range(20)], leaf_hash(b"x")])


@given(st.integers(1, 300))
def test_complete_subtrees_are_the_definitions_roots(n: int) -> None:
    """`complete(h, i)` is MTH of leaves [i * 2**h, (i + 1) * 2**h) for every complete one,
    and a subtree not complete yet is refused."""
    tree, leaves = _tree(n)
    for height in range(n.bit_length()):
        span = 1 << height
        for index in range(n // span):
            assert tree.complete(height, index) == _reference_root(
                leaves[index * span : (index + 1) * span]
            )
        with pytest.raises(ValueError, match="no complete subtree"):
            tree.complete(height, n // span)
