"""Is a local archive the same log as its replica? (`nocontact verify --from … --archive DIR`)

Rules this module keeps:
1. The local archive must verify on its own (archive/verify.py, every rule), with the
   replica's key and origin.
2. The smaller of the two signed trees must be a prefix of the larger, whichever is
   ahead: the shared leaves identical (a fork is named by its first differing entry) and
   the RFC 9162 consistency proof between the two roots verifying.
3. Reads the local directory only; the replica's side is a verified `ReplicaReport`.
"""

from __future__ import annotations

from pathlib import Path

from proxy.archive.merkle import EMPTY_ROOT, MerkleTree, verify_consistency
from proxy.archive.note import Checkpoint
from proxy.archive.verify import VerifyFailure, verify_archive
from proxy.replica.check import Problem, ReplicaReport


def check_local(report: ReplicaReport, root: Path) -> list[Problem]:
    """The local archive at `root` and the replica are one log: the same key and origin,
    and the smaller signed tree is a prefix of the larger (identical leaves, and an RFC
    9162 consistency proof between the two roots). `report` must be a verified one."""
    assert report.checkpoint is not None
    assert report.verifier is not None
    name = f"archive {root}"
    try:
        local = verify_archive(root)
    except VerifyFailure as failure:
        return [Problem(key=name, why=f"does not verify: {failure}")]
    if local.verifier != report.verifier:
        return [Problem(key=name, why="is another archive (another origin or signing key)")]
    mine, theirs = local.checkpoint, report.checkpoint
    for index in range(min(mine.size, theirs.size)):
        if local.tree.leaf(index) != report.tree.leaf(index):
            return [Problem(key=name, why=f"entry {index} differs from the replica's (a fork)")]
    if mine.size <= theirs.size:
        fits = _consistent(mine, theirs, report.tree)
    else:
        fits = _consistent(theirs, mine, local.tree)
    if not fits:
        return [Problem(key=name, why="its checkpoint and the replica's are not consistent")]
    return []


def _consistent(old: Checkpoint, new: Checkpoint, tree: MerkleTree) -> bool:
    """RFC 9162 2.1.4.2 between two signed roots, the proof taken from `tree`."""
    if old.size == 0:
        return old.root == EMPTY_ROOT
    proof = tree.consistency_proof(old.size, new.size) if old.size < new.size else []
    return verify_consistency(old.size, new.size, old.root, new.root, proof)
