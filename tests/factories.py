"""Builders of test values: configs, rulebooks and messages, with sensible defaults."""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyrage
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.config.model import Config
from proxy.disk import create_private
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


def loopback_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "home server")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    key_path.chmod(0o644)  # Dovecot reads it after dropping root
    return cert_path, key_path


def write_secret(path: Path, text: str) -> Path:
    """A file holding a secret, as a deployment keeps one: 0600 from its creation (the
    config refuses one others may read)."""
    path.unlink(missing_ok=True)
    with os.fdopen(create_private(path), "w") as file:
        file.write(text)
    return path
