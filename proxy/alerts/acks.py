"""Acknowledging an urgent alert: the portal (or `nocontact alerts ack`) tells the daemon.

Rules this module keeps:
1. The daemon's alerts service listens on a Unix socket in the archive directory
   (`alerts.sock`, 0660, made at start whether or not anything was held) for one JSON
   line per connection, `{"ack": "<code>"}`, and answers one: `{"acknowledged": true}`
   if an open urgent alert had that code (it is closed: no more repeats, no escalation),
   `{"acknowledged": false}` otherwise. Anything else gets false too; nothing a client
   sends is logged.
2. Who may acknowledge: whoever can reach the socket, which is the daemon's own user
   (and root). The portal asks only for a logged-in contact, with a CSRF-checked POST
   (portal/alert_pages.py), so a code read off a lost phone cannot silence an alert by
   itself: the finder would also need a contact's passphrase and second factor.
3. A code is compared whole and used once (the service forgets it when acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from proxy.custody import socket_address
from proxy.errors import NocontactError

SOCKET = "alerts.sock"
_MAX_LINE = 4096


class AckProblem(NocontactError):
    """The daemon could not be asked (not running, or alerts not configured)."""


async def serve_acks(
    root: Path, acknowledge: Callable[[str], Awaitable[bool]]
) -> asyncio.AbstractServer:
    """Listen for acknowledgements (rule 1); `acknowledge(code)` closes an open alert."""
    path = root / SOCKET
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = False
        try:
            line = await asyncio.wait_for(reader.readline(), 30)
            request = json.loads(line)
            code = request.get("ack") if isinstance(request, dict) else None
            if isinstance(code, str) and 0 < len(code) <= 64:
                done = await acknowledge(code.strip().upper())
        except (ValueError, TimeoutError, OSError, asyncio.LimitOverrunError):
            done = False
        finally:
            with contextlib.suppress(OSError):
                writer.write(json.dumps({"acknowledged": done}).encode() + b"\n")
                await writer.drain()
                writer.close()

    with socket_address(root, SOCKET) as address:
        server = await asyncio.start_unix_server(take, path=address, limit=_MAX_LINE)
    os.chmod(path, 0o660)
    return server


def ask_ack(root: Path, code: str) -> bool:
    """Ask the daemon holding the archive at `root` to acknowledge `code` (blocking)."""
    request = json.dumps({"ack": code}).encode() + b"\n"
    try:
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection,
            socket_address(root, SOCKET) as address,
        ):
            connection.settimeout(30)
            connection.connect(address)
            connection.sendall(request)
            answer = connection.makefile("rb").readline(_MAX_LINE)
    except OSError:
        raise AckProblem(
            "the daemon does not answer on its alerts socket (is it running, with an "
            "alerts: section?); nothing was acknowledged"
        ) from None
    try:
        reply = json.loads(answer)
    except ValueError:
        return False
    return isinstance(reply, dict) and reply.get("acknowledged") is True
