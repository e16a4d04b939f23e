"""The alerts' sealed state file (proxy/alerts/vault.py)."""

from __future__ import annotations

import os
from pathlib import Path

from proxy.alerts.vault import BLOCK, FILE, Vault

KEY = b"\x01" * 32
CANARY = "Mark Smith +15550100199 I know where you live"


def test_round_trip_in_whole_blocks(tmp_path: Path) -> None:
    """A saved state reads back after reopening; the file is two 64 KiB slots, the same
    size empty or not, and holds none of the state's words (rules 1-2)."""
    vault, state = Vault.open(tmp_path, KEY)
    assert state == {}
    size = (tmp_path / FILE).stat().st_size
    assert size == 2 * BLOCK
    vault.save({"words": CANARY, "n": 1})
    vault.save({"words": CANARY, "n": 2})
    vault.close()
    assert (tmp_path / FILE).stat().st_size == size
    raw = (tmp_path / FILE).read_bytes()
    assert b"Mark" not in raw
    assert b"15550100199" not in raw
    assert b"where" not in raw
    again, state = Vault.open(tmp_path, KEY)
    assert state == {"words": CANARY, "n": 2}
    again.close()


def test_wrong_key_reads_nothing(tmp_path: Path) -> None:
    """Without the archive's key the state does not open (rule 1)."""
    vault, _ = Vault.open(tmp_path, KEY)
    vault.save({"n": 1})
    vault.close()
    other, state = Vault.open(tmp_path, b"\x02" * 32)
    other.close()
    assert state == {}


def test_a_torn_write_keeps_the_previous_state(tmp_path: Path) -> None:
    """A save that tore half-way fails its tag; the other slot's older state is read (rule 3)."""
    vault, _ = Vault.open(tmp_path, KEY)
    vault.save({"n": 1})  # slot 0
    vault.save({"n": 2})  # slot 1
    vault.close()
    with (tmp_path / FILE).open("r+b") as file:  # slot 1 torn
        file.seek(BLOCK + 100)
        file.write(os.urandom(1000))
    again, state = Vault.open(tmp_path, KEY)
    assert state == {"n": 1}
    again.save({"n": 3})  # into slot 1 again, the older one
    again.close()
    assert Vault.open(tmp_path, KEY)[1] == {"n": 3}


def test_growing_past_a_slot(tmp_path: Path) -> None:
    """A state larger than a slot grows the file by whole blocks, both slots written; it
    reads back, and a later smaller save still wins by its counter (rule 3)."""
    vault, _ = Vault.open(tmp_path, KEY)
    vault.save({"n": 1})
    big = {"n": 2, "pad": "x" * (BLOCK + 10)}
    vault.save(big)
    vault.close()
    size = (tmp_path / FILE).stat().st_size
    assert size % (2 * BLOCK) == 0
    assert size > 2 * BLOCK
    again, state = Vault.open(tmp_path, KEY)
    assert state == big
    again.save({"n": 3})
    again.close()
    assert Vault.open(tmp_path, KEY)[1] == {"n": 3}


def test_times_follow_the_checkpoints(tmp_path: Path) -> None:
    """After a save the modification time is the latest checkpoint's (rule 4)."""
    vault, _ = Vault.open(tmp_path, KEY)
    signed_at = 1_700_000_400 * 1_000_000_000
    vault.touch(signed_at)
    vault.save({"n": 1})
    assert (tmp_path / FILE).stat().st_mtime_ns == signed_at
    vault.close()
