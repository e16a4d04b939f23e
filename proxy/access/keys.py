"""A contact's age identity: made, protected with a passphrase if asked, and loaded.

Rules this module keeps:
1. The identity file is written once, never overwritten, readable by its owner only
   (0600). It holds an age X25519 identity, or the same encrypted with a passphrase (an
   age scrypt file, which the `age` command opens too).
2. The passphrase is asked on the terminal (twice when it is chosen), or read from
   NOCONTACT_PASSPHRASE for scripts; it is never an argument (shell history, `ps`).
3. A contact is named in custody records by the fingerprint of their public key: the
   first 16 hex digits of SHA-256 of the `age1...` recipient. It identifies the key and
   opens nothing.
4. A contact's custody signing key is derived from their age identity, never stored:
   an Ed25519 key whose seed is HKDF-SHA256 of the `AGE-SECRET-KEY-1...` text (no salt,
   info "nocontact custody signing v1", 32 bytes). `custody_signing_key` is the one
   place that derivation is written; the portal calls it on an identity it unwrapped.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import pyrage
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from proxy.archive.custody_keys import encode_key
from proxy.archive.seal import fingerprint
from proxy.errors import NocontactError

PASSPHRASE_ENV = "NOCONTACT_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
_ENCRYPTED = b"age-encryption.org/v1\n"
CUSTODY_INFO = b"nocontact custody signing v1"


class IdentityProblem(NocontactError):
    """An identity that cannot be made or used; the message says why in one line."""


def _passphrase(*, confirm: bool) -> str:
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        if not given:
            raise IdentityProblem(f"{PASSPHRASE_ENV} is set but empty")
        return given
    try:
        first = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("passphrase again: ") != first:
            raise IdentityProblem("the two passphrases differ; nothing was written")
    except EOFError:
        raise IdentityProblem(f"no passphrase given (type it, or set {PASSPHRASE_ENV})") from None
    if not first:
        raise IdentityProblem("an empty passphrase protects nothing; nothing was written")
    return first


def keygen(out: Path, *, protect: bool) -> tuple[str, str]:
    """Write a new identity to `out`; returns its public recipient (age1...) and its
    custody public key (ed25519:...)."""
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    secret = f"# nocontact contact key, made for {fingerprint(recipient)}\n{identity}\n".encode()
    data = pyrage.passphrase.encrypt(secret, _passphrase(confirm=True)) if protect else secret
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise IdentityProblem(
            f"{out} exists; choose another file (a key is never overwritten)"
        ) from None
    except OSError as error:
        raise IdentityProblem(f"cannot write {out}: {error.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return recipient, custody_public_key(identity)


def load_identity(path: Path) -> tuple[Any, str]:
    """The identity in `path` (asking for its passphrase if it has one), and its recipient."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise IdentityProblem(f"cannot read the identity file {path}: {error.strerror}") from None
    if data.startswith(_ENCRYPTED):
        try:
            data = pyrage.passphrase.decrypt(data, _passphrase(confirm=False))
        except pyrage.DecryptError:
            raise IdentityProblem(f"wrong passphrase for {path}") from None
    lines = [
        line.strip()
        for line in data.decode("utf-8", "replace").splitlines()
        if line.strip().startswith("AGE-SECRET-KEY-")
    ]
    if len(lines) != 1:
        raise IdentityProblem(f"{path} does not hold one age identity (AGE-SECRET-KEY-...)")
    try:
        identity = pyrage.x25519.Identity.from_str(lines[0])
    except pyrage.IdentityError:
        raise IdentityProblem(f"{path} does not hold a valid age identity") from None
    return identity, str(identity.to_public())


def custody_signing_key(identity: Any) -> Ed25519PrivateKey:
    """The contact's custody signing key, derived from their age identity (rule 4)."""
    secret = str(identity).strip().encode("utf-8")
    seed = HKDF(algorithm=SHA256(), length=32, salt=None, info=CUSTODY_INFO).derive(secret)
    return Ed25519PrivateKey.from_private_bytes(seed)


def custody_public_key(identity: Any) -> str:
    """The one line form ("ed25519:...") of the identity's custody public key."""
    public = custody_signing_key(identity).public_key()
    return encode_key(public.public_bytes(Encoding.Raw, PublicFormat.Raw))
