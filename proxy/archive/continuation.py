"""Checkpoints that left the server: is the archive now a continuation of one seen before?

A root user can roll the archive back (cut the log after an old checkpoint and copy that
checkpoint into the `checkpoint` file) or rewrite its history with the signing key; the
archive still verifies on its own. A checkpoint someone kept off the server (from an
alert, the portal's custody page, a contact's notes) catches both.

Rules this module keeps:
1. A kept checkpoint is a C2SP signed note (note.py). It is read as its holder would
   have kept it: surrounding blank space and CRLF line ends (mail, copy and paste) are
   put back to the exact form before the signature is checked; nothing else is
   forgiven. At most `MOST_BYTES`; anything else is `NotACheckpoint`.
2. It must carry a valid signature by the archive's key (or the key pinned with
   --key) and name this archive's origin; otherwise `NotAContinuation` says which.
3. The archive continues a checkpoint of size s and root r when its verified tree, cut
   at s, has root r. That is checked as RFC 9162 section 2.1.4.2 has it: the consistency
   proof from s to the archive's latest signed checkpoint (merkle.py) must verify, and
   the proof is returned so it can be shown. A shorter archive is a rollback; one with
   a different root at s is a fork (its history was rewritten).
4. Pure: bytes and a `VerifyReport` in, a proof or one clear reason out. No message
   gives a count of entries: the kept checkpoint's time names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.archive.merkle import EMPTY_ROOT, verify_consistency
from proxy.archive.note import Checkpoint, NoteError, Verifier, parse_checkpoint
from proxy.archive.verify import VerifyFailure, VerifyReport

MOST_BYTES = 16 * 1024  # a checkpoint note is a few hundred bytes
ROLLBACK, FORK = "rollback", "fork"


class NotACheckpoint(ValueError):
    """What was given is not a signed checkpoint note at all (bad input)."""


class NotAContinuation(VerifyFailure):
    """The archive does not continue a kept checkpoint; `kind` is ROLLBACK, FORK, or
    "signature" / "origin" for a checkpoint that is not this archive's."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    """A kept checkpoint: its exact signed note and what it says (signature not yet
    checked: `checked` does that against the archive's key)."""

    note: bytes
    origin: str


def kept(data: bytes) -> Kept:
    """The signed note in `data`, as its holder kept it (rule 1)."""
    if len(data) > MOST_BYTES:
        raise NotACheckpoint("too large to be a checkpoint")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NotACheckpoint("not a checkpoint (not UTF-8 text)") from None
    text = text.replace("\r\n", "\n").strip() + "\n"
    body, sep, signatures = text.rpartition("\n\n")
    if not sep or not signatures.startswith("\u2014 "):
        raise NotACheckpoint("not a signed checkpoint (no signature line after a blank line)")
    return Kept(note=text.encode(), origin=body.split("\n", 1)[0])


def checked(given: Kept, verifier: Verifier, origin: str) -> Checkpoint:
    """The checkpoint `given` says, if signed by `verifier` for `origin` (rule 2)."""
    if given.origin != origin:
        shown = "".join(c if c.isprintable() else "?" for c in given.origin[:80])
        raise NotAContinuation("origin", f"it is for another archive ({shown})")
    try:
        return parse_checkpoint(verifier.open(given.note))
    except NoteError as error:
        raise NotAContinuation(
            "signature", f"it is not signed by this archive's key ({error})"
        ) from None


def continues(seen: Checkpoint, report: VerifyReport) -> list[bytes]:
    """The RFC 9162 consistency proof from `seen` to the archive's latest signed
    checkpoint, if the archive continues `seen`; else `NotAContinuation` (rule 3)."""
    head = report.checkpoint
    if seen.size > head.size:
        raise NotAContinuation(
            ROLLBACK,
            "the archive is shorter than this checkpoint: entries were removed since it "
            "was signed (a rollback)",
        )
    if seen.size == 0:
        proof: list[bytes] = []
        consistent = seen.root == EMPTY_ROOT
    else:
        proof = report.tree.consistency_proof(seen.size, head.size)
        consistent = verify_consistency(seen.size, head.size, seen.root, head.root, proof)
    if not consistent:
        raise NotAContinuation(
            FORK,
            "the archive's history differs from this checkpoint's: entries it covers were "
            "changed or replaced (a fork)",
        )
    return proof
