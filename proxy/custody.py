"""Custody records reach the archive's log whether or not the daemon is running.

Rules this module keeps:
1. A contact's tools record every access (`record_custody`) as a request signed with
   their custody key (proxy.access.recording). With no writer holding the archive, they
   open the log themselves, check the request against the custody keys published beside
   it (custody_keys.py rule 4), stamp the time, append the record sealed to every
   contact's public key (the archive's `recipients` file) and sign a checkpoint. While
   the daemon holds the archive, they hand the request to it over a Unix socket in the
   archive directory (`custody.sock`); the daemon checks, stamps, seals and stores it
   (writer.py rule 8).
2. The socket takes one JSON line per connection and answers one: {"index": N} once the
   entry is durable, or {"error": "..."}: one line saying why nothing was stored (an
   unsigned or forged record, a contact with no custody key). It accepts custody records
   only; what it is told is never logged. A malformed request is refused without
   touching the archive. A time in the request is never read: the writer stamps it.
3. `record_custody` returns the entry's index only once the entry is on disk.
4. A contact's tools read what a checkpoint covers, and the daemon signs on a fixed
   cadence (archive/writer.py rule 3): before reading, they ask it over the same socket to
   sign now (`{"sign": true}`; `sign_now`), so the newest items are in what they read.
   Asking says nothing about held items and learns nothing the log does not show.
5. An archive restored from its replica (replica/restore.py) has no `signing.key` (nor
   has a copy made without it): no entry can be added to its log. The custody of every
   look at it is recorded instead in an archive of its own, `custody-after-restore/`
   inside it (a version 3 archive with its own key, made on first use, sealed to the
   same contacts and checked against the same custody keys); the records' `items` are
   the restored archive's entries. Nothing is read that was not recorded there first.
6. Once a record from the socket is stored, the daemon's `heard` hook (the alerts
   service's `recorded`, alerts/deadlines.py rule 2) is told its action and items, read
   from the request as the contact sent it (the stored entry is sealed: the daemon cannot
   read it). The hook only enqueues; a record that was refused is never told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from proxy.archive import (
    Archive,
    ArchiveLocked,
    Recipients,
    layout,
)
from proxy.archive.custody_keys import (
    CustodyRefused,
    CustodyRequest,
    check_request,
    read_published,
)
from proxy.archive.verify import writer_is_live as _writer_is_live
from proxy.errors import NocontactError
from proxy.logs import get_logger

SOCKET = "custody.sock"
_MAX_LINE = 1 << 20
_log = get_logger("custody")


class CustodyProblem(NocontactError):
    """A custody record could not be stored; the action it records must not go ahead."""


def record_custody(root: Path, request: CustodyRequest) -> int:
    """Store the signed `request` in the archive at `root`; the entry's index (rule 1)."""
    try:
        check_request(request, read_published(root))  # before the log is opened: untouched
    except OSError as error:
        raise CustodyProblem(
            f"cannot read the contacts' custody keys in {root}: {error.strerror}"
        ) from None
    except CustodyRefused as refused:
        raise CustodyProblem(str(refused)) from None
    target = custody_log_of(root)
    try:
        return asyncio.run(_record_here(root, request, target))
    except ArchiveLocked:
        return _ask_daemon(target, request.to_json(), "index", "the custody record")
    except CustodyProblem:
        raise
    except CustodyRefused as refused:
        raise CustodyProblem(str(refused)) from None
    except NocontactError as error:
        raise CustodyProblem(f"cannot record custody in {root}: {error}") from None


def custody_log_of(root: Path) -> Path:
    """The archive where looks at `root` are recorded: itself, or, restored from its
    replica, its own custody archive (rule 5)."""
    restored = (root / layout.MANIFEST).is_file() and not (root / layout.SIGNING_KEY).exists()
    return root / layout.RESTORED_CUSTODY if restored else root


async def _record_here(root: Path, request: CustodyRequest, target: Path) -> int:
    """With no daemon, this process is the archive's writer for one record: the same
    writer, so the same checks (a replay too: writer.py rule 8). The contacts and their
    keys are always `root`'s (rule 5)."""
    recipients = _recipients(root)
    try:
        keys = read_published(root)
    except OSError as error:
        raise CustodyProblem(f"cannot read the contacts' custody keys: {error.strerror}") from None
    size = layout.RESTORED_CUSTODY_SEGMENT_BYTES if target != root else None
    archive = await Archive.open(target, recipients=recipients, custody_keys=keys,
                                 segment_bytes=size)  # fmt: skip
    try:
        return (await archive.record_signed(request)).index
    finally:
        await archive.close()


def _recipients(root: Path) -> list[str]:
    """The contacts' public keys the archive publishes (checked to parse)."""
    try:
        lines = (root / layout.RECIPIENTS).read_text().split()
        found = [line for line in lines if line.startswith("age1")]
        Recipients.parse(found)
        return found
    except (OSError, ValueError):
        raise CustodyProblem(
            f"{root / layout.RECIPIENTS} is missing or unreadable: start the daemon once on "
            "this archive (it writes the contacts' public keys there)"
        ) from None


@contextlib.contextmanager
def socket_address(root: Path, name: str = SOCKET) -> Iterator[str]:
    """The address of the socket `name` in the archive directory `root`, short enough for
    AF_UNIX (108 bytes): through /proc/self/fd when the archive's own path is too long."""
    path = str(root / name)
    if len(path.encode()) < 100:
        yield path
        return
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{name}"
    finally:
        os.close(fd)


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
            socket_address(root) as address,
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
    reply: object = None
    try:
        reply = json.loads(answer)
        return int(reply[key])  # type: ignore[index]
    except (ValueError, KeyError, TypeError):
        refusal = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(refusal, str) and refusal:
            raise CustodyProblem(f"the daemon refused {what}: {refusal[:300]}") from None
        raise CustodyProblem(f"the daemon did not store {what}; nothing was done") from None


Heard = Callable[[str, tuple[int, ...]], None]


async def serve_custody(archive: Archive, heard: Heard | None = None) -> asyncio.AbstractServer:
    """Listen on the archive's custody socket for records from contacts' tools; `heard`
    is told each stored record's action and items (rule 6)."""
    path = Path(archive.path) / SOCKET
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            try:
                request = json.loads(line)
                record = None if request == _SIGN else CustodyRequest.from_json(request)
            except (ValueError, KeyError, TypeError):
                writer.write(b'{"error": "not a custody record"}\n')
                return
            answer: dict[str, object]
            if record is None:  # rule 4
                answer = {"size": await archive.sign()}
            else:
                try:
                    answer = {"index": (await archive.record_signed(record)).index}
                except CustodyRefused as refused:  # rule 2: one line, nothing stored
                    answer = {"error": str(refused)}
                else:
                    if heard is not None:  # rule 6
                        heard(record.action, record.items)
            writer.write(json.dumps(answer).encode() + b"\n")
        except Exception:  # the client is told nothing was stored; the daemon goes on
            _log.warning("a custody record could not be stored")
            writer.write(b'{"error": "not stored"}\n')
        finally:
            with contextlib.suppress(OSError):
                await writer.drain()
                writer.close()

    with socket_address(Path(archive.path)) as address:
        server = await asyncio.start_unix_server(take, path=address, limit=_MAX_LINE)
    os.chmod(path, 0o660)
    return server
