"""The daemon offers its checkpoints to the configured witnesses: a real `nocontact run`
and a real `nocontact witness` on loopback; a witness down never touches the senders."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import time
from pathlib import Path

import pytest
import yaml

from proxy.archive import Archive
from proxy.archive.note import Verifier
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.witness.cosignature import WitnessKey
from proxy.witness.signed import read_note
from proxy.witness.witnessed import ACKNOWLEDGED, DIRECTORY
from tests.factories import RECIPIENT
from tests.servers import free_port
from tests.test_smtp import _write_config, daemon, stopped
from tests.test_witness_process import _keygen, _witness

HELD = b"From: mark.smith@gmail.com\r\nSubject: hi\r\n\r\nanswer me\r\n"


def _archive(root: Path) -> Verifier:
    """A new archive at `root`; its verifier key (signing.pub)."""

    async def make() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT])
        await archive.close()

    asyncio.run(make())
    return Verifier.decode((root / "signing.pub").read_text())


def _daemon_config(tmp_path: Path, port: int, witnesses: list[dict[str, str]]) -> Path:
    path = tmp_path / "config.yaml"
    _write_config(path, port)
    data = yaml.safe_load(path.read_text())
    data["witnesses"] = witnesses
    path.write_text(yaml.safe_dump(data))
    return path


def _witness_config(tmp_path: Path, port: int, log: Verifier) -> Path:
    path = tmp_path / "witness" / "witness.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({
        "name": "advocacy.example/witness", "listen": f"127.0.0.1:{port}",
        "logs": [{"origin": log.name, "key": log.encode()}],
    }))  # fmt: skip
    return path


def _cosigned(directory: Path, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(p for p in directory.glob("[0-9]*") if p.name.isdigit())
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("no checkpoint was cosigned")


def test_the_daemon_has_its_checkpoints_cosigned(tmp_path: Path) -> None:
    """The archive's checkpoint is cosigned, kept in witnessed/<size> as one signed note that
    verifies by the archive's key and the witness's; the acknowledged size is kept."""
    log = _archive(tmp_path / "archive")
    witness_port, smtp_port = free_port(), free_port()
    witness_config = _witness_config(tmp_path, witness_port, log)
    key = _keygen(witness_config)
    config = _daemon_config(tmp_path, smtp_port, [
        {"url": f"http://127.0.0.1:{witness_port}", "key": key.encode()},
    ])  # fmt: skip
    with _witness(witness_config, witness_port), daemon(config, smtp_port) as process:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.sendmail("mark.smith@gmail.com", ["sam@home.example"], HELD)
        kept = _cosigned(tmp_path / "archive" / DIRECTORY)
        err = stopped(process)
    note = kept[-1].read_bytes()
    signed = read_note(note)
    assert signed.size == int(kept[-1].name)
    assert signed.signed_by([log])
    cosignatures = [s.line for s in signed.signatures if s.name == key.name]
    assert len(cosignatures) == 1
    assert WitnessKey.check(key, cosignatures[0], signed.body) is not None
    sizes = json.loads((tmp_path / "archive" / DIRECTORY / ACKNOWLEDGED).read_text())
    assert sizes[key.encode()] >= signed.size
    assert (kept[-1].stat().st_mode & 0o777) == 0o600
    assert "Traceback" not in err


def test_a_witness_down_is_never_the_senders_problem(tmp_path: Path) -> None:
    """With the witness unreachable, mail is still answered 250, one fixed warning is
    logged, and the daemon stops cleanly."""
    log = _archive(tmp_path / "archive")
    smtp_port, nobody = free_port(), free_port()
    key = _keygen(_witness_config(tmp_path, nobody, log))
    config = _daemon_config(tmp_path, smtp_port, [
        {"url": f"http://127.0.0.1:{nobody}", "key": key.encode()},
    ])  # fmt: skip
    with daemon(config, smtp_port) as process:
        time.sleep(1.0)  # the first offer fails meanwhile
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            refused = client.sendmail("mark.smith@gmail.com", ["sam@home.example"], HELD)
        assert refused == {}
        err = stopped(process)
    assert "a witness did not cosign; retrying later" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "archive").glob(f"{DIRECTORY}/[0-9]*"))


def test_a_witness_key_in_the_config_is_checked(tmp_path: Path) -> None:
    """An archive's own key (type 0x01) where a witness key belongs is one located line."""
    log = _archive(tmp_path / "archive")
    config = _daemon_config(tmp_path, free_port(), [
        {"url": "https://witness.advocacy.example", "key": log.encode()},
    ])  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    (problem,) = raised.value.problems
    assert problem.key == "witnesses[0].key"
    assert "'nocontact witness keygen' prints it" in problem.message


def test_a_reload_that_adds_a_witness_starts_offering_to_it(tmp_path: Path) -> None:
    """Started without witnesses, the daemon offers its checkpoints to one once a SIGHUP
    reload names it: no restart needed."""
    log = _archive(tmp_path / "archive")
    witness_port, smtp_port = free_port(), free_port()
    witness_config = _witness_config(tmp_path, witness_port, log)
    key = _keygen(witness_config)
    config = _daemon_config(tmp_path, smtp_port, [])
    with _witness(witness_config, witness_port), daemon(config, smtp_port) as process:
        time.sleep(1.0)
        assert not list((tmp_path / "archive").glob(f"{DIRECTORY}/[0-9]*"))
        data = yaml.safe_load(config.read_text())
        data["witnesses"] = [{"url": f"http://127.0.0.1:{witness_port}", "key": key.encode()}]
        config.write_text(yaml.safe_dump(data))
        process.send_signal(signal.SIGHUP)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.sendmail("mark.smith@gmail.com", ["sam@home.example"], HELD)
        kept = _cosigned(tmp_path / "archive" / DIRECTORY)
        err = stopped(process)
    signed = read_note(kept[-1].read_bytes())
    assert [s.name for s in signed.signatures if s.name == key.name] == [key.name]
    assert "witnesses changed" in err
    assert "Traceback" not in err
