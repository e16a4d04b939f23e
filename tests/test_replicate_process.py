"""`nocontact replicate -c FILE [--once]` (proxy/replica/process.py) as its own process
against a real SeaweedFS: a new checkpoint reaches the bucket within the interval, fixed
log lines only, SIGTERM stops it, one line and an exit code for each failure."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.archive import layout
from proxy.archive.segments import segment_name
from proxy.replica.process import until_tick
from proxy.replica.state import lag_seconds
from proxy.replica.store import BucketSettings, ObjectStore, open_store
from tests.factories import config_data
from tests.old_archives import copy_version_2
from tests.replicator_helpers import contract_keys, grow, signed_entries
from tests.s3_server import SeaweedS3

_names = (f"process-{n}" for n in itertools.count())
_EVENTS = {"replicator started", "replica up to date", "replica behind", "replicator stopped"}


def _config(server: SeaweedS3, tmp_path: Path, archive: Path, **section: Any) -> Path:
    replicate = {
        "endpoint": server.endpoint,
        "bucket": section.pop("bucket", None) or server.locked_bucket(next(_names)),
        "prefix": "home",
        "credentials_file": "s3-credentials",
        "retention_days": 1,
        "every": 1,
        "state_file": "var/replica.json",
        **section,
    }
    server.write_credentials(tmp_path / "s3-credentials")
    path = tmp_path / "config.yaml"
    data = config_data(archive={"path": str(archive)}, replicate=replicate)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _store(server: SeaweedS3, config: Path) -> ObjectStore:
    section = yaml.safe_load(config.read_text())["replicate"]
    return open_store(BucketSettings(
        bucket=section["bucket"], credentials_file=config.parent / "s3-credentials",
        retention_days=1, endpoint=server.endpoint, prefix="home/",
    ))  # fmt: skip


def _nocontact(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def _latest(store: ObjectStore) -> int:
    sizes = [int(key.split("/")[1]) for key in store.keys("checkpoints/")]
    return max(sizes, default=-1)


def _wait_for(store: ObjectStore, size: int, seconds: float) -> float:
    started = time.monotonic()
    while _latest(store) < size:
        if time.monotonic() - started > seconds:
            raise AssertionError(f"checkpoint {size} did not reach the bucket in {seconds} s")
        time.sleep(0.2)
    return time.monotonic() - started


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_the_process_picks_up_a_new_checkpoint_within_its_interval(
    server: SeaweedS3, tmp_path: Path
) -> None:
    """Running, it replicates the archive, then a checkpoint signed later within `every`
    (1 s) and an upload; its log is fixed events with no number; SIGTERM exits 0; the
    state file (0600) gives the lag."""
    archive = tmp_path / "archive"
    grow(archive, [4])
    config = _config(server, tmp_path, archive)
    store = _store(server, config)
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "replicate", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(store, signed_entries(archive)[0], 60)
        grow(archive, [3])
        took = _wait_for(store, signed_entries(archive)[0], 30)
        assert took < 10
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert set(store.keys()) == contract_keys(archive, public=False)
    lines = _lines(out + err)
    assert [line["event"] for line in lines] == [
        "replicator started", "replica up to date", "replicator stopped",
    ]  # fmt: skip
    for line in lines:
        assert set(line) <= {"event", "level", "timestamp", "component"}
    state = tmp_path / "var" / "replica.json"
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())["replicated_size"] == signed_entries(archive)[0]
    lag = lag_seconds(state, time.time())
    assert lag is not None
    assert lag < 30


def test_a_bucket_that_cannot_be_used_is_logged_as_fixed_words_and_retried(
    server: SeaweedS3, tmp_path: Path
) -> None:
    """A missing bucket: "replica behind" once, with a fixed reason and nothing else; the
    process keeps trying and stops cleanly on SIGTERM."""
    archive = tmp_path / "archive"
    grow(archive, [2])
    config = _config(server, tmp_path, archive, bucket="no-such-bucket")
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "replicate", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = _lines(out + err)
    assert [line["event"] for line in lines] == [
        "replicator started", "replica behind", "replicator stopped",
    ]  # fmt: skip
    assert lines[1]["error"] == "bucket unavailable"
    assert not (tmp_path / "var" / "replica.json").exists()


def test_once_replicates_and_exits_0(server: SeaweedS3, tmp_path: Path) -> None:
    """`--once`: one pass, "replica up to date", exit 0; again, the same."""
    archive = tmp_path / "archive"
    grow(archive, [5, 2])
    config = _config(server, tmp_path, archive)
    for _ in range(2):
        done = _nocontact("replicate", "-c", str(config), "--once")
        assert (done.returncode, done.stdout, done.stderr) == (0, "replica up to date\n", "")
    assert set(_store(server, config).keys()) == contract_keys(archive, public=False)


def test_once_replicates_a_version_2_archive_with_its_entries_under_index(
    server: SeaweedS3, tmp_path: Path
) -> None:
    """The version 2 writer's own archive: exit 0, "replica up to date"; its entry bundles
    are under index/, none under tile/entries/."""
    archive = copy_version_2(tmp_path / "old")
    config = _config(server, tmp_path, archive)
    done = _nocontact("replicate", "-c", str(config), "--once")
    assert (done.returncode, done.stdout, done.stderr) == (0, "replica up to date\n", "")
    keys = set(_store(server, config).keys())
    assert keys == contract_keys(archive, public=False)
    assert any(key.startswith("index/") for key in keys)
    assert not any(key.startswith("tile/entries/") for key in keys)


def test_once_on_a_tampered_archive_exits_1_in_one_line(server: SeaweedS3, tmp_path: Path) -> None:
    """A flipped byte: exit 1 and one line saying what verify says."""
    archive = tmp_path / "archive"
    bodies = grow(archive, [3])
    segment = archive / layout.LOG_DIR / segment_name(1)
    data = bytearray(segment.read_bytes())
    data[data.find(bodies[1]) + 5] ^= 0x80
    segment.write_bytes(bytes(data))
    done = _nocontact("replicate", "-c", str(_config(server, tmp_path, archive)), "--once")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "archive BAD: entry 2: content does not match its hash" in done.stderr


def test_a_config_without_a_replicate_section_is_one_line(tmp_path: Path) -> None:
    """Exit 2 and one line naming what is missing."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config_data(archive={"path": str(tmp_path / "a")})))
    done = _nocontact("replicate", "-c", str(path), "--once")
    assert done.returncode == 2
    assert done.stderr == "nocontact: the config has no replicate: section\n"


def test_the_replicator_never_opens_the_signing_key(server: SeaweedS3, tmp_path: Path) -> None:
    """It needs no signing key: with signing.key unreadable (moved away), it still works."""
    archive = tmp_path / "archive"
    grow(archive, [2])
    os.rename(archive / layout.SIGNING_KEY, tmp_path / "signing.key.away")
    done = _nocontact("replicate", "-c", str(_config(server, tmp_path, archive)), "--once")
    assert (done.returncode, done.stdout) == (0, "replica up to date\n")


def test_the_replicator_needs_no_other_sections_files(server: SeaweedS3, tmp_path: Path) -> None:
    """Run as its own unit it reaches only the archive and the S3 credentials: the config
    may name secret files it cannot see (here, missing ones); they are not its business,
    while its own section is still checked and the file still validated whole."""
    archive = tmp_path / "archive"
    grow(archive, [2])
    config = _config(server, tmp_path, archive)
    data = yaml.safe_load(config.read_text())
    data["contacts"][0] = {"name": "Dana", "role": "lawyer",
                           "age_recipient_file": str(tmp_path / "not-here.pub")}  # fmt: skip
    data["channels"] = {"sms": {
        "listen": "127.0.0.1:8088", "public_url": "https://home.example/twilio",
        "account_sid": "AC" + "0" * 32, "auth_token_file": str(tmp_path / "no-token"),
        "number": "+1 555 010 7777", "forward_to": "+1 555 010 8888",
    }}  # fmt: skip
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    assert _nocontact("check-config", "-c", str(config)).returncode != 0  # the daemon's view
    done = _nocontact("replicate", "-c", str(config), "--once")
    assert (done.returncode, done.stdout) == (0, "replica up to date\n"), done.stderr
    for change, where in (("credentials", "replicate.credentials_file"),
                          ("key", "archive.surprise")):  # fmt: skip
        broken = yaml.safe_load(config.read_text())
        if change == "credentials":
            broken["replicate"]["credentials_file"] = "no-such-credentials"
        else:
            broken["archive"]["surprise"] = 1
        path = tmp_path / f"{change}.yaml"
        path.write_text(yaml.safe_dump(broken, sort_keys=False))
        done = _nocontact("replicate", "-c", str(path), "--once")
        assert done.returncode == 2
        assert where in done.stderr


def test_passes_begin_on_wall_clock_ticks() -> None:
    """The next pass waits for the next tick, half an `every` past a multiple of it (away
    from the checkpoints signed on the multiples), whatever the last pass took."""
    assert until_tick(1_000.0, 10) == 5
    assert until_tick(1_005.0, 10) == 10
    assert until_tick(1_008.5, 10) == 6.5
    assert until_tick(1_004.99, 10) == pytest.approx(0.01)
