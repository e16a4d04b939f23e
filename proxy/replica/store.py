"""An S3 bucket with Object Lock, where every object is written once and kept.

Rules this module keeps:
1. A key is written once: PUT with `If-None-Match: *` and COMPLIANCE retention until
   now + `retention_days` (the clock is passed in). A key already there is fine when it
   holds the same bytes (read back and compared) and a `StoreError` when it holds other
   bytes: nothing is ever overwritten.
2. What a key holds is its oldest version: the first write, which Object Lock keeps for the
   whole retention. Anyone with the bucket's credentials can hide it behind a delete
   marker and then write a new version (the marker makes `If-None-Match` pass again);
   `get`, `keys` and rule 1's comparison all look past markers and later versions.
3. `open_store` checks the credentials, that the bucket exists and that Object Lock is
   enabled on it before anything is written: without Object Lock, objects can be deleted.
4. Every failure is a `StoreError` with one line naming its cause (credentials, no bucket,
   no Object Lock, network, other bytes already there), never a botocore traceback. No
   message carries an object's bytes.
5. Credentials come from a file in the AWS shared-credentials format (a `[default]`
   section with `aws_access_key_id` and `aws_secret_access_key`) that only its owner can
   read (0600), as the config's other secret files; the secret never appears in a repr.
6. Blocking IO (boto3, with short timeouts and few retries): an asyncio caller runs it in
   a thread.
7. One key may be updated in place (`replace`, for tlog-tiles' `checkpoint`): each update
   is a new version, locked like every other, and only when the newest version holds other
   bytes, so a replayed update writes nothing. Readers never trust such a key alone
   (`latest` reads its newest version; every other key is read by its oldest, rule 2).
"""

from __future__ import annotations

import configparser
import enum
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from proxy.errors import NocontactError

LOCK_MODE = "COMPLIANCE"
CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken",
     "ExpiredToken", "InvalidClientTokenId"}
)  # fmt: skip
_NETWORK = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


class StoreError(NocontactError):
    """The bucket cannot be used or refused an object; the message says why, in one line."""


class Placed(enum.Enum):
    """What `put_once` found."""

    WRITTEN = "written"
    ALREADY_THERE = "already there"  # the same bytes were written before


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketSettings:
    """Where the replica lives: an S3 endpoint (None: AWS itself), region, bucket, prefix."""

    bucket: str
    credentials_file: Path
    retention_days: int
    endpoint: str | None = None
    region: str = "us-east-1"
    prefix: str = ""  # keys are prefix + tile path, so one bucket can hold several logs


def read_credentials(path: Path) -> Credentials:
    """The key pair in `path` (rule 5), or `StoreError` saying what is wrong with the file."""
    try:
        with path.open(encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise StoreError(f"{path} is not a regular file")
            if mode & 0o077:
                raise StoreError(
                    f"{path} can be read by other users (mode {mode & 0o777:04o}): "
                    "make it 0600, owned by the user the daemon runs as"
                )
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_file(file)
    except OSError as error:
        raise StoreError(f"cannot read the S3 credentials file {path}: {error.strerror}") from None
    except (configparser.Error, UnicodeDecodeError):
        raise StoreError(f"{path} is not an AWS credentials file ([default] section)") from None
    section = parser["default"] if parser.has_section("default") else None
    key_id = section.get("aws_access_key_id", "").strip() if section else ""
    secret = section.get("aws_secret_access_key", "").strip() if section else ""
    if not key_id or not secret:
        raise StoreError(
            f"{path} needs aws_access_key_id and aws_secret_access_key in its [default] section"
        )
    return Credentials(access_key_id=key_id, secret_access_key=secret)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def open_store(settings: BucketSettings, *, now: Callable[[], datetime] = _utc_now) -> ObjectStore:
    """A store on the settings' bucket, once rule 3's checks have passed."""
    if settings.retention_days < 1:
        raise StoreError(f"retention of {settings.retention_days} days: it must be 1 or more")
    credentials = read_credentials(settings.credentials_file)
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if settings.endpoint else "auto"},
    )
    try:
        client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            config=config,
        )
    except (botocore.exceptions.BotoCoreError, ValueError) as error:
        raise StoreError(f"cannot use the S3 endpoint {settings.endpoint}: {error}") from None
    store = ObjectStore(client=client, settings=settings, credentials=credentials, now=now)
    store.check_bucket()
    return store


class ObjectStore:
    """One bucket (and prefix) holding objects written once under Object Lock."""

    __slots__ = ("_client", "_credentials", "_now", "_settings")

    def __init__(
        self, *, client: Any, settings: BucketSettings, credentials: Credentials,
        now: Callable[[], datetime],
    ) -> None:  # fmt: skip
        self._client = client  # a boto3 S3 client (boto3 ships no types)
        self._settings = settings
        self._credentials = credentials
        self._now = now

    @property
    def settings(self) -> BucketSettings:
        return self._settings

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def now(self) -> datetime:
        """The clock retention is counted from."""
        return self._now()

    def _call(self, what: str, operation: str, **arguments: object) -> Any:
        """One S3 call; every failure becomes rule 4's one line."""
        try:
            return getattr(self._client, operation)(Bucket=self._settings.bucket, **arguments)
        except botocore.exceptions.ClientError as error:
            raise self._explain(what, error) from None
        except _NETWORK:
            raise StoreError(
                f"cannot reach the S3 endpoint {self.endpoint} ({what}): network"
            ) from None
        except botocore.exceptions.BotoCoreError as error:
            raise StoreError(f"S3 {what} failed: {error}") from None

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint or f"AWS S3 ({self._settings.region})"

    def _explain(self, what: str, error: botocore.exceptions.ClientError) -> StoreError:
        code = str(error.response.get("Error", {}).get("Code", ""))
        bucket = self._settings.bucket
        if code in CREDENTIAL_CODES:
            return StoreError(
                f"S3 refused {what} with the credentials in {self._settings.credentials_file} "
                f"({code})"
            )
        if code == "NoSuchBucket":
            return StoreError(f"there is no bucket {bucket!r} at {self.endpoint}")
        if code == "ObjectLockConfigurationNotFoundError":
            return StoreError(
                f"bucket {bucket!r} has no Object Lock: its objects could be deleted; "
                "create a bucket with Object Lock enabled"
            )
        message = str(error.response.get("Error", {}).get("Message", "")).splitlines()
        return StoreError(f"S3 {what} failed: {code or 'error'}: {message[0] if message else ''}")

    def check_bucket(self) -> None:
        """Rule 3: the credentials work, the bucket exists and has Object Lock enabled."""
        answer = self._call("reading the bucket's Object Lock", "get_object_lock_configuration")
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise StoreError(
                f"bucket {self._settings.bucket!r} has no Object Lock: its objects could be "
                "deleted; create a bucket with Object Lock enabled"
            )

    def put_once(self, key: str, data: bytes) -> Placed:
        """Write `key` once, locked (rule 1); the same bytes already there are fine."""
        name = self._settings.prefix + key
        until = self._now() + timedelta(days=self._settings.retention_days)
        try:
            answer = self._client.put_object(
                Bucket=self._settings.bucket,
                Key=name,
                Body=data,
                IfNoneMatch="*",
                ObjectLockMode=LOCK_MODE,
                ObjectLockRetainUntilDate=until,
                ChecksumAlgorithm="SHA256",
            )
        except botocore.exceptions.ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 412:
                raise self._explain(f"writing {key}", error) from None
            written = None
        except _NETWORK:
            raise StoreError(
                f"cannot reach the S3 endpoint {self.endpoint} (writing {key}): network"
            ) from None
        except botocore.exceptions.BotoCoreError as error:
            raise StoreError(f"S3 writing {key} failed: {error}") from None
        else:
            written = answer.get("VersionId")
        oldest = self._oldest_version(name)
        if written is not None and oldest in (None, written):
            return Placed.WRITTEN
        if oldest is None or self._read(name, oldest) != data:
            raise StoreError(f"{key} is already in the bucket with other bytes: not overwritten")
        return Placed.ALREADY_THERE

    def replace(self, key: str, data: bytes) -> Placed:
        """Write `key` as a new locked version unless its newest already holds `data`
        (rule 7)."""
        if self.latest(key) == data:
            return Placed.ALREADY_THERE
        until = self._now() + timedelta(days=self._settings.retention_days)
        self._call(
            f"writing {key}",
            "put_object",
            Key=self._settings.prefix + key,
            Body=data,
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=until,
            ChecksumAlgorithm="SHA256",
        )
        return Placed.WRITTEN

    def latest(self, key: str) -> bytes | None:
        """The bytes of the newest version at `key` (rule 7), or None when there is none."""
        name = self._settings.prefix + key
        found = [version for version in self._versions(key) if version["Key"] == name]
        newest = next((v for v in found if v.get("IsLatest")), found[0] if found else None)
        return None if newest is None else self._read(name, str(newest["VersionId"]))

    def blob_there(self, key: str, data: bytes) -> Placed:
        """Rule 8: some version at the blob `key` holds `data`, or `StoreError`."""
        name = self._settings.prefix + key
        for version in self._versions(key):
            if version["Key"] == name and self._read(name, str(version["VersionId"])) == data:
                return Placed.ALREADY_THERE
        raise StoreError(f"{key} is already in the bucket with other bytes: not overwritten")

    def get_blob(self, key: str) -> bytes | None:
        """Rule 8: a version at the blob `key` whose bytes hash to its name: the newest when
        it does (one request), else the oldest that does."""
        name = self._settings.prefix + key
        digest = key.rsplit("/", 1)[-1]
        newest = self._newest(name)
        if newest is not None and hashlib.sha256(newest).hexdigest() == digest:
            return newest
        versions = [str(v["VersionId"]) for v in self._versions(key) if v["Key"] == name]
        first: bytes | None = None
        for version in reversed(versions):  # S3 lists newest first
            data = self._read(name, version)
            if hashlib.sha256(data).hexdigest() == digest:
                return data
            first = data if first is None else first
        return first

    def get(self, key: str) -> bytes | None:
        """The bytes first written at `key` (rule 2), or None when there are none."""
        name = self._settings.prefix + key
        version = self._oldest_version(name)
        return None if version is None else self._read(name, version)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix` that holds a version, sorted, without the store's prefix."""
        start = len(self._settings.prefix)
        found = {version["Key"][start:] for version in self._versions(prefix)}
        return sorted(found)

    def _versions(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Object versions (not delete markers) under `prefix`, newest first within a key."""
        marker: dict[str, object] = {}
        while True:
            page = self._call(
                f"listing {prefix or 'the bucket'}",
                "list_object_versions",
                Prefix=self._settings.prefix + prefix,
                **marker,
            )
            yield from page.get("Versions", [])
            if not page.get("IsTruncated"):
                return
            marker = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "VersionIdMarker": page.get("NextVersionIdMarker", ""),
            }

    def _oldest_version(self, name: str) -> str | None:
        """The id of the first version written at `name` (S3 lists newest first)."""
        start = len(self._settings.prefix)
        oldest = None
        for version in self._versions(name[start:]):
            if version["Key"] == name:
                oldest = str(version["VersionId"])
        return oldest

    def _newest(self, name: str) -> bytes | None:
        """The newest version's bytes at `name`; None when there is none or it is deleted."""
        key = name[len(self._settings.prefix) :]
        try:
            answer = self._client.get_object(Bucket=self._settings.bucket, Key=name)
            body: bytes = answer["Body"].read()
        except botocore.exceptions.ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise self._explain(f"reading {key}", error) from None
        except (*_NETWORK, botocore.exceptions.BotoCoreError, OSError):
            raise StoreError(
                f"cannot reach the S3 endpoint {self.endpoint} (reading {key}): network"
            ) from None
        return body

    def _read(self, name: str, version: str) -> bytes:
        key = name[len(self._settings.prefix) :]
        answer = self._call(f"reading {key}", "get_object", Key=name, VersionId=version)
        try:
            body: bytes = answer["Body"].read()
        except (botocore.exceptions.BotoCoreError, OSError):
            raise StoreError(
                f"cannot reach the S3 endpoint {self.endpoint} (reading {key}): network"
            ) from None
        return body
