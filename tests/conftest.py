"""Settings every test shares.

A test run makes several hundred archives, each with a segment made whole before use and
the next one prepared ahead (proxy/archive/segments.py rule 1). At the default 64 MiB that
reserved some 33 GB of disk per run, and filled a CI machine's disk part-way through. Tests
make their archives with 1 MiB segments (layout.py rule 4), in this process and in every
daemon, portal or command they start (the environment is inherited). A test that needs
another size passes `segment_bytes` itself; the benchmarks keep the default.

`server` is a private SeaweedFS (S3 with Object Lock, tests/s3_server.py) for one test
module of the replica's, started once per module that asks for it; `settings` is a fresh
Object Lock bucket on it (prefix `log/`) and `store` that bucket's store, on a clock whose
locks outlive the test (a module may define its own of either name).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.archive.layout import SEGMENT_ENV
from proxy.replica.store import BucketSettings, ObjectStore
from tests.replicator_helpers import lasting_store, new_bucket
from tests.s3_server import SeaweedS3

os.environ.setdefault(SEGMENT_ENV, "1")


@pytest.fixture(scope="module")
def server() -> Iterator[SeaweedS3]:
    s3 = SeaweedS3().start()
    try:
        yield s3
    finally:
        s3.stop()


@pytest.fixture
def settings(server: SeaweedS3, tmp_path: Path) -> BucketSettings:
    return new_bucket(server, tmp_path)


@pytest.fixture
def store(settings: BucketSettings) -> ObjectStore:
    return lasting_store(settings)
