"""Writing files durably: the one place that writes, fsyncs, replaces and creates them.

Rules this module keeps:
1. A write writes every byte, or raises OSError (`write_all`).
2. A file is given its mode at creation, never chmod'ed afterwards: between the two, a
   file meant to be private would be readable by others (`create_private`, and the
   `mode` of `replace_file`, whose temporary file is made anew each time).
3. A replacement is atomic and durable: the new content fsynced, renamed over the old,
   and the directory fsynced (`replace_file`, `fsync_directory`).
"""

from __future__ import annotations

import os
from pathlib import Path


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


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new name in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Atomically and durably replace `path` with `data`, the file given `mode` at its
    creation (rule 2: a temporary file left by a crash is removed, not reused with its
    mode)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, path)
    fsync_directory(path.parent)
