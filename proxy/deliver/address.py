"""Where allowed mail goes: the `deliver` setting, read into a value.

Rules this module keeps:
1. Pure: text in, a `Destination` out, or ValueError saying what is expected.
2. Four forms: smtp://host:port, lmtp://host:port, lmtp:/path/to/socket, maildir:/path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scheme(enum.StrEnum):
    SMTP = "smtp"
    LMTP = "lmtp"
    MAILDIR = "maildir"


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    scheme: Scheme
    host: str = ""
    port: int = 0
    path: str = ""  # a maildir, or an LMTP unix socket


_EXPECTED = "expected smtp://host:port, lmtp://host:port, lmtp:/path/to/socket or maildir:/path"


def parse_destination(text: str) -> Destination:
    """Read a `deliver` value."""
    scheme, colon, rest = text.strip().partition(":")
    if not colon or scheme not in {s.value for s in Scheme}:
        raise ValueError(f"'{text}' is not a next hop ({_EXPECTED})")
    kind = Scheme(scheme)
    if kind is Scheme.MAILDIR:
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise ValueError(f"'{text}' names no directory ({_EXPECTED})")
        return Destination(scheme=kind, path=path)
    if rest.startswith("//"):
        host, port = parse_listen(rest[2:])
        return Destination(scheme=kind, host=host, port=port)
    if kind is Scheme.LMTP and rest.startswith("/"):
        return Destination(scheme=kind, path=rest)
    raise ValueError(f"'{text}' is not a next hop ({_EXPECTED})")


def parse_listen(text: str) -> tuple[str, int]:
    """host:port (IPv6 as [::1]:port) into its parts."""
    host, colon, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{text}' is not host:port (e.g. 127.0.0.1:2525)")
    return host, int(port)
