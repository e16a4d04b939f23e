"""One-time codes from the contact's authenticator app (TOTP, RFC 6238).

Rules this module keeps:
1. The portal makes the secret (`new_secret`: 160 random bits, base32), never the user;
   it is shown once as an otpauth:// URI, as a QR code (inline SVG) and as base32 text.
2. A code is accepted one 30-second step either side of `now` (phones' clocks drift),
   compared in constant time.
3. Each code is usable once: `check` accepts only a step later than the last one used,
   which the caller persists. A code seen on the wire cannot be replayed, even at once.
4. Pure: `now` is an argument; nothing here reads the clock, the disk or logs.
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
ISSUER = "nocontact"
_MIN_SECRET_CHARS = 26  # 130 bits of base32: at least RFC 4226's recommended 128


def new_secret() -> str:
    """A fresh TOTP secret, base32 (rule 1)."""
    return pyotp.random_base32()  # 32 characters: 160 bits


def well_formed(secret: str) -> bool:
    """Whether `secret` is base32 text long enough to be one `new_secret` made."""
    if len(secret) < _MIN_SECRET_CHARS:
        return False
    try:
        pyotp.TOTP(secret).byte_secret()
    except ValueError:  # binascii.Error is a ValueError
        return False
    return True


def provisioning_uri(secret: str, login: str) -> str:
    """The otpauth:// URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=login, issuer_name=ISSUER
    )


def qr_svg(uri: str) -> str:
    """The URI as a QR code, an inline <svg> element (no image file, nothing fetched)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4))


def step_at(now: datetime) -> int:
    """The TOTP time step `now` falls in."""
    return int(now.timestamp()) // STEP_SECONDS


def check(secret: str, code: str, now: datetime, *, after_step: int) -> int | None:
    """The step `code` belongs to, if it is valid near `now` and later than `after_step`
    (rules 2, 3); else None."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = step_at(now)
    found = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # every step compared, so the time taken does not say which one matched
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code) and step > after_step:
            found = step
    return found
