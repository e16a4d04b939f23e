"""A small program the archive fault tests run as a child process.

Rules this program keeps:
1. Every line it prints is one event, flushed before the next step:
     `ack <index> <body sha256> <leaf>`   an append returned (the entry is acknowledged)
     `ready`, `locked`, `closed`         the archive was opened / is held / was closed
     `<ErrorType>: <message>`            a nocontact error, on one line, no traceback
   An ack line is printed only after `append` returned, so an ack in the output is a
   promise the archive made; a line cut short by SIGKILL is no promise at all.
2. It never catches anything but `NocontactError`: any other exception is a bug and
   leaves its traceback on stderr for the test to show.
3. `--user UID` drops root after every import, so the archive code runs unprivileged (the
   interpreter lives under /root, which an unprivileged user cannot even start it from).
   `--file-size-limit N` sets RLIMIT_FSIZE before the archive is touched; CPython ignores
   SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.

Usage: archive_child.py MODE PATH [options]; see `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import os
import random
import resource
import sys
from datetime import UTC, datetime

import pyrage

from proxy.archive import Archive, ArchiveLog, EntryKind, Receipt
from proxy.errors import NocontactError

SMALLEST, LARGEST = 100, 40_000


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def ack(receipt: Receipt, body: bytes) -> None:
    emit(f"ack {receipt.index} {hashlib.sha256(body).hexdigest()} {receipt.leaf_hash.hex()}")


def body_of(rng: random.Random, smallest: int = SMALLEST, largest: int = LARGEST) -> bytes:
    """Random bytes, log-uniform in size: many small items, some large ones."""
    size = int(math.exp(rng.uniform(math.log(smallest), math.log(largest))))
    return rng.randbytes(size)


def now() -> datetime:
    return datetime.now(UTC)


# -- modes -------------------------------------------------------------------------------


def crash_sync(options: argparse.Namespace) -> None:
    """Append batches through ArchiveLog forever (until killed), acknowledging each entry."""
    rng = random.Random(options.seed)
    log = ArchiveLog.open(options.path, segment_bytes=options.segment_bytes)
    emit("ready")
    while True:
        bodies = [body_of(rng) for _ in range(rng.randint(1, 4))]
        receipts = log.append(
            [(EntryKind.SEALED, body) for body in bodies], checkpoint=rng.random() < 0.3, now=now()
        )
        for receipt, body in zip(receipts, bodies, strict=True):
            ack(receipt, body)
        if rng.random() < 0.1:
            log.publish_head()


async def crash_async(options: argparse.Namespace) -> None:
    """Append through the asyncio Archive from several producers forever (until killed)."""
    rng = random.Random(options.seed)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    archive = await Archive.open(
        options.path,
        recipients=[recipient],
        segment_bytes=options.segment_bytes,
        checkpoint_every=rng.uniform(0.0, 0.2),
    )
    emit("ready")

    async def produce(seed: int) -> None:
        own = random.Random(seed)
        while True:
            body = body_of(own)
            ack(await archive.append(EntryKind.SEALED, body), body)

    await asyncio.gather(*(produce(rng.randrange(1 << 32)) for _ in range(options.producers)))


def open_close(options: argparse.Namespace) -> None:
    """Open the archive (creating it if need be) and close it again."""
    ArchiveLog.open(options.path, segment_bytes=options.segment_bytes).close()
    emit("closed")


def hold(options: argparse.Namespace) -> None:
    """Hold the archive open until a line arrives on stdin, then close it."""
    log = ArchiveLog.open(options.path, segment_bytes=options.segment_bytes)
    emit("locked")
    sys.stdin.readline()
    log.close()
    emit("closed")


def fill(options: argparse.Namespace) -> None:
    """Append one signed item at a time until the archive refuses, then close."""
    rng = random.Random(options.seed)
    log = ArchiveLog.open(options.path, segment_bytes=options.segment_bytes)
    emit("ready")
    try:
        for _ in range(options.count):
            body = body_of(rng, 2_000, 6_000)
            (receipt,) = log.append([(EntryKind.SEALED, body)], checkpoint=True, now=now())
            ack(receipt, body)
    except NocontactError as error:
        emit(f"{type(error).__name__}: {error}")
    log.close()
    emit("closed")


def split(options: argparse.Namespace) -> None:
    """A small item; then a batch whose second entry needs a segment that cannot be made
    (over the file-size limit); then one more small item; then close. Each step reports."""
    log = ArchiveLog.open(options.path, segment_bytes=options.segment_bytes)
    first, orphan, oversized, last = b"first" * 50, b"orphan" * 50, bytes(1 << 20), b"last" * 50
    for batch in ([first], [orphan, oversized], [last]):
        try:
            receipts = log.append(
                [(EntryKind.SEALED, b) for b in batch], checkpoint=True, now=now()
            )
        except NocontactError as error:
            emit(f"{type(error).__name__}: {error}")
            continue
        for receipt, body in zip(receipts, batch, strict=True):
            ack(receipt, body)
    log.close()
    emit("closed")


def append_and_die(options: argparse.Namespace) -> None:
    """Append signed batches, acknowledge them, then exit without closing (a crash)."""
    rng = random.Random(options.seed)
    log = ArchiveLog.open(options.path, segment_bytes=options.segment_bytes)
    for _ in range(options.count):
        bodies = [body_of(rng, 200, 2_000) for _ in range(3)]
        receipts = log.append([(EntryKind.SEALED, b) for b in bodies], checkpoint=True, now=now())
        for receipt, body in zip(receipts, bodies, strict=True):
            ack(receipt, body)
    os._exit(0)  # no close: the `checkpoint` file keeps the size it had at open


MODES = {
    "crash-sync": crash_sync,
    "open": open_close,
    "hold": hold,
    "fill": fill,
    "split": split,
    "append-and-die": append_and_die,
}


def drop_root(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=[*MODES, "crash-async"])
    parser.add_argument("path")
    parser.add_argument("--segment-bytes", type=int, default=256 << 10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--user", type=int, default=None)
    parser.add_argument("--file-size-limit", type=int, default=None)
    options = parser.parse_args(argv)
    if options.file_size_limit is not None:
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (options.file_size_limit, hard))
    if options.user is not None:
        drop_root(options.user)
    try:
        if options.mode == "crash-async":
            asyncio.run(crash_async(options))
        else:
            MODES[options.mode](options)
    except NocontactError as error:
        emit(f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
