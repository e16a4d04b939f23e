"""The threat grammar (proxy/alerts/threats.py): tables per language, idioms, negation, the
config's own terms, and properties every input keeps (total, linear, content-free)."""

from __future__ import annotations

import gc
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.alerts.threats import Profile, assess, assess_folded, compile_profile
from proxy.alerts.tiers import Tier
from proxy.config.model import Alerts, AlertTransport, ExtraTerms
from proxy.fold import fold

PLAIN = compile_profile(None)
FAMILY = compile_profile(
    Alerts(
        transports={"phone": AlertTransport(url="ntfy://ntfy.example/a-topic")},
        children=["Emma", "Léo"],
        places=["Rosenweg 12", "Bakery on Main"],
        extra_terms=ExtraTerms(urgent=["the storage unit"], elevated=["your sister"]),
    )
)

# (language, text, what assess must say): each row one rule of the grammar.
TABLE = [
    # English: speaker + future/modal + harm verb + target
    ("en", "I'll kill you", "urgent:threat"),
    ("en", "I am going to hurt you so badly", "urgent:threat"),
    ("en", "i'm gonna fucking kill u", "urgent:threat"),
    ("en", "We will kill him", "urgent:threat"),
    ("en", "I’ll KILL you", "urgent:threat"),  # curly apostrophe, capitals
    ("en", "I'll k\u200bill you", "urgent:threat"),  # a zero-width space cannot hide it
    ("en", "I'll kіll you", "urgent:threat"),  # a Cyrillic і cannot either
    ("en", "I'm sorry I hurt you", "digest"),  # no future: an apology
    ("en", "The man threatened to kill his wife", "digest"),  # third person: news
    ("en", "I would never hurt you", "digest"),  # negation
    ("en", "I don't want to hurt you", "digest"),
    ("en", "I don't care, I'm going to kill you", "urgent:threat"),  # negation elsewhere
    ("en", "You killed it tonight", "digest"),  # idioms
    ("en", "I'm dying to see you", "digest"),
    ("en", "Shoot me a text", "digest"),
    ("en", "I'll shoot you a text when I land", "digest"),
    ("en", "I could kill for a coffee", "digest"),
    ("en", "Break a leg!", "digest"),
    ("en", "Kill the lights on your way out", "digest"),
    ("en", "I'll beat you at chess", "digest"),
    ("en", "I'm outside", "urgent:proximity"),
    ("en", "I don't know where you live", "digest"),
    ("en", "Nice red coat today", "urgent:surveillance"),
    ("en", "Buy a nice coat today, 20% off", "digest"),
    ("en", "I followed you home", "urgent:surveillance"),
    ("en", "If you don't answer I'll kill myself", "urgent:self_harm"),
    ("en", "I'll kill myself laughing", "digest"),
    ("en", "I bought a gun", "urgent:weapon"),
    ("en", "I bought a bread knife for the kitchen", "digest"),
    ("en", "I'll take the kids away from you", "urgent:children"),
    ("en", "I'll take the kids to the park", "digest"),
    ("en", "I'm going to hurt the kids", "urgent:children"),
    # Spanish: clitics before the verb, enclitics after it, first-person forms
    ("es", "Te voy a matar", "urgent:threat"),
    ("es", "Voy a matarte", "urgent:threat"),
    ("es", "Te mato", "urgent:threat"),
    ("es", "No te voy a matar", "digest"),
    ("es", "Nunca te haría daño", "digest"),
    ("es", "Me voy a matar si me dejas", "urgent:self_harm"),
    ("es", "Me mato a trabajar", "digest"),
    ("es", "Vamos a matar el tiempo", "digest"),
    ("es", "Me muero de ganas de verte", "digest"),
    ("es", "Sé dónde vives", "urgent:proximity"),
    ("es", "La matanza de ayer salió en el periódico", "digest"),
    # French
    ("fr", "Je vais te tuer", "urgent:threat"),
    ("fr", "Je te tuerai", "urgent:threat"),
    ("fr", "Je ne vais pas te tuer", "digest"),
    ("fr", "Je vais t'égorger", "urgent:threat"),
    ("fr", "Je vais me tuer", "urgent:self_harm"),
    ("fr", "Ça me tue", "digest"),
    ("fr", "On va tuer le temps", "digest"),
    ("fr", "Je t'ai suivie", "urgent:surveillance"),
    ("fr", "Je te vois demain", "digest"),
    # German: separable verbs, the object before the verb, inversion
    ("de", "Ich bring dich um", "urgent:threat"),
    ("de", "Ich werde dich umbringen", "urgent:threat"),
    ("de", "Ich werde dich nicht umbringen", "digest"),
    ("de", "Wenn du gehst, bringe ich dich um", "urgent:threat"),
    ("de", "Ich weiß, wo du wohnst", "urgent:proximity"),
    ("de", "Du bringst mich noch um mit deinen Witzen", "digest"),
    ("de", "Wir müssen die Zeit totschlagen", "digest"),
    ("de", "Hals- und Beinbruch!", "digest"),
    ("de", "Ich werde die Kinder entführen", "urgent:children"),
    # Portuguese
    ("pt", "Vou te matar", "urgent:threat"),
    ("pt", "Vou matá-la", "urgent:threat"),
    ("pt", "Eu te mato", "urgent:threat"),
    ("pt", "Não vou te matar", "digest"),
    ("pt", "Vou matar a saudade de você", "digest"),
    ("pt", "Estou morrendo de saudade", "digest"),
    ("pt", "Vou bater na porta", "digest"),
    ("pt", "Vou me matar", "urgent:self_harm"),
    ("pt", "Sei onde você mora", "urgent:proximity"),
]


@pytest.mark.parametrize(("language", "text", "expected"), TABLE)
def test_grammar_table(language: str, text: str, expected: str) -> None:
    """Each row of the table is assessed as written (language named for the reader)."""
    assert language in ("en", "es", "fr", "de", "pt")
    assert str(assess(text, PLAIN)) == expected


def test_several_reasons_most_urgent_first() -> None:
    """An item with several findings keeps every reason, urgent before elevated."""
    found = assess("I know where you live. I have a gun. Say hi to Emma.", FAMILY)
    assert found.tier is Tier.URGENT
    assert str(found) == "urgent:proximity,urgent:weapon,elevated:children"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Emma forgot her coat at my place", "elevated:children"),
        ("leo has a dentist appointment on Monday", "elevated:children"),  # accents fold
        ("I'll hurt Emma tonight", "urgent:children,elevated:children"),
        ("I'm taking Léo away for good", "urgent:children,elevated:children"),
        ("I drove past ROSENWEG 12 yesterday", "elevated:place"),
        ("I know about the storage unit", "urgent:term"),
        ("Tell your sister I said hello", "elevated:term"),
        ("Emmanuel sent the papers", "digest"),  # a name is matched whole
    ],
)
def test_config_terms(text: str, expected: str) -> None:
    """The children's names, her places and extra terms raise the tier, matched whole."""
    assert str(assess(text, FAMILY)) == expected


def test_without_config_names_are_nothing() -> None:
    """A profile without the config's terms finds no child in a name."""
    assert str(assess("Emma forgot her coat", PLAIN)) == "digest"


def test_assess_folded_is_assess() -> None:
    """Assessing normalize's folded search text says what assessing the text says."""
    text = "Subject: hi\nI'll kill you. Emma is fine."
    assert assess_folded(fold(text), FAMILY) == assess(text, FAMILY)


def test_one_sentence_at_a_time() -> None:
    """The grammar does not join a speaker and a target across a sentence's end."""
    assert str(assess("I will kill. You know the plan, the weeds must go", PLAIN)) == "digest"


def test_profile_repr_names_nothing() -> None:
    """A profile's repr says nothing of the children or places it holds."""
    assert "Emma" not in repr(FAMILY)
    assert "Rosenweg" not in repr(FAMILY)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_assessed(text: str) -> None:
    """Any text, however broken, gets an assessment whose reasons are fixed codes."""
    found = assess(text, FAMILY)
    codes = {"threat", "weapon", "proximity", "surveillance", "children", "self_harm",
             "term", "place"}  # fmt: skip
    assert all(reason.code in codes for reason in found.reasons)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([
    "kill", "you", "I'll", "te", "voy", "a", "matar", "no", "never", "'", "-", ".", " ",
    "\u200b", "é", "Emma", "outside", "I'm", "gun", "coat", "today", "dich", "um", "bring",
]), max_size=200))  # fmt: skip
def test_word_salad_is_assessed(words: list[str]) -> None:
    """Trigger words in any order and spacing never make assess raise."""
    found = assess(" ".join(words), FAMILY)
    assert found.tier in Tier


def test_lone_surrogates_are_assessed() -> None:
    """Text that is not valid UTF-8 (a lone surrogate) is assessed, not raised on."""
    assert assess("I'll kill you \udcff", PLAIN).tier is Tier.URGENT


def _seconds(text: str, profile: Profile) -> float:
    """The best of three timings, with the cycle collector paused: its passes cost in
    proportion to every object alive, not to this text (amortized linear, but lumpy)."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            start = time.perf_counter()
            assess(text, profile)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize(
    "unit",
    ["kill ", "I'll kill you. ", "I could kill for a coffee ", "te voy a ", "x" * 9 + " ",
     "'- '- ", "Emma "],
)  # fmt: skip
def test_cost_is_linear(unit: str) -> None:
    """Four times the text costs about four times the time, whatever is repeated (the
    adversary's favourite: one trigger word over and over). Both sizes are large, so the
    small one does not win by fitting in the CPU's cache."""
    small, large = unit * 8_000, unit * 32_000
    ratio = _seconds(large, FAMILY) / max(_seconds(small, FAMILY), 1e-6)
    assert ratio < 9, ratio  # linear: about 4; quadratic: about 16
