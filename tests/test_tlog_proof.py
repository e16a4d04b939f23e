"""C2SP tlog-proof: made, read back, read totally, and checked against the log's key."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.access.tlog_proof import (
    HEADER,
    MAX_HASHES,
    TlogProof,
    TlogProofError,
    make_proof,
    parse_proof,
    prove,
)
from proxy.archive.merkle import leaf_hash
from proxy.archive.note import Signer
from proxy.witness.cosignature import Cosigner
from tests.witness_helpers import ORIGIN, MemoryLog

SIGNER = Signer.generate(ORIGIN)
WITNESS = Cosigner.generate("advocacy.example/witness")


def _log(size: int = 7) -> MemoryLog:
    log = MemoryLog(SIGNER)
    log.grow(size)
    return log


def _cosigned(log: MemoryLog) -> bytes:
    """The log's note with the witness's cosignature line appended, as witnessed/ keeps it."""
    return log.note() + WITNESS.cosign(log.body(), 1_800_000_000).encode()


def _proof(log: MemoryLog, index: int, *, note: bytes | None = None) -> bytes:
    return make_proof(index=index, hashes=log.tree.inclusion_proof(index),
                      checkpoint=note or log.note())  # fmt: skip


def test_the_text_is_the_published_layout() -> None:
    """Header, extra, index, one base64 hash a line, a blank line, the checkpoint verbatim."""
    log = _log()
    note = _cosigned(log)
    hashes = log.tree.inclusion_proof(5)
    text = make_proof(index=5, hashes=hashes, checkpoint=note, extra=b"context")
    lines = text.split(b"\n")
    assert lines[0] == HEADER.encode() == b"c2sp.org/tlog-proof@v1"
    assert lines[1] == b"extra " + base64.b64encode(b"context")
    assert lines[2] == b"index 5"
    assert lines[3 : 3 + len(hashes)] == [base64.b64encode(h) for h in hashes]
    assert lines[3 + len(hashes)] == b""
    assert text.endswith(b"\n\n" + note)
    without = make_proof(index=5, hashes=hashes, checkpoint=note)
    assert without.split(b"\n")[1] == b"index 5"


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), data=st.data(), extra=st.none() | st.binary(max_size=40))
def test_every_proof_reads_back_as_made_and_proves_its_leaf(
    size: int, data: st.DataObject, extra: bytes | None
) -> None:
    """Any entry of any tree: the text reads back to the same values and proves the leaf."""
    log = MemoryLog(SIGNER)
    log.grow(size)
    index = data.draw(st.integers(0, size - 1))
    note = log.note()
    text = make_proof(index=index, hashes=log.tree.inclusion_proof(index), checkpoint=note,
                      extra=extra)  # fmt: skip
    proof = parse_proof(text)
    assert proof == TlogProof(index=index, hashes=tuple(log.tree.inclusion_proof(index)),
                              checkpoint=note, extra=extra)  # fmt: skip
    assert proof.encode() == text
    head = prove(proof, log.tree.leaf(index), SIGNER.verifier)
    assert (head.size, head.root) == (size, log.tree.root())


def test_a_cosigned_checkpoint_is_carried_verbatim() -> None:
    """The cosignature lines stay in the checkpoint, and the log's signature still opens it."""
    log = _log()
    note = _cosigned(log)
    proof = parse_proof(_proof(log, 2, note=note))
    assert proof.checkpoint == note
    assert "— advocacy.example/witness " in proof.checkpoint.decode()
    assert prove(proof, log.tree.leaf(2), SIGNER.verifier).size == 7


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p, log: p.replace(b"index 3", b"index 4"), "not proven"),
        (lambda p, log: _swap_first_hash(p), "not proven"),
        (
            lambda p, log: p.replace(log.note().split(b"\n")[2], base64.b64encode(bytes(32))),
            "does not verify",
        ),
    ],
    ids=["another index", "an altered hash", "another root"],
)
def test_a_changed_proof_does_not_prove(change: object, reason: str) -> None:
    """Another index, an altered hash or a root the log did not sign: TlogProofError."""
    log = _log()
    text = change(_proof(log, 3), log)  # type: ignore[operator]
    with pytest.raises(TlogProofError, match=reason):
        prove(parse_proof(text), log.tree.leaf(3), SIGNER.verifier)


def _swap_first_hash(text: bytes) -> bytes:
    lines = text.split(b"\n")
    lines[2] = base64.b64encode(bytes(32))
    return b"\n".join(lines)


def test_another_logs_key_or_another_leaf_is_refused() -> None:
    """A proof is checked with the archive's key only, for the leaf the caller recomputed."""
    log = _log()
    proof = parse_proof(_proof(log, 1))
    with pytest.raises(TlogProofError, match="does not verify under the log key"):
        prove(proof, log.tree.leaf(1), Signer.generate(ORIGIN).verifier)
    with pytest.raises(TlogProofError, match="not proven"):
        prove(proof, leaf_hash(b"another message"), SIGNER.verifier)


GOOD = _proof(_log(), 3)
HASH = base64.b64encode(bytes(32))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no empty line"),
        (GOOD.replace(b"\n\n", b"\n"), "no empty line"),
        (GOOD.replace(b"@v1", b"@v2", 1), "first line"),
        (GOOD.replace(b"index 3", b"index 03"), "index line"),
        (GOOD.replace(b"index 3", b"index -3"), "index line"),
        (GOOD.replace(b"index 3", b"index \xd9\xa3"), "index line"),  # an Arabic-Indic 3
        (GOOD.replace(b"index 3", b"index 99999999999999999999"), "index line"),
        (GOOD.replace(b"index 3", b"index 9223372036854775808"), "above 2\\*\\*63"),
        (GOOD.replace(b"index 3\n", b""), "index line"),
        (HEADER.encode() + b"\n\nlog\n", "no index line"),
        (GOOD.replace(b"index 3", b"extra !!\nindex 3"), "extra data is not base64"),
        (GOOD.replace(b"index 3", b"index 3\n" + HASH[:-2] + b"B="), "not canonical"),
        (GOOD.replace(b"index 3", b"index 3\n" + base64.b64encode(bytes(31))), "not a SHA"),
        (
            GOOD.replace(b"index 3", b"index 3\n" + b"\n".join([HASH] * (MAX_HASHES + 1))),
            "more than 64",
        ),
        (GOOD[: GOOD.index(b"\n\n") + 2], "checkpoint is empty"),
        (GOOD[:-1], "does not end in a newline"),
        (GOOD + b"x" * (1 << 20), "at most 1 MiB"),
    ],
)
def test_malformed_proofs_are_one_typed_error(data: bytes, reason: str) -> None:
    """Each way a proof can be out of format is a TlogProofError saying which."""
    with pytest.raises(TlogProofError, match=reason):
        parse_proof(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda b, n: GOOD[:n] + b, st.binary(max_size=60),
                                           st.integers(0, len(GOOD))))  # fmt: skip
def test_reading_is_total(data: bytes) -> None:
    """Any bytes: a proof or TlogProofError, never another exception."""
    try:
        proof = parse_proof(data)
    except TlogProofError:
        return
    assert proof.encode() == data  # what reads is exactly what it says


@pytest.mark.parametrize(
    "values",
    [
        {"index": -1, "hashes": [], "checkpoint": b"note\n"},
        {"index": 1 << 63, "hashes": [], "checkpoint": b"note\n"},
        {"index": 0, "hashes": [bytes(31)], "checkpoint": b"note\n"},
        {"index": 0, "hashes": [bytes(32)] * 65, "checkpoint": b"note\n"},
        {"index": 0, "hashes": [], "checkpoint": b"note"},
        {"index": 0, "hashes": [], "checkpoint": b"\nnote\n"},
    ],
)
def test_values_a_proof_cannot_carry_are_refused(values: dict[str, object]) -> None:
    """Making a proof checks its values, so no proof is written that would not read back."""
    with pytest.raises(TlogProofError):
        make_proof(**values)  # type: ignore[arg-type]
