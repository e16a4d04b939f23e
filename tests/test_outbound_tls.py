"""A reply by email through a real TLS relay on loopback (aiosmtpd): STARTTLS and implicit
TLS with the relay's CA in `outbound.ca_file`, and a certificate nobody vouches for refused
in one line, the reply not sent."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from proxy.access import delivery, replying
from proxy.config.model import Outbound
from tests.factories import loopback_certificate
from tests.servers import HOST, free_port
from tests.test_replying import NOW, _config

TO_HIM = replying.Addressee(by_email=True, address="mark.smith@gmail.com")


class _Relay:
    """What the relay received: (envelope sender, recipients, bytes)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@dataclass(frozen=True, slots=True, kw_only=True)
class Relay:
    handler: _Relay
    port: int
    ca_file: Path  # its certificate, its own CA
    tls: str  # how it speaks TLS: starttls or tls (implicit)


@pytest.fixture
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Relay]:
    """A TLS relay on loopback (`request.param`: starttls or tls), its port and CA file."""
    cert, key = loopback_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler, port = _Relay(), free_port()
    if request.param == "starttls":
        controller = Controller(handler, hostname=HOST, port=port, tls_context=context,
                                require_starttls=True)  # fmt: skip
    else:
        controller = Controller(handler, hostname=HOST, port=port, ssl_context=context)
    controller.start()
    try:
        yield Relay(handler=handler, port=port, ca_file=cert, tls=str(request.param))
    finally:
        controller.stop()


def _route(tmp_path: Path, port: int, tls: str, ca_file: Path | None) -> delivery.OutboundRoute:
    outbound: dict[str, object] = {"host": HOST, "port": port, "tls": tls,
                                   "from": "priya-replies@fastmail.example"}  # fmt: skip
    if ca_file is not None:
        outbound["ca_file"] = str(ca_file)
    config = _config(tmp_path, outbound=outbound)
    route = delivery.plan_reply(config, TO_HIM, "Confirmed.", NOW)
    assert isinstance(route, delivery.OutboundRoute)
    assert isinstance(route.settings, Outbound)
    return route


@pytest.mark.parametrize("relay", ["starttls", "tls"], indirect=True)
def test_a_reply_goes_through_a_tls_relay_its_ca_file_vouches_for(
    relay: Relay, tmp_path: Path
) -> None:
    asyncio.run(delivery.deliver(_route(tmp_path, relay.port, relay.tls, relay.ca_file)))
    ((sender, recipients, raw),) = relay.handler.received
    assert (sender, recipients) == ("priya-replies@fastmail.example", ["mark.smith@gmail.com"])
    assert b"Confirmed." in raw


@pytest.mark.parametrize("relay", ["starttls", "tls"], indirect=True)
def test_a_relay_nobody_vouches_for_gets_no_reply(relay: Relay, tmp_path: Path) -> None:
    """Without its CA (the system's CAs do not know a private one), the certificate is
    refused: one line naming the trust, and nothing reaches the relay."""
    with pytest.raises(delivery.NotDelivered) as refused:
        asyncio.run(delivery.deliver(_route(tmp_path, relay.port, relay.tls, None)))
    assert str(refused.value) == (
        "the outbound SMTP relay's certificate is not trusted (its name, or its CA: "
        "outbound.ca_file)"
    )
    assert relay.handler.received == []
