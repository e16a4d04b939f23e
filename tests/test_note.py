"""C2SP signed notes and checkpoints: format, key ids, and signature checking."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from proxy.archive.note import Checkpoint, NoteError, Signer, Verifier, parse_checkpoint

ORIGIN = "nocontact.archive/0123456789abcdef"


def test_checkpoint_round_trip_in_c2sp_form() -> None:
    """A signed checkpoint reads back exactly and has the C2SP text layout."""
    signer = Signer.generate(ORIGIN)
    when = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    checkpoint = Checkpoint(origin=ORIGIN, size=42, root=bytes(range(32)), time=when)
    note = signer.sign(checkpoint.body())
    text = note.decode()
    lines = text.split("\n")
    assert lines[:3] == [ORIGIN, "42", base64.b64encode(bytes(range(32))).decode()]
    assert lines[3] == "time 2026-03-01T12:00:00.123456Z"
    assert lines[4] == ""
    assert lines[5].startswith(f"\u2014 {ORIGIN} ")
    assert parse_checkpoint(signer.verifier.open(note)) == checkpoint


def test_key_id_is_the_c2sp_hash() -> None:
    """The key id is SHA-256(name, newline, 0x01, public key)[:4], as C2SP signed-note says."""
    signer = Signer.generate(ORIGIN)
    verifier = signer.verifier
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + verifier.public).digest()[:4]
    assert verifier.key_id == expected
    assert Verifier.decode(verifier.encode()) == verifier
    assert verifier.encode().startswith(f"{ORIGIN}+{expected.hex()}+")


@pytest.mark.parametrize("position", [0, 10, 40, 60, -10])
def test_any_change_breaks_the_signature(position: int) -> None:
    """Changing any byte of a signed note makes it fail to open."""
    signer = Signer.generate(ORIGIN)
    note = bytearray(
        signer.sign(
            Checkpoint(origin=ORIGIN, size=7, root=bytes(32), time=datetime.now(UTC)).body()
        )
    )
    note[position] ^= 0x01
    with pytest.raises(NoteError):
        signer.verifier.open(bytes(note))


def test_another_key_does_not_verify() -> None:
    """A note signed by one key does not open with another key of the same name."""
    note = Signer.generate(ORIGIN).sign("a\n1\n" + base64.b64encode(bytes(32)).decode() + "\n")
    with pytest.raises(NoteError):
        Signer.generate(ORIGIN).verifier.open(note)


@pytest.mark.parametrize(
    "text", ["", "x", "name+zz+AA==", "name+00000000+AW/FMQT3", "na me+00+AA=="]
)
def test_malformed_verifier_keys_are_rejected(text: str) -> None:
    """A verifier key string that is not name+keyid+base64(Ed25519) is refused."""
    with pytest.raises(NoteError):
        Verifier.decode(text)


def test_pem_round_trip() -> None:
    """The signing key survives being written to and read from PEM."""
    signer = Signer.generate(ORIGIN)
    again = Signer.from_pem(ORIGIN, signer.to_pem())
    assert again.verifier == signer.verifier
