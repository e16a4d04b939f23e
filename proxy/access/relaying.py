"""The relay: a contact's neutral summary of a held item under a court order, for her.

Rules this module keeps:
1. Who: any trusted contact (config role `contact`) may relay, not only the order's
   `relay` contact: an urgent item that the relay contact does not answer escalates to
   the other contacts, who must be able to act on it. A lawyer reads, reports and exports;
   someone the config no longer names may do nothing (release.py rule 1, its words).
2. What: only an item whose seal carries a court order mark (`SealedItem.order`): the
   mark was made when it was held, so a relay never depends on today's config. Every item
   of a person with an order is one, whatever its topic: the contact judges.
3. The summary is the contact's words in guided fields (`FIELDS`: child, what, when,
   where, what is asked), each plain text within its length; `what` is required; single
   line fields take no line breaks; no field takes a control character. Anything else is
   one line saying what to fix (`read_form`), and nothing is read from the archive.
4. The text she receives (`summary_text`) starts with one fixed line naming the contact by
   first name and saying it is not his words (`header`), then one line per filled field.
   It never carries a word of his message: only what the contact typed. A summary she
   receives by text ends with one fixed line (`answer_line`) telling her to answer her
   contact directly, not the number it came from (an email's Reply-To is her contact's
   address: delivery.py rule 6): she answers her contact, never him.
5. The relay is one custody record (action "relay", items: the original's sequence), its
   reason in one fixed form (`relay_reason`): "relay of leaf <the original's leaf hash,
   hex>", a newline, then exactly the text she receives. Signed by the contact and sealed
   to the contacts as every custody record is, it is its own archive entry naming the
   original; `read_relay` reads it back (None for any other record). "relay-failed"
   (its reason: why) is recorded after a delivery that failed.
6. Pure: values in, values out.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.archive.metadata import SealedCustody, SealedItem

RELAY, RELAY_FAILED = "relay", "relay-failed"
NO_ORDER = ("This item is from no one with a court order (its seal carries no order mark): "
            "there is nothing to relay.")  # fmt: skip
LAWYER = "Only a trusted contact can relay: lawyers read, report and export."
_LEAF = re.compile(r"relay of leaf ([0-9a-f]{64})\n")


@dataclass(frozen=True, slots=True)
class Field:
    """One guided field of the summary form."""

    name: str
    label: str
    limit: int  # characters
    multiline: bool = False
    required: bool = False


FIELDS = (
    Field("child", "Child", 100),
    Field("what", "What", 600, multiline=True, required=True),
    Field("when", "When", 200),
    Field("where", "Where", 200),
    Field("asked", "What is asked", 600, multiline=True),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Relay:
    """A relay record, read back: the original's leaf hash and the text she received."""

    leaf_hash: str  # hex
    text: str


def may_relay(role: str | None) -> str | None:
    """Why someone of this config role may not relay (rule 1), or None."""
    if role is None:
        return "Your name is not among the contacts in the config: nothing can be relayed."
    return None if role == "contact" else LAWYER


def refusal(role: str | None, metadata: SealedItem) -> str | None:
    """Why this contact may not relay this item (rules 1 and 2), or None."""
    return may_relay(role) or (NO_ORDER if metadata.order is None else None)


def read_form(form: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The fields as typed (trimmed, line breaks as "\\n"), and what to fix, if anything
    (rule 3)."""
    values = {f.name: form.get(f.name, "").replace("\r\n", "\n").strip() for f in FIELDS}
    for field in FIELDS:
        value = values[field.name]
        if field.required and not value:
            return values, f"{field.label} is required: say what he asks about or tells."
        if len(value) > field.limit:
            return values, f"Keep {field.label} within {field.limit} characters."
        if not field.multiline and "\n" in value:
            return values, f"{field.label} is one line."
        if any(unicodedata.category(c) == "Cc" and c != "\n" for c in value):
            return values, f"{field.label} holds a control character: plain text only."
    return values, None


def first_name(contact: str) -> str:
    words = contact.split(maxsplit=1)
    return words[0] if words else "your contact"


def header(contact: str) -> str:
    """The fixed first line (rule 4)."""
    return f"Summary from your contact {first_name(contact)} — not his words"


def answer_line(contact: str) -> str:
    """The fixed last line of a texted summary (rule 4)."""
    return f"To answer, write to {first_name(contact)} directly, not to this number."


def summary_text(contact: str, values: Mapping[str, str], *, by_text: bool = False) -> str:
    """What she receives (rule 4): the header, a blank line, one line per filled field;
    `by_text`, a blank line and the answer line after them."""
    lines = [f"{f.label}: {values[f.name]}" for f in FIELDS if values.get(f.name)]
    ending = ["", answer_line(contact)] if by_text else []
    return "\n".join([header(contact), "", *lines, *ending]) + "\n"


def relay_reason(leaf_hash: bytes, text: str) -> str:
    """The relay record's reason (rule 5)."""
    return f"relay of leaf {leaf_hash.hex()}\n{text}"


def read_relay(record: SealedCustody) -> Relay | None:
    """A relay record's leaf hash and text (rule 5), or None if it is not one."""
    found = _LEAF.match(record.reason) if record.action == RELAY else None
    if found is None:
        return None
    return Relay(leaf_hash=found[1], text=record.reason[found.end() :])
