"""The archive directory: which file is which, and the small files beside the log.

Rules this module keeps:
1. Every name in the archive directory is defined here, once.
2. Small files are replaced atomically (write, fsync, rename, fsync the directory), so a
   crash leaves the old version or the new, never a mix.
3. Nothing here is secret except `signing.key`, which only signs checkpoints; no file in
   the directory can open a held item. Every file is made 0600 (and the directories
   0700) at its creation all the same: the directory belongs to the daemon's user.
4. A new archive's segment size is `SEGMENT_BYTES` (64 MiB) unless the environment says
   `NOCONTACT_SEGMENT_MIB` (a whole number, 1 to 1024): a small disk, or a test suite that
   makes hundreds of archives, reserves less room (segments.py rule 1 writes each one
   whole). It is read when an archive is created; an archive keeps the size its
   `archive.json` records. Any other value is one clear error, never a guess.
5. The manifest's version decides the archive's leaf rule (records.py rule 2), for the
   archive's whole life: a new archive is made as `VERSION` (3), and an older one keeps
   its rule forever, since rehashing its entries would break every checkpoint that left
   the server. Opening a version 1 archive for writing makes it version 2 (the same
   leaf rule: only the kinds written change); a version 2 archive stays version 2.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from proxy import disk
from proxy.archive.errors import ArchiveCorrupt, ArchiveUnavailable
from proxy.archive.note import NoteError, Verifier, parse_checkpoint
from proxy.archive.records import LeafRule

FORMAT = "nocontact-archive"
# 2: items and custody records share one entry kind (records.py rule 3);
# 3: the leaf is taken over the body's SHA-256 (records.py rule 2), for tlog-tiles
VERSION = 3
_LEAF_RULES = {1: LeafRule.BODY, 2: LeafRule.BODY, 3: LeafRule.BODY_SHA256}  # rule 5
VERSIONS = tuple(_LEAF_RULES)  # what can be read and written (rule 5)
_UPGRADES = {1: 2}  # what opening for writing makes of a version (rule 5): never a new rule
ORIGIN_PREFIX = "nocontact.archive/"
SEGMENT_BYTES = 64 << 20
SEGMENT_ENV = "NOCONTACT_SEGMENT_MIB"  # rule 4
_MIB = 1 << 20

MANIFEST = "archive.json"  # format, version, origin, segment size
SIGNING_KEY = "signing.key"  # Ed25519 private key, PEM, 0600: signs checkpoints only
VERIFIER_KEY = "signing.pub"  # the C2SP verifier key: name+keyid+base64
HEAD = "checkpoint"  # the latest signed checkpoint note
LOCK = "lock"  # flock'd by the single writer; holds its pid
LOG_DIR = "log"  # segment files 00000001.seg ...
RECIPIENTS = "recipients"  # the contacts' age public keys, for sealing custody records
CUSTODY_KEYS = "custody-keys"  # the contacts' custody public keys, for checking custody records
# In an archive restored from its replica (no signing.key: it takes no new entries), the
# archive of its own where the custody of every look at it since is recorded (custody.py)
RESTORED_CUSTODY = "custody-after-restore"
RESTORED_CUSTODY_SEGMENT_BYTES = 1 << 20  # custody records are small


def new_segment_bytes() -> int:
    """The segment size a new archive is made with (rule 4)."""
    text = os.environ.get(SEGMENT_ENV)
    if text is None or text == "":
        return SEGMENT_BYTES
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 1024:
        raise ArchiveUnavailable(
            f"{SEGMENT_ENV} must be a whole number of MiB from 1 to 1024, not {text[:40]!r}"
        )
    return int(text) * _MIB


def leaf_rule(version: int) -> LeafRule:
    """The leaf rule of an archive of format `version` (rule 5)."""
    return _LEAF_RULES[version]


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    origin: str
    segment_bytes: int
    version: int

    @property
    def leaf_rule(self) -> LeafRule:
        """How this archive's leaf hashes are taken (rule 5)."""
        return leaf_rule(self.version)

    def for_writing(self) -> Manifest:
        """The manifest as a writer opening the archive leaves it (rule 5): version 1
        becomes 2, every other version stays as it is."""
        version = _UPGRADES.get(self.version, self.version)
        return Manifest(origin=self.origin, segment_bytes=self.segment_bytes, version=version)


def manifest_bytes(manifest: Manifest) -> bytes:
    """The one exact form archive.json is written in (verify accepts no other)."""
    data = {"format": FORMAT, "version": manifest.version, "origin": manifest.origin,
            "segment_bytes": manifest.segment_bytes}  # fmt: skip
    return (json.dumps(data, indent=2) + "\n").encode()


def read_manifest(root: Path) -> Manifest:
    """The archive's manifest, or `ArchiveCorrupt` saying what is wrong with it."""
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise ArchiveCorrupt(f"{MANIFEST} is unreadable: {error}") from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArchiveCorrupt(f"{root} is not a nocontact archive ({MANIFEST} says otherwise)")
    version = data.get("version")
    if version not in VERSIONS:
        raise ArchiveCorrupt(
            f"archive format version {version!r} is not one this nocontact reads "
            f"({', '.join(map(str, VERSIONS))}): use a newer nocontact"
        )
    origin, size = data.get("origin"), data.get("segment_bytes")
    if not isinstance(origin, str) or not origin.startswith(ORIGIN_PREFIX):
        raise ArchiveCorrupt(f"{MANIFEST} has no valid origin")
    if not isinstance(size, int) or size < 4096:
        raise ArchiveCorrupt(f"{MANIFEST} has no valid segment_bytes")
    return Manifest(origin=origin, segment_bytes=size, version=int(version))


def read_head_size(root: Path, verifier: Verifier) -> int:
    """The tree size of the latest published checkpoint (0 if none yet)."""
    path = root / HEAD
    if not path.exists():
        return 0
    try:
        return parse_checkpoint(verifier.open(path.read_bytes())).size
    except (OSError, NoteError) as error:
        raise ArchiveCorrupt(f"the {HEAD} file does not verify: {error}") from error


def replace_file(path: Path, data: bytes) -> None:
    """Atomically and durably replace an archive file, 0600 from its creation like every
    file the daemon makes (the checkpoint and the contacts' public keys are public, but
    who may read them is the deployment's to widen, not ours)."""
    disk.replace_file(path, data)
