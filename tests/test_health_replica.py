"""`nocontact health` with a `replicate:` section: the replica's lag in whole seconds, from
the replicator's state file, and nothing else about the replica (health.py rule 5)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from proxy.config import load_config
from proxy.doctor.health import LAG_TICKS, Verdict, replica_problem
from proxy.replica.state import write_state
from tests.doctor_helpers import run
from tests.factories import config_data, write_secret
from tests.test_health import _send
from tests.test_smtp import HELD, RECIPIENT, daemon, free_port, held_items, stopped

REPLICATE = {
    "endpoint": "http://127.0.0.1:8333",
    "bucket": "survivor-log",
    "credentials_file": "s3-credentials",
    "retention_days": 1,
    "every": 5,
    "state_file": "var/replica.json",
}
LIMIT = LAG_TICKS * (60 + 5)


def _config(tmp: Path, listen: int) -> Path:
    write_secret(tmp / "s3-credentials", "[default]\n")
    data = config_data(
        archive={"path": str(tmp / "archive"), "checkpoint_every": 60},
        contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}],
        channels={"smtp": {"listen": f"127.0.0.1:{listen}", "deliver": f"maildir:{tmp / 'mail'}"}},
        replicate=REPLICATE,
    )
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.mark.parametrize(
    ("lag", "problem"),
    [(None, "replica lag unknown"), (0.0, None), (LIMIT, None), (LIMIT + 1, "replica behind")],
)
def test_the_replica_is_behind_past_three_ticks_and_passes(
    tmp_path: Path, lag: float | None, problem: str | None
) -> None:
    """The limit is 3 x (checkpoint_every + every); no state file is a problem of its own."""
    config = load_config(_config(tmp_path, 2525))
    assert replica_problem(lag, config) == problem


def test_the_line_ends_with_the_lag_and_only_with_a_replica() -> None:
    """Healthy or not, the lag is the line's last words; without a replica, no lag."""
    assert Verdict(reasons=[]).line() == "healthy"
    assert Verdict(reasons=[], replica_lag=4).line() == "healthy; replica lag 4 s"
    behind = Verdict(reasons=["smtp listener down", "replica behind"], replica_lag=900)
    assert behind.line() == "unhealthy: smtp listener down, replica behind; replica lag 900 s"


def test_health_reports_the_lag_fails_past_the_limit_and_says_nothing_else(
    tmp_path: Path,
) -> None:
    """With the daemon up: healthy and the lag in seconds while the replicator is current;
    exit 1 with "replica behind" once its last pass is too old, and "replica lag unknown"
    with no state file. The line is the same before and after a message is held, whatever
    size the state file records."""
    listen = free_port()
    config = _config(tmp_path, listen)
    state = tmp_path / "var" / "replica.json"
    with daemon(config, listen) as process:
        unknown = run("health", config)
        written = time.time()
        write_state(state, 3, written - 20)
        before = run("health", config)
        took = time.time() - written
        _send(listen, HELD)
        write_state(state, 5, time.time() - 20)
        after = run("health", config)
        write_state(state, 5, time.time() - LIMIT - 30)
        behind = run("health", config)
        stopped(process)
    assert len(held_items(tmp_path / "archive")) == 1
    assert (unknown.code, unknown.out, unknown.err) == (1, "unhealthy: replica lag unknown\n", "")
    lag = re.fullmatch(r"healthy; replica lag (\d+) s\n", before.out)
    assert before.code == 0, before.out
    assert lag is not None, before.out
    assert 20 <= int(lag[1]) <= 20 + took + 1
    assert after.code == before.code
    assert _seconds_aside(after.out) == _seconds_aside(before.out) == "healthy; replica lag N s\n"
    assert behind.code == 1
    assert re.fullmatch(r"unhealthy: replica behind; replica lag 2\d\d s\n", behind.out)


def _seconds_aside(line: str) -> str:
    return re.sub(r"lag \d+ s", "lag N s", line)


def test_a_state_file_of_another_shape_is_an_unknown_lag(tmp_path: Path) -> None:
    """A state file that is not the replicator's (a bool, text, no time) gives no lag,
    only "replica lag unknown" (with the daemon down, after its reasons)."""
    config = _config(tmp_path, free_port())
    state = tmp_path / "var" / "replica.json"
    state.parent.mkdir()
    for text in ('{"up_to_date_at": true}', "not json", "{}", '{"up_to_date_at": "now"}'):
        state.write_text(text)
        found = run("health", config)
        assert found.code == 1
        assert found.out.endswith(", replica lag unknown\n"), found.out
        assert "; replica lag" not in found.out
