"""A portal contact's public key files: where the daemon reads who items are sealed to.

Rules this module keeps:
1. The age public key goes to the contact's `age_recipient_file`, their custody key beside
   it (`custody_key_file`, where the config reads it: config/meaning.py rule 8).
2. Each file is written whole or not at all (`proxy.disk.replace_file`), the custody key
   first, so a recipient file is never there without it (the daemon's watch, contact_keys.py,
   then finds both).
3. A refusal is one line naming the file, never its contents (`PortalProblem`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from proxy.access.keys import custody_public_key
from proxy.config import Contact, meaning
from proxy.disk import replace_file
from proxy.portal.refusals import PortalProblem


def custody_key_file(contact: Contact) -> Path:
    """Where a portal contact's custody key is written (rule 1)."""
    return meaning.custody_key_file(contact.age_recipient_file or "")


def recipient_in_file(contact: Contact) -> str | None:
    """The age public key in the contact's recipient file, if it holds one."""
    path = Path(contact.age_recipient_file or "")
    try:
        lines = path.read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    except OSError as error:
        raise PortalProblem(f"cannot read {path}: {error.strerror}") from None
    keys = [line for line in lines if line.startswith("age1")]
    return keys[0] if keys else None


def write_keys(contact: Contact, identity: Any) -> None:
    """The identity's public key and custody key, where the daemon reads them (rule 2)."""
    path = Path(contact.age_recipient_file or "")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        replace_file(custody_key_file(contact), f"{custody_public_key(identity)}\n".encode())
        replace_file(path, f"{identity.to_public()}\n".encode())
    except OSError as error:
        raise PortalProblem(f"cannot write {path}: {error.strerror}") from None
