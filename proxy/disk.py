"""Writing files: every byte, or an OSError; private files private from their creation."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of `data` to `fd`: a write may take fewer bytes than asked (a nearly full
    disk, a pipe), and the rest must follow, not be dropped."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def create_private(path: str | os.PathLike[str]) -> int:
    """A new file at `path`, mode 0600 from its creation (never chmod'ed afterwards), as a
    descriptor open for writing. FileExistsError if anything is there, a symlink included:
    it is never followed, nor is a file already there written over."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)
