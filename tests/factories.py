"""Builders of test values: configs, rulebooks and messages, with sensible defaults."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyrage

from proxy.config.model import Config
from proxy.message import InboundMessage
from proxy.normalize import normalize_email, normalize_sms
from proxy.rules import Rulebook, compile_rules

RECEIVED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECIPIENT = str(pyrage.x25519.Identity.generate().to_public())

MARK = {
    "id": "mark",
    "name": "Mark Smith",
    "aliases": ["Marky"],
    "emails": ["mark.smith@gmail.com", "mark@smith-family.example"],
    "domains": ["markscompany.example"],
    "phones": ["(555) 010-0199", "+44 20 7946 0958"],
    "display_names": ["M. Smith"],
}


def config_data(**overrides: Any) -> dict[str, Any]:
    """A valid config as plain data, with `overrides` replacing top-level sections."""
    data: dict[str, Any] = {
        "archive": {"path": "/tmp/nocontact-test-archive"},
        "contacts": [{"name": "Dana Reyes", "role": "lawyer", "age_recipient": RECIPIENT}],
        "people": [MARK],
        "intermediaries": [
            {"id": "carol", "name": "Carol Smith", "emails": ["carol@example.net"],
             "phones": ["+1 555 010 0142"]},
        ],
        "allow": {
            "emails": ["dana@reyes-law.example"],
            "domains": ["court.example.gov"],
            "phones": ["+1 555 010 0100"],
        },
        "default_region": "US",
    }  # fmt: skip
    data.update(overrides)
    return data


def make_config(**overrides: Any) -> Config:
    """A validated `Config` built from `config_data(**overrides)`."""
    data = config_data(**overrides)
    region = data.get("default_region")
    return Config.model_validate(data, context={"default_region": region})


def make_rules(**overrides: Any) -> Rulebook:
    """The compiled rulebook of `make_config(**overrides)`."""
    return compile_rules(make_config(**overrides))


def email(
    headers: str, body: str = "Hello.\n", *, envelope_sender: str = "", region: str = "US"
) -> InboundMessage:
    """A normalized email from header lines and a plain-text body."""
    raw = f"{headers.strip()}\nContent-Type: text/plain; charset=utf-8\n\n{body}"
    return normalize_email(
        raw.encode(),
        envelope_sender=envelope_sender,
        received_at=RECEIVED_AT,
        default_region=region,
    )


def sms(sender: str, text: str = "hi", *, region: str = "US") -> InboundMessage:
    """A normalized text message."""
    return normalize_sms(
        sender=sender,
        recipient="+15550100111",
        text=text,
        raw=text.encode(),
        received_at=RECEIVED_AT,
        default_region=region,
    )
