"""Custody records reach the archive's log whether or not the daemon is running.

Rules this module keeps:
1. A contact's tools record every access (`record_custody`). With no writer holding the
   archive, they open the log themselves, append the record sealed to every contact's
   public key (the archive's `recipients` file) and sign a checkpoint. While the daemon
   holds the archive, they hand the record to it over a Unix socket in the archive
   directory (`custody.sock`); the daemon seals and stores it like any entry.
2. The socket takes one JSON line per connection and answers one: {"index": N} once the
   entry is durable, or {"error": "..."}. It accepts custody records only; what it is
   told is never logged. A malformed request is refused without touching the archive.
3. `record_custody` returns the entry's index only once the entry is on disk.
4. A contact's tools read what a checkpoint covers, and the daemon signs on a fixed
   cadence (archive/writer.py rule 3): before reading, they ask it over the same socket to
   sign now (`{"sign": true}`; `sign_now`), so the newest items are in what they read.
   Asking says nothing about held items and learns nothing the log does not show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from proxy.archive import (
    Archive,
    ArchiveLocked,
    ArchiveLog,
    CustodyRecord,
    EntryKind,
    Recipients,
    layout,
)
from proxy.archive.seal import seal_custody
from proxy.archive.verify import writer_is_live as _writer_is_live
from proxy.errors import NocontactError
from proxy.logs import get_logger

SOCKET = "custody.sock"
_MAX_LINE = 1 << 20
_ACTIONS = {"list", "show", "export", "report", "release"}
_log = get_logger("custody")


class CustodyProblem(NocontactError):
    """A custody record could not be stored; the action it records must not go ahead."""


def _record_json(record: CustodyRecord) -> dict[str, object]:
    return {"contact": record.contact, "action": record.action, "items": list(record.items),
            "at": record.at.astimezone(UTC).isoformat(), "reason": record.reason}  # fmt: skip


def _record_from(data: object) -> CustodyRecord:
    if not isinstance(data, dict):
        raise ValueError("not an object")
    action = data.get("action")
    items = data.get("items")
    if action not in _ACTIONS or not isinstance(items, list):
        raise ValueError("unknown action or no items")
    return CustodyRecord(
        contact=str(data.get("contact", ""))[:64], action=str(action),
        items=tuple(int(i) for i in items), at=datetime.fromisoformat(str(data["at"])),
        reason=str(data.get("reason", ""))[:4000],
    )  # fmt: skip


def record_custody(root: Path, record: CustodyRecord) -> int:
    """Store `record` in the archive at `root`; the entry's index."""
    try:
        log = ArchiveLog.open(root)
    except ArchiveLocked:
        return _through_daemon(root, record)
    except NocontactError as error:
        raise CustodyProblem(f"cannot record custody in {root}: {error}") from None
    try:
        recipients = _recipients(root)
        sealed = seal_custody(record, recipients)
        [receipt] = log.append([(EntryKind.CUSTODY, sealed)], checkpoint=True,
                               now=datetime.now(UTC))  # fmt: skip
        return receipt.index
    except NocontactError as error:
        raise CustodyProblem(f"cannot record custody in {root}: {error}") from None
    finally:
        log.close()


def _recipients(root: Path) -> Recipients:
    try:
        lines = (root / layout.RECIPIENTS).read_text().split()
        return Recipients.parse([line for line in lines if line.startswith("age1")])
    except (OSError, ValueError):
        raise CustodyProblem(
            f"{root / layout.RECIPIENTS} is missing or unreadable: start the daemon once on "
            "this archive (it writes the contacts' public keys there)"
        ) from None


@contextlib.contextmanager
def _socket_path(root: Path) -> Iterator[str]:
    """The socket's path, short enough for AF_UNIX (108 bytes): through /proc/self/fd
    when the archive's own path is too long."""
    path = str(root / SOCKET)
    if len(path.encode()) < 100:
        yield path
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET}"
    finally:
        os.close(fd)


def _through_daemon(root: Path, record: CustodyRecord) -> int:
    return _ask_daemon(root, _record_json(record), "index", "the custody record")


_SIGN: dict[str, object] = {"sign": True}


def sign_now(root: Path) -> None:
    """While the daemon holds the archive, have it sign a checkpoint over everything stored
    so far (rule 4); with no daemon, a closed archive is signed already."""
    if _writer_is_live(root):
        _ask_daemon(root, _SIGN, "size", "a checkpoint")


def _ask_daemon(root: Path, request_data: dict[str, object], key: str, what: str) -> int:
    path = root / SOCKET
    request = json.dumps(request_data).encode() + b"\n"
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection,
            _socket_path(root) as address,
        ):
            connection.settimeout(30)
            connection.connect(address)
            connection.sendall(request)
            answer = connection.makefile("rb").readline(_MAX_LINE)
    except OSError as error:
        raise CustodyProblem(
            f"the daemon holds the archive but its custody socket {path} does not answer "
            f"({error.strerror or error}); nothing was done"
        ) from None
    try:
        reply = json.loads(answer)
        return int(reply[key])
    except (ValueError, KeyError, TypeError):
        raise CustodyProblem(f"the daemon did not store {what}; nothing was done") from None


async def serve_custody(archive: Archive) -> asyncio.AbstractServer:
    """Listen on the archive's custody socket for records from contacts' tools."""
    path = Path(archive.path) / SOCKET
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            try:
                request = json.loads(line)
                record = None if request == _SIGN else _record_from(request)
            except (ValueError, KeyError, TypeError):
                writer.write(b'{"error": "not a custody record"}\n')
                return
            if record is None:  # rule 4
                answer = {"size": await archive.sign()}
            else:
                answer = {"index": (await archive.record_custody(record)).index}
            writer.write(json.dumps(answer).encode() + b"\n")
        except Exception:  # the client is told nothing was stored; the daemon goes on
            _log.warning("a custody record could not be stored")
            writer.write(b'{"error": "not stored"}\n')
        finally:
            with contextlib.suppress(OSError):
                await writer.drain()
                writer.close()

    with _socket_path(Path(archive.path)) as address:
        server = await asyncio.start_unix_server(take, path=address, limit=_MAX_LINE)
    os.chmod(path, 0o660)
    return server
