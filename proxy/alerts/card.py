"""The automatic logistics card: facts read from an urgent item of his, never his words.

Rules this module keeps:
1. A `Card` has five optional fields (`FIELDS`: child, date, time, place, topic), each a
   value that comes from the config (a child's name as the order writes it), a fixed list
   (a place or topic label of `proxy/alerts/lexicons/logistics.yaml`, "the children") or
   a date or time written out here ("Thursday 12 March", "17:30"). None is ever a
   substring of his message (logistics.py rule 7 makes them).
2. `card_text` is exactly what she receives: the fixed first line (`HEADER`), a blank
   line, one line per field present ("Child: Lily"), a blank line, the fixed last line
   (`FOOTER`).
3. A `Way` is how the item came, so the card goes to her the way a relay would
   (access/delivery.py rule 6): the channel, and for an email the recipients sealed with
   it and the IMAP pull account it came from, if any.
4. Both round-trip through plain JSON (`to_json` / `from_json`) for the alerts' sealed
   state; `from_json` is total: anything it cannot read is None.
5. Values only: frozen, no IO; `repr` names no field's value.
6. A card sent is recorded in the archive's log before it goes, as the daemon's own
   custody record (contact "daemon", action `CARD`, items: the item's sequence, reason:
   exactly the text she receives), sealed to the contacts like every record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

HEADER = "Logistics card — read automatically from a message about the children, not his words"
FOOTER = "Your contact has been told and may send you a summary."
FIELDS = (("child", "Child"), ("date", "Date"), ("time", "Time"), ("place", "Place"),
          ("topic", "Topic"))  # fmt: skip
CARD = "card"  # the custody action of a card sent (rule 6)
DAEMON = "daemon"  # who records it (as the writer's own "contacts-changed" records)
_MOST = 200  # characters a field read back may have
_CHANNELS = frozenset(["email", "sms", "voice"])  # proxy.message.Channel's values


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    """The facts of one urgent logistics item (rule 1); "" where none was read."""

    child: str = ""
    date: str = ""
    time: str = ""
    place: str = ""
    topic: str = ""

    def __repr__(self) -> str:
        present = [name for name, _ in FIELDS if getattr(self, name)]
        return f"Card(fields={present})"

    def to_json(self) -> dict[str, str]:
        return {name: getattr(self, name) for name, _ in FIELDS if getattr(self, name)}

    @classmethod
    def from_json(cls, value: object) -> Card | None:
        """The card as saved, or None (rule 4)."""
        if not isinstance(value, Mapping):
            return None
        found = {name: value.get(name, "") for name, _ in FIELDS}
        if not all(isinstance(v, str) and len(v) <= _MOST and v.isprintable()
                   for v in found.values()):  # fmt: skip
            return None
        return cls(**found)


def card_text(card: Card) -> str:
    """What she receives (rule 2)."""
    lines = [f"{label}: {getattr(card, name)}" for name, label in FIELDS if getattr(card, name)]
    return "\n".join([HEADER, "", *lines, "", FOOTER]) + "\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Way:
    """How an item came (rule 3)."""

    channel: str  # a `proxy.message.Channel` value: email, sms, voice
    recipients: tuple[str, ...] = ()
    imap: str | None = None  # "<account>/<folder>" of an IMAP pull, None otherwise

    def __repr__(self) -> str:
        return f"Way(channel={self.channel})"

    def to_json(self) -> dict[str, object]:
        return {"channel": self.channel, "recipients": list(self.recipients),
                "imap": self.imap}  # fmt: skip

    @classmethod
    def from_json(cls, value: object) -> Way | None:
        """The way as saved, or None (rule 4)."""
        if not isinstance(value, Mapping):
            return None
        channel, recipients, imap = value.get("channel"), value.get("recipients"), value.get("imap")
        if channel not in _CHANNELS or not isinstance(recipients, list):
            return None
        if not all(isinstance(r, str) for r in recipients):
            return None
        if imap is not None and not isinstance(imap, str):
            return None
        return cls(channel=str(channel), recipients=tuple(recipients), imap=imap)
