"""The threat lexicons: one YAML file per language, read once, in the form text is matched in.

Rules this module keeps:
1. A lexicon is data (`proxy/alerts/lexicons/<language>.yaml`, shipped with the package):
   word lists by grammatical role (speaker, future, negation, target, harm verbs, ...),
   fixed phrases by reason code, and idioms that cancel what they overlap. Adding a word
   is editing a list; docs/threats.md says what each list does.
2. Every word and phrase is put in the matching form by `matching_form`, the one function
   a message's text goes through too (after `proxy.fold`): case, accents, look-alike
   letters and punctuation cannot make a listed word differ from the same word in a
   message. An apostrophe ends a word ("t'égorger" is "t'" then "égorger", "I'll" is
   "I'" then "ll"); a hyphen does not ("matá-la" stays one word); a sentence's end
   (. ! ? ;) is the word "|", which no window of the grammar crosses.
3. A lexicon that does not parse, or a list that is not a list of text, is a packaging
   fault: it raises at start (`LexiconError`), never per message.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import yaml

from proxy.errors import NocontactError
from proxy.fold import fold

LANGUAGES = ("en", "es", "fr", "de", "pt")
SENTENCE_END = "|"
PHRASE_CODES = ("threat", "proximity", "surveillance", "self_harm", "children")


class LexiconError(NocontactError):
    """A lexicon shipped with nocontact cannot be read (a packaging fault)."""


class _SpacingTable(dict[int, str]):
    """Letters, digits, hyphens, apostrophes and spaces are kept; a sentence's end becomes
    "|"; "/", "_" and "\\" part words; any other sign is dropped ("weiß, wo" reads "weiß
    wo"), so the single spaces fold left stay single (rule 2). One character for at most
    one, so an ASCII text takes CPython's fast translate path; the space before "|" and
    after an apostrophe is put in after, by C-level replaces (a pass to collapse runs of
    spaces would cost more than all the rest). Each character is worked out once."""

    def __missing__(self, codepoint: int) -> str:
        char = chr(codepoint)
        if char.isalnum() or char in "-' ":
            spaced = char
        elif char in ".!?;":
            spaced = SENTENCE_END
        elif char in "/_\\":
            spaced = " "
        else:
            spaced = ""
        self[codepoint] = spaced
        return spaced


_SPACING = _SpacingTable()
for _codepoint in range(128):
    _SPACING[_codepoint]  # warm ASCII so the common message never misses


def spaced(folded: str) -> str:
    """Folded text as words, most often one space apart, with a space at each end (rule
    2). A few double spaces may stay (a quote closed by an apostrophe): words are split
    on single spaces and empty ones dropped."""
    text = folded.translate(_SPACING)
    if SENTENCE_END in text:
        text = text.replace(SENTENCE_END, f" {SENTENCE_END}")
    if "'" in text:
        text = text.replace("'", "' ").replace("'  ", "' ")
    return f" {text} "


def matching_form(text: str) -> str:
    """A lexicon entry or config term as it is matched: folded, spaced, no outer spaces."""
    return spaced(fold(text)).strip(" ")


@dataclass(frozen=True, slots=True)
class Words:
    """A list of single words and of phrases, in matching form."""

    single: frozenset[str]
    multi: tuple[str, ...]  # " a b ", padded so a look-up in a padded window is whole
    pairs: frozenset[str]  # the phrases of two words, unpadded ("tengo que")

    @classmethod
    def of(cls, entries: Iterable[str]) -> Words:
        forms = [matching_form(entry) for entry in entries]
        forms = [form for form in forms if form]
        return cls(single=frozenset(f for f in forms if " " not in f),
                   multi=tuple(f" {f} " for f in forms if " " in f),
                   pairs=frozenset(f for f in forms if f.count(" ") == 1))  # fmt: skip

    def among(self, tokens: Iterable[str], joined: str) -> bool:
        """Whether any word is one of `tokens`, or any phrase is in `joined` (the same
        tokens, padded with spaces)."""
        single = self.single
        if any(token in single for token in tokens):
            return True
        return any(phrase in joined for phrase in self.multi)


@dataclass(frozen=True, slots=True)
class Grammar:
    """One language's lexicon, in matching form (rule 1)."""

    language: str
    modal_required: bool  # a threat needs a future or modal word (English)
    target_left: bool  # objects can come before the verb (clitics: "te voy a matar")
    speaker: Words
    future: Words
    negation: Words
    possessive: Words
    target: Words
    target_clitic: Words  # targets only before the verb (else an article: "la casa")
    self_words: Words
    kids: Words
    enclitic_target: tuple[str, ...]  # what may end a verb and name its object
    enclitic_self: tuple[str, ...]
    take_completion: Words
    weapon_cue: Words
    weapon_benign: Words
    surveillance_time: Words
    surveillance_cue: Words
    surveillance_benign: Words
    watch_target: Words  # whom a verb of watching must be about ("I saw you")
    triggers: Mapping[str, tuple[str, ...]]  # role -> entries (the Aho-Corasick patterns)
    phrases: Mapping[str, tuple[str, ...]]  # reason code -> fixed phrases


_WORD_LISTS = (
    "speaker", "future", "negation", "possessive", "target", "target_clitic", "self", "kids",
    "take_completion", "weapon_cue", "weapon_benign", "surveillance_time", "surveillance_cue",
    "surveillance_benign", "watch_target",
)  # fmt: skip
TRIGGER_ROLES = ("harm", "harm_first_person", "take", "take_strong", "weapon", "clothing",
                 "watch", "idioms")  # fmt: skip


def _texts(data: Mapping[str, object], key: str, language: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LexiconError(f"lexicon {language}: {key} is not a list of words")
    return tuple(value)


def parse_lexicon(language: str, source: str) -> Grammar:
    """A lexicon's YAML text as a `Grammar`; `LexiconError` if it is not one (rule 3)."""
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as error:
        raise LexiconError(f"lexicon {language} does not parse: {error}") from None
    if not isinstance(data, dict):
        raise LexiconError(f"lexicon {language} is not a mapping")
    words = {key: Words.of(_texts(data, key, language)) for key in _WORD_LISTS}
    phrases_data = data.get("phrases", {})
    if not isinstance(phrases_data, dict) or set(phrases_data) - set(PHRASE_CODES):
        raise LexiconError(f"lexicon {language}: phrases has codes this version does not know")
    return Grammar(
        language=language,
        modal_required=bool(data.get("modal_required", False)),
        target_left=bool(data.get("target_left", False)),
        speaker=words["speaker"], future=words["future"], negation=words["negation"],
        possessive=words["possessive"], target=words["target"],
        target_clitic=words["target_clitic"], self_words=words["self"], kids=words["kids"],
        enclitic_target=tuple(matching_form(e).lstrip("-")
                              for e in _texts(data, "enclitic_target", language)),
        enclitic_self=tuple(matching_form(e).lstrip("-")
                            for e in _texts(data, "enclitic_self", language)),
        take_completion=words["take_completion"], weapon_cue=words["weapon_cue"],
        weapon_benign=words["weapon_benign"], surveillance_time=words["surveillance_time"],
        surveillance_cue=words["surveillance_cue"],
        surveillance_benign=words["surveillance_benign"], watch_target=words["watch_target"],
        triggers={role: _texts(data, role, language) for role in TRIGGER_ROLES},
        phrases={code: _texts(phrases_data, code, language) for code in phrases_data},
    )  # fmt: skip


@functools.cache
def grammars() -> tuple[Grammar, ...]:
    """Every shipped lexicon, read once per process."""
    folder = importlib.resources.files("proxy.alerts") / "lexicons"
    found = []
    for language in LANGUAGES:
        try:
            source = (folder / f"{language}.yaml").read_text(encoding="utf-8")
        except OSError as error:
            raise LexiconError(f"lexicon {language} cannot be read: {error}") from None
        found.append(parse_lexicon(language, source))
    return tuple(found)
