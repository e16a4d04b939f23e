"""A whole home-server setup for `nocontact doctor` and `health`: every section of the
config, each pointing at a real server on loopback or the Twilio fake.

Rules this module keeps:
1. Real servers wherever one can run here: the private Dovecot (IMAP), an aiosmtpd next
   hop, an HTTP receiver for alerts (apprise's json://); the Twilio fake, in a thread of
   its own, for Twilio's REST API.
2. A `Setup` writes the config, the secret files (0600) and a real archive (made and
   closed by `ArchiveLog`), so doctor finds everything well; a test then breaks one thing.
3. The commands run as `python -m proxy` children: what a user sees, stdout and stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ipaddress
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.archive import ArchiveLog
from tests import servers
from tests.factories import config_data, write_secret
from tests.test_smtp import RECIPIENT
from tests.twilio_fake import FakeTwilio

ACCOUNT = "AC" + "7" * 32
TOKEN = "doctor-test-token-0123456789abcd"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def failures(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith("FAIL ")]


def run(command: str, config: Path, *options: str, timeout: float = 120) -> Ran:
    """`nocontact COMMAND -c config OPTIONS`, as a child process."""
    done = subprocess.run(
        [sys.executable, "-m", "proxy", command, "-c", str(config), *options],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return Ran(code=done.returncode, out=done.stdout, err=done.stderr)


@contextlib.contextmanager
def twilio() -> Iterator[FakeTwilio]:
    """The Twilio fake, served from an event loop on its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeTwilio(ACCOUNT, TOKEN)
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(30)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.bodies.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def alert_receiver() -> Iterator[tuple[int, list[bytes]]]:
    """An HTTP server on loopback keeping every POST body (apprise's json:// posts there)."""
    bodies: list[bytes] = []
    handler = type("Receiver", (_Receiver,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer((servers.HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], bodies
    finally:
        server.shutdown()
        server.server_close()


def certificate(directory: Path, host: str, *, days: int = 90) -> tuple[Path, Path]:
    """A self-signed certificate for `host` (an IP address), valid `days` more days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "home server")])
    now = datetime.now(UTC)
    made = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "portal.crt", directory / "portal.key"
    cert_path.write_bytes(made.public_bytes(serialization.Encoding.PEM))
    write_secret(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode())  # fmt: skip
    return cert_path, key_path


@dataclass
class Setup:
    """Every section configured, every server answering (rule 2)."""

    root: Path
    dovecot: servers.Dovecot
    hop_port: int
    fake: FakeTwilio
    receiver_port: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = self.root / "config.yaml"
        self.archive = self.root / "archive"
        self.password = write_secret(self.root / "imap.password", servers.PASSWORD)
        self.token = write_secret(self.root / "twilio.token", TOKEN)
        write_secret(self.root / "contact.age", RECIPIENT + "\n")
        self.cert, self.key = certificate(self.root, servers.HOST)
        ArchiveLog.open(self.archive).close()
        self.write()

    def write(self, **overrides: Any) -> Path:
        """The config, with `overrides` replacing whole top-level sections."""
        sms = {
            "listen": "127.0.0.1:1", "public_url": "https://home.example/twilio",
            "account_sid": ACCOUNT, "auth_token_file": str(self.token),
            "number": "+15550001111", "forward_to": "+15550002222",
            "api_base_url": self.fake.base_url, "state_dir": str(self.root / "sms"),
        }  # fmt: skip
        imap = {
            "name": "home", "host": servers.HOST, "port": self.dovecot.imap_port, "tls": "none",
            "username": servers.USER, "password_file": str(self.password),
        }  # fmt: skip
        data = config_data(
            archive={"path": str(self.archive)},
            contacts=[{"name": "Dana Reyes", "role": "lawyer",
                       "age_recipient_file": str(self.root / "contact.age"),
                       "alerts": {"transports": ["phone"]}}],
            channels={
                "smtp": {"listen": "127.0.0.1:1", "deliver": f"smtp://127.0.0.1:{self.hop_port}"},
                "imap": {"accounts": [imap], "state_dir": str(self.root / "imap")},
                "sms": sms,
            },
            portal={"public_url": "https://127.0.0.1:8443/portal",
                    "state_dir": str(self.root / "portal"),
                    "tls_cert_file": str(self.cert), "tls_key_file": str(self.key)},
            alerts={"transports": {"phone": {"url": f"json://127.0.0.1:{self.receiver_port}/"}}},
        )  # fmt: skip
        data.update(overrides)
        self.config.write_text(yaml.safe_dump(data))
        return self.config
