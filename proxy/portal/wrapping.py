"""A contact's age identity: made or taken in memory, stored only wrapped with their passphrase.

Rules this module keeps:
1. The identity is wrapped with age's scrypt recipient (`pyrage.passphrase.encrypt`), so the
   contact can open the wrapped file with the stock `age -d` too, off the server. pyrage
   (rage) picks the scrypt work factor by timing this machine (about 1 s: 2^20 measured
   here); stock `age` refuses more than 2^22 (`AGE_MAX_WORK_FACTOR`), so a wrapping above
   it is refused rather than stored.
2. The wrapped file holds the identity as `nocontact contact keygen` writes it: a comment
   line with the key's fingerprint, then AGE-SECRET-KEY-1...
3. An uploaded identity must be an unprotected keygen file (one secret key, comments
   allowed); a refusal says what is wrong without quoting the file.
4. The identity lives in memory only, as pyrage's object; nothing here writes it unwrapped.
5. Logging in opens a second wrapping, made with the same passphrase at the same moments
   as the age file: ChaCha20-Poly1305 (the `cryptography` library) under a key argon2id
   derives from the passphrase (passphrases.py rule 4), bound to the contact's name. The
   age file's scrypt costs 1 GiB and about 2 s here at the work factor rage picks; the
   argon2id key costs what checking the stored hash does, so a login meets its 1.5 s and
   an offline guess costs no less than it did. The age file stays for `age -d`.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from typing import Any

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from proxy.archive.seal import fingerprint
from proxy.portal.refusals import EnrollProblem, PortalProblem

AGE_MAX_WORK_FACTOR = 22
_SCRYPT_STANZA = re.compile(rb"^-> scrypt \S+ (\d+)$", re.MULTILINE)
_MAX_UPLOAD = 64 * 1024


def generate() -> Any:
    """A new identity, in memory."""
    return pyrage.x25519.Identity.generate()


def parse_upload(data: bytes) -> Any:
    """The identity in an uploaded keygen file (rule 3)."""
    if len(data) > _MAX_UPLOAD:
        raise EnrollProblem("that file is too large to be an identity")
    if data.startswith(b"age-encryption.org/"):
        raise EnrollProblem(
            "that identity is protected by a passphrase: upload the unprotected file "
            "(from `nocontact contact keygen` without --passphrase)"
        )
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise EnrollProblem("that file is not an age identity (not text)") from None
    keys = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if len(keys) != 1 or not keys[0].startswith("AGE-SECRET-KEY-1"):
        raise EnrollProblem("that file must hold exactly one age identity (AGE-SECRET-KEY-1...)")
    try:
        return pyrage.x25519.Identity.from_str(keys[0])
    except Exception:  # pyrage's IdentityError has no stable import name
        raise EnrollProblem("that file's AGE-SECRET-KEY-1... is not a valid identity") from None


def wrap(identity: Any, passphrase: str) -> bytes:
    """The identity's keygen text wrapped with `passphrase` (rules 1, 2)."""
    recipient = str(identity.to_public())
    text = f"# nocontact contact key, made for {fingerprint(recipient)}\n{identity}\n"
    wrapped: bytes = pyrage.passphrase.encrypt(text.encode(), passphrase)
    factor = work_factor(wrapped)
    if factor is None or factor > AGE_MAX_WORK_FACTOR:
        raise PortalProblem(
            f"the key was wrapped with scrypt work factor {factor}, more than the age tool "
            f"opens (2^{AGE_MAX_WORK_FACTOR}); nothing was stored"
        )
    return wrapped


def unwrap(wrapped: bytes, passphrase: str) -> Any | None:
    """The identity, or None if `passphrase` does not open it."""
    try:
        text = pyrage.passphrase.decrypt(wrapped, passphrase).decode()
    except (pyrage.DecryptError, UnicodeDecodeError):
        return None
    keys = [line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-1")]
    return pyrage.x25519.Identity.from_str(keys[0]) if len(keys) == 1 else None


def wrap_for_login(
    identity: Any, passphrase: str, contact: str, *, derive: Callable[[str, bytes], bytes]
) -> dict[str, str]:
    """The identity sealed under the key `derive` makes of `passphrase` and a new salt
    (rule 5), as an account record's field."""
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    sealed = ChaCha20Poly1305(derive(passphrase, salt)).encrypt(
        nonce, str(identity).encode(), _aad(contact)
    )  # fmt: skip
    return {name: base64.b64encode(value).decode()
            for name, value in (("salt", salt), ("nonce", nonce), ("sealed", sealed))}  # fmt: skip


def unwrap_for_login(
    wrapped: object, passphrase: str, contact: str, *, derive: Callable[[str, bytes], bytes]
) -> Any | None:
    """The identity `wrap_for_login` sealed, or None if the passphrase does not open it
    (or the field is not one it wrote)."""
    if not isinstance(wrapped, dict):
        return None
    try:
        salt, nonce, sealed = (base64.b64decode(str(wrapped[name]), validate=True)
                               for name in ("salt", "nonce", "sealed"))  # fmt: skip
        if len(salt) < 8:
            return None
        key = derive(passphrase, salt)
        text = ChaCha20Poly1305(key).decrypt(nonce, sealed, _aad(contact)).decode()
        return pyrage.x25519.Identity.from_str(text)
    except (KeyError, ValueError, InvalidTag):
        return None
    except Exception:  # pyrage's IdentityError has no stable import name
        return None


def _aad(contact: str) -> bytes:
    return b"nocontact portal login key v1\0" + contact.encode()


def work_factor(wrapped: bytes) -> int | None:
    """log2 of the scrypt work factor in an age file's header, if it has one."""
    header = wrapped.split(b"\n---", 1)[0]
    found = _SCRYPT_STANZA.search(header)
    return int(found.group(1)) if found else None
