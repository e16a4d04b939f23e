"""Transparency-log proofs (C2SP tlog-proof, `c2sp.org/tlog-proof@v1`): made and read.

Rules this module keeps:
1. Pure: bytes in, values out; no IO, no clock, no key that opens anything.
2. Exactly the published format, so any C2SP client reads our proofs:
   - the first line is "c2sp.org/tlog-proof@v1";
   - then, only when there is extra data, "extra <base64>" (opaque, never trusted);
   - then "index <N>", the entry's zero-based index in ASCII decimal, no leading zeroes;
   - then one line per inclusion-proof hash (RFC 6962 2.1.1, from the leaf's sibling up
     to the root's child), standard base64 of 32 bytes;
   - then an empty line and the checkpoint verbatim: the log's signed note with any
     witness cosignatures among its signature lines.
3. Reading is total and strict: any bytes either give a `TlogProof` or raise
   `TlogProofError` (a `ValueError`) saying why, never another exception. Base64 must be
   canonical, the index below 2**63, at most 64 hashes, the checkpoint non-empty and
   ending in a newline; nothing is guessed.
4. `prove` checks what the proof claims, with the log's key only: the checkpoint verifies
   under it and names its origin, and the hashes lead from the given leaf hash to the
   checkpoint's root. Cosignatures are the reader's policy, checked elsewhere.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.archive.merkle import verify_inclusion
from proxy.archive.note import Checkpoint, NoteError, Verifier, parse_checkpoint

HEADER = "c2sp.org/tlog-proof@v1"
EXTENSION = ".tlog-proof"
MAX_HASHES = 64  # a tree of 2**63 entries is 63 levels deep
_MAX_INDEX = (1 << 63) - 1
_MAX_BYTES = 1 << 20


class TlogProofError(ValueError):
    """Bytes that are not a tlog-proof, or a proof that does not prove its claim."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlogProof:
    """One entry's inclusion in a checkpointed tree, with the checkpoint itself."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes  # the signed note, cosignatures included, exactly as given
    extra: bytes | None = None

    def encode(self) -> bytes:
        """The proof's text (rule 2); TlogProofError for values it cannot carry."""
        if not 0 <= self.index <= _MAX_INDEX:
            raise TlogProofError("an index is 0..2**63-1")
        if len(self.hashes) > MAX_HASHES or any(len(h) != 32 for h in self.hashes):
            raise TlogProofError(f"a proof is at most {MAX_HASHES} SHA-256 hashes")
        if not self.checkpoint.endswith(b"\n") or self.checkpoint.startswith(b"\n"):
            raise TlogProofError("a checkpoint is a signed note ending in a newline")
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(node).decode() for node in self.hashes)
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint


def _base64(text: bytes, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TlogProofError(f"{what} is not base64") from None
    if base64.b64encode(raw) != text:
        raise TlogProofError(f"{what} is not canonical base64")
    return raw


def _index(line: bytes) -> int:
    digits = line.removeprefix(b"index ")
    if (
        digits == line
        or not digits.isdigit()
        or not digits.isascii()
        or (digits.startswith(b"0") and digits != b"0")
        or len(digits) > 19
    ):
        raise TlogProofError("the index line is 'index' and a decimal without leading zeroes")
    index = int(digits)
    if index > _MAX_INDEX:
        raise TlogProofError("the index is above 2**63-1")
    return index


def parse_proof(data: bytes) -> TlogProof:
    """The proof in `data`; TlogProofError saying why not (rule 3)."""
    if len(data) > _MAX_BYTES:
        raise TlogProofError("a proof is at most 1 MiB")
    head, blank, checkpoint = data.partition(b"\n\n")
    if not blank:
        raise TlogProofError("no empty line before the checkpoint")
    lines = head.split(b"\n")
    if lines[0] != HEADER.encode():
        raise TlogProofError(f"the first line is not {HEADER}")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith(b"extra "):
        extra = _base64(rest[0][len(b"extra ") :], "the extra data")
        rest = rest[1:]
    if not rest:
        raise TlogProofError("no index line")
    index = _index(rest[0])
    if len(rest) - 1 > MAX_HASHES:
        raise TlogProofError(f"more than {MAX_HASHES} proof hashes")
    hashes = []
    for number, line in enumerate(rest[1:], 1):
        node = _base64(line, f"proof hash {number}")
        if len(node) != 32:
            raise TlogProofError(f"proof hash {number} is not a SHA-256 hash")
        hashes.append(node)
    if not checkpoint or not checkpoint.endswith(b"\n"):
        raise TlogProofError("the checkpoint is empty or does not end in a newline")
    return TlogProof(index=index, hashes=tuple(hashes), checkpoint=checkpoint, extra=extra)


def make_proof(
    *, index: int, hashes: Sequence[bytes], checkpoint: bytes, extra: bytes | None = None
) -> bytes:
    """The text of a tlog-proof (rule 2); TlogProofError for values it cannot carry."""
    return TlogProof(index=index, hashes=tuple(hashes), checkpoint=checkpoint,
                     extra=extra).encode()  # fmt: skip


def prove(proof: TlogProof, leaf: bytes, log: Verifier) -> Checkpoint:
    """The checkpoint under which `proof` shows `leaf` at its index (rule 4);
    TlogProofError if the log did not sign it or the hashes do not lead to its root."""
    try:
        head = parse_checkpoint(log.open(proof.checkpoint))
    except NoteError as error:
        raise TlogProofError(f"the checkpoint does not verify under the log key: {error}") from None
    if head.origin != log.name:
        raise TlogProofError("the checkpoint names another log")
    if len(leaf) != 32 or not verify_inclusion(leaf, proof.index, head.size, proof.hashes,
                                               head.root):  # fmt: skip
        raise TlogProofError(
            f"entry {proof.index} is not proven to be in the tree of size {head.size}"
        )
    return head
