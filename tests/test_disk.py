"""Files written durably, private ones private from their creation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.disk import create_private, replace_file


def test_a_replaced_file_has_its_mode_from_creation_whatever_a_crash_left(
    tmp_path: Path,
) -> None:
    """A temporary file a crash left behind (here world-readable) is not reused: the new
    file is 0600 and holds the new bytes; nothing is left beside it."""
    path = tmp_path / "state.json"
    leftover = tmp_path / "state.json.tmp"
    leftover.write_bytes(b"old")
    leftover.chmod(0o644)
    replace_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_private_file_is_created_0600_and_never_through_a_symlink(tmp_path: Path) -> None:
    """create_private makes a new 0600 file; a file or a symlink already there is refused,
    and the symlink's target is not created."""
    made = tmp_path / "bundle.zip"
    os.close(create_private(made))
    assert made.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        create_private(made)
    link, target = tmp_path / "link", tmp_path / "target"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        create_private(link)
    assert not target.exists()
