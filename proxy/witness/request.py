"""The add-checkpoint exchange of C2SP tlog-witness, as bytes: read and written.

Rules this module keeps:
1. A request body is "old <size>\n", at most `MOST_PROOF_LINES` base64 hash lines, a blank
   line, then the signed checkpoint note. `read_request` is total: any bytes give an
   `AddCheckpoint` or a `Malformed`, never another exception, and it reads at most
   `MOST_REQUEST_BYTES` (a larger body is refused before it is read: see server.py).
2. `format_request` writes exactly what `read_request` reads, and what any C2SP witness
   expects; round trips are tested.
3. A 200 response body is one or more note signature lines; `read_cosignatures` splits
   them, at most `MOST_RESPONSE_BYTES`, and a 409's body is one decimal size and a
   newline (`read_size`). Both are total too: a witness's reply is untrusted input.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from proxy.witness.signed import MOST_NOTE_BYTES, Malformed, decimal, hash_line

MOST_PROOF_LINES = 63
MOST_REQUEST_BYTES = MOST_NOTE_BYTES + 64 * (MOST_PROOF_LINES + 1)
MOST_RESPONSE_BYTES = 16 * 1024
SIZE_TYPE = "text/x.tlog.size"


@dataclass(frozen=True, slots=True, kw_only=True)
class AddCheckpoint:
    """One add-checkpoint request: the size the client thinks we know, the proof, the note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


def read_request(data: bytes) -> AddCheckpoint:
    """The request in `data` (rule 1); else Malformed."""
    if len(data) > MOST_REQUEST_BYTES:
        raise Malformed("the request is too large")
    first, newline, rest = data.partition(b"\n")
    if not newline or not first.startswith(b"old "):
        raise Malformed("a request begins with an old size line")
    old_size = decimal(first[4:].decode("ascii", "replace"))
    proof: list[bytes] = []
    while True:
        line, newline, rest = rest.partition(b"\n")
        if not newline:
            raise Malformed("a request has a blank line before its checkpoint")
        if not line:
            break
        if len(proof) == MOST_PROOF_LINES:
            raise Malformed("a consistency proof has at most 63 lines")
        proof.append(hash_line(line.decode("ascii", "replace")))
    return AddCheckpoint(old_size=old_size, proof=tuple(proof), note=rest)


def format_request(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The request body for `note`, from `old_size`, with its consistency `proof` (rule 2)."""
    lines = [f"old {old_size}\n".encode()]
    lines += [base64.b64encode(node) + b"\n" for node in proof]
    return b"".join(lines) + b"\n" + note


def read_cosignatures(data: bytes) -> tuple[str, ...]:
    """The signature lines of a 200 response (rule 3); else Malformed."""
    if len(data) > MOST_RESPONSE_BYTES:
        raise Malformed("the response is too large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("the response is not UTF-8") from None
    if not text.endswith("\n") or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise Malformed("the response is not signature lines")
    return tuple(text[:-1].split("\n"))


def read_size(data: bytes) -> int:
    """The size in a 409 response's body (rule 3); else Malformed."""
    if len(data) > 32 or not data.endswith(b"\n"):
        raise Malformed("the conflict response is not a size")
    return decimal(data[:-1].decode("ascii", "replace"))
