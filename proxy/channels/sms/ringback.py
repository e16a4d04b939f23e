"""The ringback tone a held caller hears: the very tone Twilio plays while it dials.

Rules this module keeps:
1. Pure: a ring tone's name and a number of seconds in, WAV bytes out (stdlib `wave`);
   no clock, no disk, no network. The same arguments always give the same bytes.
2. A held caller must not hear that he is held: his ringback is the one Twilio plays to an
   allowed caller during `<Dial ringTone=...>`, so every tone here is the national ringing
   tone Twilio names by that country code (cadences as in ITU-T E.180's list and
   Asterisk's indications.conf). A country Twilio knows but this module does not play is
   refused when the config is read (`proxy.config.values.ring_tone`), never guessed.
3. Bounded: a ringback is `RING_SECONDS` long at most (8 kHz, 16-bit mono: 16,000 bytes a
   second); anything else is refused with ValueError. Each (tone, seconds) is made once and
   kept: there are at most `len(CADENCES) * len(RING_SECONDS)` of them.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import wave

RATE = 8000  # Hz: the telephone band, all a phone call carries
RING_SECONDS = range(15, 31)  # how long a caller rings before the greeting: 15 to 30 s
_LEVEL = 0.2  # of full scale, each frequency: about -17 dBFS, a comfortable ringback

# Twilio's `ringTone` values for <Dial> (TwiML reference).
TWILIO_RING_TONES = frozenset({
    "at", "au", "bg", "br", "be", "ch", "cl", "cn", "cz", "de", "dk", "ee", "es", "fi", "fr",
    "gr", "hu", "il", "in", "it", "lt", "jp", "mx", "my", "nl", "no", "nz", "ph", "pl", "pt",
    "ru", "se", "sg", "th", "uk", "us", "us-old", "tw", "ve", "za",
})  # fmt: skip

# One period of each ringing tone: (frequencies in Hz, seconds) steps; () is silence.
Cadence = tuple[tuple[tuple[int, ...], float], ...]
_UK: Cadence = (((400, 450), 0.4), ((), 0.2), ((400, 450), 0.4), ((), 2.0))
_EUROPE: Cadence = (((425,), 1.0), ((), 4.0))
CADENCES: dict[str, Cadence] = {
    "us": (((440, 480), 2.0), ((), 4.0)),
    "uk": _UK,
    "nz": _UK,
    "de": _EUROPE,
    "it": _EUROPE,
    "nl": _EUROPE,
    "no": _EUROPE,
    "pl": _EUROPE,
    "fr": (((440,), 1.5), ((), 3.5)),
}


@functools.cache
def _period(tone: str) -> bytes:
    """One period of `tone` as 16-bit little-endian samples; ends in silence, so periods
    follow each other without a click."""
    samples: list[int] = []
    for frequencies, seconds in CADENCES[tone]:
        start = len(samples)
        for n in range(round(seconds * RATE)):
            t = (start + n) / RATE
            value = sum(math.sin(2 * math.pi * f * t) for f in frequencies) * _LEVEL
            samples.append(round(value * 32767))
    return struct.pack(f"<{len(samples)}h", *samples)


@functools.cache
def ringback_wav(tone: str, seconds: int) -> bytes:
    """`seconds` of `tone`'s ringing as a WAV file (8 kHz, 16-bit PCM, mono)."""
    if tone not in CADENCES or seconds not in RING_SECONDS:
        raise ValueError("no such ringback")
    period = _period(tone)
    size = seconds * RATE * 2
    frames = (period * (size // len(period) + 1))[:size]
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(frames)
    return out.getvalue()
