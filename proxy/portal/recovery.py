"""Recovery codes: ten one-time codes that, with the passphrase, replace a lost authenticator.

Rules this module keeps:
1. A code is 16 characters (80 bits) from an alphabet without look-alikes (no 0/o, 1/l),
   shown in groups of four; only its SHA-256 is stored (80 bits cannot be searched).
2. What a contact types is read leniently: case, spaces and dashes do not matter.
"""

from __future__ import annotations

import hashlib
import secrets

CODES = 10
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # read aloud, typed
_CHARS = 16


def new_code() -> str:
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(_CHARS))
    return "-".join(chars[i : i + 4] for i in range(0, _CHARS, 4))


def normal(code: str) -> str:
    """`code` as typed, in the form it was given out (rule 2)."""
    chars = "".join(c for c in code.casefold() if c.isalnum())
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "replace")).hexdigest()
