"""`nocontact witness -c FILE` as a real process on loopback, asked by our own client."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import yaml

from proxy.archive.note import Signer
from proxy.witness.client import Answer, Conflict, Cosigned, Unanswered, ask
from proxy.witness.cosignature import WitnessKey
from proxy.witness.request import format_request
from tests.servers import free_port
from tests.test_smtp import _wait_for_port
from tests.witness_helpers import ORIGIN, MemoryLog

SIGNER = Signer.generate(ORIGIN)


def _config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "witness.yaml"
    path.write_text(yaml.safe_dump({
        "name": "advocacy.example/witness",
        "listen": f"127.0.0.1:{port}",
        "state_dir": "state",
        "key_file": "keys/witness.key",
        "logs": [{"origin": ORIGIN, "key": SIGNER.verifier.encode()}],
    }))  # fmt: skip
    return path


def _nocontact(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "proxy", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _keygen(config: Path) -> WitnessKey:
    done = _nocontact("witness", "keygen", "-c", str(config))
    assert done.returncode == 0, done.stderr
    return WitnessKey.decode(done.stdout)


@contextlib.contextmanager
def _witness(config: Path, port: int) -> Iterator[list[str]]:
    """The witness process while the block runs; its stderr lines, once it stopped."""
    command = [sys.executable, "-m", "proxy", "witness", "-c", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logged: list[str] = []
    try:
        _wait_for_port(port, process)
        yield logged
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        logged.extend(err.splitlines())
    assert process.returncode == 0, err
    assert "Traceback" not in err


def _ask(port: int, key: WitnessKey, log: MemoryLog, old: int) -> Answer:
    size = log.tree.size
    proof = log.tree.consistency_proof(old, size) if 0 < old < size else []

    async def run() -> Answer:
        async with aiohttp.ClientSession() as session:
            return await ask(session, f"http://127.0.0.1:{port}", key, note=log.note(),
                             body=log.body(), old_size=old, proof=proof)  # fmt: skip

    return asyncio.run(run())


def _post(port: int, data: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/add-checkpoint", data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback http
            return answer.status, answer.headers.get_content_type(), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def test_the_witness_cosigns_consistent_checkpoints_and_refuses_the_rest(tmp_path: Path) -> None:
    """First and larger checkpoints cosigned (and verified by the key keygen printed); a fork
    is 422 and not kept; a wrong old size 409 with the size; unknown log 404; bad key 403."""
    port = free_port()
    config = _config(tmp_path, port)
    key = _keygen(config)
    assert (tmp_path / "keys" / "witness.key").stat().st_mode & 0o777 == 0o600
    log = MemoryLog(SIGNER)
    log.grow(5)
    with _witness(config, port) as logged:
        first = _ask(port, key, log, 0)
        assert isinstance(first, Cosigned)
        assert len(first.lines) == 1
        log.grow(11)
        assert isinstance(_ask(port, key, log, 5), Cosigned)
        forked = MemoryLog(SIGNER, fork=b"rewritten ")
        forked.grow(20)
        status, _, _ = _post(port, format_request(11, [bytes(32)] * 3, forked.note()))
        assert status == 422
        forked_proof = forked.tree.consistency_proof(11, 20)
        assert _post(port, format_request(11, forked_proof, forked.note()))[0] == 422
        assert _post(port, log.request(3)) == (409, "text/x.tlog.size", b"11\n")
        conflict = _ask(port, key, log, 0)
        assert conflict == Conflict(11)
        stranger = MemoryLog(Signer.generate("elsewhere.example/log"))
        stranger.grow(2)
        assert _post(port, stranger.request(0))[0] == 404
        impostor = MemoryLog(Signer.generate(ORIGIN))
        impostor.grow(12)
        assert _post(port, impostor.request(11))[0] == 403
        assert _post(port, b"\x00garbage")[0] == 400
        assert _post(port, b"old 0\n\n" + b"x" * 100_000)[0] == 413
    assert any("inconsistent" in line for line in logged)
    assert not any(ORIGIN in line or "rewritten" in line for line in logged)


def test_the_witness_remembers_across_restarts(tmp_path: Path) -> None:
    """After a restart the witness still knows the size it cosigned: old size 0 is 409 11,
    and the fork it refused before it stopped is still refused."""
    port = free_port()
    config = _config(tmp_path, port)
    key = _keygen(config)
    log = MemoryLog(SIGNER)
    log.grow(11)
    with _witness(config, port):
        assert isinstance(_ask(port, key, log, 0), Cosigned)
    assert (tmp_path / "state" / "state.json").stat().st_mode & 0o777 == 0o600
    with _witness(config, port):
        assert _ask(port, key, log, 0) == Conflict(11)
        forked = MemoryLog(SIGNER, fork=b"rewritten ")
        forked.grow(11)
        assert _post(port, format_request(11, [], forked.note()))[0] == 409
        log.grow(13)
        assert isinstance(_ask(port, key, log, 11), Cosigned)
    assert _keygen(config) == key  # the key file is kept, not made again


def test_a_cosignature_by_another_key_is_not_taken(tmp_path: Path) -> None:
    """The client keeps only lines by the configured witness key."""
    port = free_port()
    config = _config(tmp_path, port)
    _keygen(config)
    (tmp_path / "other").mkdir()
    other = _keygen(_config(tmp_path / "other", port))
    log = MemoryLog(SIGNER)
    log.grow(3)
    with _witness(config, port):
        assert _ask(port, other, log, 0) == Unanswered("no cosignature by the witness's key")


def test_a_bad_witness_config_is_one_line(tmp_path: Path) -> None:
    """A wrong key in the config: exit 2, one located line, no traceback."""
    path = tmp_path / "witness.yaml"
    path.write_text("name: w.example/w\nlogs:\n  - origin: o\n    key: nonsense\n")
    done = _nocontact("witness", "-c", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert ":4:10: logs[0].key: not a log verifier key" in done.stderr
    done = _nocontact("witness")
    assert done.returncode == 2
    assert "give -c FILE" in done.stderr
