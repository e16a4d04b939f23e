"""The meaning of the alerts config (proxy/config/alert_checks.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.config import load_config
from proxy.errors import ConfigError
from tests.factories import RECIPIENT, config_data, write_secret

NTFY = "ntfy://ntfy.sh/a-long-random-topic"


def _write(tmp_path: Path, *, alerts: dict[str, Any] | None, contact_alerts: Any = None,
           **overrides: Any) -> Path:  # fmt: skip
    contact: dict[str, Any] = {"name": "Dana Reyes", "role": "lawyer", "age_recipient": RECIPIENT}
    if contact_alerts is not None:
        contact["alerts"] = contact_alerts
    data = config_data(archive={"path": str(tmp_path / "archive")}, contacts=[contact],
                       **overrides)  # fmt: skip
    if alerts is not None:
        data["alerts"] = alerts
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


def test_a_good_alerts_section_loads_with_its_url_file_absolute(tmp_path: Path) -> None:
    """A URL file (0600) relative to the config is made absolute; everything else passes."""
    write_secret(tmp_path / "mail.url", "mailtos://alerts:pw@alerts.example?to=dana@x.example")
    path = _write(
        tmp_path,
        alerts={"transports": {"mail": {"url_file": "mail.url"}, "ntfy": {"url": NTFY}},
                "timezone": "America/New_York"},
        contact_alerts={"transports": ["mail", "ntfy"], "tiers": ["urgent"]},
    )  # fmt: skip
    config = load_config(path)
    assert config.alerts is not None
    assert config.alerts.transports["mail"].url_file == str(tmp_path / "mail.url")


@pytest.mark.parametrize(
    ("alerts", "contact_alerts", "expected"),
    [
        (None, {"transports": ["ntfy"]}, "contacts[0].alerts: needs an alerts: section"),
        ({"transports": {"ntfy": {"url": NTFY}}}, {"transports": ["sms"]},
         "contacts[0].alerts.transports[0]: no transport named 'sms'"),
        ({"transports": {"ntfy": {"url": NTFY}}, "timezone": "Mars/Olympus"}, None,
         "alerts.timezone: not a time zone this system knows"),
        ({"transports": {"x": {"url": "nonsense://what"}}}, None,
         "alerts.transports.x.url: not an apprise URL"),
        ({"transports": {"x": {"url_file": "missing.url"}}}, None,
         "alerts.transports.x.url_file: no such file"),
    ],
)  # fmt: skip
def test_refused_with_one_located_line(
    tmp_path: Path, alerts: dict[str, Any] | None, contact_alerts: Any, expected: str
) -> None:
    """Each broken alerts config is one line naming where and why."""
    found = _problems(_write(tmp_path, alerts=alerts, contact_alerts=contact_alerts))
    assert any(expected in line for line in found), found


def test_a_url_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """The URL may hold a password: its file must be 0600, and the line never echoes it."""
    url_file = tmp_path / "mail.url"
    url_file.write_text("mailtos://alerts:hunter2@alerts.example")
    url_file.chmod(0o644)
    found = _problems(_write(tmp_path, alerts={"transports": {"m": {"url_file": "mail.url"}}}))
    assert any("can be read by other users (mode 0644)" in line for line in found)
    assert not any("hunter2" in line for line in found)


def test_never_through_her_own_mailbox_or_to_her_phone(tmp_path: Path) -> None:
    """An email transport logging in as her IMAP account, or sending to it, and any
    transport naming her phone, are refused."""
    write_secret(tmp_path / "password", "pw")
    imap = {"accounts": [{"name": "home", "host": "imap.gmail.com", "username": "Sam.Doe@gmail.com",
                          "password_file": str(tmp_path / "password")}]}  # fmt: skip
    sms = {"public_url": "https://home.example/sms", "account_sid": "AC" + "0" * 32,
           "number": "+15550100111", "forward_to": "+15550100222",
           "auth_token_file": str(tmp_path / "password")}  # fmt: skip
    alerts = {"transports": {
        "login": {"url": "mailtos://samdoe:pw@gmail.com?to=dana@reyes-law.example"},
        "to-her": {"url": "mailtos://alerts:pw@alerts.example?to=sam.doe+x@gmail.com"},
        "phone": {"url": "json://127.0.0.1:8080/send?to=%2B1-555-010-0222"},
        "fine": {"url": "mailtos://alerts:pw@alerts.example?to=dana@reyes-law.example"},
    }}  # fmt: skip
    found = _problems(_write(tmp_path, alerts=alerts, channels={"imap": imap, "sms": sms}))
    own = "sends through her own mailbox"
    assert any(f"transports.login.url: {own} (logs in as her account)" in x for x in found)
    assert any(f"transports.to-her.url: {own} (sends to her address)" in x for x in found)
    assert any("transports.phone.url: sends to her own phone" in x for x in found), found
    assert not any("transports.fine" in line for line in found)
