"""Socket activation: listening sockets systemd opened for us (`LISTEN_FDS`).

Rules this module keeps:
1. The protocol is sd_listen_fds(3)'s: `LISTEN_FDS` descriptors from fd 3 on, named in
   order by `LISTEN_FDNAMES` (colon-separated; systemd's `FileDescriptorName=`), meant for
   us only if `LISTEN_PID` is our pid. Sockets meant for another pid are not ours: not
   used, one log line. All three variables are read once and removed from the
   environment, and every descriptor taken is made close-on-exec, so no child inherits
   them.
2. Names, one per listener: `smtp` (channels.smtp.listen), `webhooks` (channels.sms.listen),
   `portal` (portal.listen). A process claims only its own (`claim`): a passed socket with
   any other name, or for a listener that is not configured, stops the start with one
   line, never ignored. A configured listener with no passed socket binds its address
   as before. Several sockets may carry one name (an IPv4 and an IPv6 one): each listens.
3. Only listening stream sockets are taken: a datagram socket, or a connection
   (`Accept=yes`), stops the start with one line naming it.
4. Malformed variables (not a number, names not matching the count) stop the start with
   one line; nothing is bound half-way, since sockets are claimed before anything listens.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from proxy.errors import NocontactError
from proxy.logs import get_logger

LISTEN_FDS_START = 3
_log = get_logger("systemd")


class ActivationError(NocontactError):
    """The sockets systemd passed cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Passed:
    fd: int
    name: str


def passed_descriptors(environ: MutableMapping[str, str], pid: int) -> list[Passed]:
    """The descriptors passed to `pid`, taking the variables away (rules 1 and 4)."""
    count = environ.pop("LISTEN_FDS", None)
    owner = environ.pop("LISTEN_PID", None)
    names = environ.pop("LISTEN_FDNAMES", None)
    if count is None or owner is None:
        return []
    if not owner.isdigit() or int(owner) != pid:
        _log.warning("sockets were passed for another process (LISTEN_PID): not used")
        return []
    if not count.isdigit():
        raise ActivationError(f"LISTEN_FDS is not a number: {count!r}")
    number = int(count)
    named = names.split(":") if names is not None else ["unknown"] * number
    if len(named) != number:
        raise ActivationError(
            f"LISTEN_FDNAMES names {len(named)} sockets but LISTEN_FDS passes {number}"
        )
    return [Passed(fd=LISTEN_FDS_START + n, name=name) for n, name in enumerate(named)]


def adopt(passed: Passed) -> socket.socket:
    """The listening socket at `passed.fd`, close-on-exec (rules 1 and 3)."""
    try:
        os.set_inheritable(passed.fd, False)
        sock = socket.socket(fileno=passed.fd)
    except OSError as error:
        raise ActivationError(
            f"socket '{passed.name}' (fd {passed.fd}) is not an open socket: {error.strerror}"
        ) from None
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise ActivationError(
            f"socket '{passed.name}' (fd {passed.fd}) is not a listening stream socket "
            "(a .socket unit with ListenStream= and Accept=no)"
        )
    return sock


def claim(
    passed: list[Passed], listeners: Mapping[str, tuple[str, bool]], program: str
) -> dict[str, list[socket.socket]]:
    """The passed sockets by name, for `program`'s listeners: `listeners` maps each name it
    knows to the config section that turns that listener on, and whether it is (rule 2)."""
    for one in passed:
        if one.name not in listeners:
            known = ", ".join(sorted(listeners))
            raise ActivationError(
                f"a socket named '{one.name}' was passed (FileDescriptorName=), but "
                f"{program} listens only as {known}"
            )
        section, on = listeners[one.name]
        if not on:
            raise ActivationError(
                f"a socket named '{one.name}' was passed, but {section} is not configured"
            )
    sockets: dict[str, list[socket.socket]] = {}
    for one in passed:
        sockets.setdefault(one.name, []).append(adopt(one))
    return sockets


def take_sockets(
    listeners: Mapping[str, tuple[str, bool]], program: str,
    environ: MutableMapping[str, str] = os.environ,
) -> dict[str, list[socket.socket]]:  # fmt: skip
    """The sockets systemd passed to this process, claimed for `program` (rules 1-4)."""
    return claim(passed_descriptors(environ, os.getpid()), listeners, program)
