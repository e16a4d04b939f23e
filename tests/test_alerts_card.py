"""The automatic logistics card: facts read at hold time, never his words
(proxy/alerts/card.py, proxy/alerts/logistics.py rule 7)."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.alerts.card import FIELDS, FOOTER, HEADER, Card, Way, card_text
from proxy.alerts.lexicon import LANGUAGES, matching_form
from proxy.alerts.logistics import (
    EMERGENCY,
    THE_CHILDREN,
    card_labels,
    compile_order,
    read_order,
)
from proxy.config.model import CourtOrder
from proxy.fold import fold

BERLIN = ZoneInfo("Europe/Berlin")
THURSDAY_MORNING = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)  # 10:00 in Berlin
ORDER = CourtOrder(children=["Lily", "Noah", "Bug"], channels=["email", "sms"], relay="Dana",
                   emergency_terms=["urgent care"])  # fmt: skip
PROFILE = compile_order("mark", ORDER, BERLIN)
TODAY = "Thursday 12 March"


def _card(text: str, at: datetime = THURSDAY_MORNING) -> Card | None:
    return read_order(fold(text), text, PROFILE, channel="email", received_at=at).card


TABLE = [
    # English
    ("I'll pick up Lily from school at 17:30",
     Card(child="Lily", date=TODAY, time="17:30", place="school", topic="pickup")),
    ("Noah is in the hospital, come now",
     Card(child="Noah", place="hospital", topic="emergency")),
    ("I can take the kids tonight", Card(child=THE_CHILDREN, date=TODAY)),
    ("lily: doctor at 5pm", Card(child="Lily", date=TODAY, time="17:00", place="doctor")),
    ("BUG went to urgent care", Card(child="Bug", topic="emergency")),
    ("Can you pick Lily up today at 17:30?",  # the name between: still a pickup
     Card(child="Lily", date=TODAY, time="17:30", topic="pickup")),
    ("dropping Noah off at school at 17:00",
     Card(child="Noah", date=TODAY, time="17:00", place="school", topic="drop-off")),
    # Spanish
    ("Recojo a Lily hoy a las 5pm",
     Card(child="Lily", date=TODAY, time="17:00", topic="pickup")),
    ("Noah está en urgencias", Card(child="Noah", place="hospital", topic="emergency")),
    ("Lily tiene fiebre, médico el 12/03",
     Card(child="Lily", date=TODAY, place="doctor", topic="medical")),
    # French
    ("Je récupère Lily ce soir à 18h",
     Card(child="Lily", date=TODAY, time="18:00", topic="pickup")),
    ("Lily a disparu à la sortie de l'école, le 14/03",
     Card(child="Lily", date="Saturday 14 March", place="school", topic="emergency")),
    # German
    ("Ich hole Noah heute um 17 Uhr von der Schule ab",
     Card(child="Noah", date=TODAY, time="17:00", place="school")),
    ("Die Kinder sind im Krankenhaus", Card(child=THE_CHILDREN, place="hospital",
                                            topic="emergency")),
    # Portuguese
    ("Vou buscar o Noah daqui a uma hora", Card(child="Noah", date=TODAY, topic="pickup")),
    ("O Noah está no hospital, cirurgia amanhã",
     Card(child="Noah", date="Friday 13 March", place="hospital", topic="emergency")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "card"), TABLE)
def test_each_urgent_row_reads_as_its_card(text: str, card: Card) -> None:
    """Each urgent message gives exactly its card: the child as the order writes the name,
    dates and times written out, place and topic as fixed labels."""
    assert _card(text) == card


@pytest.mark.parametrize(
    "text",
    ["Lily has the dentist tomorrow at 17:30", "Les enfants partent en voyage en juillet",
     "you were never kind to anyone", ""],
)  # fmt: skip
def test_only_an_urgent_logistics_item_has_a_card(text: str) -> None:
    """Logistics for another day, or nothing about the children: no card."""
    assert _card(text) is None


def test_several_children_are_named_in_the_orders_order() -> None:
    """Two children are both on the card, in the order the config lists them."""
    card = _card("Noah and Lily are at the hospital")
    assert card is not None
    assert card.child == "Lily, Noah"


def test_a_weekday_is_dated_against_the_day_it_arrived() -> None:
    """An emergency 'on Monday' read on a Thursday is the coming Monday."""
    card = _card("Noah has surgery on Monday")
    assert card is not None
    assert card.date == "Monday 16 March"


def test_the_card_text_is_exactly_the_fixed_lines_and_the_fields() -> None:
    """Header, blank line, one line per field present, blank line, footer."""
    text = card_text(Card(child="Lily", time="17:30", place="school", topic="pickup"))
    assert text == (
        f"{HEADER}\n\nChild: Lily\nTime: 17:30\nPlace: school\nTopic: pickup\n\n{FOOTER}\n"
    )
    assert HEADER == (
        "Logistics card — read automatically from a message about the children, not his words"
    )


def test_card_and_way_round_trip_and_odd_values_read_as_none() -> None:
    """Saved and read back, a card and a way are the same; anything else is None."""
    card = Card(child="Lily", date=TODAY, time="17:30", place="school", topic="pickup")
    way = Way(channel="email", recipients=("her@example.org",), imap=None)
    assert Card.from_json(card.to_json()) == card
    assert Way.from_json(way.to_json()) == way
    odd_cards: list[object] = [None, [], "x", {"child": 3}, {"child": "a\nb"}]
    for odd in odd_cards:
        assert Card.from_json(odd) is None
    odd_ways: list[object] = [None, {"channel": "fax", "recipients": []}, {"channel": "email"},
                              {"channel": "sms", "recipients": [1]}]  # fmt: skip
    for odd in odd_ways:
        assert Way.from_json(odd) is None
    assert "Lily" not in repr(card)
    assert "her@" not in repr(way)


def test_every_card_word_is_a_word_the_lists_find() -> None:
    """A label word not in any language's lists would never be found: each is there."""
    source = importlib.resources.files("proxy.alerts") / "lexicons" / "logistics.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    listed = {matching_form(word) for language in LANGUAGES for role, words in
              data[language].items() for entry in words for word in entry.split("|")}  # fmt: skip
    for form, _ in card_labels():
        assert form in listed, form


# -- canaries: nothing of his ------------------------------------------------------------

_LABELS = {label for _, pairs in card_labels() for _, label in pairs} | {EMERGENCY}
_DATE = re.compile(r"(Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday) \d{1,2} "
                   r"(January|February|March|April|May|June|July|August|September|October|"
                   r"November|December)( \d{4})?")  # fmt: skip
_TIME = re.compile(r"\d{2}:\d{2}")
_ALLOWED: dict[str, Callable[[str], bool]] = {
    "child": lambda v: v == THE_CHILDREN or v in ORDER.children,
    "date": lambda v: _DATE.fullmatch(v) is not None,
    "time": lambda v: _TIME.fullmatch(v) is not None,
    "place": lambda v: v in _LABELS,
    "topic": lambda v: v in _LABELS,
}
_URGENT_BASES = [text for text, _ in TABLE]
_WORDS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1,
                 max_size=12)  # fmt: skip


def _values_allowed(card: Card) -> None:
    for name, _ in FIELDS:
        for value in filter(None, getattr(card, name).split(", ")):
            assert _ALLOWED[name](value), (name, value)


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from(_URGENT_BASES), words=st.lists(_WORDS, max_size=8),
       places=st.lists(st.integers(min_value=0, max_value=200), max_size=8))  # fmt: skip
def test_random_words_in_an_urgent_message_never_reach_the_card(
    base: str, words: list[str], places: list[int]
) -> None:
    """Words slipped anywhere into an urgent message: every card value is still a
    child's name from the config, a fixed label, or a date or time written out."""
    text = base
    for word, place in zip(words, places, strict=False):
        cut = min(place, len(text))
        text = f"{text[:cut]} {word} {text[cut:]}"
    card = _card(text)
    if card is not None:
        _values_allowed(card)


@pytest.mark.parametrize("text", _URGENT_BASES)
def test_canary_words_never_reach_the_card(text: str) -> None:
    """A canary word in each urgent message is nowhere in its card's text."""
    card = _card(f"{text} CANARY-CARD zq7 Oak Street")
    assert card is not None
    rendered = card_text(card)
    for canary in ("CANARY", "zq7", "Oak", "Street"):
        assert canary not in rendered
