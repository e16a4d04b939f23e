"""The client's address behind a reverse proxy (proxy.portal.forwarded): a table of what
nginx and Caddy send and of hostile headers, and properties over any header at all."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.portal.forwarded import LONGEST, Network, client_address

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
PROXIES = (*LOOPBACK, ipaddress.ip_network("10.0.0.0/8"))
CLIENT, FORGED = "203.0.113.7", "198.51.100.9"

CASES: list[tuple[str, str | None, list[str], tuple[Network, ...], str]] = [
    ("no proxies: the header is never read", "127.0.0.1", [CLIENT], (), "127.0.0.1"),
    ("an untrusted peer's header is ignored", "192.0.2.5", [CLIENT], PROXIES, "192.0.2.5"),
    ("a trusted peer's one hop", "127.0.0.1", [CLIENT], PROXIES, CLIENT),
    ("nginx appends: the forged left part is skipped", "127.0.0.1", [f"{FORGED}, {CLIENT}"],
     PROXIES, CLIENT),
    ("a forged trusted address at the left changes nothing", "127.0.0.1",
     [f"127.0.0.1, {CLIENT}"], PROXIES, CLIENT),
    ("two proxies: the right-most untrusted", "127.0.0.1", [f"{FORGED}, {CLIENT}, 10.1.2.3"],
     PROXIES, CLIENT),
    ("several header lines are one list", "127.0.0.1", [FORGED, f"{CLIENT}, 10.0.0.1"],
     PROXIES, CLIENT),
    ("every hop a proxy: the left-most", "127.0.0.1", ["10.0.0.2, 10.0.0.1"], PROXIES,
     "10.0.0.2"),
    ("IPv6 client", "::1", ["2001:db8::1"], PROXIES, "2001:db8::1"),
    ("IPv4-mapped peer is its IPv4 address", "::ffff:127.0.0.1", [CLIENT], PROXIES, CLIENT),
    ("IPv4-mapped client too", "127.0.0.1", ["::ffff:203.0.113.7"], PROXIES, CLIENT),
    ("no header: the peer", "127.0.0.1", [], PROXIES, "127.0.0.1"),
    ("an empty header: the peer", "127.0.0.1", [" "], PROXIES, "127.0.0.1"),
    ("'unknown' where we must read: the peer", "127.0.0.1", ["unknown"], PROXIES, "127.0.0.1"),
    ("a port where we must read: the peer", "127.0.0.1", [f"{CLIENT}:4711"], PROXIES,
     "127.0.0.1"),
    ("garbage left of the client is never read", "127.0.0.1", [f"<script>, ;;, {CLIENT}"],
     PROXIES, CLIENT),
    ("an empty entry where we must read: the peer", "127.0.0.1", [f"{CLIENT},"], PROXIES,
     "127.0.0.1"),
    ("too long: the peer", "127.0.0.1", ["1" * LONGEST + f", {CLIENT}"], PROXIES, "127.0.0.1"),
    ("more proxy hops than we read: the peer", "127.0.0.1", [", ".join(["10.0.0.1"] * 40)],
     PROXIES, "127.0.0.1"),
    ("a long forged list left of the client is cut off", "127.0.0.1",
     [", ".join([FORGED] * 400) + f", {CLIENT}"], PROXIES, CLIENT),
    ("no peer address (a Unix socket)", None, [CLIENT], PROXIES, ""),
    ("a peer that is not an IP is never trusted", "unix:/run/portal", [CLIENT], PROXIES,
     "unix:/run/portal"),
]  # fmt: skip


@pytest.mark.parametrize(("peer", "headers", "trusted", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_the_client_address_table(
    peer: str | None, headers: list[str], trusted: tuple[Network, ...], expected: str
) -> None:
    """Each peer and X-Forwarded-For gives the client the throttle counts against."""
    assert client_address(peer, headers, trusted) == expected


_HOP = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["127.0.0.1", "10.9.8.7", "::1", "unknown", "", " ", "[::1]", "1.2.3.4:80"]),
    st.text(max_size=20),
)
_HEADER = st.lists(_HOP, max_size=40).map(", ".join)


@given(peer=st.one_of(st.none(), st.ip_addresses().map(str), st.text(max_size=30)),
       headers=st.lists(_HEADER, max_size=3))  # fmt: skip
def test_any_header_gives_an_address_from_the_peer_or_the_header(
    peer: str | None, headers: list[str]
) -> None:
    """Whatever arrives, no exception: the answer is the peer's address, or an address
    written in the header that is not a trusted proxy (unless every hop read was one)."""
    found = client_address(peer, headers, PROXIES)
    if found != client_address(peer, [], PROXIES):
        assert _trusted_peer(peer)
        ipaddress.ip_address(found)  # an address, never other text from the header
        written = {client_address(hop.strip(), [], ()) for h in headers for hop in h.split(",")}
        assert found in written


@given(headers=st.lists(_HEADER, max_size=3))
def test_an_untrusted_peer_is_never_moved_by_the_header(headers: list[str]) -> None:
    """From a peer not in trusted_proxies, the header never changes the answer."""
    assert client_address("192.0.2.44", headers, PROXIES) == "192.0.2.44"


@given(right=st.lists(st.sampled_from(["127.0.0.1", "10.0.0.1", "::1"]), max_size=5),
       left=st.lists(st.text(max_size=30), max_size=30))  # fmt: skip
def test_what_is_left_of_the_client_never_matters(right: list[str], left: list[str]) -> None:
    """Anything a client writes before its real address (which the first proxy appends)
    is never read: the client is found the same with or without it."""
    hops = [CLIENT, *right]
    alone = client_address("127.0.0.1", [", ".join(hops)], PROXIES)
    with_forged = client_address("127.0.0.1", [", ".join([*left, *hops])], PROXIES)
    assert alone == with_forged == CLIENT


def _trusted_peer(peer: str | None) -> bool:
    return client_address(peer, [CLIENT], PROXIES) == CLIENT
