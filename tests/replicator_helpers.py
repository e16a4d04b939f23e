"""Archives to replicate and what the bucket must then hold (the layout contract of
docs/replication.md, computed here from the archive independently of the replicator)."""

from __future__ import annotations

import hashlib
import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.archive import ArchiveLog, EntryKind, layout
from proxy.archive.following import FollowedArchive
from proxy.archive.records import LeafRule
from proxy.replica.store import BucketSettings, ObjectStore, StoreError, open_store
from proxy.replica.tiles import bundles_for_size, tiles_for_size
from tests.s3_server import SeaweedS3

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
LASTING = NOW + timedelta(days=3650)  # a clock whose locks outlive any test
_buckets = (f"bucket-{n}" for n in itertools.count())


def new_bucket(server: SeaweedS3, tmp_path: Path, *, prefix: str = "log/") -> BucketSettings:
    """A fresh Object Lock bucket (30 days' retention), its credentials file in `tmp_path`."""
    return BucketSettings(
        bucket=server.locked_bucket(next(_buckets)),
        credentials_file=server.write_credentials(tmp_path / "s3-credentials"),
        retention_days=30,
        endpoint=server.endpoint,
        prefix=prefix,
    )


def lasting_store(settings: BucketSettings) -> ObjectStore:
    """The bucket's store, on a clock ten years on: every lock outlives the test."""
    return open_store(settings, now=lambda: LASTING)


def grow(root: Path, batches: list[int], *, size: int = 300) -> list[bytes]:
    """Append `batches` (entry counts) to the archive at `root`, a checkpoint after each
    batch (and one on opening and closing, as ArchiveLog does); the bodies written."""
    log = ArchiveLog.open(root)
    bodies: list[bytes] = []
    for count in batches:
        batch = [os.urandom(size) for _ in range(count)]
        log.append([(EntryKind.SEALED, body) for body in batch], checkpoint=True, now=NOW)
        bodies += batch
    log.close(now=NOW)
    return bodies


def signed_entries(root: Path) -> tuple[int, list[tuple[EntryKind, bytes]], bytes]:
    """(the latest checkpoint's size, every entry up to and with it, its note)."""
    followed = FollowedArchive(root)
    report = followed.refresh()
    size = report.checkpoint.size
    found = [(entry.kind, entry.body) for entry in followed.entries(range(size))]
    return size, [*found, (EntryKind.CHECKPOINT, report.note)], report.note


def contract_keys(root: Path, *, size: int | None = None, public: bool = True) -> set[str]:
    """Every key the bucket holds once the archive is replicated up to its checkpoint of
    `size` (default: the latest): one set of tiles per signed checkpoint. A version 1 or 2
    archive's entry bundles are under `index/`, never `tile/entries/`."""
    own_path = layout.read_manifest(root).leaf_rule is LeafRule.BODY
    latest, found, _ = signed_entries(root)
    size = latest if size is None else size
    keys = {"archive.json", "signing.pub", "checkpoint"}
    for index, (kind, body) in enumerate(found[: size + 1]):
        if index < size:
            keys.add(f"blobs/sha256/{hashlib.sha256(body).hexdigest()}")
        if kind is EntryKind.CHECKPOINT:
            keys.add(f"checkpoints/{index}")
            bundles = bundles_for_size(index, own_path=own_path)
            keys |= {tile.path for tile in tiles_for_size(index) + bundles}
    if public and (root / layout.RECIPIENTS).exists():
        keys.add(f"public/{size}/{layout.RECIPIENTS}")
    return keys


def one_line(error: pytest.ExceptionInfo[StoreError]) -> str:
    """The failure's message, checked to be one line and no traceback."""
    message = str(error.value)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message
    return message
