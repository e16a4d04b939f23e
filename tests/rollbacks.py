"""What a root user can do to an archive on disk that still verifies on its own: roll it
back to an old checkpoint (the attack issue 23 names), or rewrite its history after one
with the archive's own signing key.

Rules this module keeps:
1. Only what an attacker with the files could do: bytes are zeroed and files copied, as
   with `dd` and `cp`; the archive's own code writes the rewritten history (a fork), as
   an attacker holding `signing.key` would have it do.
2. One copy of each helper: the CLI and portal tests import from here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from proxy.archive import Archive, EntryKind, layout
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.segments import segment_name
from proxy.message import InboundMessage
from proxy.rules import decide
from tests.factories import make_rules


def entries(root: Path) -> list[tuple[int, int, int, EntryKind, bytes]]:
    """(segment, offset, record size, kind, body) of every entry, in log order."""
    found = []
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                found.append((number, record.offset, record.header.size, record.header.kind,
                              bytes(record.body)))  # fmt: skip
                del record
    return found


def checkpoints(root: Path) -> list[int]:
    """The indexes of the checkpoint entries."""
    return [i for i, (_, _, _, kind, _) in enumerate(entries(root)) if kind is EntryKind.CHECKPOINT]


def roll_back(root: Path, to: int) -> None:
    """Zero everything after entry `to` (a checkpoint) and copy its note into the
    `checkpoint` file: the archive verifies, with every later entry gone."""
    found = entries(root)
    number, offset, size, kind, note = found[to]
    assert kind is EntryKind.CHECKPOINT
    log_dir = root / layout.LOG_DIR
    for later in contiguous_segments(log_dir):
        if later < number:
            continue
        path = log_dir / segment_name(later)
        length = path.stat().st_size
        os.truncate(path, offset + size if later == number else 0)  # zeros, as dd would write
        os.truncate(path, length)
    (root / layout.HEAD).write_bytes(note)


def hold_signed(root: Path, recipient: str, messages: Sequence[InboundMessage]) -> None:
    """Hold `messages` in the archive at `root` (made if need be), a checkpoint after each,
    as the daemon's cadence would sign them."""

    async def sealing() -> None:
        archive = await Archive.open(root, recipients=[recipient])
        rules = make_rules()
        for message in messages:
            await archive.hold(message, decide(message, rules))
            await archive.sign()
        await archive.close()

    asyncio.run(sealing())
