"""A changed set of contacts, on SIGHUP: new items sealed to the new set, the change logged."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pyrage

from proxy.archive import Archive, EntryKind, verify_archive
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.seal import fingerprint, parse_sealed
from proxy.archive.segments import segment_name
from tests.test_smtp import (
    HELD,
    IDENTITY,
    RECIPIENT,
    _send_sync,
    _write_config,
    daemon,
    free_port,
    stopped,
)


def _entries(root: Path) -> list[tuple[EntryKind, bytes]]:
    found = []
    log_dir = root / "log"
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                found.append((record.header.kind, bytes(record.body)))
                del record
    return found


def _opened(sealed: bytes, identity: pyrage.x25519.Identity) -> dict[str, Any] | None:
    try:
        metadata, _ = parse_sealed(pyrage.decrypt(sealed, [identity]))
    except pyrage.DecryptError:
        return None
    return metadata


def test_new_contacts_take_effect_on_sighup_and_the_change_is_in_the_log(
    tmp_path: Path,
) -> None:
    """Before the reload an item opens with the old key only; after it, with the new key
    only; the log holds a custody record, sealed to the new key, naming its fingerprint."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    newcomer = pyrage.x25519.Identity.generate()
    with daemon(config, port) as process:
        _send_sync(port, "mark.smith@gmail.com", HELD)
        _write_config(config, port, recipient=str(newcomer.to_public()))
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        _send_sync(port, "mark.smith@gmail.com", HELD)
        stderr = stopped(process)
    assert "contacts changed" in stderr
    entries = _entries(tmp_path / "archive")
    sealed = [body for kind, body in entries if kind is EntryKind.SEALED]
    kinds = [(_opened(b, IDENTITY) or _opened(b, newcomer) or {}).get("kind") for b in sealed]
    items = [body for body, kind in zip(sealed, kinds, strict=True) if kind == "item"]
    assert len(items) == 2
    assert _opened(items[0], IDENTITY) is not None
    assert _opened(items[0], newcomer) is None
    assert _opened(items[1], newcomer) is not None
    assert _opened(items[1], IDENTITY) is None
    records = [_opened(body, newcomer) for body in sealed]
    changes = [r for r in records if r is not None and r.get("action") == "contacts changed"]
    assert len(changes) == 1
    assert fingerprint(str(newcomer.to_public())) in changes[0]["reason"]
    verify_archive(tmp_path / "archive")


def test_contacts_changed_while_stopped_are_recorded_at_the_next_open(tmp_path: Path) -> None:
    """The archive opened with other contacts than last time records the change; opened
    again with the same ones, it records nothing more."""
    newcomer = pyrage.x25519.Identity.generate()

    async def opened_with(recipient: str) -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[recipient])
        await archive.close()

    for recipient in (RECIPIENT, str(newcomer.to_public()), str(newcomer.to_public())):
        asyncio.run(opened_with(recipient))
    sealed = [body for kind, body in _entries(tmp_path / "archive") if kind is EntryKind.SEALED]
    assert len(sealed) == 1  # nothing was held: the one sealed entry is the custody record
    record = _opened(sealed[0], newcomer)
    assert record is not None
    assert record["action"] == "contacts changed"
