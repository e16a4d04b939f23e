"""The portal's acknowledgement of an urgent alert (proxy/portal/alert_pages.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.alerts.held import Held
from proxy.alerts.service import AlertService
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.archive import Archive
from proxy.config import Config
from proxy.config.model import Alerts, AlertTransport, ContactAlerts
from tests.alerts_helpers import Clock, Receiver, receiving
from tests.portal_helpers import (
    Client,
    Portal,
    Template,
    copy_portal,
    fetch,
    held_template,
    hidden,
    log_in,
)
from tests.portal_helpers import run as run_portal

THREAT = Assessment.of([Reason(tier=Tier.URGENT, code="threat")])


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return held_template(tmp_path_factory, "alerts", [])


def _with_alerts(portal: Portal, receiver: Receiver) -> Config:
    """The portal's config, its enrolled contact taking every tier through a webhook."""
    contacts = [c.model_copy(update={"alerts": ContactAlerts(transports=["hook"])})
                for c in portal.config.contacts]  # fmt: skip
    alerts = Alerts(transports={"hook": AlertTransport(url=receiver.url("priya"))},
                    escalate_after=30)  # fmt: skip
    return portal.config.model_copy(update={"alerts": alerts, "contacts": contacts})


def test_the_button_acknowledges_and_escalation_stops(template: Template, tmp_path: Path) -> None:
    """The urgent alert links to /alerts/<code>; logged out, that is the login page and a
    POST is refused; logged in, the button acknowledges, and the alert is not repeated."""
    portal = copy_portal(template, tmp_path)

    async def body(client: Client) -> None:
        recipient = next(c.age_recipient for c in portal.config.contacts if c.age_recipient)
        assert recipient is not None
        archive = await Archive.open(portal.config.archive.path, recipients=[recipient])
        clock = Clock()
        async with receiving() as receiver:
            service = await AlertService.open(_with_alerts(portal, receiver), archive,
                                              clock=clock)  # fmt: skip
            service.held(Held(sequence=0, assessment=THREAT, person="mark", channel="smtp",
                              identity="mark.smith@gmail.com"))  # fmt: skip
            await service.step()
            (text,) = receiver.bodies("priya")
            code = service.state.urgent[0].code
            link = f"http://127.0.0.1:8089/alerts/{code}"
            assert link in text
            assert "http://127.0.0.1:8089/items/0" in text
            path = f"/alerts/{code}"
            status, headers, _, _ = await fetch(portal, client, "GET", path)
            assert (status, headers["Location"]) == (303, "/login")
            status, _, _, _ = await fetch(portal, client, "POST", path + "/ack", {"csrf": "x"})
            assert status == 403
            await log_in(portal, client)
            status, _, page, _ = await fetch(portal, client, "GET", path)
            assert status == 200
            assert "Acknowledge" in page
            form = {"csrf": hidden(page, "csrf")}
            status, _, _, _ = await fetch(portal, client, "POST", path + "/ack", {"csrf": "no"})
            assert status == 403
            assert service.state.urgent
            status, _, page, _ = await fetch(portal, client, "POST", path + "/ack", form)
            assert status == 200
            assert "Acknowledged" in page
            assert not service.state.urgent
            status, _, page, _ = await fetch(portal, client, "POST", path + "/ack", form)
            assert status == 404
            assert "No open alert" in page
            clock.advance(hours=2)
            await service.step()
            assert len(receiver.bodies("priya")) == 1
            await service.close()
        await archive.close()

    run_portal(portal, body)


def test_without_the_daemon_the_page_says_so(template: Template, tmp_path: Path) -> None:
    """No daemon answering on the alerts socket: one line, 503, nothing acknowledged."""
    portal = copy_portal(template, tmp_path)

    async def body(client: Client) -> None:
        await log_in(portal, client)
        _, _, page, _ = await fetch(portal, client, "GET", "/alerts/ABCDEFGH")
        form = {"csrf": hidden(page, "csrf")}
        status, _, page, _ = await fetch(portal, client, "POST", "/alerts/ABCDEFGH/ack", form)
        assert status == 503
        assert "does not answer on its alerts socket" in page

    run_portal(portal, body)
