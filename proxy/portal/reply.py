"""The portal's reply page: a contact answers an item of his under a court order.

Rules this module keeps:
1. The flow is answering.py's (who first, then the form, then the item; custody first;
   a failed send recorded as "reply-failed"; one at a time; fixed log events), with
   replying.py's rules for who may reply, the words and the record.
2. One that came from an address or number not among his in the config (a forged From),
   or that no configured way can answer (no `outbound:` section for an email, no SMS
   channel for a text), is refused (409) with one line. Sending is delivery.py's (rule 7).
3. A reply is not once only: each is its own record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from proxy.access import delivery, release, replying
from proxy.archive.metadata import SealedItem
from proxy.config import Config
from proxy.portal.answering import Answer, Composed, add_route
from proxy.portal.sessions import Session
from proxy.portal.web import CONFIG

EMPTY = {"template": "", "proposal": ""}


def routes(app: web.Application) -> None:
    add_route(app, REPLY)


def offer(request: web.Request, session: Session, metadata: SealedItem) -> str | None:
    """For the item page: None if this contact may reply to this item (show the form),
    else why not; "" where a reply is not to be mentioned (a lawyer; an item with no
    order)."""
    config = request.app[CONFIG]
    role = release.role_of(config, session.unlocked.contact)
    if replying.refusal(role, metadata) is not None:
        return ""
    try:
        delivery.plan_reply(config, replying.addressee(config, metadata), "", datetime.now(UTC))
    except (replying.CannotReply, delivery.CannotDeliver) as cannot:
        return str(cannot)
    return None


def form_values(values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What reply_form.html needs besides the CSRF token and the sequence."""
    return {"templates": replying.TEMPLATES, "limit": replying.PROPOSAL_LIMIT,
            "reply_values": dict(values or EMPTY)}  # fmt: skip


def _compose(
    config: Config, contact: str, metadata: SealedItem, values: dict[str, str]
) -> Composed:
    text = replying.reply_text(values)
    addressee = replying.addressee(config, metadata)
    route = delivery.plan_reply(config, addressee, text, datetime.now(UTC))
    how = "by email" if addressee.by_email else "by text"
    return Composed(text=text, route=route, done=f"Your reply was sent to him {how}.")


REPLY = Answer(
    kind=replying.REPLY, noun="reply", template="reply.html", may=replying.may_reply,
    read_form=replying.read_form, form_values=form_values, no_order=replying.NO_ORDER,
    compose=_compose, reason=replying.reply_reason,
    refusals=(replying.CannotReply, delivery.CannotDeliver),
)  # fmt: skip
