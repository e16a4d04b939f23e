"""Logs and requests for the witness tests: a C2SP log in memory, signed like the archive."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from proxy.archive.merkle import MerkleTree, leaf_hash
from proxy.archive.note import Checkpoint, Signer
from proxy.witness.request import format_request

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
ORIGIN = "nocontact.archive/0123456789abcdef"


class MemoryLog:
    """An append-only log of numbered leaves, signing checkpoints with `signer`."""

    def __init__(self, signer: Signer, *, fork: bytes = b"") -> None:
        self.signer = signer
        self.tree = MerkleTree()
        self._fork = fork  # a forked log writes other leaves under the same key

    def grow(self, to: int) -> None:
        while self.tree.size < to:
            self.tree.append(leaf_hash(self._fork + b"leaf %d" % self.tree.size))

    def note(self, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        head = Checkpoint(origin=self.signer.name, size=size, root=self.tree.root(size), time=NOW)
        return self.signer.sign(head.body())

    def body(self, size: int | None = None) -> str:
        return self.note(size).decode().rpartition("\n\n")[0] + "\n"

    def request(self, old: int, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
        return format_request(old, proof, self.note(size))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
