"""The `replicate:` section (proxy/config/replicate_checks.py and its model): defaults,
files made absolute, and one located line per problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.factories import config_data, write_secret

SECTION: dict[str, Any] = {
    "endpoint": "https://s3.provider.example",
    "bucket": "survivor-log",
    "credentials_file": "s3-credentials",
    "retention_days": 3650,
}


def _write(tmp_path: Path, replicate: dict[str, Any]) -> Path:
    data = config_data(archive={"path": str(tmp_path / "archive")}, replicate=replicate)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


def test_a_good_section_loads_with_its_defaults_and_its_files_absolute(tmp_path: Path) -> None:
    """Region us-east-1, a pass every 10 s, no prefix; the credentials and state files are
    read from the config's directory; a prefix ends in '/'; AWS itself without endpoint."""
    write_secret(tmp_path / "s3-credentials", "[default]\n")
    replicate = load_config(_write(tmp_path, SECTION)).replicate
    assert replicate is not None
    assert (replicate.region, replicate.every, replicate.prefix) == ("us-east-1", 10, "")
    assert replicate.credentials_file == str(tmp_path / "s3-credentials")
    assert replicate.state_file == str(tmp_path / "var" / "replica.json")
    other = {**SECTION, "prefix": "logs/survivor", "endpoint": "http://127.0.0.1:8333"}
    local = load_config(_write(tmp_path, other)).replicate
    assert local is not None
    assert (local.prefix, local.endpoint) == ("logs/survivor/", "http://127.0.0.1:8333")
    aws = {key: value for key, value in SECTION.items() if key != "endpoint"}
    assert load_config(_write(tmp_path, aws)).replicate.endpoint is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"bucket": "Survivor_Log"}, "replicate.bucket", "is not an S3 bucket name"),
        ({"bucket": "192.168.1.1"}, "replicate.bucket", "is not an S3 bucket name"),
        ({"retention_days": 0}, "replicate.retention_days", "greater than or equal to 1"),
        ({"every": 0}, "replicate.every", "greater than or equal to 1"),
        ({"every": 61}, "replicate.every", "less than or equal to 60"),
        ({"prefix": "/top"}, "replicate.prefix", "is not a key prefix"),
        ({"prefix": "a/../b"}, "replicate.prefix", "is not a key prefix"),
        ({"endpoint": "ftp://s3.example"}, "replicate.endpoint", "is not a web address"),
        ({"endpoint": "http://s3.provider.example"}, "replicate.endpoint", "use https"),
        ({"credentials_file": "missing"}, "replicate.credentials_file", "no such file"),
        ({"region": ""}, "replicate.region", "must not be empty"),
        ({"secret_key": "x"}, "replicate.secret_key", ""),
    ],
)
def test_each_problem_is_one_located_line(
    tmp_path: Path, change: dict[str, Any], where: str, says: str
) -> None:
    """One line per problem, at its key, saying what is wrong."""
    write_secret(tmp_path / "s3-credentials", "[default]\n")
    path = _write(tmp_path, {**SECTION, **change})
    problems = _problems(path)
    assert len(problems) == 1, problems
    assert f"{path}:" in problems[0]
    assert f": {where}: " in problems[0]
    assert says in problems[0]


def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """Mode 0644: one line naming the file and its mode, never what it holds."""
    secret = tmp_path / "s3-credentials"
    secret.write_text("[default]\naws_secret_access_key = hunter2-canary\n")
    secret.chmod(0o644)
    (problem,) = _problems(_write(tmp_path, SECTION))
    assert "replicate.credentials_file" in problem
    assert "mode 0644" in problem
    assert "hunter2-canary" not in problem


def test_a_missing_required_key_is_one_line(tmp_path: Path) -> None:
    """Without retention_days (no default: the survivor's lawyer decides it)."""
    write_secret(tmp_path / "s3-credentials", "[default]\n")
    section = {key: value for key, value in SECTION.items() if key != "retention_days"}
    (problem,) = _problems(_write(tmp_path, section))
    assert problem.endswith(": replicate.retention_days: required key is missing")


def test_a_replicated_archive_signs_every_30_s_unless_told(tmp_path: Path) -> None:
    """With `replicate:` the cadence defaults to 30 s (entries in the bucket within a
    minute); without it 600 s; a cadence the config gives is kept either way."""
    write_secret(tmp_path / "s3-credentials", "[default]\n")
    assert load_config(_write(tmp_path, SECTION)).archive.checkpoint_every == 30
    plain = config_data(archive={"path": str(tmp_path / "archive")})
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(plain, sort_keys=False))
    assert load_config(path).archive.checkpoint_every == 600
    given = config_data(
        archive={"path": str(tmp_path / "archive"), "checkpoint_every": 120}, replicate=SECTION
    )
    path.write_text(yaml.safe_dump(given, sort_keys=False))
    assert load_config(path).archive.checkpoint_every == 120
