"""Which checkpoint each entry of an evidence bundle is proven under, and who cosigned it.

Rules this module keeps:
1. An entry's tlog-proof (tlog_proof.py) ends in the checkpoint that covers it and has
   the most witness cosignatures, the newest of those; with no cosigned checkpoint that
   covers it, the archive's latest signed checkpoint (its proof then has no cosignature
   and the entry is listed as not yet witnessed).
2. Candidates are the notes kept in `witnessed/<size>` (witness/witnessed.py), read
   forgivingly: a file that is not a note, not signed by the archive key, beyond the
   verified checkpoint, or whose root is not the verified tree's at that size is passed
   over, never an error. Nothing here decides what the archive is: it was verified first.
3. With witness keys given (config `witnesses:`, or `--witness-key`), a cosignature
   counts only if it verifies under one of them; lines by other keys, or that fail, are
   left out of the proof. With none given, every cosignature line is kept and counted,
   and each witness is listed by name and key id as "unverified: key not given".
4. Every proof is read back and checked (the log's signature, the inclusion of the
   entry's leaf hash) before it is handed out: the bundle certifies only what verifies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from proxy.access.tlog_proof import make_proof, parse_proof, prove
from proxy.archive.verify import VerifyReport
from proxy.witness.cosignature import CosignatureError, WitnessKey
from proxy.witness.signed import Malformed, Signed, read_note
from proxy.witness.witnessed import Witnessed

UNVERIFIED = "unverified: key not given"


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchor:
    """A signed checkpoint proofs can end in: its size, its note with the cosignatures
    kept, and the names of the witnesses those are by."""

    size: int
    note: bytes
    cosigners: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedWitness:
    """A witness as the bundle lists it (rule 3)."""

    name: str
    key_id: str  # hex
    key: str | None  # the verifier key, when one was given
    status: str  # "checked" or UNVERIFIED

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "key_id": self.key_id, "key": self.key, "status": self.status}


@dataclass(frozen=True, slots=True, kw_only=True)
class Proven:
    """One entry's tlog-proof, and who cosigned the checkpoint it ends in."""

    text: bytes
    size: int
    cosigners: tuple[str, ...]


class Anchors:
    """The checkpoints an export proves its entries under (rule 1)."""

    def __init__(self, report: VerifyReport, found: Sequence[Anchor],
                 witnesses: Sequence[ListedWitness]) -> None:  # fmt: skip
        self.report = report
        self.witnesses = tuple(witnesses)
        latest = Anchor(size=report.checkpoint.size, note=report.note, cosigners=())
        # Largest first; each one kept has more cosigners than every larger one, so the
        # best for an entry is the last that still covers it.
        chain: list[Anchor] = []
        for anchor in sorted([latest, *found], key=lambda a: (-a.size, -len(a.cosigners))):
            if not chain or len(anchor.cosigners) > len(chain[-1].cosigners):
                chain.append(anchor)
        self._chain = chain

    @property
    def covered(self) -> int:
        """Entries any proof can reach: those under the latest signed checkpoint."""
        return self.report.checkpoint.size

    def best(self, index: int) -> Anchor:
        """The checkpoint `index` is proven under (rule 1); index < covered."""
        found = self._chain[0]
        for anchor in self._chain:
            if anchor.size > index:
                found = anchor
        return found

    def prove(self, index: int, leaf: bytes) -> Proven:
        """The tlog-proof of entry `index` with leaf hash `leaf`, checked (rule 4);
        ValueError if it does not verify."""
        anchor = self.best(index)
        hashes = self.report.tree.inclusion_proof(index, anchor.size)
        text = make_proof(index=index, hashes=hashes, checkpoint=anchor.note)
        prove(parse_proof(text), leaf, self.report.verifier)
        return Proven(text=text, size=anchor.size, cosigners=anchor.cosigners)


def _kept(note: Signed, report: VerifyReport, keys: Sequence[WitnessKey]) -> Anchor | None:
    """The note as a candidate (rules 2 and 3), or None if it is not one."""
    log = report.verifier
    own = [s for s in note.signatures if s.name == log.name and s.key_id == log.key_id]
    if (
        note.origin != log.name
        or not 0 < note.size <= report.checkpoint.size
        or note.root != report.tree.root(note.size)
        or not note.signed_by([log])
    ):
        return None
    lines, cosigners = [own[0].line], []
    for signature in note.signatures:
        if signature in own or signature.line in lines:
            continue
        if not keys:
            lines.append(signature.line)
            cosigners.append(signature.name)
            continue
        for key in keys:
            with contextlib.suppress(CosignatureError):
                if key.check(signature.line, note.body) is not None:
                    lines.append(signature.line)
                    cosigners.append(key.name)
                    break
    text = note.body + "\n" + "".join(line + "\n" for line in lines)
    return Anchor(size=note.size, note=text.encode(), cosigners=tuple(dict.fromkeys(cosigners)))


def anchors(root: Path, report: VerifyReport, keys: Sequence[WitnessKey]) -> Anchors:
    """The archive's cosigned checkpoints in `witnessed/`, as candidates (rules 1-3)."""
    witnessed = Witnessed(root)
    try:
        sizes = sorted(
            (int(p.name) for p in witnessed.directory.iterdir() if p.name.isdigit()
             and p.name.isascii() and len(p.name) < 20),
            reverse=True,
        )  # fmt: skip
    except OSError:
        sizes = []
    found: list[Anchor] = []
    listed: dict[tuple[str, bytes], ListedWitness] = {}
    for size in sizes:
        if size > report.checkpoint.size:
            continue
        data = witnessed.note(size)
        try:
            note = read_note(data or b"")
        except Malformed:
            continue
        anchor = _kept(note, report, keys)
        if anchor is None or not anchor.cosigners:
            continue
        found.append(anchor)
        if not keys:
            for signature in read_note(anchor.note).signatures[1:]:
                listed.setdefault(
                    (signature.name, signature.key_id),
                    ListedWitness(name=signature.name, key_id=signature.key_id.hex(), key=None,
                                  status=UNVERIFIED),
                )  # fmt: skip
        if keys and len(anchor.cosigners) == len(keys):
            break  # every key cosigned: no smaller checkpoint can be better (rule 1)
    witnesses = [
        ListedWitness(name=k.name, key_id=k.key_id.hex(), key=k.encode(), status="checked")
        for k in keys
    ]
    return Anchors(report, found, witnesses or list(listed.values()))
