"""The client's address behind a reverse proxy: whom the login throttle counts against.

Rules this module keeps:
1. The direct peer's address is the client's, unless the peer is one of the configured
   `portal.trusted_proxies`: a header from anyone else is never read, so a client talking
   to the portal directly cannot name any address it likes.
2. From a trusted peer, the client is the right-most address in `X-Forwarded-For` (every
   such header, in order, read as one comma-separated list) that is not itself a trusted
   proxy, walking right to left, as nginx's `real_ip_recursive on` does: each trusted hop
   appends the address it was reached from, so the right-most entries are the only ones
   no client can write. Entries left of the one taken are never looked at. If every
   entry is a trusted proxy, the left-most is the client (it is on a proxy's machine).
3. Bounded: at most `MOST_HOPS` entries are looked at, and the header is split from the
   right only that far, so a long forged list costs nothing more. A walk that would need
   more, an entry that is not a bare IP address (`unknown`, a port, a name, garbage), no
   header at all, or one longer than `LONGEST` characters: the peer's own address is
   used. Total: no input raises.
4. Addresses are compared and returned in one form: an IPv4-mapped IPv6 address
   (`::ffff:192.0.2.1`, a dual-stack socket's way of naming an IPv4 peer) is its IPv4
   address. `Forwarded` (RFC 7239) is not read: nginx and Caddy set X-Forwarded-For.
5. Pure: values in, a string out; the request and the config are the caller's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MOST_HOPS = 16
LONGEST = 8192


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The client's address, given the direct peer's, the X-Forwarded-For headers as
    received, and the trusted proxies (rules 1 to 3); "" if there is no peer address."""
    own = _address(peer or "")
    if own is None:
        return peer or ""  # not an IP peer (a Unix socket): never trusted
    if not trusted or not _trusted(own, trusted):
        return str(own)
    return str(_forwarded(",".join(forwarded_for), trusted) or own)


def _forwarded(joined: str, trusted: Sequence[Network]) -> Address | None:
    """The client named by a trusted peer's X-Forwarded-For list (rule 2), or None when
    the peer's own address must do (rule 3)."""
    if not joined.strip() or len(joined) > LONGEST:
        return None
    hops = joined.rsplit(",", MOST_HOPS)
    found: Address | None = None
    for entry in reversed(hops[-MOST_HOPS:]):
        found = _address(entry)
        if found is None or not _trusted(found, trusted):
            return found  # None: a hop we must read and cannot
    return found if len(hops) <= MOST_HOPS else None  # all proxies: more than we read?


def _address(text: str) -> Address | None:
    try:
        found = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped  # rule 4
    return found


def _trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)
