"""The values that flow through nocontact: what arrived, and what was decided about it.

Rules this module keeps:
1. Every value is frozen, slotted and keyword-only: once a message is normalized nobody
   can change what the rules saw, and the archive seals exactly that.
2. No value here does IO or reads the clock; `received_at` is always handed in.
3. `repr` of a message never shows its content, so a stray log or traceback cannot leak
   who wrote or what was said (invariant 2, "nothing is shown").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from proxy.alerts.card import Card
from proxy.alerts.order_mark import OrderMark
from proxy.alerts.tiers import NOTHING_FOUND, Assessment


class Channel(enum.StrEnum):
    """Where a message came in."""

    EMAIL = "email"
    SMS = "sms"
    VOICE = "voice"


class IdentityKind(enum.StrEnum):
    """What sort of handle a sender identity is."""

    EMAIL = "email"
    PHONE = "phone"
    DISPLAY_NAME = "display_name"


class Action(enum.StrEnum):
    """The two outcomes: the survivor gets it, or it is sealed away."""

    DELIVER = "deliver"
    HOLD = "hold"


class Kind(enum.StrEnum):
    """Which family of rule decided.

    direct: the sender is a blocked person. passive: someone else's message about him, or
    from an intermediary. allow: a listed safe sender (the lawyer, the court, the school).
    """

    DIRECT = "direct"
    PASSIVE = "passive"
    ALLOW = "allow"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """One way a sender showed themselves: an address, a number or a display name.

    `source` says where it was read (``from``, ``reply-to``, ``envelope``, ``caller`` ...), so
    a decision can say which header gave him away.
    """

    kind: IdentityKind
    value: str
    source: str

    def __repr__(self) -> str:
        return f"Identity(kind={self.kind.value}, source={self.source}, value=<redacted>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """The transport's own account of a message (SMTP MAIL FROM / RCPT TO, SMS From / To)."""

    sender: str
    recipients: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"Envelope(<redacted>, recipients={len(self.recipients)})"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A message as the rules see it, plus the original bytes the archive will keep.

    `senders` are who the message says it is from; `mentions` are addresses and numbers
    written inside it (forwarded headers, "call him on ..."), which only passive rules use.
    `text` is the readable text of every part (plain, HTML rendered to text, forwarded and
    quoted parts, the From, To and Cc lines). `search_text` is the same text folded for
    matching (see `proxy.fold`), computed once by normalize so the rules do no
    per-character work of their own. `authentication_results` are the receiving servers'
    SPF/DKIM/DMARC verdicts (email), kept so the seal records them. `complete` is False
    when reading the message closely stopped at a cap (`proxy.normalize.limits`): the
    rules then also scan all of `raw` (`proxy.rules.scan`); `headers_complete` is False
    when the header block itself was not read to its end.
    """

    channel: Channel
    raw: bytes
    envelope: Envelope
    senders: tuple[Identity, ...]
    mentions: tuple[Identity, ...]
    subject: str
    text: str
    search_text: str
    received_at: datetime
    provider_id: str | None = None
    authentication_results: tuple[str, ...] = ()
    defects: tuple[str, ...] = field(default=())
    complete: bool = True
    headers_complete: bool = True

    def __repr__(self) -> str:
        return (
            f"InboundMessage(channel={self.channel.value}, size={len(self.raw)}, "
            f"senders={len(self.senders)}, content=<redacted>)"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the rules decided and why.

    `rule_id` names the config entry that matched (``people.mark.emails``); `reason` says in
    words what matched. Both are sealed with a held item; neither is ever logged.
    `kind` is None when no rule matched and the message is simply delivered.
    `assessment` is how urgent a held item is, read from its text (`proxy.alerts.threats`):
    a tier and reason codes, sealed with it; a delivered message is never assessed.
    `order` is what his court order makes of a held item of his (`proxy.alerts.logistics`):
    its topic and logistics, sealed with it; None for anyone without an order.
    `card` is, for an item urgent for child logistics, the facts of the automatic card
    (`proxy.alerts.card`: no word of his); it is told to the alerts, never sealed.
    """

    action: Action
    kind: Kind | None
    rule_id: str | None
    reason: str
    assessment: Assessment = NOTHING_FOUND
    order: OrderMark | None = None
    card: Card | None = None

    @property
    def held(self) -> bool:
        return self.action is Action.HOLD

    def __repr__(self) -> str:
        return "Decision(<redacted>)"


DELIVER_BY_DEFAULT = Decision(
    action=Action.DELIVER, kind=None, rule_id=None, reason="no rule matched"
)
