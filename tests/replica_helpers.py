"""A small in-memory writer of the replica bucket layout, straight from a real archive,
for check.py's unit tests (the S3 tests use the replicator itself, proxy/replica).

It keeps docs/replication.md's contract and nothing more: for every checkpoint entry of
the archive, at index s (signing size s), the tiles and entry bundles of size s (under
`index/` for a version 1 or 2 archive), the blob
of every entry below s, `checkpoints/<s>`; once, `archive.json` and `signing.pub`; the
archive's `recipients` and `custody-keys` as `public/<size>/...` at the newest size;
`checkpoint` (updated in place) last. Also: a real version 3 archive with held items,
custody records and several checkpoints, and a static copy of a bucket for a plain web
server.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyrage

from proxy.access.keys import custody_public_key
from proxy.archive import ArchiveLog, CustodyRecord, EntryKind, Recipients, layout
from proxy.archive.custody_keys import keys_file_bytes
from proxy.archive.reader import SegmentScan, mapped
from proxy.archive.records import LeafRule, entry_hash, tile_entry
from proxy.archive.seal import fingerprint, seal_custody, seal_item
from proxy.archive.segments import segment_name, segment_numbers
from proxy.replica.replicator import Replicator
from proxy.replica.signed_archive import ArchiveSource
from proxy.replica.store import BucketSettings, ObjectStore, open_store
from proxy.replica.tiles import build_tiles, bundles_for_size, encode_bundle
from proxy.rules import decide
from tests.factories import email, make_rules
from tests.s3_server import SeaweedS3

Put = Callable[[str, bytes], object]
SEGMENT_BYTES = 4096  # the smallest: entries roll over into many segments
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def archive_entries(root: Path) -> list[tuple[EntryKind, bytes]]:
    """Every entry of the archive at `root`, in log order: (kind, body)."""
    found: list[tuple[EntryKind, bytes]] = []
    log_dir = root / layout.LOG_DIR
    for number in segment_numbers(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                assert record.header.index == len(found)
                found.append((record.header.kind, bytes(record.body)))
    return found


def replicate(root: Path, put_once: Put, put_latest: Put) -> int:
    """Write the layout of the archive at `root`; the newest checkpoint's size."""
    put_once(layout.MANIFEST, (root / layout.MANIFEST).read_bytes())
    put_once(layout.VERIFIER_KEY, (root / layout.VERIFIER_KEY).read_bytes())
    entries = archive_entries(root)
    rule = layout.read_manifest(root).leaf_rule
    leaves = [entry_hash(kind, i, body, rule=rule) for i, (kind, body) in enumerate(entries)]
    bundled = [tile_entry(kind, i, body) for i, (kind, body) in enumerate(entries)]
    written: set[str] = set()

    def once(key: str, data: bytes) -> None:
        if key not in written:
            written.add(key)
            put_once(key, data)

    size, note = 0, b""
    for index, (kind, body) in enumerate(entries):
        if kind is not EntryKind.CHECKPOINT:
            continue
        size, note = index, body
        for tile, data in build_tiles(leaves[:size]).items():
            once(tile.path, data)
        for bundle in bundles_for_size(size, own_path=rule is LeafRule.BODY):
            once(bundle.path, encode_bundle(bundled[bundle.start : bundle.start + bundle.width]))
        for _, blob_body in entries[:size]:
            once(blob_key(blob_body), blob_body)
        once(f"checkpoints/{size}", note)
    for name in (layout.RECIPIENTS, layout.CUSTODY_KEYS):
        once(f"public/{size}/{name}", (root / name).read_bytes())
    put_latest("checkpoint", note)
    return size


def blob_key(body: bytes) -> str:
    """The blob's key: its SHA-256, lowercase hex."""
    return f"blobs/sha256/{hashlib.sha256(body).hexdigest()}"


def to_directory(store: ObjectStore, directory: Path) -> None:
    """A static copy of the bucket (each key's first version), as `aws s3 sync` makes one."""
    for key in store.keys(""):
        path = directory / key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = store.latest(key) if key == "checkpoint" else store.get(key)
        assert data is not None
        path.write_bytes(data)


class Contact:
    """A contact's age identity, and the public files the daemon publishes for it."""

    def __init__(self) -> None:
        self.identity = pyrage.x25519.Identity.generate()
        self.recipient = str(self.identity.to_public())
        self.recipients = Recipients.parse([self.recipient])

    def publish(self, root: Path) -> None:
        layout.replace_file(root / layout.RECIPIENTS, f"{self.recipient}\n".encode())
        key = custody_public_key(self.identity)
        layout.replace_file(
            root / layout.CUSTODY_KEYS, keys_file_bytes({fingerprint(self.recipient): key})
        )


def hold(
    root: Path, contact: Contact, rounds: int, *, tag: str, big: bool = False,
    custody_kind: EntryKind = EntryKind.SEALED,
) -> list[bytes]:  # fmt: skip
    """Open the archive at `root` (made on first use) and write `rounds` rounds of two held
    emails and a custody record (of `custody_kind`: version 1 wrote kind 2), each round
    under a checkpoint; the held messages' bytes."""
    rules = make_rules()
    clock = iter(START + timedelta(minutes=10 * n) for n in range(1000))
    log = ArchiveLog.open(root, segment_bytes=SEGMENT_BYTES, clock=lambda: next(clock))
    held: list[bytes] = []
    try:
        contact.publish(root)
        for round_number in range(rounds):
            batch: list[tuple[EntryKind, bytes]] = []
            for n in range(2):
                text = f"{tag} round {round_number} message {n}\n"
                if big and round_number == 0 and n == 0:
                    text += "x" * 9000  # one record larger than a segment
                message = email("From: Mark <mark.smith@gmail.com>\nSubject: hi", text)
                held.append(message.raw)
                body = seal_item(message, decide(message, rules), contact.recipients,
                                 sealed_at=START)  # fmt: skip
                batch.append((EntryKind.SEALED, body))
            record = CustodyRecord(contact=fingerprint(contact.recipient), action="list",
                                   items=(1,), at=START, reason=tag)  # fmt: skip
            batch.append((custody_kind, seal_custody(record, contact.recipients)))
            log.append(batch, checkpoint=True, now=next(clock))
    finally:
        log.close(now=next(clock))
    return held


def copy_archive(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(layout.LOCK))
    return target


_prefixes = (f"log-{n}" for n in itertools.count())


@dataclass(frozen=True, slots=True, kw_only=True)
class Bucket:
    """One Object Lock bucket of the test S3; each replica in it under a prefix of its own."""

    server: SeaweedS3
    name: str
    credentials: Path

    def store(self, prefix: str) -> ObjectStore:
        return open_store(BucketSettings(
            bucket=self.name, credentials_file=self.credentials, retention_days=1,
            endpoint=self.server.endpoint, prefix=f"{prefix}/",
        ))  # fmt: skip

    def replicate(self, archive: Path) -> tuple[str, int]:
        """A new prefix holding the replicator's replica of `archive` (one pass): (prefix,
        newest checkpoint size)."""
        prefix = next(_prefixes)
        outcome = Replicator(ArchiveSource(archive), self.store(prefix)).run_pass()
        return prefix, outcome.size

    def source(self, prefix: str) -> list[str]:
        """`--from` and what it needs, for the CLI."""
        return ["--from", f"s3://{self.name}/{prefix}", "--endpoint", self.server.endpoint,
                "--credentials", str(self.credentials)]  # fmt: skip


def restored_segments(lost: Path, target: Path) -> list[int]:
    """The restored archive's segment numbers, once each is checked byte for byte against
    the lost one's (a lost segment not restored must be the writer's next, all zeros)."""
    restored = segment_numbers(target / layout.LOG_DIR)
    for number in segment_numbers(lost / layout.LOG_DIR):
        original = (lost / layout.LOG_DIR / segment_name(number)).read_bytes()
        if number in restored:
            assert (target / layout.LOG_DIR / segment_name(number)).read_bytes() == original
        else:  # the writer's next segment, made ahead: zeros only
            assert not original.strip(b"\0")
    return restored


@dataclass
class MemoryReplica:
    """A bucket as a dict; `listing` False plays a static web server (no listing)."""

    objects: dict[str, bytes] = field(default_factory=dict)
    listing: bool = True

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def keys(self, prefix: str) -> list[str] | None:
        if not self.listing:
            return None
        return sorted(key for key in self.objects if key.startswith(prefix))
