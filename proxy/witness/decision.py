"""What a witness answers an add-checkpoint request: the C2SP tlog-witness rules, pure.

Rules this module keeps:
1. Pure: the request's bytes, the trusted log keys and the latest checkpoint seen per
   origin in; a `Refusal` or a `Cosign` out. No clock, no disk, no key: the server
   signs, stores and answers.
2. The checks, in the spec's order: a request not in format is 400; an origin no log key
   is configured for is 404; a checkpoint no trusted key's signature verifies is 403; an
   old size above the checkpoint's size is 400; an old size other than the size last
   cosigned for that origin (0 if none) is 409 with that size; the same size with another
   root is 409 (a fork at that size); a proof that is not empty from size 0 or to the
   same size, or that does not prove the old tree a prefix of the new (RFC 6962 2.1.2),
   is 422. Anything else is cosigned, and becomes the latest checkpoint for its origin.
3. Refusal reasons are fixed phrases: they never echo the request.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.archive.merkle import verify_consistency
from proxy.archive.note import Verifier
from proxy.witness.request import AddCheckpoint, read_request
from proxy.witness.signed import Malformed, Signed, read_note


class Status(enum.IntEnum):
    """The HTTP statuses an add-checkpoint request can get."""

    COSIGNED = 200
    BAD_REQUEST = 400
    FORBIDDEN = 403
    UNKNOWN_LOG = 404
    CONFLICT = 409
    TOO_LARGE = 413
    INCONSISTENT = 422


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """The latest checkpoint a witness cosigned for one log."""

    size: int
    root: bytes
    note: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """No cosignature: the status, a fixed reason, and for a 409 the size we know."""

    status: Status
    reason: str
    known_size: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosign:
    """A consistent checkpoint: cosign `body`, then remember `seen` for `origin`."""

    origin: str
    body: str
    seen: Seen


def decide(
    data: bytes, logs: Mapping[str, Sequence[Verifier]], known: Mapping[str, Seen]
) -> Refusal | Cosign:
    """The answer to the add-checkpoint request `data` (rule 2)."""
    try:
        request = read_request(data)
        note = read_note(request.note)
    except Malformed as problem:
        return Refusal(status=Status.BAD_REQUEST, reason=str(problem))
    seen = known.get(note.origin)
    refusal = _admitted(request, note, logs.get(note.origin, ()), seen)
    refusal = refusal or _continues(request, note, seen)
    if refusal is not None:
        return refusal
    return Cosign(origin=note.origin, body=note.body,
                  seen=Seen(size=note.size, root=note.root, note=request.note))  # fmt: skip


def _admitted(
    request: AddCheckpoint, note: Signed, keys: Sequence[Verifier], seen: Seen | None
) -> Refusal | None:
    """404, 403, 400 or 409 (rule 2), or None: a signed checkpoint from the right size."""
    if not keys:
        return Refusal(status=Status.UNKNOWN_LOG, reason="no such log here")
    if not note.signed_by(keys):
        return Refusal(status=Status.FORBIDDEN, reason="not signed by the log's key")
    if request.old_size > note.size:
        return Refusal(status=Status.BAD_REQUEST, reason="the old size exceeds the checkpoint's")
    seen_size = seen.size if seen is not None else 0
    if request.old_size != seen_size:
        return Refusal(status=Status.CONFLICT, reason="not the size last cosigned",
                       known_size=seen_size)  # fmt: skip
    return None


def _continues(request: AddCheckpoint, note: Signed, seen: Seen | None) -> Refusal | None:
    """409 or 422 (rule 2), or None: the checkpoint extends the one last cosigned."""
    if seen is None or seen.size == 0:
        wrong = bool(request.proof)
    elif note.size == seen.size:
        if note.root != seen.root:
            return Refusal(status=Status.CONFLICT, reason="another tree at the size cosigned",
                           known_size=seen.size)  # fmt: skip
        wrong = bool(request.proof)
    else:
        wrong = not verify_consistency(seen.size, note.size, seen.root, note.root, request.proof)
    if wrong:
        return Refusal(status=Status.INCONSISTENT, reason="the consistency proof fails")
    return None
