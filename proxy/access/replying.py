"""A reply to him: a contact answers an item of his under a court order, in fixed words.

Rules this module keeps:
1. Who: any trusted contact (config role `contact`), as for a relay (relaying.py rule 1):
   she answers her contact, and her contact answers him. A lawyer reads, reports and
   exports; someone the config no longer names may do nothing.
2. What: only an item whose seal carries a court order mark (`SealedItem.order`): the
   order allows contact about the children, and nothing else gets an answer.
3. The words are a template (`TEMPLATES`): "Confirmed." or "Not possible. I propose:
   <proposal>", the proposal required there and refused with Confirmed (the text sent is
   what was chosen), one line, at most `PROPOSAL_LIMIT` characters, no control character.
   Anything else is one line saying what to fix (`read_form`), and nothing is read.
4. Where: to the address or number the item came from (`SealedItem.main_sender`), and
   only if that is one of his configured `emails` or `phones` (the person the order mark
   names), compared as the rules compare them (`canonical_email`, E.164). The reply goes
   to the configured spelling, never to one only the message wrote: a forged From, or a
   +tag a server would not fold, can never make nocontact write to anyone else
   (`addressee`; `CannotReply`, one line, otherwise). And only by a channel his court
   order, as the config has it now, allows him: email for a reply by email, sms for a
   text (an answer to a call or voicemail is a text). A reply is contact with him, so it
   keeps to the order's terms; a person whose order is no longer in the config is held to
   no channel list (the item's mark is what allows the reply).
5. The reply is one custody record (action "reply", items: the original's sequence), its
   reason in one fixed form (`reply_reason`): "reply to leaf <the original's leaf hash,
   hex>", a newline, then exactly the text sent. Signed by the contact and sealed to the
   contacts, it is its own archive entry beside his message; `read_reply` reads it back
   (None for any other record). "reply-failed" (its reason: why) is recorded after a
   send that failed.
6. Pure: values in, values out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.archive.metadata import SealedCustody, SealedItem
from proxy.config import Config
from proxy.errors import NocontactError
from proxy.identity import canonical_email, e164
from proxy.message import Channel

REPLY, REPLY_FAILED = "reply", "reply-failed"
SUBJECT = "About the children"  # an email reply's fixed subject
PROPOSAL_LIMIT = 300
CONFIRMED, NOT_POSSIBLE = "confirmed", "not_possible"
TEMPLATES = ((CONFIRMED, "Confirmed."), (NOT_POSSIBLE, "Not possible. I propose: …"))
NO_ORDER = ("This item is from no one with a court order (its seal carries no order mark): "
            "there is nothing to reply to.")  # fmt: skip
LAWYER = "Only a trusted contact can reply: lawyers read, report and export."
NOT_NAMED = "Your name is not among the contacts in the config: no reply can be sent."
CHOOSE = "Choose a reply: Confirmed, or Not possible with what you propose."
NO_PROPOSAL = "Not possible needs a proposal: say what you propose instead."
NOT_WITH_CONFIRMED = "Confirmed takes no proposal: clear it, or choose Not possible."
NO_PERSON = ("The person this item's court order names is no longer in the config: there "
             "is no one to reply to.")  # fmt: skip
NOT_HIS_EMAIL = ("This email came from an address that is not one of his in the config "
                 "(people[].emails): a reply goes only to an address of his the config "
                 "lists, so none can be sent.")  # fmt: skip
NOT_HIS_PHONE = ("This came from a number that is not one of his in the config "
                 "(people[].phones): a reply goes only to a number of his the config "
                 "lists, so none can be sent.")  # fmt: skip
NO_CHANNEL = "This item came by no channel this version knows, so no reply can go back by it."
NOT_BY_EMAIL = ("His court order does not allow contact by email (people[].court_order."
                "channels), so no reply can go by email.")  # fmt: skip
NOT_BY_TEXT = ("His court order does not allow contact by text (people[].court_order."
               "channels has no sms), so no reply can go back to his number.")  # fmt: skip
_LEAF = re.compile(r"reply to leaf ([0-9a-f]{64})\n")
_LINE_BREAKS = frozenset({"Zl", "Zp"})  # U+2028, U+2029: line breaks too


class CannotReply(NocontactError):
    """No reply can go to where this item came from (rule 4); the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A reply record, read back: the original's leaf hash and the text sent to him."""

    leaf_hash: str  # hex
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Addressee:
    """Where a reply goes (rule 4): an address of his by email, or a number of his by text."""

    by_email: bool
    address: str  # as the config writes it (an email), or E.164


def may_reply(role: str | None) -> str | None:
    """Why someone of this config role may not reply (rule 1), or None."""
    if role is None:
        return NOT_NAMED
    return None if role == "contact" else LAWYER


def refusal(role: str | None, metadata: SealedItem) -> str | None:
    """Why this contact may not reply to this item (rules 1 and 2), or None."""
    return may_reply(role) or (NO_ORDER if metadata.order is None else None)


def read_form(form: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The choice and the proposal as typed (trimmed), and what to fix, if anything
    (rule 3)."""
    values = {"template": form.get("template", "").strip(),
              "proposal": form.get("proposal", "").replace("\r\n", "\n").strip()}  # fmt: skip
    template, proposal = values["template"], values["proposal"]
    if template not in (CONFIRMED, NOT_POSSIBLE):
        return values, CHOOSE
    if template == CONFIRMED:
        return values, NOT_WITH_CONFIRMED if proposal else None
    return values, _proposal_fix(proposal)


def _proposal_fix(proposal: str) -> str | None:
    if not proposal:
        return NO_PROPOSAL
    if len(proposal) > PROPOSAL_LIMIT:
        return f"Keep the proposal within {PROPOSAL_LIMIT} characters."
    if any(c == "\n" or unicodedata.category(c) in _LINE_BREAKS for c in proposal):
        return "The proposal is one line."
    if any(unicodedata.category(c) == "Cc" for c in proposal):
        return "The proposal holds a control character: plain text only."
    return None


def reply_text(values: Mapping[str, str]) -> str:
    """Exactly what he receives (rule 3), for values `read_form` found nothing to fix in."""
    if values["template"] == CONFIRMED:
        return "Confirmed."
    return f"Not possible. I propose: {values['proposal']}"


def addressee(config: Config, metadata: SealedItem) -> Addressee:
    """Where a reply to this item goes (rule 4), or `CannotReply` saying why not."""
    mark = metadata.order
    person = next((p for p in config.people if mark and p.id == mark.person), None)
    if person is None:
        raise CannotReply(NO_PERSON)
    allowed = person.court_order.channels if person.court_order is not None else None
    came_from = metadata.main_sender
    if metadata.channel is Channel.EMAIL:
        mailbox = canonical_email(came_from)
        found = [e for e in person.emails if mailbox and canonical_email(e) == mailbox]
        if not found:
            raise CannotReply(NOT_HIS_EMAIL)
        if allowed is not None and "email" not in allowed:
            raise CannotReply(NOT_BY_EMAIL)
        return Addressee(by_email=True, address=found[0])
    if metadata.channel not in (Channel.SMS, Channel.VOICE):
        raise CannotReply(NO_CHANNEL)
    if allowed is not None and "sms" not in allowed:
        raise CannotReply(NOT_BY_TEXT)
    number = e164(came_from, config.default_region)
    found = [p for p in person.phones if number and e164(p, config.default_region) == number]
    if not found:
        raise CannotReply(NOT_HIS_PHONE)
    return Addressee(by_email=False, address=found[0])


def reply_reason(leaf_hash: bytes, text: str) -> str:
    """The reply record's reason (rule 5)."""
    return f"reply to leaf {leaf_hash.hex()}\n{text}"


def read_reply(record: SealedCustody) -> Reply | None:
    """A reply record's leaf hash and text (rule 5), or None if it is not one."""
    found = _LEAF.match(record.reason) if record.action == REPLY else None
    if found is None:
        return None
    return Reply(leaf_hash=found[1], text=record.reason[found.end() :])
