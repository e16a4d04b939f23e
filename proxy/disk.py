"""Writing to a file descriptor: every byte, or an OSError."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` to `fd`: a write may take fewer bytes than asked (a nearly full
    disk, a pipe), and the rest must follow, not be dropped."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
