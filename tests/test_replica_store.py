"""The replica's object store against a real SeaweedFS S3 with Object Lock on loopback."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions
import pytest

from proxy.archive.merkle import MerkleTree, leaf_hash
from proxy.replica.store import (
    BucketSettings,
    ObjectStore,
    Placed,
    StoreError,
    open_store,
    read_credentials,
)
from proxy.replica.tiled_tree import TiledTree
from proxy.replica.tiles import (
    MAX_ENTRY,
    Tile,
    TileError,
    build_tiles,
    bundles_for_size,
    encode_bundle,
    parse_path,
)
from tests.replicator_helpers import one_line
from tests.s3_server import SECRET_ACCESS_KEY, SeaweedS3
from tests.servers import free_port

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
_names = (f"replica-{n}" for n in itertools.count())


def _version(server: SeaweedS3, settings: BucketSettings, key: str) -> str:
    listing = server.client().list_object_versions(Bucket=settings.bucket, Prefix="log/" + key)
    versions = [v for v in listing["Versions"] if v["Key"] == "log/" + key]
    assert len(versions) == 1
    return str(versions[0]["VersionId"])


def test_a_written_object_is_locked_in_compliance_mode(
    server: SeaweedS3, settings: BucketSettings
) -> None:
    """put_once locks the object COMPLIANCE until now + retention_days, by the clock given."""
    store = open_store(settings, now=lambda: NOW + timedelta(days=3650))
    assert store.put_once("tile/0/000", b"first") is Placed.WRITTEN
    head = server.client().head_object(Bucket=settings.bucket, Key="log/tile/0/000")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == NOW + timedelta(days=3650 + 30)
    assert store.get("tile/0/000") == b"first"
    assert store.get("tile/0/001") is None
    assert store.keys() == ["tile/0/000"]


def test_a_locked_object_cannot_be_deleted_overwritten_or_shortened(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """Through S3, the locked version survives deletes, shorter retention and overwrites."""
    store.put_once("tile/0/000", b"evidence")
    key, version = "log/tile/0/000", _version(server, settings, "tile/0/000")
    client = server.client()
    shorter = datetime.now(UTC) + timedelta(days=1)  # in the future, before the lock ends
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        client.delete_object(Bucket=settings.bucket, Key=key, VersionId=version)
    for mode, bypass in (("COMPLIANCE", False), ("GOVERNANCE", True)):
        with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
            client.put_object_retention(
                Bucket=settings.bucket, Key=key, VersionId=version,
                Retention={"Mode": mode, "RetainUntilDate": shorter},
                BypassGovernanceRetention=bypass,
            )  # fmt: skip
    # An overwrite without a condition and a delete marker only stack newer versions on top.
    client.put_object(Bucket=settings.bucket, Key=key, Body=b"rewritten")
    client.delete_object(Bucket=settings.bucket, Key=key)
    with pytest.raises(botocore.exceptions.ClientError, match="NoSuchKey"):
        client.get_object(Bucket=settings.bucket, Key=key)
    assert client.get_object(Bucket=settings.bucket, Key=key, VersionId=version)["Body"].read() == (
        b"evidence"
    )
    assert store.get("tile/0/000") == b"evidence"
    assert store.keys("tile/") == ["tile/0/000"]


def test_if_none_match_refuses_a_second_different_write(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """The same bytes again are "already there"; other bytes are refused, by S3 and by us."""
    assert store.put_once("tile/entries/000.p/3", b"abc") is Placed.WRITTEN
    assert store.put_once("tile/entries/000.p/3", b"abc") is Placed.ALREADY_THERE
    with pytest.raises(StoreError, match="already in the bucket with other bytes"):
        store.put_once("tile/entries/000.p/3", b"abd")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        server.client().put_object(
            Bucket=settings.bucket, Key="log/tile/entries/000.p/3", Body=b"abd", IfNoneMatch="*"
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert store.get("tile/entries/000.p/3") == b"abc"


def test_a_rewrite_behind_a_delete_marker_is_refused(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """A delete marker lets If-None-Match pass again; put_once still compares the first bytes."""
    store.put_once("checkpoint-0001", b"signed")
    server.client().delete_object(Bucket=settings.bucket, Key="log/checkpoint-0001")
    with pytest.raises(StoreError, match="other bytes"):
        store.put_once("checkpoint-0001", b"forged")
    assert store.get("checkpoint-0001") == b"signed"
    assert store.put_once("checkpoint-0001", b"signed") is Placed.ALREADY_THERE


def test_wrong_credentials_areone_line(
    server: SeaweedS3, settings: BucketSettings, tmp_path: Path
) -> None:
    """A wrong secret is refused before anything is written, naming the credentials file."""
    wrong = server.write_credentials(tmp_path / "wrong", secret="not-" + SECRET_ACCESS_KEY)
    bad = BucketSettings(
        bucket=settings.bucket, credentials_file=wrong, retention_days=1,
        endpoint=server.endpoint,
    )  # fmt: skip
    with pytest.raises(StoreError) as error:
        open_store(bad)
    assert f"credentials in {wrong}" in one_line(error)


def test_no_bucket_and_no_object_lock_areone_line(
    server: SeaweedS3, settings: BucketSettings
) -> None:
    """A missing bucket, and a bucket without Object Lock, are each refused in one line."""
    missing = BucketSettings(
        bucket="nobody-made-this", credentials_file=settings.credentials_file,
        retention_days=1, endpoint=server.endpoint,
    )  # fmt: skip
    with pytest.raises(StoreError) as error:
        open_store(missing)
    assert "no bucket 'nobody-made-this'" in one_line(error)
    plain = BucketSettings(
        bucket=server.plain_bucket(next(_names)), credentials_file=settings.credentials_file,
        retention_days=1, endpoint=server.endpoint,
    )  # fmt: skip
    with pytest.raises(StoreError) as error:
        open_store(plain)
    assert "has no Object Lock" in one_line(error)


def test_an_unreachable_endpoint_isone_line(settings: BucketSettings) -> None:
    """Nothing listening on the endpoint is a network failure, in one line."""
    away = BucketSettings(
        bucket=settings.bucket, credentials_file=settings.credentials_file, retention_days=1,
        endpoint=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    with pytest.raises(StoreError) as error:
        open_store(away)
    assert "cannot reach the S3 endpoint" in one_line(error)


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [("[default]\naws_access_key_id = a\naws_secret_access_key = b\n", 0o644, "mode 0644"),
     ("[default]\naws_access_key_id = a\n", 0o600, "needs aws_access_key_id and"),
     ("aws_access_key_id = a\n", 0o600, "is not an AWS credentials file"),
     ("[other]\naws_access_key_id = a\naws_secret_access_key = b\n", 0o600, "[default]"),
     ("[default]\n\xff\n", 0o600, "is not an AWS credentials file")],
)  # fmt: skip
def test_credentials_files_are_checked(tmp_path: Path, text: str, mode: int, message: str) -> None:
    """A credentials file readable by others, incomplete or malformed is one clear line."""
    path = tmp_path / "credentials"
    path.write_text(text, encoding="latin-1")
    path.chmod(mode)
    with pytest.raises(StoreError) as error:
        read_credentials(path)
    assert message in one_line(error)
    with pytest.raises(StoreError) as error:
        read_credentials(tmp_path / "absent")
    assert "cannot read the S3 credentials file" in one_line(error)


def test_the_secret_is_never_in_a_repr(tmp_path: Path) -> None:
    """The secret access key stays out of the credentials' repr."""
    path = tmp_path / "credentials"
    path.write_text("[default]\naws_access_key_id = AKID\naws_secret_access_key = CANARY-77\n")
    path.chmod(0o600)
    credentials = read_credentials(path)
    assert credentials.secret_access_key == "CANARY-77"
    assert "CANARY-77" not in repr(credentials)


# -- A tree in the bucket ------------------------------------------------------------------

SIZE = 700


def _entries() -> list[bytes]:
    """Synthetic entries from 0 to 65,535 bytes (every 97th at the bundle format's limit)."""
    return [
        bytes([i % 256]) * (MAX_ENTRY if i % 97 == 0 else (i * 7919) % 1500) for i in range(SIZE)
    ]


def _replicate(store: ObjectStore, entries: list[bytes]) -> Placed:
    """Write every tile and entry bundle of the tree over `entries`; the last placement."""
    placed = Placed.WRITTEN
    for tile, data in build_tiles([leaf_hash(entry) for entry in entries]).items():
        placed = store.put_once(tile.path, data)
    for bundle in bundles_for_size(len(entries)):
        chunk = entries[bundle.start : bundle.start + bundle.width]
        placed = store.put_once(bundle.path, encode_bundle(chunk))
    return placed


def _read_back(store: ObjectStore) -> tuple[dict[Tile, bytes], dict[Tile, bytes]]:
    """Every tile and bundle in the bucket, by listing and reading them."""
    tiles: dict[Tile, bytes] = {}
    bundles: dict[Tile, bytes] = {}
    for key in store.keys("tile/"):
        data = store.get(key)
        assert data is not None
        tile = parse_path(key)
        (bundles if tile.level is None else tiles)[tile] = data
    return tiles, bundles


def test_a_tree_written_to_the_bucket_reads_back_to_the_same_root(store: ObjectStore) -> None:
    """Tiles and bundles of several hundred entries, read back, give MerkleTree's root."""
    entries = _entries()
    reference = MerkleTree([leaf_hash(entry) for entry in entries])
    assert _replicate(store, entries) is Placed.WRITTEN
    assert _replicate(store, entries) is Placed.ALREADY_THERE  # a replay changes nothing
    tiles, bundles = _read_back(store)
    assert len(tiles) == 4
    assert len(bundles) == 3
    tree = TiledTree(SIZE, tiles)
    assert tree.check(bundles) == reference.root()
    assert tree.inclusion_proof(500) == reference.inclusion_proof(500)


def test_a_tile_removed_by_the_operator_is_detected(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """Object Lock cannot stop the server's operator deleting; the recomputation notices."""
    entries = _entries()
    _replicate(store, entries)
    server.operator_delete(settings.bucket, "log/tile/0/001")
    assert store.get("tile/0/001") is None  # the lock did not stop it
    tiles, bundles = _read_back(store)
    with pytest.raises(TileError, match="tile/0/001 is missing"):
        TiledTree(SIZE, tiles).check(bundles)


def test_tiles_altered_by_the_operator_are_detected(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """Bytes replaced behind Object Lock change the root or fail the check, naming the tile."""
    entries = _entries()
    root = MerkleTree([leaf_hash(entry) for entry in entries]).root()
    _replicate(store, entries)
    tiles, bundles = _read_back(store)
    partial = Tile(level=0, index=2, width=SIZE - 512)
    altered = bytearray(tiles[partial])
    altered[40] ^= 0x01
    server.operator_rewrite(settings.bucket, "log/" + partial.path, bytes(altered))
    assert store.get(partial.path) == bytes(altered)  # the lock did not stop it
    tiles, bundles = _read_back(store)
    assert TiledTree(SIZE, tiles).root() != root
    with pytest.raises(TileError, match=r"tile/entries/002\.p/188 does not hash"):
        TiledTree(SIZE, tiles).check(bundles)

    full = Tile(level=0, index=0)
    server.operator_rewrite(settings.bucket, "log/" + full.path, bytes(8192))
    tiles, bundles = _read_back(store)
    with pytest.raises(
        TileError, match=r"tile/0/000 does not hash to its entry in tile/1/000\.p/2"
    ):
        TiledTree(SIZE, tiles).check(bundles)

    bundle = Tile(level=None, index=1)
    forged = encode_bundle([b"forged", *entries[257:512]])
    server.operator_rewrite(settings.bucket, "log/" + bundle.path, forged)
    _, bundles = _read_back(store)
    honest = build_tiles([leaf_hash(entry) for entry in entries])
    with pytest.raises(TileError, match="tile/entries/001 does not hash to its level 0 tile"):
        TiledTree(SIZE, honest).check(bundles)
