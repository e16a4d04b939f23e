"""What the pipeline tells the alerts of a held item: no content, only where it sits.

Rules this module keeps:
1. `Held` carries the item's sequence number, its assessment (tiers.py), the person its
   rule names, the channel and, for a direct hold only, the sender's identity (a passive
   hold's sender is a third party: a new friend mentioning him is no new identity of his).
   Never a subject, a body or a name. An item urgent for child logistics under a court
   order also carries its card (card.py: the children's names as the config writes
   them, fixed labels, dates and times written out: nothing of his) and the way it came
   (its channel, an email's sealed recipients and IMAP pull account), for the automatic
   card.
2. The person is read from the rule id: `people.<id>.<kind>` names person `<id>`; any
   other rule (an intermediary, a voicemail on a held call) names none.
3. Pure values.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.alerts.card import Card, Way
from proxy.alerts.tiers import Assessment
from proxy.message import Decision, InboundMessage, Kind


@dataclass(frozen=True, slots=True, kw_only=True)
class Held:
    """One held item, as the alerts service hears of it (rule 1)."""

    sequence: int  # its index in the archive's log
    assessment: Assessment
    person: str | None  # the person id its rule names, if any
    channel: str
    identity: str  # the sender's address or number, direct holds only ("" otherwise)
    card: Card | None = None  # urgent child logistics only (rule 1)
    way: Way | None = None  # with a card: how the item came


def person_of(rule_id: str | None) -> str | None:
    """The person a rule id names (rule 2)."""
    parts = (rule_id or "").split(".")
    return parts[1] if len(parts) >= 3 and parts[0] == "people" and parts[1] else None


def held(message: InboundMessage, decision: Decision, sequence: int,
         assessment: Assessment, *, imap: str | None = None) -> Held:  # fmt: skip
    """The `Held` for a message sealed at `sequence` (rule 1); `imap` is the
    "<account>/<folder>" it was pulled from, if it was."""
    identity = ""
    if decision.kind is Kind.DIRECT:
        identity = message.senders[0].value if message.senders else message.envelope.sender
    way = None
    if decision.card is not None:
        way = Way(channel=message.channel.value, recipients=message.envelope.recipients,
                  imap=imap)  # fmt: skip
    return Held(sequence=sequence, assessment=assessment, person=person_of(decision.rule_id),
                channel=message.channel.value, identity=identity, card=decision.card,
                way=way)  # fmt: skip
