"""The rulebook: a config's people, intermediaries and allow list compiled for fast look-up.

Rules this module keeps:
1. Compiled once per config (at start and on reload), then only read: deciding on a
   message costs a few hash look-ups and one Aho-Corasick pass over its text, whatever the
   number of identities and names (the benchmark in bench/rules.py holds us to that).
2. Every entry is stored in its canonical form (`proxy.identity`, `proxy.fold`), the same
   form normalize gives a message, so equal means "same mailbox, same line, same name".
3. Each entry remembers the config key it came from (`people.mark.emails`): a decision can
   always say which rule matched.
4. Each person's court order is compiled here too (`proxy.alerts.logistics`), by person id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ahocorasick_rs
import phonenumbers

from proxy.alerts.logistics import OrderProfile, compile_order
from proxy.alerts.threats import Profile, compile_profile
from proxy.config.model import Config
from proxy.fold import fold
from proxy.identity import canonical_email, e164
from proxy.rules.scan import ScanBook, Target, compile_scan


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
    scan: ScanBook  # the linear scan of a message past the reading caps
    threats: Profile  # how urgent a held item is (proxy.alerts.threats)
    orders: dict[str, OrderProfile]  # person id -> his court order (proxy.alerts.logistics)


def compile_rules(config: Config) -> Rulebook:
    """Build the look-up tables for `config` (already validated)."""
    region = config.default_region
    direct, intermediaries, allow = IdentityTable(), IdentityTable(), IdentityTable()
    mentions: dict[str, Rule] = {}
    words: dict[str, Target] = {}
    phones: dict[str, Target] = {}
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
                words.setdefault(fold(name), Target(rule_id=rule_id, what=person.id))
        _scan_emails(words, person.emails, Target(rule_id=f"{key}.emails", what=person.id))
        for domain in person.domains:
            target = Target(rule_id=f"{key}.domains", what=person.id)
            for lead in "@.":
                words.setdefault(fold(lead + domain.lower().rstrip(".")), target)
        _scan_phones(phones, person.phones, region, rule_id=f"{key}.phones", what=person.id)
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
        _scan_emails(words, middle.emails, Target(rule_id=rule.rule_id, what=middle.id,
                                                  intermediary=True))  # fmt: skip
        _scan_phones(phones, middle.phones, region, rule_id=rule.rule_id, what=middle.id,
                     intermediary=True)  # fmt: skip
    _add_emails(allow, config.allow.emails, Rule(rule_id="allow.emails", what="allowed"))
    _add_domains(allow, config.allow.domains, Rule(rule_id="allow.domains", what="allowed"))
    _add_phones(allow, config.allow.phones, region, Rule(rule_id="allow.phones", what="allowed"))
    return Rulebook(
        direct=direct,
        intermediaries=intermediaries,
        allow=allow,
        mention_names=ahocorasick_rs.AhoCorasick(list(mentions)) if mentions else None,
        mention_rules=tuple(mentions.values()),
        scan=compile_scan(words, phones),
        threats=compile_profile(config.alerts),
        orders=_orders(config),
    )


def _orders(config: Config) -> dict[str, OrderProfile]:
    """Each court order, compiled, dates read in the alerts' time zone (UTC without one)."""
    try:
        zone: tzinfo = ZoneInfo(config.alerts.timezone) if config.alerts else UTC
    except (ZoneInfoNotFoundError, ValueError):  # refused by the config's checks already
        zone = UTC
    return {p.id: compile_order(p.id, p.court_order, zone)
            for p in config.people if p.court_order is not None}  # fmt: skip


def _scan_emails(words: dict[str, Target], addresses: Iterable[str], target: Target) -> None:
    """An address as written and as canonical (the linear scan has no parser to canonize)."""
    for address in addresses:
        for form in (address.strip().lower(), canonical_email(address)):
            if form:
                words.setdefault(fold(form), target)


def _scan_phones(
    phones: dict[str, Target], numbers: Iterable[str], region: str | None, *, rule_id: str,
    what: str, intermediary: bool = False,
) -> None:  # fmt: skip
    """A number's national digits, with the leads it may be written after: its country
    code, a trunk prefix, or an international prefix and the country code."""
    for written in numbers:
        number = e164(written, region)
        if number is None:
            continue
        parsed = phonenumbers.parse(number)
        country = str(parsed.country_code)
        national = phonenumbers.national_significant_number(parsed)
        leads = frozenset({country, "0", "1", f"00{country}", f"011{country}"})
        phones.setdefault(
            national, Target(rule_id=rule_id, what=what, intermediary=intermediary,
                             phone_leads=leads),
        )  # fmt: skip


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
