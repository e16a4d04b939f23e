"""The checks doctor runs, named, in the order it prints them.

Rules this module keeps:
1. The order is fixed: the config file, files and modes, the archive (verifies, clock,
   disk), next hops, IMAP accounts, Twilio, certificates, alert transports, the replica's
   bucket and the witnesses (what keeps the evidence off the server).
2. Each check is named, so one that breaks unexpectedly is a FAIL line under its name.
3. The config file decides whom items are sealed to: only its owner may write it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from proxy.config import Config
from proxy.doctor.certificates import check_certificates
from proxy.doctor.files import check_files, mode_problem
from proxy.doctor.findings import Finding, fail, ok
from proxy.doctor.hops import check_hops
from proxy.doctor.mailboxes import check_mailboxes
from proxy.doctor.offsite import check_offsite
from proxy.doctor.provider import check_provider
from proxy.doctor.store import check_store
from proxy.doctor.transports import check_transports

Check = Callable[[], list[Finding]]
_NOT_WRITABLE_BY_OTHERS = 0o022


def checks(
    config: Config, config_path: Path, *, timeout: float, send_test_alert: bool
) -> list[tuple[str, Check]]:
    """Every check, named, ready to run (rules 1 and 2)."""
    now = datetime.now(UTC)
    return [
        ("config", lambda: [_config_file(config_path)]),
        ("files", lambda: check_files(config)),
        ("archive", lambda: check_store(Path(config.archive.path), now)),
        ("next hop", lambda: check_hops(config, timeout)),
        ("imap", lambda: check_mailboxes(config, timeout)),
        ("twilio", lambda: check_provider(config, timeout)),
        ("certificates", lambda: check_certificates(config, now)),
        ("alerts", lambda: check_transports(config, send_test_alert=send_test_alert)),
        ("off-site", lambda: check_offsite(config, timeout)),
    ]


def _config_file(path: Path) -> Finding:
    """Rule 3."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return fail("config", f"cannot look at {path} ({error.strerror})")
    problem = mode_problem(mode, _NOT_WRITABLE_BY_OTHERS, "0600 or 0644")
    return ok(f"config {path} is valid") if problem is None else fail(f"config {path}", problem)
