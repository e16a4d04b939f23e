"""How urgent a held item is, read from its text: offline, explainable, linear.

Rules this module keeps:
1. `compile_profile` turns the config's `alerts` section (the children's names, her
   places, extra terms) and the shipped lexicons (`proxy.alerts.lexicon`) into one
   `Profile`, once per config; `assess` then reads any number of texts with it. Pure: no
   IO, no clock; the same text and profile always give the same `Assessment`.
2. Urgent is a first-person threat, found by a grammar, not by a bag of words: a harm verb
   (kill, matar, tuer, umbringen, ...) counts only with a speaker ("I", "je", "voy"; or a
   verb form that is first person itself: "mataré", "te mato"), in English a future or
   modal word ("will", "'ll", "gonna"), and a target (you, her, the children, a child's
   name; myself: self-harm) within a few words, in one sentence. A negation between the
   speaker and the verb ("I would never hurt you", "no te voy a matar") cancels it, and
   so does an idiom that overlaps it ("you killed it", "shoot you a text", "matar a
   saudade"). Fixed phrases give proximity ("I know where you live"), surveillance ("I
   saw you at"), threats in the second person ("you're dead"), self-harm and the
   children; a negation just before a phrase cancels it. A weapon counts with a first
   person and a sign of having or using it; clothes with a time ("nice red coat today").
   Taking the children counts with a completion ("away", "para siempre") or a kidnap verb.
3. Elevated: a child's name (config), one of her places (config), an extra elevated term.
   An extra urgent term is urgent. Config terms are matched whole, folded, in any language.
4. Explainable without a word of the message: the result is reason codes only
   (`proxy.alerts.tiers` rule 2), each once.
5. Cost is linear in the text and bounded per word: one fold (or none: `assess_folded`
   takes the text normalize already folded), one translate, one Aho-Corasick pass over
   every trigger word of every language and of the config at once; the grammar runs only
   around the trigger words found, on a window of a fixed number of characters. Nothing
   here raises on any text.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass

import ahocorasick_rs

from proxy.alerts.lexicon import SENTENCE_END, Grammar, Words, grammars, matching_form, spaced
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.config.model import Alerts
from proxy.fold import fold

# How far around a trigger word the grammar reads (characters, then words): a threat is
# said in a few words ("I swear I'm going to fucking kill you").
_LEFT_CHARS, _RIGHT_CHARS = 90, 70
_LEFT_WORDS, _RIGHT_WORDS = 8, 5
_NEGATION_LOOKBACK = 2  # words before the speaker a negation or clitic may stand in
_PLURALS = ("", "s", "es")

THREAT = Reason(tier=Tier.URGENT, code="threat")
WEAPON = Reason(tier=Tier.URGENT, code="weapon")
PROXIMITY = Reason(tier=Tier.URGENT, code="proximity")
SURVEILLANCE = Reason(tier=Tier.URGENT, code="surveillance")
CHILDREN = Reason(tier=Tier.URGENT, code="children")
SELF_HARM = Reason(tier=Tier.URGENT, code="self_harm")
URGENT_TERM = Reason(tier=Tier.URGENT, code="term")
CHILD_NAMED = Reason(tier=Tier.ELEVATED, code="children")
PLACE = Reason(tier=Tier.ELEVATED, code="place")
ELEVATED_TERM = Reason(tier=Tier.ELEVATED, code="term")
_PHRASE_REASONS = {
    "threat": THREAT, "proximity": PROXIMITY, "surveillance": SURVEILLANCE,
    "self_harm": SELF_HARM, "children": CHILDREN,
}  # fmt: skip
_COULD = {
    "harm": frozenset([THREAT, CHILDREN, SELF_HARM]),
    "harm_first_person": frozenset([THREAT, CHILDREN, SELF_HARM]),
    "take": frozenset([CHILDREN]), "take_strong": frozenset([CHILDREN]),
    "weapon": frozenset([WEAPON]), "clothing": frozenset([SURVEILLANCE]),
    "watch": frozenset([SURVEILLANCE]),
}  # fmt: skip
_CONFIG_REASONS = {"child": CHILD_NAMED, "place": PLACE, "urgent_term": URGENT_TERM,
                   "elevated_term": ELEVATED_TERM}  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Trigger:
    """What one pattern of the automaton stands for: a role, and the language whose
    grammar reads around it (None for the config's own terms)."""

    role: str  # a lexicon trigger role, "phrase", or a config role
    grammar: Grammar | None
    reason: Reason | None = None  # phrases and config terms: what a hit means
    endings: frozenset[str] = frozenset([""])  # what may follow it within its word
    could: frozenset[Reason] = frozenset()  # every reason it can give: once all are found,
    # its hits are skipped

    def __post_init__(self) -> None:
        could = [self.reason] if self.reason is not None else _COULD.get(self.role, ())
        object.__setattr__(self, "could", frozenset(could))


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """The lexicons and the config's terms, compiled once (rule 1)."""

    automaton: ahocorasick_rs.AhoCorasick
    triggers: tuple[tuple[_Trigger, ...], ...]  # by pattern index
    child_words: Words  # the children's names, as grammar targets

    def __repr__(self) -> str:
        return f"Profile(patterns={len(self.triggers)})"  # names and places stay unsaid


def compile_profile(alerts: Alerts | None) -> Profile:
    """The profile for a config's `alerts` section (None: the lexicons alone)."""
    by_pattern = {pattern: list(triggers) for pattern, triggers in _lexicon_patterns()}

    def add(entry: str, trigger: _Trigger) -> None:
        form = matching_form(entry)
        if form and form != SENTENCE_END:
            by_pattern.setdefault(f" {form}", []).append(trigger)

    children = list(alerts.children) if alerts else []
    config_terms = [
        ("child", children),
        ("place", list(alerts.places) if alerts else []),
        ("urgent_term", list(alerts.extra_terms.urgent) if alerts else []),
        ("elevated_term", list(alerts.extra_terms.elevated) if alerts else []),
    ]
    for role, terms in config_terms:
        for term in terms:
            add(term, _Trigger(role, None, _CONFIG_REASONS[role]))
    patterns = list(by_pattern)
    return Profile(
        automaton=ahocorasick_rs.AhoCorasick(patterns),
        triggers=tuple(tuple(by_pattern[p]) for p in patterns),
        child_words=Words.of(children),
    )


@functools.cache
def _lexicon_patterns() -> tuple[tuple[str, tuple[_Trigger, ...]], ...]:
    """Every lexicon's trigger words and phrases as patterns, worked out once a process:
    a config reload only adds its own terms."""
    by_pattern: dict[str, list[_Trigger]] = {}

    def add(entry: str, trigger: _Trigger) -> None:
        form = matching_form(entry)
        if form and form != SENTENCE_END:
            by_pattern.setdefault(f" {form}", []).append(trigger)

    for grammar in grammars():
        for role, entries in grammar.triggers.items():
            endings = _endings(role, grammar)
            for entry in entries:
                add(entry, _Trigger(role, grammar, endings=endings))
        for kid in [*grammar.kids.single, *(m.strip(" ") for m in grammar.kids.multi)]:
            add(kid, _Trigger("kids", grammar))  # marks only: where a child is named
        for code, entries in grammar.phrases.items():
            for entry in entries:
                add(entry, _Trigger("phrase", grammar, _PHRASE_REASONS[code]))
    return tuple((pattern, tuple(triggers)) for pattern, triggers in by_pattern.items())


def _endings(role: str, grammar: Grammar) -> frozenset[str]:
    """What may follow a trigger of `role` in the same word: an object pronoun after a
    verb ("matarte", "matá-la"), a plural after a noun; nothing after anything else."""
    if role in ("harm", "harm_first_person"):
        enclitics = [*grammar.enclitic_target, *grammar.enclitic_self]
        return frozenset(["", *enclitics, *(f"-{e}" for e in enclitics)])
    if role in ("weapon", "clothing"):
        return frozenset(_PLURALS)
    return frozenset([""])


def assess(text: str, profile: Profile) -> Assessment:
    """How urgent `text` is, and why (rules 2-4)."""
    return assess_folded(fold(text), profile)


def assess_folded(folded: str, profile: Profile) -> Assessment:
    """`assess` for text already folded by `proxy.fold.fold` (a message's search text)."""
    text = spaced(folded)
    hits = profile.automaton.find_matches_as_indexes(text, overlapping=True)
    idioms: list[tuple[int, int]] = []
    kids: list[int] = []  # where children are named: taking them needs one near
    candidates: list[tuple[_Trigger, _Hit]] = []
    for index, start, end in hits:
        stop = text.find(" ", end)
        rest = text[end:stop]
        for trigger in profile.triggers[index]:
            if rest not in trigger.endings:
                continue  # another word that starts the same ("skill", "matanza")
            if trigger.role == "idioms":
                idioms.append((start, stop))
            elif trigger.role in ("kids", "child"):
                kids.append(start)
                if trigger.reason is not None:
                    candidates.append((trigger, _Hit(start, stop, rest)))
            else:
                candidates.append((trigger, _Hit(start, stop, rest)))
    overlaps = _Overlaps(idioms)
    kids.sort()  # found in the order their ends were, and entries differ in length
    found: set[Reason] = set()
    seen: dict[tuple[int, str], tuple[Reason, ...]] = {}  # a repeated window is read once
    for trigger, hit in candidates:
        if trigger.could <= found or overlaps.any(hit.start, hit.stop):
            continue  # nothing new to find here, or an idiom says it is not meant
        if trigger.role in _NEEDS_KIDS and not _near(kids, hit):
            continue
        key = (id(trigger), text[max(0, hit.start - _LEFT_CHARS) : hit.stop + _RIGHT_CHARS])
        if key not in seen:
            seen[key] = tuple(_reasons(trigger, text, hit, profile))
        found.update(seen[key])
    return Assessment.of(found)


_NEEDS_KIDS = frozenset(["take", "take_strong"])


def _near(positions: list[int], hit: _Hit) -> bool:
    """Whether any of the sorted `positions` is within the grammar's window of `hit`."""
    first = bisect.bisect_left(positions, hit.start - _LEFT_CHARS)
    return first < len(positions) and positions[first] <= hit.stop + _RIGHT_CHARS


class _Overlaps:
    """Whether a span overlaps any idiom's, in O(log n)."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        spans.sort()
        self._starts = [start for start, _ in spans]
        self._reach: list[int] = []  # the furthest end of the spans up to each one
        furthest = -1
        for _, end in spans:
            furthest = max(furthest, end)
            self._reach.append(furthest)

    def any(self, start: int, stop: int) -> bool:
        before = bisect.bisect_left(self._starts, stop) - 1
        return before >= 0 and self._reach[before] > start


@dataclass(frozen=True, slots=True)
class _Hit:
    """Where a trigger word was found: its span to the end of its word, and what follows
    the listed form within that word ("te" of "matarte")."""

    start: int
    stop: int
    rest: str


@dataclass(frozen=True, slots=True)
class _Window:
    """The words around a trigger, within its sentence (rule 2)."""

    left: list[str]
    right: list[str]
    hit: list[str]

    @classmethod
    def around(cls, text: str, start: int, stop: int) -> _Window:
        left = text[max(0, start - _LEFT_CHARS) : start].split(" ")
        if start > _LEFT_CHARS:
            left = left[1:]  # a word cut by the window
        left = [w for w in left if w]
        if SENTENCE_END in left:
            left = left[len(left) - left[::-1].index(SENTENCE_END) :]
        right = text[stop : stop + _RIGHT_CHARS].split(" ")
        if stop + _RIGHT_CHARS < len(text):
            right = right[:-1]
        right = [w for w in right if w]
        if SENTENCE_END in right:
            right = right[: right.index(SENTENCE_END)]
        return cls(left=left[-_LEFT_WORDS:], right=right[:_RIGHT_WORDS],
                   hit=text[start:stop].split())  # fmt: skip


def _has(words: Words, tokens: list[str]) -> bool:
    single = words.single
    for token in tokens:
        if token in single:
            return True
    if not words.multi:
        return False
    joined = f" {' '.join(tokens)} "
    return any(phrase in joined for phrase in words.multi)


def _reasons(trigger: _Trigger, text: str, hit: _Hit, profile: Profile) -> list[Reason]:
    grammar = trigger.grammar
    if grammar is None:  # the config's own terms: whole words, nothing more (rule 3)
        return [trigger.reason] if trigger.reason is not None and not hit.rest else []
    window = _Window.around(text, hit.start, hit.stop)
    if trigger.role == "phrase":
        negated = hit.rest or _has(grammar.negation, window.left[-2:])
        return [] if negated or trigger.reason is None else [trigger.reason]
    reader = _READERS.get(trigger.role)
    return [] if reader is None else reader(grammar, window, hit.rest, profile, trigger.role)


def _speaker_at(grammar: Grammar, left: list[str]) -> int | None:
    """The index in `left` of the speaker nearest the verb, if any."""
    single, pairs = grammar.speaker.single, grammar.speaker.pairs
    for index in range(len(left) - 1, -1, -1):
        if left[index] in single or (
            pairs and index + 1 < len(left) and f"{left[index]} {left[index + 1]}" in pairs
        ):
            return index
    return None


def _harm(
    grammar: Grammar, window: _Window, rest: str, profile: Profile, role: str
) -> list[Reason]:
    first_person = role == "harm_first_person"
    rest = rest.lstrip("-")
    if rest and rest not in grammar.enclitic_target and rest not in grammar.enclitic_self:
        return []  # another word that starts like a harm verb ("skill", "matanza")
    speaker = _speaker_at(grammar, window.left)
    if speaker is None and not first_person:
        return []
    lookback = 0 if grammar.modal_required else _NEGATION_LOOKBACK
    before = window.left[-3:] if speaker is None else window.left[max(0, speaker - lookback) :]
    if _has(grammar.negation, before[1:] if grammar.modal_required else before):
        return []
    if (grammar.modal_required and not first_person
            and not _has(grammar.future, window.left[speaker or 0 :])):  # fmt: skip
        return []
    after = window.hit[1:] + window.right
    clitics = before if grammar.target_left else []
    reasons = []
    if _has(grammar.kids, after + clitics) or _has(profile.child_words, after + clitics):
        reasons.append(CHILDREN)
    if (
        (rest and rest in grammar.enclitic_target)
        or (len(window.hit) > 1 and _enclitic_in(grammar, window.hit))
        or _has(grammar.target, after + clitics)
        or _has(grammar.target_clitic, clitics)
    ):
        reasons.append(THREAT)
    elif (rest and rest in grammar.enclitic_self) or _has(grammar.self_words, after + clitics):
        reasons.append(SELF_HARM)
    return reasons


def _enclitic_in(grammar: Grammar, words: list[str]) -> bool:
    """Whether a word of a listed phrase carries its object ("partirte la cara")."""
    return any(
        word.endswith(ending) and len(word) > len(ending) + 3
        for word in words for ending in grammar.enclitic_target
    )  # fmt: skip


def _take(
    grammar: Grammar, window: _Window, rest: str, profile: Profile, role: str
) -> list[Reason]:
    strong = role == "take_strong"
    if rest:
        return []
    speaker = _speaker_at(grammar, window.left)
    if speaker is None or _has(grammar.negation, window.left[max(0, speaker - 1) :]):
        return []
    after = window.hit[1:] + window.right
    if grammar.target_left:  # "ich werde die Kinder entführen"
        after = window.left[speaker + 1 :] + after
    if not (_has(grammar.kids, after) or _has(profile.child_words, after)):
        return []
    if strong or _has(grammar.take_completion, after):
        return [CHILDREN]
    return []


def _weapon(
    grammar: Grammar, window: _Window, rest: str, profile: Profile, role: str
) -> list[Reason]:
    if rest not in _PLURALS:
        return []
    near = window.left[-6:] + window.hit + window.right
    if _has(grammar.weapon_benign, near) or _has(grammar.negation, window.left[-6:]):
        return []
    first_person = _has(grammar.speaker, window.left[-6:]) or _has(
        grammar.possessive, window.left[-6:]
    )
    if first_person and (_has(grammar.weapon_cue, near) or _has(grammar.target, window.right)):
        return [WEAPON]
    return []


def _clothing(
    grammar: Grammar, window: _Window, rest: str, profile: Profile, role: str
) -> list[Reason]:
    if rest not in _PLURALS:
        return []
    near = window.left[-6:] + window.hit + window.right
    if _has(grammar.surveillance_benign, near) or _has(grammar.negation, window.left[-3:]):
        return []
    if _has(grammar.surveillance_time, near) and _has(grammar.surveillance_cue, near):
        return [SURVEILLANCE]
    return []


def _watch(
    grammar: Grammar, window: _Window, rest: str, profile: Profile, role: str
) -> list[Reason]:
    """A first person watching or following her: "I followed you", "je t'ai suivie"."""
    if rest:
        return []
    speaker = _speaker_at(grammar, window.left)
    if speaker is None:
        return []
    before = window.left[max(0, speaker - _NEGATION_LOOKBACK) :]
    if _has(grammar.negation, before):
        return []
    near = window.left[speaker + 1 :] + window.right[:3]
    return [SURVEILLANCE] if _has(grammar.watch_target, near) else []


_Reader = Callable[[Grammar, _Window, str, Profile, str], list[Reason]]
_READERS: dict[str, _Reader] = {
    "harm": _harm, "harm_first_person": _harm, "take": _take, "take_strong": _take,
    "weapon": _weapon, "clothing": _clothing, "watch": _watch,
}  # fmt: skip
