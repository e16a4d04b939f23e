"""Blobs written with one signed PUT each (blob_sender.py) and read back by their hash
(store.py rule 8), against the real SeaweedFS S3 with Object Lock on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from proxy.replica.blob_sender import BlobSender, object_url
from proxy.replica.store import (
    BucketSettings,
    Credentials,
    ObjectStore,
    StoreError,
)
from tests.replicator_helpers import LASTING, one_line
from tests.s3_server import ACCESS_KEY_ID, SeaweedS3
from tests.servers import HOST, free_port


def _key(data: bytes) -> str:
    return "blobs/sha256/" + hashlib.sha256(data).hexdigest()


def _send(store: ObjectStore, *blobs: bytes) -> None:
    with BlobSender(store) as sender:
        for data in blobs:
            sender.send(_key(data), data)
        sender.settle()


def test_blobs_are_written_once_and_locked(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """Each blob is one version, locked COMPLIANCE until the retention's end; sent again it
    is already there and no version is added."""
    blobs = [bytes([n]) * (100 + n) for n in range(40)]
    _send(store, *blobs)
    _send(store, *blobs[:5])
    client = server.client()
    for data in blobs:
        name = "log/" + _key(data)
        listing = client.list_object_versions(Bucket=settings.bucket, Prefix=name)
        assert len([v for v in listing["Versions"] if v["Key"] == name]) == 1
        head = client.head_object(Bucket=settings.bucket, Key=name)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == LASTING + timedelta(days=30)
        assert store.get_blob(_key(data)) == data


def test_other_bytes_under_a_blobs_name_are_refused_and_kept(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """A key already holding other bytes is a one-line failure; nothing is overwritten."""
    data = b"the body"
    server.client().put_object(Bucket=settings.bucket, Key="log/" + _key(data), Body=b"junk")
    with pytest.raises(StoreError) as error:
        _send(store, data)
    assert "already in the bucket with other bytes" in one_line(error)
    assert store.get(_key(data)) == b"junk"


def test_a_blob_behind_a_delete_marker_is_read_by_its_hash(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """Junk written first and hidden by a delete marker lets our PUT through; readers take
    the version that hashes to the name (rule 8), the oldest is still the junk."""
    data = b"the real body"
    client = server.client()
    client.put_object(Bucket=settings.bucket, Key="log/" + _key(data), Body=b"junk")
    client.delete_object(Bucket=settings.bucket, Key="log/" + _key(data))
    _send(store, data)
    assert store.get(_key(data)) == b"junk"
    assert store.get_blob(_key(data)) == data
    assert store.get_blob(_key(b"never sent")) is None


def test_a_blob_with_no_good_version_reads_as_the_oldest(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    """No version hashes to the name: the oldest is returned, for the check to call it
    altered."""
    data = b"lost body"
    client = server.client()
    for junk in (b"first junk", b"second junk"):
        client.put_object(Bucket=settings.bucket, Key="log/" + _key(data), Body=junk)
    assert store.get_blob(_key(data)) == b"first junk"


def test_wrong_credentials_areone_line(
    server: SeaweedS3, settings: BucketSettings, store: ObjectStore
) -> None:
    wrong = ObjectStore(
        client=server.client(), settings=settings, now=lambda: LASTING,
        credentials=Credentials(access_key_id=ACCESS_KEY_ID, secret_access_key="wrong"),
    )  # fmt: skip
    with pytest.raises(StoreError) as error:
        _send(wrong, b"body")
    assert f"credentials in {settings.credentials_file}" in one_line(error)
    assert store.get_blob(_key(b"body")) is None


def _elsewhere(settings: BucketSettings, endpoint: str, server: SeaweedS3) -> ObjectStore:
    moved = BucketSettings(
        bucket=settings.bucket, credentials_file=settings.credentials_file,
        retention_days=1, endpoint=endpoint,
    )  # fmt: skip
    return ObjectStore(
        client=server.client(), settings=moved, now=lambda: LASTING,
        credentials=Credentials(access_key_id=ACCESS_KEY_ID, secret_access_key="x"),
    )  # fmt: skip


def test_an_unreachable_endpoint_isone_line(server: SeaweedS3, settings: BucketSettings) -> None:
    away = _elsewhere(settings, f"http://{HOST}:{free_port()}", server)
    with pytest.raises(StoreError) as error:
        _send(away, b"body")
    assert "cannot reach the S3 endpoint" in one_line(error)


@pytest.fixture
def slow_down() -> Iterator[tuple[str, list[str]]]:
    """An endpoint that answers every request 503 SlowDown, and the requests it got."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.method)
        document = b"<Error><Code>SlowDown</Code><Message>Reduce your rate\nnow</Message></Error>"
        return web.Response(status=503, body=document)

    port = free_port()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, HOST, port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{port}", seen
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def test_a_busy_server_is_tried_three_times_then_named(
    server: SeaweedS3, settings: BucketSettings, slow_down: tuple[str, list[str]]
) -> None:
    endpoint, seen = slow_down
    with pytest.raises(StoreError) as error:
        _send(_elsewhere(settings, endpoint, server), b"body")
    assert one_line(error).endswith("failed: SlowDown: Reduce your rate")
    assert seen == ["PUT"] * 3


def test_object_urls() -> None:
    """Path style on an endpoint of its own, virtual-hosted on AWS; the prefix and key are
    quoted."""
    own = BucketSettings(
        bucket="evidence", credentials_file=Path("c"), retention_days=1,
        endpoint="https://s3.example.org/", prefix="log one/",
    )  # fmt: skip
    assert object_url(own, "blobs/sha256/ab") == (
        "https://s3.example.org/evidence/log%20one/blobs/sha256/ab"
    )
    aws = BucketSettings(
        bucket="evidence", credentials_file=Path("c"), retention_days=1, region="eu-west-1"
    )
    assert object_url(aws, "checkpoint") == (
        "https://evidence.s3.eu-west-1.amazonaws.com/checkpoint"
    )
