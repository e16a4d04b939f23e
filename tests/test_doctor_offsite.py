"""`nocontact doctor`'s off-site checks (proxy/doctor/offsite.py): the replica's bucket on
the real SeaweedFS, a real `nocontact witness` process, and what counts as this machine."""

from __future__ import annotations

import http.server
import itertools
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from proxy.archive import ArchiveLog, layout
from proxy.config import load_config
from proxy.config.model import Replicate
from proxy.doctor.findings import line
from proxy.doctor.offsite import bucket_problem, check_offsite, on_this_machine, witness_problem
from proxy.witness.cosignature import Cosigner
from tests.factories import config_data
from tests.s3_server import SeaweedS3
from tests.servers import HOST, free_port
from tests.test_witness_process import _config, _keygen, _witness

_names = (f"doctor-{n}" for n in itertools.count())


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    ArchiveLog.open(root).close()
    return root


def _replicate(server: SeaweedS3, tmp_path: Path, bucket: str) -> Replicate:
    return Replicate(
        endpoint=server.endpoint, bucket=bucket, prefix="log/", retention_days=1,
        credentials_file=str(server.write_credentials(tmp_path / "s3-credentials")),
        state_file=str(tmp_path / "replica.json"),
    )  # fmt: skip


def test_a_good_bucket_and_each_problem_with_one(
    server: SeaweedS3, tmp_path: Path, archive: Path
) -> None:
    """Object Lock on and no replica yet, or this archive's: fine. No Object Lock, another
    archive's replica, no bucket: each one line."""
    good = _replicate(server, tmp_path, server.locked_bucket(next(_names)))
    assert bucket_problem(good, archive) is None
    client = server.client()
    client.put_object(Bucket=good.bucket, Key="log/archive.json",
                      Body=(archive / layout.MANIFEST).read_bytes())  # fmt: skip
    assert bucket_problem(good, archive) is None
    other = good.model_copy(update={"prefix": "other/"})
    client.put_object(Bucket=good.bucket, Key="other/archive.json", Body=b"{}")
    assert bucket_problem(other, archive) == (
        "holds another archive's replica (use another bucket or prefix)"
    )
    plain = good.model_copy(update={"bucket": server.plain_bucket(next(_names))})
    assert "has no Object Lock" in (bucket_problem(plain, archive) or "")
    missing = good.model_copy(update={"bucket": "nobody-made-this"})
    assert "no bucket 'nobody-made-this'" in (bucket_problem(missing, archive) or "")


def _this_machines_address() -> str | None:
    """A non-loopback address of this machine, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for UDP connect
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_what_counts_as_this_machine() -> None:
    assert on_this_machine("http://127.0.0.1:8333", 2)
    assert on_this_machine("https://localhost", 2)
    assert on_this_machine("http://[::1]:8333", 2)
    assert not on_this_machine("https://192.0.2.1", 2)  # TEST-NET-1, nobody's
    assert not on_this_machine("https://nowhere.invalid", 2)
    own = _this_machines_address()
    if own is not None:
        assert on_this_machine(f"https://{own}:9000", 2)


def test_a_bucket_and_a_witness_on_this_machine_fail_in_doctor(
    server: SeaweedS3, tmp_path: Path, archive: Path
) -> None:
    """A replica or witness on the archive's own server protects nothing: doctor says so."""
    data = config_data(
        archive={"path": str(archive)},
        replicate=_replicate(server, tmp_path, server.locked_bucket(next(_names))).model_dump(
            exclude_none=True
        ),
        witnesses=[{"url": f"http://{HOST}:{free_port()}",
                    "key": Cosigner.generate("w.example").key.encode()}],
    )  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines = [line(finding) for finding in check_offsite(load_config(path), 2)]
    assert len(lines) == 2
    assert lines[0].startswith(f"FAIL replica bucket {data['replicate']['bucket']}: ")
    assert "is this machine" in lines[0]
    assert lines[1].startswith(f"FAIL witness http://{HOST}:")
    assert "is this machine" in lines[1]


def test_a_witness_answers_or_is_named(tmp_path: Path) -> None:
    """A running `nocontact witness` answers (its refusal of a GET is an answer); nothing
    listening, and a server that fails, are each one line."""
    port = free_port()
    config = _config(tmp_path, port)
    _keygen(config)
    with _witness(config, port):
        assert witness_problem(f"http://{HOST}:{port}", 5) is None
    assert (witness_problem(f"http://{HOST}:{port}", 5) or "").startswith("does not answer")


@pytest.fixture
def failing() -> Iterator[str]:
    """A web server that answers everything with 503."""

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(503)

        def log_message(self, *_: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((HOST, 0), Failing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join()
        httpd.server_close()


def test_a_failing_witness_is_named(failing: str) -> None:
    assert witness_problem(failing, 5) == "answered HTTP 503"
