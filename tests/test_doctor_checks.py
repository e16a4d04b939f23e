"""The pure parts of doctor and health, by table: lines, modes, clock, disk, certificates,
addresses, freshness and the reasons given for a failed conversation.

Rules these tests keep:
1. Every function here takes values and returns values: no server, no file but the
   certificates made in memory.
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from imapclient.exceptions import LoginError

from proxy.doctor.certificates import certificate_problem, url_problem
from proxy.doctor.files import mode_problem
from proxy.doctor.findings import MOST_CHARACTERS, fail, line, ok
from proxy.doctor.health import freshness_problem
from proxy.doctor.reasons import why
from proxy.doctor.store import clock_problem, disk_problem

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
MIB = 1 << 20


def test_lines_are_ok_or_fail_one_line_each() -> None:
    """ok and FAIL lines start with their word; control characters and length are tamed."""
    assert line(ok("clock")) == "ok   clock"
    assert line(fail("clock", "wrong")) == "FAIL clock: wrong"
    assert line(fail("imap", "said\r\nBYE\x1b[31m")) == "FAIL imap: said BYE [31m"
    assert len(line(fail("x", "y" * 1000))) == MOST_CHARACTERS


@pytest.mark.parametrize(
    ("mode", "forbidden", "expected"),
    [
        (0o100600, 0o077, None),
        (0o100640, 0o077, "mode 0640, make it 0600"),
        (0o040700, 0o077, None),
        (0o040755, 0o077, "mode 0755, make it 0600"),
        (0o100644, 0o022, None),
        (0o100664, 0o022, "mode 0664, make it 0600"),
    ],
)
def test_modes(mode: int, forbidden: int, expected: str | None) -> None:
    """A mode passes when it has none of the forbidden bits, else says which it is."""
    assert mode_problem(mode, forbidden, "0600") == expected


@pytest.mark.parametrize(
    ("now", "latest", "expected"),
    [
        (NOW, None, None),
        (NOW, NOW - timedelta(minutes=10), None),
        (NOW, NOW + timedelta(minutes=10), None),  # within one grain: a rounding, not a jump
        (NOW, NOW + timedelta(minutes=11), "behind the archive's latest checkpoint"),
        (datetime(2001, 1, 1, tzinfo=UTC), None, "the system clock says 2001"),
    ],
)
def test_clock(now: datetime, latest: datetime | None, expected: str | None) -> None:
    """A year before 2025, or a checkpoint more than a grain ahead, is a clock problem."""
    problem = clock_problem(now, latest)
    assert (problem is None) == (expected is None)
    assert expected is None or expected in (problem or "")


@pytest.mark.parametrize(
    ("free", "expected"),
    [
        (128 * MIB, None),
        (10 << 30, None),
        (128 * MIB - 1, "127 MiB free, at least 128 MiB needed (two segments)"),
        (0, "0 MiB free, at least 128 MiB needed (two segments)"),
    ],
)
def test_disk(free: int, expected: str | None) -> None:
    """Two 64 MiB segments of room is enough; less says both figures in MiB."""
    assert disk_problem(free, 64 * MIB) == expected


def _made(host: str, *, begins: datetime, ends: datetime) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "home")])
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(begins).not_valid_after(ends)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return certificate.public_bytes(serialization.Encoding.PEM), pem_key


GOOD = {"begins": NOW - timedelta(days=1), "ends": NOW + timedelta(days=90)}


@pytest.mark.parametrize(
    ("made_for", "asked_for", "validity", "expected"),
    [
        ("home.example", "home.example", GOOD, None),
        ("*.home.example", "portal.home.example", GOOD, None),
        ("192.0.2.7", "192.0.2.7", GOOD, None),
        ("home.example", None, GOOD, None),
        ("home.example", "other.example", GOOD, "does not cover other.example"),
        ("192.0.2.7", "192.0.2.8", GOOD, "does not cover 192.0.2.8"),
        ("home.example", "home.example",
         {"begins": NOW - timedelta(days=90), "ends": NOW - timedelta(days=1)},
         "expired on 2026-12-05: renew it"),
        ("home.example", "home.example",
         {"begins": NOW - timedelta(days=80), "ends": NOW + timedelta(days=3)},
         "expires on 2026-12-09: renew it"),
        ("home.example", "home.example",
         {"begins": NOW + timedelta(hours=1), "ends": NOW + timedelta(days=90)},
         "not valid before 2026-12-06 13:00 UTC"),
    ],
)  # fmt: skip
def test_certificates(
    made_for: str, asked_for: str | None, validity: dict[str, datetime], expected: str | None
) -> None:
    """A certificate must be valid now and for 14 days more, and cover the portal's host."""
    certificate, key = _made(made_for, **validity)
    assert certificate_problem(certificate, key, host=asked_for, now=NOW) == expected


def test_a_certificate_with_another_key_or_no_pem_is_refused() -> None:
    """The key must be the certificate's own; files that are not PEM say which file."""
    certificate, _ = _made("home.example", **GOOD)
    _, other_key = _made("home.example", **GOOD)
    assert certificate_problem(certificate, other_key, host=None, now=NOW) == (
        "the certificate does not match tls_key_file"
    )
    assert certificate_problem(b"junk", other_key, host=None, now=NOW) == (
        "tls_cert_file holds no PEM certificate"
    )
    assert certificate_problem(certificate, b"junk", host=None, now=NOW) == (
        "tls_key_file holds no unencrypted PEM private key"
    )


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://home.example/portal", True),
        ("http://127.0.0.1:8089/portal", True),
        ("http://[::1]:8089", True),
        ("http://localhost:8089", True),
        ("http://home.example/portal", False),
        ("http://192.168.1.10/portal", False),
    ],
)
def test_portal_urls(url: str, safe: bool) -> None:
    """Without a certificate of its own, the portal must be https unless on loopback."""
    assert (url_problem(url) is None) == safe


@pytest.mark.parametrize(
    ("signed", "fresh"),
    [
        (NOW, True),
        (NOW - timedelta(minutes=20), True),
        (NOW - timedelta(minutes=20, seconds=1), False),
        (None, False),
    ],
)
def test_freshness(signed: datetime | None, fresh: bool) -> None:
    """A checkpoint at most two ticks old is fresh; none at all is not."""
    assert (freshness_problem(signed, NOW) is None) == fresh


def _raised_in_timeout() -> smtplib.SMTPServerDisconnected:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as timeout:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed") from timeout
    except smtplib.SMTPServerDisconnected as error:
        return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (TimeoutError("timed out"), "no answer within 10 s"),
        (_raised_in_timeout(), "no answer within 10 s"),
        (smtplib.SMTPServerDisconnected("closed"), "closed the connection"),
        (smtplib.SMTPConnectError(421, b"busy"), "answered 421"),
        (LoginError("b'[AUTHENTICATIONFAILED] Authentication failed.'"),
         "login refused: [AUTHENTICATIONFAILED] Authentication failed."),
        (subprocess.TimeoutExpired(["token"], 10), "oauth2_command gave no token within 10 s"),
        (subprocess.CalledProcessError(3, ["token"]), "oauth2_command failed (exit status 3)"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "TLS failed: "),
        (OSError(113, "No route to host"), "No route to host"),
        (ValueError("odd"), "ValueError"),
    ],
)  # fmt: skip
def test_reasons(error: BaseException, expected: str) -> None:
    """Each kind of failure is said in a few words; the most specific kind wins."""
    assert why(error, 10).startswith(expected)
