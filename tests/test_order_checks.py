"""The meaning of a person's court order in the config (proxy/config/order_checks.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from proxy import logs
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.order_files import OrderFiles
from tests.factories import MARK, RECIPIENT, config_data

NTFY = "ntfy://ntfy.sh/a-long-random-topic"
ORDER: dict[str, Any] = {"children": ["Lily", "Noah"], "channels": ["email"],
                         "relay": "Dana Reyes"}  # fmt: skip


def _write(tmp_path: Path, order: dict[str, Any]) -> Path:
    dana = {"name": "Dana Reyes", "role": "lawyer", "age_recipient": RECIPIENT,
            "alerts": {"transports": ["ntfy"]}}  # fmt: skip
    priya = {"name": "Priya Raman", "role": "contact", "age_recipient": RECIPIENT}
    data = config_data(archive={"path": str(tmp_path / "archive")}, contacts=[dana, priya],
                       people=[{**MARK, "court_order": order}],
                       alerts={"transports": {"ntfy": {"url": NTFY}}})  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(p) for p in caught.value.problems]


def test_a_good_order_loads_with_defaults_and_its_file_absolute(tmp_path: Path) -> None:
    """Topics default to children, relay_within to an hour, auto_card off; the order file
    is read from the config's directory; the relay is matched case aside."""
    (tmp_path / "order.pdf").write_bytes(b"%PDF order")
    config = load_config(_write(tmp_path, {**ORDER, "relay": "dana reyes",
                                           "order_file": "order.pdf"}))  # fmt: skip
    order = config.people[0].court_order
    assert order is not None
    assert order.topics == ["children"]
    assert (order.relay_within, order.auto_card) == (60, False)
    assert order.order_file == str(tmp_path / "order.pdf")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"relay": "Nobody"}, "people[0].court_order.relay: no contact named 'Nobody'"),
        ({"relay": "Priya Raman"},
         "people[0].court_order.relay: contact 'Priya Raman' has no alerts"),
        ({"order_file": "missing.pdf"}, "people[0].court_order.order_file: no such file"),
        ({"children": ["Lily", "lily"]}, "people[0].court_order.children[1]: written twice"),
        ({"children": []}, "people[0].court_order.children"),
        ({"channels": ["fax"]}, "people[0].court_order.channels[0]"),
        ({"channels": []}, "people[0].court_order.channels"),
        ({"topics": ["weather"]}, "people[0].court_order.topics[0]"),
        ({"relay_within": 0}, "people[0].court_order.relay_within"),
        ({"relay_within": 24 * 60 + 1}, "people[0].court_order.relay_within"),
        ({"auto_card": "yes"}, "people[0].court_order.auto_card"),
        ({"colour": "red"}, "people[0].court_order.colour: unknown key"),
    ],
)  # fmt: skip
def test_a_broken_order_is_one_located_line(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    """Each broken order is refused with a line naming where and why."""
    found = _problems(_write(tmp_path, {**ORDER, **changes}))
    assert any(expected in line for line in found), found


def test_the_order_file_s_hash_is_logged_when_loaded_or_changed(tmp_path: Path) -> None:
    """First load: one fixed event with the person and the file's SHA-256; unchanged: none;
    the file changed: logged again with its new hash; gone: one warning, no hash."""
    order_file = tmp_path / "order.pdf"
    order_file.write_bytes(b"%PDF the first order")
    path = _write(tmp_path, {**ORDER, "order_file": "order.pdf"})
    noted = OrderFiles()
    with capture_logs(processors=[logs.redact]) as first:
        noted.note(load_config(path))
    digest = hashlib.sha256(b"%PDF the first order").hexdigest()
    assert first == [{"event": "court order profile loaded", "order_person": "mark",
                      "order_sha256": digest, "log_level": "info",
                      "component": "orders"}]  # fmt: skip
    with capture_logs(processors=[logs.redact]) as again:
        noted.note(load_config(path))
    assert again == []
    order_file.write_bytes(b"%PDF the order, amended")
    with capture_logs(processors=[logs.redact]) as changed:
        noted.note(load_config(path))
    assert [e["order_sha256"] for e in changed] == [
        hashlib.sha256(b"%PDF the order, amended").hexdigest()
    ]
    config = load_config(path)
    order_file.unlink()
    with capture_logs(processors=[logs.redact]) as gone:
        noted.note(config)
    assert gone == [{"event": "court order file cannot be read", "order_person": "mark",
                     "log_level": "warning", "component": "orders"}]  # fmt: skip


def test_a_changed_profile_without_a_file_is_logged_again(tmp_path: Path) -> None:
    """Without an order file the event has no hash; a change of the profile logs it anew."""
    noted = OrderFiles()
    with capture_logs(processors=[logs.redact]) as first:
        noted.note(load_config(_write(tmp_path, ORDER)))
        noted.note(load_config(_write(tmp_path, ORDER)))
        noted.note(load_config(_write(tmp_path, {**ORDER, "channels": ["email", "sms"]})))
    assert first == [{"event": "court order profile loaded", "order_person": "mark",
                      "log_level": "info", "component": "orders"}] * 2  # fmt: skip
