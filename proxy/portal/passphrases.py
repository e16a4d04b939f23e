"""Contacts' passphrases: strong enough to guard a key, and kept only as argon2id hashes.

Rules this module keeps:
1. A passphrase guards the contact's age identity against anyone who copies the state
   directory, so it must resist offline guessing: zxcvbn score at least `MIN_SCORE` (3 of
   4, "safely unguessable"), judged with the contact's name and email as known words.
   A refusal says why in zxcvbn's words, which never quote the passphrase.
2. What is stored is an argon2id hash (argon2-cffi's `PasswordHasher`, its RFC 9106 low-
   memory profile by default); the passphrase itself never is.
3. A login for an account that does not exist still runs one verification against a dummy
   hash (`verify_nothing`), so the time taken does not tell a stranger who has an account.
4. `derive_key` turns a passphrase into a key (argon2id with the hashes' settings and a
   salt of its own): guessing against it costs what guessing against the hash does.
"""

from __future__ import annotations

from collections.abc import Sequence

import argon2
import zxcvbn

from proxy.portal.refusals import EnrollProblem

MIN_SCORE = 3
MAX_CHARS = 1024  # zxcvbn's cost grows with length: longer is refused before it is judged


class Passphrases:
    """Hashing and checking passphrases with one argon2id configuration."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self._hasher = hasher or argon2.PasswordHasher()
        self._dummy = self._hasher.hash("nocontact: no such account")

    def hash(self, passphrase: str) -> str:
        return self._hasher.hash(passphrase)

    def verify(self, stored: str, passphrase: str) -> bool:
        try:
            return self._hasher.verify(stored, passphrase)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def derive_key(self, passphrase: str, salt: bytes) -> bytes:
        """A 32-byte key from `passphrase` and `salt` with the same argon2id settings as
        the hashes (rule 4)."""
        hasher = self._hasher
        return argon2.low_level.hash_secret_raw(
            passphrase.encode(), salt, time_cost=hasher.time_cost,
            memory_cost=hasher.memory_cost, parallelism=hasher.parallelism, hash_len=32,
            type=argon2.Type.ID,
        )  # fmt: skip

    def verify_nothing(self, passphrase: str) -> None:
        """As long as a real verification, and always false (rule 3)."""
        self.verify(self._dummy, passphrase + "\0")


def require_strong(passphrase: str, known: Sequence[str]) -> None:
    """EnrollProblem unless `passphrase` is strong enough (rule 1)."""
    if len(passphrase) > MAX_CHARS:
        raise EnrollProblem(f"the passphrase is longer than {MAX_CHARS} characters")
    result = zxcvbn.zxcvbn(passphrase, user_inputs=[w for w in known if w])
    if result["score"] >= MIN_SCORE:
        return
    feedback = result.get("feedback") or {}
    words = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
    why = " ".join(w.strip() for w in words if w and w.strip())
    raise EnrollProblem(
        "this passphrase is too easy to guess" + (f": {why}" if why else "")
        + " (a few unrelated words make a strong one)"
    )  # fmt: skip
