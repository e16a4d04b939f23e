"""The threat lexicons (proxy/alerts/lexicon.py): one matching form for words and text,
and a lexicon that cannot be read is a packaging fault raised at start."""

from __future__ import annotations

import pytest

from proxy.alerts.lexicon import LANGUAGES, LexiconError, grammars, matching_form, parse_lexicon


@pytest.mark.parametrize(
    ("written", "form"),
    [
        ("I'll KILL you!", "l' ll klll you |"),
        ("Ich weiß, wo du wohnst", "lch welss wo du wohnst"),
        ("Vou matá-la", "vou mata-la"),
        ("je vais t'égorger", "je vals t' egorger"),
        ("k\u200bill", "klll"),
        ("(hello)  world...", "hello world | | |"),
    ],
)
def test_matching_form(written: str, form: str) -> None:
    """Case, accents, invisible characters and punctuation fold away; an apostrophe ends
    a word; a sentence's end is the word "|"."""
    assert matching_form(written) == form


def test_every_shipped_lexicon_reads() -> None:
    """The five languages ship and read, each with words in every role the grammar uses."""
    read = grammars()
    assert tuple(g.language for g in read) == LANGUAGES
    for grammar in read:
        assert grammar.speaker.single
        assert grammar.negation.single
        assert grammar.triggers["harm"]
        assert grammar.triggers["idioms"]
        assert set(grammar.phrases) == {"threat", "proximity", "surveillance", "self_harm",
                                        "children"}  # fmt: skip


@pytest.mark.parametrize(
    "source",
    [
        "harm: [kill",  # not YAML
        "- a list",  # not a mapping
        "harm: kill",  # not a list
        "negation: [no, off]",  # YAML 1.1 reads these as booleans: they must be quoted
        "phrases: {menace: [you're dead]}",  # a code this version does not know
    ],
)
def test_a_broken_lexicon_is_one_clear_error(source: str) -> None:
    """A lexicon that is not what the grammar needs raises LexiconError, naming it."""
    with pytest.raises(LexiconError, match="lexicon xx"):
        parse_lexicon("xx", source)
