"""Socket activation: reading LISTEN_FDS the way sd_listen_fds(3) does, and claiming the
passed sockets by name, refusing every one a process cannot use."""

from __future__ import annotations

import os
import socket

import pytest

from proxy.systemd.activation import ActivationError, Passed, adopt, claim, passed_descriptors
from tests.systemd_helpers import listening_socket

PID = 4242
DAEMON = {"smtp": ("channels.smtp", True), "webhooks": ("channels.sms", False)}


def test_the_passed_descriptors_are_named_in_order_from_fd_3() -> None:
    """LISTEN_FDS=2 with two names: fds 3 and 4, named in order; the variables are taken."""
    environ = {"LISTEN_FDS": "2", "LISTEN_PID": str(PID), "LISTEN_FDNAMES": "smtp:webhooks",
               "PATH": "/bin"}  # fmt: skip
    assert passed_descriptors(environ, PID) == [
        Passed(fd=3, name="smtp"),
        Passed(fd=4, name="webhooks"),
    ]
    assert environ == {"PATH": "/bin"}


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"LISTEN_FDS": "1"},  # no LISTEN_PID: not for us (as sd_listen_fds says)
        {"LISTEN_FDS": "1", "LISTEN_PID": "1", "LISTEN_FDNAMES": "smtp"},  # another pid
        {"LISTEN_FDS": "1", "LISTEN_PID": "me", "LISTEN_FDNAMES": "smtp"},
    ],
)
def test_sockets_not_meant_for_us_are_not_taken(environ: dict[str, str]) -> None:
    """No LISTEN_PID, or another process's: nothing is taken, and the variables go."""
    assert passed_descriptors(environ, PID) == []
    assert not any(name.startswith("LISTEN_") for name in environ)


def test_without_names_every_socket_is_unknown() -> None:
    """No LISTEN_FDNAMES: systemd's name for each is 'unknown' (and claim refuses it)."""
    environ = {"LISTEN_FDS": "1", "LISTEN_PID": str(PID)}
    assert passed_descriptors(environ, PID) == [Passed(fd=3, name="unknown")]


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"LISTEN_FDS": "two", "LISTEN_PID": str(PID)}, "LISTEN_FDS is not a number"),
        ({"LISTEN_FDS": "2", "LISTEN_PID": str(PID), "LISTEN_FDNAMES": "smtp"},
         "LISTEN_FDNAMES names 1 sockets but LISTEN_FDS passes 2"),
    ],
)  # fmt: skip
def test_malformed_variables_are_one_line(environ: dict[str, str], problem: str) -> None:
    """A count that is not a number, or names that do not match it, stop the start."""
    with pytest.raises(ActivationError, match=problem) as refused:
        passed_descriptors(environ, PID)
    assert "\n" not in str(refused.value)


def test_a_socket_with_an_unknown_name_is_refused() -> None:
    """A name the process does not know is never silently ignored."""
    with pytest.raises(ActivationError) as refused:
        claim([Passed(fd=3, name="imap")], DAEMON, "nocontact run")
    assert str(refused.value) == (
        "a socket named 'imap' was passed (FileDescriptorName=), but nocontact run "
        "listens only as smtp, webhooks"
    )


def test_a_socket_for_a_channel_not_configured_is_refused() -> None:
    """A socket for the webhooks when no SMS channel is configured stops the start."""
    with pytest.raises(ActivationError) as refused:
        claim([Passed(fd=3, name="webhooks")], DAEMON, "nocontact run")
    assert str(refused.value) == (
        "a socket named 'webhooks' was passed, but channels.sms is not configured"
    )


def test_claimed_sockets_listen_and_are_close_on_exec() -> None:
    """Two sockets with one name (IPv4 and IPv6, say) are both claimed, not inheritable."""
    first, second = listening_socket(), listening_socket()
    os.set_inheritable(first.fileno(), True)
    os.set_inheritable(second.fileno(), True)
    passed = [Passed(fd=first.fileno(), name="smtp"), Passed(fd=second.fileno(), name="smtp")]
    claimed = claim(passed, DAEMON, "nocontact run")
    assert [sock.fileno() for sock in claimed["smtp"]] == [first.fileno(), second.fileno()]
    assert not any(os.get_inheritable(sock.fileno()) for sock in claimed["smtp"])
    for sock in claimed["smtp"]:
        sock.detach()  # `first` and `second` own the descriptors
    first.close()
    second.close()


@pytest.mark.parametrize(
    "kind", ["datagram", "not listening"],
)  # fmt: skip
def test_only_listening_stream_sockets_are_taken(kind: str) -> None:
    """A datagram socket, or a stream socket that does not listen (Accept=yes), is refused
    with one line naming it, and left open."""
    if kind == "datagram":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        fd = sock.fileno()
        with pytest.raises(ActivationError) as refused:
            adopt(Passed(fd=fd, name="smtp"))
        os.fstat(fd)  # still open: the caller's to close
    assert str(refused.value).startswith(
        f"socket 'smtp' (fd {fd}) is not a listening stream socket"
    )


def test_a_closed_descriptor_is_refused() -> None:
    """LISTEN_FDS counting past the open descriptors: one line, not a traceback."""
    sock = listening_socket()
    fd = sock.fileno()
    sock.close()
    with pytest.raises(ActivationError, match=f"socket 'smtp' \\(fd {fd}\\) is not an open"):
        adopt(Passed(fd=fd, name="smtp"))
