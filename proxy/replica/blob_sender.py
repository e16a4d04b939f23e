"""Blobs sent to the bucket as single signed PUTs, many at once.

boto3 spends about 1.1 ms of the replicator's CPU on every request it builds, signs and
parses; with SeaweedFS on the same two CPUs that capped a pass near 400 entries a second.
Blobs are almost every object of a replica, and all of them are one and the same request,
so they go through this narrow path instead: the PUT signed by botocore's own SigV4 signer
(the one boto3 uses) and sent over aiohttp, at about 0.25 ms each. Everything else (tiles,
bundles, checkpoints, listings, reads) stays in store.py.

Rules this module keeps:
1. A blob's key is the SHA-256 of its body (`blobs/sha256/<hex>`), so its bytes prove
   themselves. One PUT each: `If-None-Match: *`, `x-amz-checksum-sha256` (the server
   refuses a body that arrived other than sent), COMPLIANCE retention until now +
   `retention_days`. A 200 is written: that version is ours and locked, and a reader of
   a blob takes the version whose bytes hash to its name (store.py rule 8), so no version
   check follows. A 412 (a version is there) goes to `ObjectStore.blob_there`: the same
   bytes already there are fine, other bytes are a `StoreError`.
2. At most `SENDERS` PUTs in flight, on one aiohttp session with as many connections; an
   event loop on its own thread, so the replicator's passes stay plain blocking code:
   `send` queues a blob, `settle` waits for every blob queued and raises the first failure.
   The caller bounds the bytes it queues (replicator.py rule 5).
3. A connection that fails or a 500/503 is tried again, three attempts in all, 0.1 s then
   0.4 s apart, as boto3's standard retries do for the store; anything else is at once a
   `StoreError` with one line: network, the credentials (403), or S3's error code and
   the first line of its message. Never the body, never the secret.
4. Timeouts as the store's: 5 s to connect, 30 s for an answer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import urllib.parse
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as SigningCredentials

from proxy.replica.store import (
    CREDENTIAL_CODES,
    LOCK_MODE,
    BucketSettings,
    Credentials,
    ObjectStore,
    Placed,
    StoreError,
)

SENDERS = 32
_ATTEMPTS = 3
_BACKOFF = (0.1, 0.4)
_RETRIED = frozenset({500, 502, 503, 504})
_ERROR_BYTES = 64 * 1024  # an S3 error document is small; more is not read


def object_url(settings: BucketSettings, key: str) -> str:
    """The URL of `key` under the settings' prefix: path style on an endpoint of its own
    (as store.py addresses it), virtual-hosted style on AWS itself."""
    path = urllib.parse.quote(settings.prefix + key, safe="/~")
    if settings.endpoint:
        return f"{settings.endpoint.rstrip('/')}/{settings.bucket}/{path}"
    return f"https://{settings.bucket}.s3.{settings.region}.amazonaws.com/{path}"


def _error_line(status: int, document: bytes) -> tuple[str, str]:
    """S3's error code and the first line of its message, from an error document."""
    try:
        root = ElementTree.fromstring(document)  # noqa: S314 (our bucket's answer, capped)
    except ElementTree.ParseError:
        return "", f"HTTP {status}"
    code = (root.findtext("Code") or "").strip()
    message = (root.findtext("Message") or "").strip().splitlines()
    return code, message[0] if message else f"HTTP {status}"


class BlobSender:
    """Blob PUTs in flight on a loop thread of their own (rules 1 and 2). Use as a
    context manager, or `close` it."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._settings = store.settings
        credentials: Credentials = store.credentials
        self._signing = SigningCredentials(credentials.access_key_id, credentials.secret_access_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="replica-blobs", daemon=True
        )
        self._thread.start()
        self._session: aiohttp.ClientSession = self._run(self._open()).result()
        self._slots = asyncio.Semaphore(SENDERS)
        self._pending: list[Future[Placed]] = []

    def __enter__(self) -> BlobSender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _run(self, work: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    async def _open(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=SENDERS),
            timeout=aiohttp.ClientTimeout(total=30, connect=5),
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    def send(self, key: str, data: bytes) -> None:
        """Queue one blob; its failure is raised by the next `settle`."""
        self._pending.append(self._run(self._send(key, data)))

    def settle(self) -> None:
        """Wait for every queued blob; the first failure is raised (rule 2)."""
        pending, self._pending = self._pending, []
        failure: BaseException | None = None
        for sent in pending:
            error = sent.exception()  # waits for it
            if error is not None and failure is None:
                failure = error
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Wait for what is in flight, close the session and stop the loop thread."""
        if not self._thread.is_alive():
            return
        for sent in self._pending:
            sent.cancel()
        self._pending = []
        self._run(self._session.close()).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _send(self, key: str, data: bytes) -> Placed:
        async with self._slots:
            status, document = await self._put(key, data)
        if status == 200:
            return Placed.WRITTEN
        if status == 412:
            return await asyncio.to_thread(self._store.blob_there, key, data)
        code, message = _error_line(status, document)
        if code in CREDENTIAL_CODES:
            raise StoreError(
                f"S3 refused writing {key} with the credentials in "
                f"{self._settings.credentials_file} ({code})"
            )
        raise StoreError(f"S3 writing {key} failed: {code or 'error'}: {message}")

    async def _put(self, key: str, data: bytes) -> tuple[int, bytes]:
        """Rule 3: the answer's status and (for an error) its document."""
        for attempt in range(_ATTEMPTS):
            url, headers = self._signed(key, data)
            try:
                async with self._session.put(url, data=data, headers=headers) as answer:
                    document = (
                        b"" if answer.status == 200 else await answer.content.read(_ERROR_BYTES)
                    )
                    if answer.status not in _RETRIED or attempt == _ATTEMPTS - 1:
                        return answer.status, document
            except (aiohttp.ClientError, TimeoutError, OSError):
                if attempt == _ATTEMPTS - 1:
                    raise StoreError(
                        f"cannot reach the S3 endpoint {self._store.endpoint} "
                        f"(writing {key}): network"
                    ) from None
            await asyncio.sleep(_BACKOFF[attempt])
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _signed(self, key: str, data: bytes) -> tuple[str, dict[str, str]]:
        """The URL and signed headers of rule 1's PUT (signed afresh for each attempt)."""
        until = self._store.now() + timedelta(days=self._settings.retention_days)
        url = object_url(self._settings, key)
        request = AWSRequest(
            method="PUT",
            url=url,
            data=data,
            headers={
                "If-None-Match": "*",
                "x-amz-object-lock-mode": LOCK_MODE,
                "x-amz-object-lock-retain-until-date": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
            },
        )
        S3SigV4Auth(self._signing, "s3", self._settings.region).add_auth(request)
        return url, dict(request.headers.items())
