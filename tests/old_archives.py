"""Archives of the formats before version 3, for the tests that show they stay as they are.

Two ways to have one:
1. `copy_version_2` copies `tests/data/archive-v2`, an archive the version 2 writer made
   (nocontact at commit e6cd2a2: `ArchiveLog.open` with 16 KiB segments, two sealed
   entries and checkpoints, closed). Its bytes are exactly what that writer wrote; its
   `signing.key` is a throwaway made for this fixture and signs nothing else.
2. `created_as(version)` makes every archive created inside it as that version (with
   its leaf rule), as nocontact did when that version was current; opening it afterwards
   is the current code's ordinary path.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from proxy.archive import layout

VERSION_2 = Path(__file__).with_name("data") / "archive-v2"


def copy_version_2(target: Path) -> Path:
    """A private copy of the version 2 fixture at `target` (0700/0600, as the writer made it)."""
    shutil.copytree(VERSION_2, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    return target


@contextmanager
def created_as(version: int) -> Iterator[None]:
    """Archives created inside are made as format `version` (rule 2)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layout, "VERSION", version)
        yield
