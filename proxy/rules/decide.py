"""Deciding a message's fate: hold it, or let the survivor have it.

Rules this module keeps:
1. Pure: `decide(message, rulebook)` reads nothing but its arguments.
2. Precedence is fixed and total: direct beats allow, allow beats passive, and a message no
   rule matches is delivered. An allow entry can never rescue a message from him.
3. Direct rules look at every sender identity (From, Sender, Reply-To, Return-Path,
   Resent-*, envelope, caller): he is caught whichever header he hides in. Allow rules
   look only at the author (From, or the caller), the identity a reader trusts.
4. Passive rules: anything from an intermediary; any mention of a blocked person's name or
   alias (whole words, in folded text) or of his address, domain or number.
5. Every decision names the rule (a config key) and says why, without quoting content.
6. A message read only in part (past a cap, `InboundMessage.complete` False) is also
   scanned whole (`proxy.rules.scan`), each byte once. A header block not read to its end
   is scanned with the direct rules, and anything found there holds the message at once
   (his identity as direct: a sender header may be there, and no allowed From rescues
   it; an intermediary's as passive); the rest of the message after the allow rules, as
   passive. Past the caps the rules err towards holding.
7. A held message is assessed for urgency (`proxy.alerts.threats`) on the text its
   decision read, or, for his mail decided on its header block, on the whole message
   read within the same caps (`proxy.readers`); a delivered one never is. The assessment
   travels in the decision and is sealed with the item.
8. A message held by a direct rule of a person with a `court_order` is also read for
   child logistics (`proxy.alerts.logistics`, on the same text, dated by its received
   time): its logistics reasons join the assessment, and its order mark (topic,
   logistics, channel allowed) travels in the decision, sealed with the item; an urgent
   one's card (logistics.py rule 7) travels in the decision to the alerts, unsealed.
"""

from __future__ import annotations

import dataclasses

from proxy.alerts.held import person_of
from proxy.alerts.logistics import read_order
from proxy.alerts.threats import assess_folded
from proxy.alerts.tiers import Assessment
from proxy.fold import fold
from proxy.identity import domain_suffixes
from proxy.message import (
    DELIVER_BY_DEFAULT,
    Action,
    Decision,
    Identity,
    IdentityKind,
    InboundMessage,
    Kind,
)
from proxy.normalize.limits import header_block_end
from proxy.rules.book import IdentityTable, Rule, Rulebook
from proxy.rules.scan import scan

# The identities allow rules trust: who the reader would believe wrote it.
_AUTHOR_SOURCES = frozenset({"from", "caller"})


def decide(message: InboundMessage, rules: Rulebook) -> Decision:
    """Hold or deliver `message`, by the precedence in the module rules; a held one with
    how urgent it is (rule 7)."""
    direct = decide_direct(message, rules)
    decision = direct if direct is not None else decide_not_direct(message, rules)
    return assessed(decision, message, rules)


def assessed(decision: Decision, message: InboundMessage, rules: Rulebook) -> Decision:
    """A held decision with the assessment of `message`'s text (its search text, folded),
    and, from a person with a court order, its order mark; a delivered one as it is
    (rules 7 and 8)."""
    if not decision.held:
        return decision
    assessment = assess_folded(message.search_text, rules.threats)
    person = person_of(decision.rule_id) if decision.kind is Kind.DIRECT else None
    profile = rules.orders.get(person) if person is not None else None
    if profile is None:
        return dataclasses.replace(decision, assessment=assessment)
    reading = read_order(
        message.search_text, f"{message.subject}\n{message.text}", profile,
        channel=message.channel.value, received_at=message.received_at,
    )  # fmt: skip
    return dataclasses.replace(
        decision, assessment=Assessment.of((*assessment.reasons, *reading.reasons)),
        order=reading.mark, card=reading.card,
    )  # fmt: skip


def decide_not_direct(message: InboundMessage, rules: Rulebook) -> Decision:
    """The decision on a message `decide_direct` has already cleared (allow, passive, or
    deliver): a reader that decided the direct rules on the header block need not again."""
    for identity in message.senders:
        if identity.source in _AUTHOR_SOURCES:
            rule = _look_up(rules.allow, identity, names=False)
            if rule is not None:
                return Decision(
                    action=Action.DELIVER,
                    kind=Kind.ALLOW,
                    rule_id=rule.rule_id,
                    reason=f"{identity.source} {_noun(identity)} is on the allow list",
                )
    return _passive(message, rules) or DELIVER_BY_DEFAULT


def _passive(message: InboundMessage, rules: Rulebook) -> Decision | None:
    """The passive hold, if the message is from an intermediary or is about him."""
    for identity in message.senders:
        rule = _look_up(rules.intermediaries, identity, names=False)
        if rule is not None:
            return _hold(
                Kind.PASSIVE,
                rule,
                f"{identity.source} {_noun(identity)} is intermediary {rule.what}",
            )
    for identity in message.mentions:
        rule = _look_up(rules.direct, identity, names=False)
        if rule is not None:
            return _hold(Kind.PASSIVE, rule, f"the text quotes {rule.what}'s {_noun(identity)}")
    rule = _mentioned_name(message.search_text, rules)
    if rule is not None:
        return _hold(
            Kind.PASSIVE, rule, f"the text mentions {rule.what} by {rule.rule_id.rsplit('.', 1)[1]}"
        )
    if not message.complete:
        # A header block not read to its end was scanned by decide_direct (rule 6).
        start = 0 if message.headers_complete else _header_block_end(message.raw)
        found = scan(message.raw, rules.scan, start)
        if found is not None:
            what = "intermediary " if found.intermediary else ""
            return _hold(
                Kind.PASSIVE, Rule(rule_id=found.rule_id, what=found.what),
                f"the message names {what}{found.what} (found by the linear scan)",
            )  # fmt: skip
    return None


def decide_direct(message: InboundMessage, rules: Rulebook) -> Decision | None:
    """The direct hold, if any sender identity is a blocked person's; else None.

    Needs only the senders, so a message can be decided from its headers alone when it
    is from him (the orchestrator then never parses the body).
    """
    for identity in message.senders:
        rule = _look_up(rules.direct, identity, names=True)
        if rule is not None:
            return _hold(Kind.DIRECT, rule, f"{identity.source} {_noun(identity)} is {rule.what}")
    if not message.headers_complete:
        found = scan(message.raw, rules.scan, 0, _header_block_end(message.raw))
        if found is not None:
            kind = Kind.PASSIVE if found.intermediary else Kind.DIRECT
            return _hold(
                kind, Rule(rule_id=found.rule_id, what=found.what),
                f"the header block names {found.what} past what was read closely",
            )  # fmt: skip
    return None


def _header_block_end(raw: bytes) -> int:
    """Where the header block ends (the whole message if no blank line ends it)."""
    end = header_block_end(raw)
    return len(raw) if end is None else end


def _hold(kind: Kind, rule: Rule, reason: str) -> Decision:
    return Decision(action=Action.HOLD, kind=kind, rule_id=rule.rule_id, reason=reason)


def _noun(identity: Identity) -> str:
    return {
        IdentityKind.EMAIL: "address",
        IdentityKind.PHONE: "number",
        IdentityKind.DISPLAY_NAME: "name",
    }[identity.kind]


def _look_up(table: IdentityTable, identity: Identity, *, names: bool) -> Rule | None:
    """The rule `identity` matches in `table`, if any (identities arrive canonical)."""
    if identity.kind is IdentityKind.EMAIL:
        found = table.emails.get(identity.value)
        if found is not None or not table.domains:
            return found
        domain = identity.value.rpartition("@")[2]
        for suffix in domain_suffixes(domain):
            found = table.domains.get(suffix)
            if found is not None:
                return found
        return None
    if identity.kind is IdentityKind.PHONE:
        return table.phones.get(identity.value)
    if names and table.names:
        return table.names.get(fold(identity.value))
    return None


def _mentioned_name(text: str, rules: Rulebook) -> Rule | None:
    """The first blocked name or alias that stands as whole words in the folded `text`."""
    if rules.mention_names is None:
        return None
    last = len(text) - 1
    for index, start, end in rules.mention_names.find_matches_as_indexes(text, overlapping=True):
        if start > 0 and text[start - 1].isalnum():
            continue
        if end <= last and text[end].isalnum():
            continue
        return rules.mention_rules[index]
    return None
