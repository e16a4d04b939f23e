"""The alerts' state on disk, in a form the survivor cannot read: `<archive>/alerts`.

What the alerts keep (each person's history of held items, the outbox, the counts since the
last digest, the open urgent alerts) says how many items were held, when and from whom:
exactly what she must never see. So it is kept only like this.

Rules this module keeps:
1. Encrypted: the state is a JSON document sealed with ChaCha20-Poly1305 under a key
   derived from the archive's signing key (`ArchiveLog.derive_key`, as archive/once.py's
   marks are), which only the daemon holds. Without it the file is noise; with a wrong key
   or a torn write, a slot fails its tag and is not read.
2. Whole blocks: the file is two *slots* of the same size, a multiple of `BLOCK` (64 KiB),
   and each slot holds the whole state padded with zeros to the slot's size before it is
   sealed. Its size says nothing but "the state fits in N blocks"; it is made at the
   service's first start, so its existence says only that alerts are configured.
3. Crash-safe without a rename (a rename would date the write by the archive directory's
   own times): a save writes the slot not holding the newest state, in place, and
   fdatasyncs it. The newest valid slot (by the counter sealed inside it) is the state.
   When the state outgrows a slot, the file grows to two larger slots (zeros made whole
   in advance) and both are written, the second first; opening tries the first slot at
   every block size up to half the file, so a crash mid-growth loses nothing.
4. Times follow the checkpoints, as the marks' do: after every write the modification
   time is set back to the latest checkpoint's (`touch`), and at every checkpoint the file
   is touched, so its change time moves at the ticks as the log's does.
5. Blocking IO: callers run `open`, `save` and `touch` off the event loop.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

FILE = "alerts"
BLOCK = 64 << 10
PURPOSE = b"nocontact alerts state v1"
_NONCE = 12
_TAG = 16
_AAD = b"nocontact alerts state"


class Vault:
    """The alerts' sealed state file (rules 1-5)."""

    def __init__(self, path: Path, fd: int, cipher: ChaCha20Poly1305, slot: int, *,
                 newest: int, counter: int) -> None:  # fmt: skip
        self._path = path
        self._fd = fd
        self._cipher = cipher
        self._slot = slot  # bytes per slot, a multiple of BLOCK
        self._newest = newest  # which slot holds the newest state (0 or 1)
        self._counter = counter  # the newest state's counter
        self._signed_at = 0  # the latest checkpoint's time, ns (rule 4)

    @classmethod
    def open(cls, root: Path, key: bytes) -> tuple[Vault, dict[str, Any]]:
        """The vault at `root` (made if missing), and the newest state in it ({} if none)."""
        path = root / FILE
        cipher = ChaCha20Poly1305(key[:32])
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size < 2 * BLOCK or size % (2 * BLOCK):
                os.ftruncate(fd, 0)
                os.posix_fallocate(fd, 0, 2 * BLOCK)
                os.fdatasync(fd)
                size = 2 * BLOCK
            found = _newest(fd, cipher, size)
        except BaseException:
            os.close(fd)
            raise
        slot = size // 2
        if found is None:
            return cls(path, fd, cipher, slot, newest=1, counter=0), {}
        which, counter, state = found
        return cls(path, fd, cipher, slot, newest=which, counter=counter), state

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` durably into the older slot (rule 3), growing the file if needed."""
        plain = json.dumps(
            {"counter": self._counter + 1, "state": state}, separators=(",", ":")
        ).encode()
        need = len(plain) + _NONCE + _TAG
        if need > self._slot:
            self._grow(need)
            sealed = self._seal(plain, self._slot)
            self._write(1, sealed)
            self._write(0, sealed)
            self._newest = 1
        else:
            target = 1 - self._newest
            self._write(target, self._seal(plain, self._slot))
            self._newest = target
        self._counter += 1
        os.utime(self._fd, ns=(self._signed_at, self._signed_at))

    def _seal(self, plain: bytes, slot: int) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        padded = plain + bytes(slot - _NONCE - _TAG - len(plain))
        return nonce + self._cipher.encrypt(nonce, padded, _AAD)

    def _grow(self, need: int) -> None:
        slot = -(-need // BLOCK) * BLOCK
        os.posix_fallocate(self._fd, 0, 2 * slot)  # zeros made whole first (rule 3)
        self._slot = slot

    def _write(self, which: int, sealed: bytes) -> None:
        offset, written = which * self._slot, 0
        while written < len(sealed):
            written += os.pwrite(self._fd, sealed[written:], offset + written)
        os.fdatasync(self._fd)

    def touch(self, signed_at: int) -> None:
        """A checkpoint was signed at `signed_at` (ns): the file's times follow (rule 4)."""
        self._signed_at = signed_at
        os.utime(self._fd, ns=(signed_at, signed_at))

    @property
    def size(self) -> int:
        return 2 * self._slot

    def close(self) -> None:
        os.close(self._fd)


def _newest(fd: int, cipher: ChaCha20Poly1305, size: int) -> tuple[int, int, dict[str, Any]] | None:
    """The slot holding the newest valid state, its counter and the state (rule 3)."""
    slot = size // 2
    candidates: list[tuple[int, int, dict[str, Any]]] = []
    second = _open_slot(os.pread(fd, slot, slot), cipher)
    if second is not None:
        candidates.append((1, *second))
    for blocks in range(slot // BLOCK, 0, -1):  # the first slot, at every size it had
        first = _open_slot(os.pread(fd, blocks * BLOCK, 0), cipher)
        if first is not None:
            candidates.append((0, *first))
            break
    if not candidates:
        return None
    return max(candidates, key=lambda found: found[1])


def _open_slot(data: bytes, cipher: ChaCha20Poly1305) -> tuple[int, dict[str, Any]] | None:
    if len(data) <= _NONCE + _TAG or not any(data[:_NONCE]):
        return None
    try:
        plain = cipher.decrypt(data[:_NONCE], data[_NONCE:], _AAD)
        document = json.loads(plain.rstrip(b"\0"))
    except (InvalidTag, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("counter"), int):
        return None
    state = document.get("state")
    return (document["counter"], state) if isinstance(state, dict) else None
