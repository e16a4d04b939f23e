"""Where a replica is read from: an S3 bucket, or any static web server holding its copy.

Rules this module keeps:
1. `--from s3://BUCKET[/PREFIX]` reads through store.py (the oldest version of each key
   wins, delete markers and later versions are looked past; only `checkpoint`, the one key
   the replicator updates in place, is read at its newest version, and a blob at the oldest
   version that hashes to its name, store.py rule 8), with the credentials file,
   endpoint and region given; it only reads. `--from https://HOST/PREFIX` reads the same
   layout with plain GETs (urllib); plain `http://` only to a loopback host.
2. A missing object is None (S3's NoSuchKey/none listed, HTTP 404); anything else that
   stops a read (network, credentials, no bucket, another HTTP status) is one line,
   `ReplicaUnreachable`, never a traceback. No message carries an object's bytes.
3. A static server cannot list: `keys` is None there and check.py finds the newest
   checkpoint through `checkpoint` instead.
4. A read is capped at the largest object the layout has (a 1 GiB body, with room).
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from proxy.archive.records import MAX_BODY
from proxy.errors import InputError
from proxy.replica.check import BLOBS, Replica, ReplicaUnreachable
from proxy.replica.store import BucketSettings, ObjectStore, StoreError, open_store

_MOST = MAX_BODY + (1 << 20)
UPDATED_IN_PLACE = "checkpoint"  # docs/replication.md: the layout's one mutable key
_TIMEOUT = 30


class S3Replica:
    """A replica in an S3 bucket (rule 1)."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def get(self, key: str) -> bytes | None:
        try:
            if key == UPDATED_IN_PLACE:
                return self._store.latest(key)
            if key.startswith(BLOBS):
                return self._store.get_blob(key)
            return self._store.get(key)
        except StoreError as error:
            raise ReplicaUnreachable(str(error)) from None

    def keys(self, prefix: str) -> list[str] | None:
        try:
            return self._store.keys(prefix)
        except StoreError as error:
            raise ReplicaUnreachable(str(error)) from None


class HttpReplica:
    """A replica served by a static web server (rules 1 and 3)."""

    def __init__(self, base: str) -> None:
        self._base = base.rstrip("/") + "/"

    def get(self, key: str) -> bytes | None:
        url = self._base + urllib.parse.quote(key)
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT) as answer:  # noqa: S310 (rule 1)
                data: bytes = answer.read(_MOST + 1)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise ReplicaUnreachable(f"{self._base} answered HTTP {error.code} for {key}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise ReplicaUnreachable(f"cannot reach {self._base} ({reason})") from None
        if len(data) > _MOST:
            raise ReplicaUnreachable(f"{key} at {self._base} is larger than any object can be")
        return data

    def keys(self, prefix: str) -> list[str] | None:
        return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_replica(
    source: str, *, endpoint: str | None, credentials: str | None, region: str
) -> Replica:
    """The replica `source` names (rule 1); bad input is an `InputError`, an unusable
    bucket `ReplicaUnreachable`."""
    parsed = urllib.parse.urlsplit(source)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InputError(f"--from {source}: no bucket (s3://BUCKET/PREFIX)")
        if credentials is None:
            raise InputError("--from s3://...: --credentials FILE is needed")
        prefix = parsed.path.strip("/")
        settings = BucketSettings(
            bucket=parsed.netloc,
            credentials_file=Path(credentials),
            retention_days=1,
            endpoint=endpoint,
            region=region,
            prefix=f"{prefix}/" if prefix else "",
        )  # fmt: skip  (retention is never used: this store only reads)
        try:
            store = open_store(settings)
        except StoreError as error:
            raise ReplicaUnreachable(str(error)) from None
        return S3Replica(store)
    if parsed.scheme == "https" or (parsed.scheme == "http" and _loopback(parsed.hostname or "")):
        if not parsed.hostname:
            raise InputError(f"--from {source}: no host")
        return HttpReplica(source)
    if parsed.scheme == "http":
        raise InputError(f"--from {source}: plain http only to this machine (loopback); use https")
    raise InputError(f"--from {source[:80]}: give s3://BUCKET/PREFIX or https://HOST/PREFIX")
