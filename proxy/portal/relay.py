"""The portal's relay page: a contact sends her a neutral summary of an item under a court order.

Rules this module keeps:
1. The flow is answering.py's (who first, then the form, then the item; custody first;
   a failed delivery recorded as "relay-failed"; one at a time; fixed log events), with
   relaying.py's rules for who may relay, the fields and the record.
2. The summary goes through the daemon's own code (access/delivery.py rule 6), an email's
   Reply-To the relaying contact's own address (`email_of`), a text ending with the line
   to answer them directly (relaying.py rule 4). One no configured channel can carry is
   refused (409).
3. A relay is not once only: a contact may send a correction; each is its own record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from proxy.access import delivery, relaying, release
from proxy.archive.metadata import SealedItem
from proxy.config import Config
from proxy.portal.answering import Answer, Composed, add_route
from proxy.portal.sessions import Session
from proxy.portal.web import CONFIG

EMPTY = {field.name: "" for field in relaying.FIELDS}


def routes(app: web.Application) -> None:
    add_route(app, RELAY)


def offer(request: web.Request, session: Session, metadata: SealedItem) -> str | None:
    """For the item page: None if this contact may relay this item (show the form), else
    why not; "" where a relay is not to be mentioned (a lawyer; an item with no order)."""
    config = request.app[CONFIG]
    role = release.role_of(config, session.unlocked.contact)
    if relaying.refusal(role, metadata) is not None:
        return ""
    try:
        delivery.plan_summary(config, metadata, "", "", datetime.now(UTC))
    except delivery.CannotDeliver as cannot:
        return str(cannot)
    return None


def email_of(config: Config, contact: str) -> str | None:
    """The contact's own address in the config: her answers to a summary go there (rule 2)."""
    return next((c.email for c in config.contacts if c.name == contact), None)


def form_values(values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What relay_form.html needs besides the CSRF token and the sequence."""
    return {"fields": relaying.FIELDS, "values": dict(values or EMPTY)}


def _compose(
    config: Config, contact: str, metadata: SealedItem, values: dict[str, str]
) -> Composed:
    text = relaying.summary_text(contact, values, by_text=delivery.texts_her(metadata))
    route = delivery.plan_summary(config, metadata, relaying.header(contact), text,
                                  datetime.now(UTC),
                                  reply_to=email_of(config, contact))  # fmt: skip
    where = "her inbox" if isinstance(route, delivery.EmailRoute) else "her phone"
    return Composed(text=text, route=route, done=f"Your summary was sent to {where}.")


RELAY = Answer(
    kind=relaying.RELAY, noun="relay", template="relay.html", may=relaying.may_relay,
    read_form=relaying.read_form, form_values=form_values, no_order=relaying.NO_ORDER,
    compose=_compose, reason=relaying.relay_reason, refusals=(delivery.CannotDeliver,),
)  # fmt: skip
