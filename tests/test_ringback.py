"""The ringback a held caller hears, and the ring_tone config value that names it."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest
from pydantic import ValidationError

from proxy.channels.sms.ringback import (
    CADENCES,
    RATE,
    RING_SECONDS,
    TWILIO_RING_TONES,
    ringback_wav,
)
from proxy.config import values


def _samples(data: bytes) -> tuple[int, ...]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        frames = wav.readframes(wav.getnframes())
    return struct.unpack(f"<{len(frames) // 2}h", frames)


def _level(samples: tuple[int, ...], second: float, frequency: int) -> float:
    """The strength of `frequency` in the 0.1 s from `second` (one Goertzel bin)."""
    start, count = round(second * RATE), RATE // 10
    real = imaginary = 0.0
    for n, value in enumerate(samples[start : start + count]):
        angle = 2 * math.pi * frequency * n / RATE
        real += value * math.cos(angle)
        imaginary += value * math.sin(angle)
    return math.hypot(real, imaginary) / count


@pytest.mark.parametrize("seconds", [15, 22, 30])
def test_a_ringback_is_a_wav_of_exactly_the_seconds_asked(seconds: int) -> None:
    """8 kHz 16-bit mono PCM, `seconds` long to the sample."""
    assert len(_samples(ringback_wav("us", seconds))) == seconds * RATE


def test_us_ringback_is_440_and_480_hz_two_seconds_on_four_off() -> None:
    """The North American ringing tone: both frequencies while on, silence while off."""
    samples = _samples(ringback_wav("us", 15))
    for on in (0.5, 1.5, 6.5, 12.5):
        assert _level(samples, on, 440) > 1000
        assert _level(samples, on, 480) > 1000
        assert _level(samples, on, 400) < 200
    for off in (2.5, 5.5, 8.5):
        assert max(abs(v) for v in samples[round(off * RATE) : round((off + 0.1) * RATE)]) == 0


def test_uk_ringback_rings_twice_a_period() -> None:
    """400+450 Hz, 0.4 s on, 0.2 s off, 0.4 s on, 2 s off."""
    samples = _samples(ringback_wav("uk", 15))
    for on in (0.1, 0.7, 3.1, 3.7):
        assert _level(samples, on, 400) > 1000
        assert _level(samples, on, 450) > 1000
    for off in (0.45, 1.5, 2.5):
        assert _level(samples, off, 400) == 0


def test_ringbacks_outside_what_callers_hear_are_refused() -> None:
    """Only 15..30 s of a tone this module plays; nothing else is ever made."""
    for tone, seconds in [("us", 14), ("us", 31), ("us", 0), ("us", -1), ("jp", 20), ("", 20)]:
        with pytest.raises(ValueError, match="no such ringback"):
            ringback_wav(tone, seconds)
    assert list(RING_SECONDS) == list(range(15, 31))


def test_every_playable_tone_is_one_twilio_knows() -> None:
    """A held caller's tone always has the same name as an allowed caller's <Dial ringTone>."""
    assert set(CADENCES) <= TWILIO_RING_TONES
    for tone in CADENCES:
        assert len(_samples(ringback_wav(tone, 15))) == 15 * RATE


def test_ring_tone_config_accepts_playable_tones_and_says_why_it_refuses_others() -> None:
    """A tone nocontact cannot play is refused with the reason and the choices."""
    from proxy.config.model import SmsChannel  # noqa: PLC0415 - the model, for its default

    assert values.ring_tone("uk") == "uk"
    with pytest.raises(ValueError, match=r"cannot play Twilio's 'jp' ring tone.*us"):
        values.ring_tone("jp")
    with pytest.raises(ValueError, match=r"'xx' is not one of Twilio's ring tones"):
        values.ring_tone("xx")
    with pytest.raises(ValueError, match="not one of Twilio's"):
        values.ring_tone("US")
    assert SmsChannel.model_fields["ring_tone"].default == "us"
    data = {
        "public_url": "https://home.example/twilio", "account_sid": "AC" + "0" * 32,
        "number": "+15550107777", "forward_to": "+15550108888", "ring_tone": "za",
    }  # fmt: skip
    with pytest.raises(ValidationError, match="cannot play"):
        SmsChannel.model_validate(data)
