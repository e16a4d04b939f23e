"""The rulebook: a config's people, intermediaries and allow list compiled for fast look-up.

Rules this module keeps:
1. Compiled once per config (at start and on reload), then only read: deciding on a
   message costs a few hash look-ups and one Aho-Corasick pass over its text, whatever the
   number of identities and names (the benchmark in bench/rules.py holds us to that).
2. Every entry is stored in its canonical form (`proxy.identity`, `proxy.fold`), the same
   form normalize gives a message, so equal means "same mailbox, same line, same name".
3. Each entry remembers the config key it came from (`people.mark.emails`): a decision can
   always say which rule matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import ahocorasick_rs

from proxy.config.model import Config
from proxy.fold import fold
from proxy.identity import canonical_email, e164


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One config entry that can match: its id (the config key) and what it stands for."""

    rule_id: str
    what: str


@dataclass(slots=True, kw_only=True)
class IdentityTable:
    """One family of identities: canonical form -> the rule it belongs to."""

    emails: dict[str, Rule] = field(default_factory=dict)
    domains: dict[str, Rule] = field(default_factory=dict)
    phones: dict[str, Rule] = field(default_factory=dict)
    names: dict[str, Rule] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rulebook:
    """Compiled rules: `direct` (the blocked), `passive` (intermediaries), `allow`, names."""

    direct: IdentityTable
    intermediaries: IdentityTable
    allow: IdentityTable
    mention_names: ahocorasick_rs.AhoCorasick | None  # every folded name and alias
    mention_rules: tuple[Rule, ...]  # the rule of each name, by pattern index


def compile_rules(config: Config) -> Rulebook:
    """Build the look-up tables for `config` (already validated)."""
    region = config.default_region
    direct, intermediaries, allow = IdentityTable(), IdentityTable(), IdentityTable()
    mentions: dict[str, Rule] = {}
    for person in config.people:
        key = f"people.{person.id}"
        _add_emails(direct, person.emails, Rule(rule_id=f"{key}.emails", what=person.id))
        _add_domains(direct, person.domains, Rule(rule_id=f"{key}.domains", what=person.id))
        _add_phones(direct, person.phones, region, Rule(rule_id=f"{key}.phones", what=person.id))
        named = [
            (person.display_names, f"{key}.display_names"),
            ([person.name], f"{key}.name"),
            (person.aliases, f"{key}.aliases"),
        ]
        for names, rule_id in named:
            rule = Rule(rule_id=rule_id, what=person.id)
            for name in names:
                direct.names.setdefault(fold(name), rule)
        for names, rule_id in named[1:]:
            rule = Rule(rule_id=rule_id, what=person.id)
            for name in names:
                folded = fold(name)
                if folded:
                    mentions.setdefault(folded, rule)
    for middle in config.intermediaries:
        rule = Rule(rule_id=f"intermediaries.{middle.id}", what=middle.id)
        _add_emails(intermediaries, middle.emails, rule)
        _add_phones(intermediaries, middle.phones, region, rule)
    _add_emails(allow, config.allow.emails, Rule(rule_id="allow.emails", what="allowed"))
    _add_domains(allow, config.allow.domains, Rule(rule_id="allow.domains", what="allowed"))
    _add_phones(allow, config.allow.phones, region, Rule(rule_id="allow.phones", what="allowed"))
    return Rulebook(
        direct=direct,
        intermediaries=intermediaries,
        allow=allow,
        mention_names=ahocorasick_rs.AhoCorasick(list(mentions)) if mentions else None,
        mention_rules=tuple(mentions.values()),
    )


def _add_emails(table: IdentityTable, addresses: Iterable[str], rule: Rule) -> None:
    for address in addresses:
        canonical = canonical_email(address)
        if canonical is not None:
            table.emails.setdefault(canonical, rule)


def _add_domains(table: IdentityTable, domains: Iterable[str], rule: Rule) -> None:
    for domain in domains:
        table.domains.setdefault(domain.lower().rstrip("."), rule)


def _add_phones(
    table: IdentityTable, phones: Iterable[str], region: str | None, rule: Rule
) -> None:
    for phone in phones:
        number = e164(phone, region)
        if number is not None:
            table.phones.setdefault(number, rule)
