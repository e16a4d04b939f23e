"""The witness's pure core: cosignature/v1, the add-checkpoint bytes, and the decision."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.archive.note import Checkpoint, Signer
from proxy.witness.cosignature import CosignatureError, Cosigner, WitnessKey, signed_message
from proxy.witness.decision import Cosign, Refusal, Seen, Status, decide
from proxy.witness.request import (
    AddCheckpoint,
    format_request,
    read_cosignatures,
    read_request,
    read_size,
)
from proxy.witness.signed import Malformed, read_note
from proxy.witness.state import STATE_FILE, StateError, WitnessState
from proxy.witness.witnessed import Witnessed
from tests.witness_helpers import NOW, ORIGIN, MemoryLog

SIGNER = Signer.generate(ORIGIN)
KEYS = {ORIGIN: (SIGNER.verifier,)}
WITNESS = Cosigner.generate("advocacy.example/witness")


def _log(size: int, fork: bytes = b"") -> MemoryLog:
    log = MemoryLog(SIGNER, fork=fork)
    log.grow(size)
    return log


def _seen(log: MemoryLog, size: int) -> dict[str, Seen]:
    return {ORIGIN: Seen(size=size, root=log.tree.root(size), note=log.note(size))}


# -- cosignature/v1 -----------------------------------------------------------------------


def test_a_cosignature_is_the_published_format() -> None:
    """Key id with type 0x04, then an 8-byte big-endian time, then Ed25519 over the message."""
    body = _log(3).body()
    line = WITNESS.cosign(body, 1_700_000_000)
    name, encoded = line.removeprefix("\u2014 ").rstrip("\n").split(" ")
    blob = base64.b64decode(encoded)
    public = WITNESS.key.public
    expected_id = hashlib.sha256(name.encode() + b"\n\x04" + public).digest()[:4]
    assert name == "advocacy.example/witness"
    assert blob[:4] == expected_id
    assert int.from_bytes(blob[4:12], "big") == 1_700_000_000
    assert signed_message(body, 1_700_000_000).startswith(b"cosignature/v1\ntime 1700000000\n")
    checked = WITNESS.key.check(line.rstrip("\n"), body)
    assert checked is not None
    assert checked.timestamp == 1_700_000_000


def test_a_cosignature_checks_only_for_its_own_body_and_key() -> None:
    """Another body fails; another key's line is ignored; a bad line is a typed error."""
    log = _log(3)
    line = WITNESS.cosign(log.body(), 5).rstrip("\n")
    log.grow(4)
    with pytest.raises(CosignatureError):
        WITNESS.key.check(line, log.body())
    assert Cosigner.generate("other.example/w").key.check(line, log.body()) is None
    with pytest.raises(CosignatureError):
        WITNESS.key.check("not a signature line", log.body())


def test_a_witness_key_round_trips_and_refuses_log_keys() -> None:
    """`keygen`'s text decodes to the same key; an archive's 0x01 key is not a witness key."""
    assert WitnessKey.decode(WITNESS.key.encode()) == WITNESS.key
    with pytest.raises(CosignatureError):
        WitnessKey.decode(SIGNER.verifier.encode())
    with pytest.raises(CosignatureError):
        WitnessKey.decode("no plus signs here")


# -- the request bytes --------------------------------------------------------------------


def test_a_request_round_trips() -> None:
    """What the client writes is what the witness reads: old size, proof, the note."""
    log = _log(7)
    proof = log.tree.consistency_proof(3, 7)
    data = format_request(3, proof, log.note())
    assert read_request(data) == AddCheckpoint(old_size=3, proof=tuple(proof), note=log.note())
    assert data.startswith(b"old 3\n")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"old\n\n",
        b"old 01\n\n",
        b"old -1\n\n",
        b"old 99999999999999999999\n\n",
        b"old 1\nnot base64!\n\n",
        b"old 1\n" + base64.b64encode(b"short") + b"\n\n",
        b"old 1\n" + b"".join(base64.b64encode(bytes(32)) + b"\n" for _ in range(64)) + b"\n",
        b"old 1\n",
    ],
)
def test_a_request_not_in_format_is_malformed(data: bytes) -> None:
    """Each shape the spec forbids is one `Malformed`, never another exception."""
    with pytest.raises(Malformed):
        read_request(data)


def test_a_note_not_in_format_is_malformed() -> None:
    """Control characters, no signature block, a bad size line: each is `Malformed`."""
    note = _log(2).note()
    for bad in (note.replace(b"\n2\n", b"\n02\n"), note.replace(b"\n\n", b"\n"),
                b"\x01" + note, note[:-1], b"\xff" + note):  # fmt: skip
        with pytest.raises(Malformed):
            read_note(bad)
    assert read_note(note).size == 2


def test_response_bodies_are_read_strictly() -> None:
    """A 409's size and a 200's lines; anything else is `Malformed`."""
    assert read_size(b"42\n") == 42
    assert read_cosignatures(b"\xe2\x80\x94 a b\n") == ("\u2014 a b",)
    for bad in (b"42", b"x\n", b"0042\n"):
        with pytest.raises(Malformed):
            read_size(bad)
    with pytest.raises(Malformed):
        read_cosignatures(b"no newline")


# -- the decision -------------------------------------------------------------------------


def test_the_first_checkpoint_is_cosigned_and_remembered() -> None:
    """From old size 0 with no proof, a signed checkpoint is cosigned."""
    log = _log(5)
    answer = decide(log.request(0), KEYS, {})
    assert isinstance(answer, Cosign)
    assert answer.seen == Seen(size=5, root=log.tree.root(), note=log.note())


def test_a_consistent_larger_checkpoint_is_cosigned() -> None:
    """From the size last cosigned, with the RFC 6962 proof, a larger tree is cosigned."""
    log = _log(5)
    known = _seen(log, 5)
    log.grow(12)
    assert isinstance(decide(log.request(5), KEYS, known), Cosign)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("unknown origin", Status.UNKNOWN_LOG),
        ("other key", Status.FORBIDDEN),
        ("old size above", Status.BAD_REQUEST),
        ("wrong old size", Status.CONFLICT),
        ("fork", Status.INCONSISTENT),
        ("fork at the same size", Status.CONFLICT),
        ("proof from zero", Status.INCONSISTENT),
        ("garbage", Status.BAD_REQUEST),
    ],
)
def test_each_refusal_has_the_spec_s_status(case: str, status: Status) -> None:
    """Each of tlog-witness's refusals, from the table of cases."""
    log = _log(5)
    known = _seen(log, 5)
    log.grow(9)
    stranger = MemoryLog(Signer.generate(ORIGIN))
    stranger.grow(9)
    forked = _log(9, fork=b"forked ")
    data = {
        "unknown origin": MemoryLog(Signer.generate("elsewhere.example/log")).request(0),
        "other key": stranger.request(5),
        "old size above": format_request(10, [], log.note()),
        "wrong old size": log.request(3),
        "fork": forked.request(5),
        "fork at the same size": format_request(5, [], forked.note(5)),
        "proof from zero": format_request(0, [bytes(32)], log.note()),
        "garbage": b"\x00\xff",
    }[case]
    answer = decide(data, KEYS, {} if case == "proof from zero" else known)
    assert isinstance(answer, Refusal)
    assert answer.status == status
    if status == Status.CONFLICT:
        assert answer.known_size == 5


def test_the_same_checkpoint_again_is_cosigned_again() -> None:
    """The same tree at the size last cosigned (a later checkpoint time) is cosigned."""
    log = _log(5)
    assert isinstance(decide(log.request(5), KEYS, _seen(log, 5)), Cosign)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_get_a_typed_answer(data: bytes) -> None:
    """Whatever the body, `decide` returns a Refusal (never a traceback)."""
    assert isinstance(decide(data, KEYS, {}), Refusal)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_mangled_request_gets_a_typed_answer(data: st.DataObject) -> None:
    """A real request with bytes flipped, cut or inserted still gets a typed answer."""
    log = _log(6)
    known = _seen(log, 3)
    request = bytearray(log.request(3))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(request) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            request[where] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del request[where]
        else:
            request.insert(where, data.draw(st.integers(0, 255)))
    answer = decide(bytes(request), KEYS, known)
    assert isinstance(answer, Refusal | Cosign)


# -- the state ----------------------------------------------------------------------------


def test_the_state_survives_reopening_and_is_private(tmp_path: Path) -> None:
    """What `remember` kept is read back by a new `open`, from a 0600 file."""
    log = _log(4)
    state = WitnessState.open(tmp_path / "state")
    state.remember(ORIGIN, _seen(log, 4)[ORIGIN])
    assert WitnessState.open(tmp_path / "state").known == _seen(log, 4)
    assert (tmp_path / "state" / STATE_FILE).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("text", ["", "{}", "[]", '{"format": "x"}', "\xff", '{"format": '
                                  '"nocontact-witness-state", "version": 1, "logs": '
                                  '{"o": {"size": -1, "root": "", "note": ""}}}'])  # fmt: skip
def test_a_damaged_state_file_is_refused(tmp_path: Path, text: str) -> None:
    """A witness that forgot would cosign a fork: a bad state file is one clear error."""
    (tmp_path / STATE_FILE).write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(StateError, match="not a witness state file"):
        WitnessState.open(tmp_path)


# -- what the daemon keeps ----------------------------------------------------------------


def test_witnessed_files_gather_cosignatures_per_note(tmp_path: Path) -> None:
    """Two witnesses' lines on one note are kept together; a newer note at that size
    replaces the older with its own lines; the acknowledged sizes read back."""
    log = _log(4)
    other = Cosigner.generate("friend.example/witness")
    store = Witnessed(tmp_path)
    note = log.note()
    store.keep(4, note, [WITNESS.cosign(log.body(), 1)])
    store.keep(4, note, [other.cosign(log.body(), 2)])
    store.keep(4, note, [other.cosign(log.body(), 2)])
    kept = store.note(4)
    assert kept is not None
    assert kept.startswith(note)
    signed = read_note(kept)
    assert {s.name for s in signed.signatures} == {ORIGIN, WITNESS.name, other.name}
    assert len(signed.signatures) == 3
    head = Checkpoint(origin=ORIGIN, size=4, root=log.tree.root(), time=NOW + timedelta(minutes=10))
    newer = SIGNER.sign(head.body())
    store.keep(4, newer, [WITNESS.cosign(head.body(), 3)])
    replaced = store.note(4)
    assert replaced is not None
    assert read_note(replaced).body == head.body()
    assert [s.name for s in read_note(replaced).signatures] == [ORIGIN, WITNESS.name]
    store.acknowledge({WITNESS.key.encode(): 4})
    assert store.acknowledged() == {WITNESS.key.encode(): 4}
    (tmp_path / "witnessed" / "acknowledged.json").write_text("[not a mapping")
    assert store.acknowledged() == {}
