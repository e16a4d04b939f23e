"""The witness's signing key on disk: made once, mode 0600, read strictly.

Rules this module keeps:
1. Absent, the key is generated and written to a file made 0600 at creation
   (proxy.disk.create_private), fsynced with its directory; an existing file is never
   written over.
2. A key file that its group or others may read is refused with one line: whoever reads
   it can cosign as this witness.
3. Every failure is a `KeyFileError`, one line naming the file, never the key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from proxy.disk import create_private, fsync_directory, write_all
from proxy.witness.cosignature import CosignatureError, Cosigner

_MOST_BYTES = 16 * 1024


class KeyFileError(ValueError):
    """The witness key file cannot be made or used; one line says why."""


def cosigner(path: Path, name: str) -> Cosigner:
    """The witness key at `path`, made there first if absent (rule 1)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = create_private(path)
    except FileExistsError:
        return _read(path, name)
    except OSError as error:
        raise KeyFileError(f"cannot make the witness key {path}: {error.strerror}") from None
    made = Cosigner.generate(name)
    try:
        try:
            write_all(fd, made.to_pem())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(path.parent)
    except OSError as error:
        raise KeyFileError(f"cannot write the witness key {path}: {error.strerror}") from None
    return made


def _read(path: Path, name: str) -> Cosigner:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise KeyFileError(f"cannot read the witness key {path}: {error.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"the witness key {path} is not a file")
        if mode & 0o077:
            raise KeyFileError(
                f"the witness key {path} is readable by others (mode {stat.S_IMODE(mode):o}): "
                "chmod 600 it"
            )
        data = os.read(fd, _MOST_BYTES + 1)
    except OSError as error:
        raise KeyFileError(f"cannot read the witness key {path}: {error.strerror}") from None
    finally:
        os.close(fd)
    try:
        return Cosigner.from_pem(name, data)
    except CosignatureError as error:
        raise KeyFileError(f"the witness key {path}: {error}") from None
