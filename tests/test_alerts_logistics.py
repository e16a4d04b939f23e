"""Child logistics under a court order, in five languages (proxy/alerts/logistics.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.alerts.logistics import OrderProfile, compile_order, read_order
from proxy.alerts.order_mark import OrderMark, Topic, abusive, urgent_logistics
from proxy.alerts.tiers import Assessment, Reason, Tier
from proxy.config.model import CourtOrder
from proxy.fold import fold

BERLIN = ZoneInfo("Europe/Berlin")
# Thursday 12 March 2026, 10:00 in Berlin.
THURSDAY_MORNING = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)
ORDER = CourtOrder(children=["Lily", "Noah", "Bug"], channels=["email", "sms"], relay="Dana",
                   emergency_terms=["urgent care"])  # fmt: skip
PROFILE = compile_order("mark", ORDER, BERLIN)
LOGISTICS = "elevated:child_logistics"
SAME_DAY = "elevated:child_logistics,urgent:same_day_logistics"
EMERGENCY = "urgent:child_emergency"


def _read(text: str, *, at: datetime = THURSDAY_MORNING, profile: OrderProfile = PROFILE,
          channel: str = "email") -> tuple[str, OrderMark]:  # fmt: skip
    reading = read_order(fold(text), text, profile, channel=channel, received_at=at)
    reasons = sorted(str(r) for r in reading.reasons)
    return ",".join(reasons), reading.mark


TABLE = [
    # English
    ("en", "Can you pick Lily up?", LOGISTICS),  # the name between verb and particle
    ("en", "I'll drop Lily off", LOGISTICS),
    ("en", "I picked Noah up", LOGISTICS),
    ("en", "I'll pick Lily up from school at 17:30", SAME_DAY),
    ("en", "Lily has the dentist tomorrow at 17:30", LOGISTICS),
    ("en", "Noah is in the hospital, come now", EMERGENCY),
    ("en", "Bug's flight is on 2026-03-20", LOGISTICS),
    ("en", "I can take the kids tonight", SAME_DAY),
    ("en", "Lily at 7:00", LOGISTICS),  # earlier today than an hour ago: not today's
    ("en", "Lily needs her passport", LOGISTICS),
    ("en", "Noah, in 20 minutes at the gate", SAME_DAY),
    ("en", "Lily: doctor at 5pm", SAME_DAY),
    ("en", "Lily had an accident at school, at the emergency room", f"{LOGISTICS},{EMERGENCY}"),
    ("en", "Noah went to urgent care", EMERGENCY),  # the order's own emergency term
    ("en", "you were never kind to anyone", ""),  # "kind" is no child, in English
    ("en", "the kidney", ""),
    # Spanish
    ("es", "Recojo a Lily hoy a las 5pm", SAME_DAY),
    ("es", "Lily tiene médico el 13/03", LOGISTICS),
    ("es", "Lily: médico el 12/03", SAME_DAY),  # today's date
    ("es", "Noah está en urgencias", EMERGENCY),
    ("es", "Los niños tienen vacaciones el lunes", LOGISTICS),
    ("es", "Lily estuvo bien esta mañana en el cole", SAME_DAY),  # "esta mañana" is not tomorrow
    # French
    ("fr", "Je récupère Lily ce soir à 18h", SAME_DAY),
    ("fr", "Noah a rendez-vous chez le dentiste demain à 9h30", LOGISTICS),
    ("fr", "Les enfants partent en voyage en juillet", LOGISTICS),
    ("fr", "Lily a disparu à la sortie de l'école", f"{LOGISTICS},{EMERGENCY}"),
    # German
    ("de", "Ich hole Noah heute um 17 Uhr von der Schule ab", SAME_DAY),
    ("de", "Noah hat morgen um 17 Uhr einen Termin beim Arzt", LOGISTICS),
    ("de", "Lily war heute morgen in der Kita", SAME_DAY),  # "heute morgen": this morning
    ("de", "Die Kinder sind im Krankenhaus", EMERGENCY),
    ("de", "Übergabe von Lily am Freitag", LOGISTICS),
    # Portuguese
    ("pt", "Vou buscar o Noah daqui a uma hora", SAME_DAY),
    ("pt", "A Lily tem consulta na sexta-feira", LOGISTICS),
    ("pt", "O Noah está no hospital", EMERGENCY),
    ("pt", "As crianças têm escola amanhã às 8h", LOGISTICS),
    ("pt", "Busco a Lily hoje à noite", SAME_DAY),
]


@pytest.mark.parametrize(("language", "text", "expected"), TABLE)
def test_each_row_reads_as_its_reasons(language: str, text: str, expected: str) -> None:
    """Each row gives exactly its reasons (the language names the row for the reader)."""
    reasons, mark = _read(text)
    assert reasons == expected, (language, text)
    assert mark.topic is (Topic.CHILDREN if expected or "Lily" in text else Topic.OFF_TOPIC)


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("You are a worthless liar and everyone knows it", Topic.OFF_TOPIC),
        ("Tu es une menteuse", Topic.OFF_TOPIC),
        ("The kids miss you", Topic.CHILDREN),
        ("Meine Tochter fragt nach dir", Topic.CHILDREN),
        ("", Topic.UNKNOWN),  # a voicemail: nothing was read
    ],
)
def test_the_topic_is_children_only_with_a_child_mentioned(text: str, topic: Topic) -> None:
    """No child mentioned is off topic; nothing to read is unknown, neither on nor off."""
    reasons, mark = _read(text)
    assert mark.topic is topic
    assert mark.person == "mark"
    assert not mark.logistics
    assert reasons == ""


@pytest.mark.parametrize(
    ("local", "text", "expected"),
    [
        ((9, 0), "Lily pickup at 17:30", SAME_DAY),  # later today
        ((17, 0), "Lily pickup at 16:30", SAME_DAY),  # within the hour before: he is late
        ((18, 0), "Lily pickup at 16:30", LOGISTICS),  # long past: another day's
        ((23, 30), "Lily pickup at 8:00", LOGISTICS),  # tomorrow morning, surely
        ((0, 20), "Lily pickup at 23:50", SAME_DAY),  # just after midnight: the day ahead
        ((9, 0), "Lily pickup friday at 17:30", LOGISTICS),  # another weekday wins
        ((9, 0), "Lily pickup thursday", SAME_DAY),  # today's weekday
        ((9, 0), "Lily pickup 13/03 at 17:30", LOGISTICS),  # another date wins
    ],
)  # fmt: skip
def test_same_day_is_read_against_the_local_received_time(
    local: tuple[int, int], text: str, expected: str
) -> None:
    """A clock time counts as today's from an hour before the item arrived to midnight,
    in the alerts' time zone, unless a day or date puts it elsewhere."""
    at = datetime(2026, 3, 12, *local, tzinfo=BERLIN)
    assert _read(text, at=at)[0] == expected


def test_the_time_zone_decides_what_today_is() -> None:
    """The same instant is Thursday evening in Berlin and Friday morning in Tokyo: "17:30"
    is today's in one, not in the other (it is past there)."""
    at = datetime(2026, 3, 12, 16, 0, tzinfo=UTC)  # 17:00 Berlin, 01:00 Friday Tokyo
    tokyo = compile_order("mark", ORDER, ZoneInfo("Asia/Tokyo"))
    assert _read("Lily pickup at 17:30", at=at)[0] == SAME_DAY
    assert _read("Lily pickup at 17:30", at=at, profile=tokyo)[0] == SAME_DAY  # later there
    assert _read("Lily pickup at 0:10", at=at)[0] == LOGISTICS
    assert _read("Lily pickup at 0:10", at=at, profile=tokyo)[0] == SAME_DAY  # an hour ago
    assert _read("Lily on thursday", at=at)[0] == SAME_DAY
    assert _read("Lily on thursday", at=at, profile=tokyo)[0] == LOGISTICS


@pytest.mark.parametrize(
    "text",
    ["Lily 17.30", "Lily 3-4 times", "Noah costs 12.50", "Bug is 2 h away", "Lily scored 25"],
)
def test_numbers_that_are_no_time_or_date_are_no_cue(text: str) -> None:
    """A price, a range, a duration or a bare number is neither a time nor a date."""
    assert _read(text)[0] == ""


def test_a_channel_the_order_does_not_allow_is_marked() -> None:
    """The mark says whether the item came on a channel the order allows."""
    assert _read("Lily at school", channel="email")[1].channel_allowed
    assert not _read("Lily at school", channel="voice")[1].channel_allowed


def test_an_order_without_the_children_topic_makes_every_item_off_topic() -> None:
    """Topics allowed decide the topic; logistics are still read (they still matter)."""
    profile = compile_order("mark", ORDER.model_copy(update={"topics": []}), BERLIN)
    reasons, mark = _read("Lily pickup today", profile=profile)
    assert mark.topic is Topic.OFF_TOPIC
    assert reasons == SAME_DAY


def test_the_reasons_and_mark_carry_no_word_of_the_message() -> None:
    """Reasons are fixed codes and the mark has no text: a canary never comes out."""
    text = "CANARYWORD Lily hospital today 17:30 CANARYWORD"
    reading = read_order(fold(text), text, PROFILE, channel="email", received_at=THURSDAY_MORNING)
    assert "canaryword" not in repr(reading).lower()
    assert "lily" not in repr(PROFILE).lower()
    assert "lily" not in str(reading.mark.to_json()).lower()


def test_the_mark_round_trips_and_odd_values_read_as_none() -> None:
    """to_json/from_json give the same mark; anything else reads as None, never raises."""
    mark = OrderMark(person="mark", topic=Topic.CHILDREN, logistics=True, channel_allowed=False)
    assert OrderMark.from_json(mark.to_json()) == mark
    odds: list[object] = [
        None, "children", [], {"person": 3, "topic": "children"},
        {"person": "mark", "topic": "weather"}, {"topic": "children"},
    ]  # fmt: skip
    for odd in odds:
        assert OrderMark.from_json(odd) is None


def test_abusive_is_an_urgent_reason_other_than_logistics() -> None:
    """A threat is abusive; urgent logistics are not, and they are what the relay hears."""
    threat = Assessment.of([Reason(tier=Tier.URGENT, code="threat")])
    pickup = Assessment.of([Reason(tier=Tier.URGENT, code="same_day_logistics")])
    assert abusive(threat)
    assert not urgent_logistics(threat)
    assert urgent_logistics(pickup)
    assert not abusive(pickup)
    assert not abusive(Assessment())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_any_text_reads_without_raising(text: str) -> None:
    """Whatever the text, a reading comes back (the module's rule 6)."""
    reading = read_order(fold(text), text, PROFILE, channel="sms", received_at=THURSDAY_MORNING)
    assert reading.mark.person == "mark"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["Lily", "17:30", "12/03", "99:99", "13/45/2026", "0h",
                                 "today", "morgen", "2026-02-30", "5pm", "13pm", "in", "999",
                                 "minutes", "a.m.", "/", ":", "-"]), max_size=30))  # fmt: skip
def test_number_salad_reads_without_raising(words: list[str]) -> None:
    """Impossible dates and times (30 February, 99:99, 13pm) are read as none."""
    text = " ".join(words)
    read_order(fold(text), text, PROFILE, channel="sms", received_at=THURSDAY_MORNING)
