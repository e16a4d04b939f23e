"""The `outbound:` section, the SMTP relay replies to him leave by
(proxy/config/outbound_checks.py and its model): defaults, and one located line per
problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.factories import config_data, loopback_certificate, write_secret

OUTBOUND: dict[str, Any] = {"host": "smtp.fastmail.example", "username": "priya",
                            "password_file": "password",
                            "from": "priya-replies@fastmail.example"}  # fmt: skip


def _write(tmp_path: Path, outbound: dict[str, Any]) -> Path:
    data = config_data(archive={"path": str(tmp_path / "archive")}, outbound=outbound)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


def test_a_good_section_loads_with_its_defaults_and_its_file_absolute(tmp_path: Path) -> None:
    """STARTTLS on 587 by default, 465 for tls; the password file is read from the config's
    directory; `from` is the address replies come from."""
    write_secret(tmp_path / "password", "relay-secret")
    outbound = load_config(_write(tmp_path, OUTBOUND)).outbound
    assert outbound is not None
    assert (outbound.tls, outbound.port_or_default) == ("starttls", 587)
    assert outbound.password_file == str(tmp_path / "password")
    assert outbound.sender == "priya-replies@fastmail.example"
    implicit = load_config(_write(tmp_path, {**OUTBOUND, "tls": "tls"})).outbound
    assert implicit is not None
    assert implicit.port_or_default == 465
    no_login = {"host": "127.0.0.1", "port": 2526, "tls": "none", "from": "r@home.example"}
    local = load_config(_write(tmp_path, no_login)).outbound
    assert local is not None
    assert (local.port_or_default, local.username, local.password_file) == (2526, None, None)


def test_the_password_file_may_come_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`${CREDENTIALS_DIRECTORY}/name` reads where systemd put it (0400 is private too)."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "outbound-password").write_text("relay-secret")
    (credentials / "outbound-password").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    written = {**OUTBOUND, "password_file": "${CREDENTIALS_DIRECTORY}/outbound-password"}
    outbound = load_config(_write(tmp_path, written)).outbound
    assert outbound is not None
    assert outbound.password_file == str(credentials / "outbound-password")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [({"password_file": "missing"}, "outbound.password_file: no such file"),
     ({"tls": "none"}, "outbound.tls: none sends the password and the reply in the clear: "
                       "only for a relay on this machine"),
     ({"tls": "ssl"}, "outbound.tls: expected 'starttls', 'tls' or 'none', got 'ssl'"),
     ({"port": 0}, "outbound.port"),
     ({"port": "587"}, "outbound.port: expected a whole number"),
     ({"from": "nobody"}, "outbound.from"),
     ({"from": None}, "outbound.from"),
     ({"username": None}, "give both username and password_file, or neither"),
     ({"host": ""}, "outbound.host: must not be empty"),
     ({"form": "x@y.example"}, "outbound.form: unknown key (did you mean 'from'?)")],
)  # fmt: skip
def test_a_broken_section_is_one_located_line(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    """Each problem is refused with one line naming where and why."""
    write_secret(tmp_path / "password", "relay-secret")
    outbound = {key: value for key, value in {**OUTBOUND, **changes}.items() if value is not None}
    found = _problems(_write(tmp_path, outbound))
    assert len(found) == 1, found
    assert expected in found[0], found


def test_a_password_file_others_may_read_is_one_line_without_the_secret(tmp_path: Path) -> None:
    """Group or other access is refused, naming the mode, never the password."""
    write_secret(tmp_path / "password", "relay-secret").chmod(0o640)
    (found,) = _problems(_write(tmp_path, OUTBOUND))
    assert "outbound.password_file" in found
    assert "can be read by other users (mode 0640)" in found
    assert "relay-secret" not in found


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_tls_none_is_for_a_relay_on_this_machine(tmp_path: Path, host: str) -> None:
    """A loopback relay may take the login in the clear."""
    write_secret(tmp_path / "password", "relay-secret")
    outbound = load_config(_write(tmp_path, {**OUTBOUND, "host": host, "tls": "none"})).outbound
    assert outbound is not None
    assert outbound.port_or_default == 25


def test_a_ca_file_is_read_from_the_configs_directory_and_must_hold_certificates(
    tmp_path: Path,
) -> None:
    """`ca_file` is made absolute, any mode will do (it is public); a missing file or one
    with no PEM certificate is one located line."""
    write_secret(tmp_path / "password", "relay-secret")
    cert, _ = loopback_certificate(tmp_path)
    cert.chmod(0o644)
    outbound = load_config(_write(tmp_path, {**OUTBOUND, "ca_file": cert.name})).outbound
    assert outbound is not None
    assert outbound.ca_file == str(cert)
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    wrong = (
        ("missing.pem", f"no such file: {tmp_path / 'missing.pem'}"),
        ("not-a-ca.pem", f"{tmp_path / 'not-a-ca.pem'} holds no PEM certificate"),
    )
    for name, says in wrong:
        (problem,) = _problems(_write(tmp_path, {**OUTBOUND, "ca_file": name}))
        assert problem.endswith(f"outbound.ca_file: {says}"), problem
