"""`nocontact health` against a running daemon, and doctor's and health's silence about
held items.

Rules these tests keep:
1. The daemon is the real one, `python -m proxy run`, listening for SMTP and Twilio's
   webhooks, relaying to a real aiosmtpd next hop; health runs as a child process, as a
   container's HEALTHCHECK runs it.
2. What either command prints is compared whole, before and after a message is held: it
   must not change.
"""

from __future__ import annotations

import smtplib
from collections.abc import Mapping
from pathlib import Path

import yaml
from aiosmtpd.controller import Controller

from tests.doctor_helpers import ACCOUNT, TOKEN, run, twilio
from tests.factories import config_data, write_secret
from tests.test_smtp import HELD, RECIPIENT, _Recorder, daemon, free_port, held_items, stopped


def _config(tmp: Path, listen: int, deliver: str, sms: Mapping[str, object] | None = None) -> Path:
    channels: dict[str, object] = {"smtp": {"listen": f"127.0.0.1:{listen}", "deliver": deliver}}
    if sms is not None:
        channels["sms"] = sms
    data = config_data(
        archive={"path": str(tmp / "archive")},
        contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}],
        channels=channels,
    )
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def _send(port: int, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("mark.smith@gmail.com", ["sam@home.example"], message)


def test_health_is_0_while_all_is_up_and_1_with_one_line_when_not(tmp_path: Path) -> None:
    """Healthy with the daemon and its next hop up; one `unhealthy:` line during a next-hop
    outage, and once the daemon has stopped; exit 1 both times."""
    hop = Controller(_Recorder(), hostname="127.0.0.1", port=free_port())
    hop.start()
    listen, webhooks = free_port(), free_port()
    with twilio() as fake:
        sms = {"listen": f"127.0.0.1:{webhooks}", "public_url": "https://home.example/twilio",
               "account_sid": ACCOUNT,
               "auth_token_file": str(write_secret(tmp_path / "token", TOKEN)),
               "number": "+15550001111", "forward_to": "+15550002222",
               "api_base_url": fake.base_url, "state_dir": str(tmp_path / "sms")}  # fmt: skip
        config = _config(tmp_path, listen, f"smtp://127.0.0.1:{hop.port}", sms)
        with daemon(config, listen) as process:
            up = run("health", config)
            hop.stop()
            outage = run("health", config)
            stopped(process)
        down = run("health", config)
    assert (up.code, up.out, up.err) == (0, "healthy\n", "")
    assert (outage.code, outage.out, outage.err) == (1, "unhealthy: next hop down\n", "")
    assert down.code == 1
    down_reasons = "daemon not running, smtp listener down, webhook listener down, next hop down"
    assert down.out == f"unhealthy: {down_reasons}\n"


def test_neither_command_says_whether_anything_was_held(tmp_path: Path) -> None:
    """doctor's and health's whole output is the same before and after a message is held."""
    listen = free_port()
    config = _config(tmp_path, listen, f"maildir:{tmp_path / 'mail'}")
    with daemon(config, listen) as process:
        before_health = run("health", config)
        stopped(process)
    before_doctor = run("doctor", config)
    with daemon(config, listen) as process:
        _send(listen, HELD)
        after_health = run("health", config)
        stopped(process)
    after_doctor = run("doctor", config)
    assert len(held_items(tmp_path / "archive")) == 1
    assert (before_health.code, before_health.out) == (0, "healthy\n")
    assert (after_health.code, after_health.out, after_health.err) == (
        before_health.code, before_health.out, before_health.err
    )  # fmt: skip
    assert before_doctor.code == 0, before_doctor.out
    assert "ok   archive verifies" in before_doctor.out.splitlines()
    assert (after_doctor.code, after_doctor.out, after_doctor.err) == (
        before_doctor.code, before_doctor.out, before_doctor.err
    )  # fmt: skip
