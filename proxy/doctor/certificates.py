"""The portal's address and certificate, and the SMTP listener's certificate.

Rules this module keeps:
1. With `tls_cert_file`, the portal's certificate must parse (PEM, the first of the
   chain is the server's), match `tls_key_file`, be valid now and for at least
   `RENEW_DAYS` more days, and cover `public_url`'s host (RFC 6125, by pyca's
   service-identity, a name or an IP address). The SMTP listener's certificate is held to
   the same, but for the host: Postfix reaches it by address.
2. Without one, `public_url` must be https (a reverse proxy serves TLS), unless its host
   is a loopback address or localhost: a contact's passphrase must not cross a network in
   the clear.
3. `certificate_problem` and `url_problem` are pure: bytes, a host and the time in.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)

from proxy.config import Config
from proxy.doctor.findings import Finding, fail, ok

RENEW_DAYS = 14
_MOST_PEM_BYTES = 1 << 20


def certificate_problem(
    certificate_pem: bytes, key_pem: bytes, *, host: str | None, now: datetime
) -> str | None:
    """What is wrong with this certificate and key for `host` at `now` (rule 1), or None."""
    try:
        certificate = x509.load_pem_x509_certificates(certificate_pem)[0]
    except ValueError:
        return "tls_cert_file holds no PEM certificate"
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return "tls_key_file holds no unencrypted PEM private key"
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "the certificate does not match tls_key_file"
    problem = _validity_problem(certificate, now)
    if problem is None and host is not None and not _covers(certificate, host):
        problem = f"does not cover {host}"
    return problem


def _validity_problem(certificate: x509.Certificate, now: datetime) -> str | None:
    begins, ends = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < begins:
        return f"not valid before {begins:%Y-%m-%d %H:%M} UTC"
    if now >= ends:
        return f"expired on {ends:%Y-%m-%d}: renew it"
    if ends - now < timedelta(days=RENEW_DAYS):
        return f"expires on {ends:%Y-%m-%d}: renew it"
    return None


def url_problem(public_url: str) -> str | None:
    """Whether a portal without its own certificate is reached safely (rule 2), or why not."""
    parts = urllib.parse.urlsplit(public_url)
    if parts.scheme == "https" or _loopback(parts.hostname or ""):
        return None
    return (
        "public_url is http:// to a host that is not loopback: use https (a reverse "
        "proxy) or tls_cert_file"
    )


def check_certificates(config: Config, now: datetime) -> list[Finding]:
    found = []
    portal = config.portal
    if portal is not None:
        host = urllib.parse.urlsplit(portal.public_url).hostname
        if portal.tls_cert_file is not None and portal.tls_key_file is not None:
            problem = _files_problem(portal.tls_cert_file, portal.tls_key_file, host, now)
            problem = problem or url_problem(portal.public_url)
            what = f"portal certificate for {host}"
        else:
            problem = url_problem(portal.public_url)
            what = f"portal address {portal.public_url}"
        found.append(ok(what) if problem is None else fail(what, problem))
    smtp = config.channels.smtp
    if smtp is not None and smtp.tls_cert_file is not None and smtp.tls_key_file is not None:
        problem = _files_problem(smtp.tls_cert_file, smtp.tls_key_file, None, now)
        what = "smtp STARTTLS certificate"
        found.append(ok(what) if problem is None else fail(what, problem))
    return found


def _files_problem(cert_file: str, key_file: str, host: str | None, now: datetime) -> str | None:
    try:
        with Path(cert_file).open("rb") as certificate, Path(key_file).open("rb") as key:
            return certificate_problem(certificate.read(_MOST_PEM_BYTES),
                                       key.read(_MOST_PEM_BYTES), host=host, now=now)  # fmt: skip
    except OSError as error:
        return f"cannot read {error.filename}: {error.strerror}"


def _covers(certificate: x509.Certificate, host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    try:
        if address is not None:
            verify_certificate_ip_address(certificate, str(address))
        else:
            verify_certificate_hostname(certificate, host)
    except (VerificationError, CertificateError):
        return False
    return True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
