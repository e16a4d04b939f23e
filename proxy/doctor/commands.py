"""The `doctor` and `health` commands of `nocontact`.

Rules this module keeps:
1. Thin: read the arguments, run the checks in a fixed order, print one line per finding
   as it comes (so a slow check shows where doctor is), exit 0 or 1 (package rule 1).
2. A config that does not load is one `FAIL config` line (its first problem, and how many
   more), and the other checks are not run: they read the config. Exit 1.
3. A check that breaks unexpectedly is one FAIL line naming the check and the error's
   type, and the others still run: never a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from proxy.config import Config, load_config
from proxy.doctor import health
from proxy.doctor.certificates import check_certificates
from proxy.doctor.files import check_files, mode_problem
from proxy.doctor.findings import Finding, fail, line, ok
from proxy.doctor.hops import check_hops
from proxy.doctor.mailboxes import check_mailboxes
from proxy.doctor.provider import check_provider
from proxy.doctor.store import check_store
from proxy.doctor.transports import TEST_ALERT, check_transports
from proxy.errors import ConfigError

EXIT_OK = 0
EXIT_PROBLEM = 1
DOCTOR_TIMEOUT = 10.0
HEALTH_TIMEOUT = 5.0
_NOT_WRITABLE_BY_OTHERS = 0o022

Check = Callable[[], list[Finding]]


def add_doctor_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `doctor` and `health` to the `nocontact` subcommands."""
    doctor = commands.add_parser(
        "doctor", help="check a setup: config, files, archive, next hop, accounts, certificates"
    )
    doctor.add_argument("-c", "--config", required=True, metavar="FILE")
    doctor.add_argument(
        "--send-test-alert", action="store_true",
        help=f'send "{TEST_ALERT}" through every alert transport',
    )  # fmt: skip
    doctor.add_argument(
        "--timeout", type=float, default=DOCTOR_TIMEOUT, metavar="SECONDS",
        help=f"how long a host may take to answer (default {DOCTOR_TIMEOUT:g})",
    )  # fmt: skip
    doctor.set_defaults(run=_doctor)
    check = commands.add_parser(
        "health", help="exit 0 if the running daemon is up (for HEALTHCHECK and monitors)"
    )
    check.add_argument("-c", "--config", required=True, metavar="FILE")
    check.add_argument(
        "--timeout", type=float, default=HEALTH_TIMEOUT, metavar="SECONDS",
        help=f"how long a listener may take to answer (default {HEALTH_TIMEOUT:g})",
    )  # fmt: skip
    check.set_defaults(run=_health)


def _doctor(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as error:
        problems = [str(p) for p in error.problems] or ["it cannot be read"]
        more = len(problems) - 1
        said = problems[0] + (
            f" (and {more} more: nocontact check-config lists them)" if more else ""
        )
        print(line(fail("config", said)))
        return EXIT_PROBLEM
    failed = False
    for name, check in _checks(args, config):
        try:
            findings = check()
        except Exception as error:  # rule 3
            findings = [fail(name, f"the check itself failed ({type(error).__name__})")]
        for finding in findings:
            print(line(finding), flush=True)
            failed = failed or not finding.ok
    return EXIT_PROBLEM if failed else EXIT_OK


def _checks(args: argparse.Namespace, config: Config) -> list[tuple[str, Check]]:
    timeout, now = float(args.timeout), datetime.now(UTC)
    return [
        ("config", lambda: [_config_file(Path(args.config))]),
        ("files", lambda: check_files(config)),
        ("archive", lambda: check_store(Path(config.archive.path), now)),
        ("next hop", lambda: check_hops(config, timeout)),
        ("imap", lambda: check_mailboxes(config, timeout)),
        ("twilio", lambda: check_provider(config, timeout)),
        ("certificates", lambda: check_certificates(config, now)),
        ("alerts", lambda: check_transports(config, send_test_alert=args.send_test_alert)),
    ]


def _config_file(path: Path) -> Finding:
    """The config decides whom items are sealed to: only its owner may change it."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return fail("config", f"cannot look at {path} ({error.strerror})")
    problem = mode_problem(mode, _NOT_WRITABLE_BY_OTHERS, "0600 or 0644")
    return ok(f"config {path} is valid") if problem is None else fail(f"config {path}", problem)


def _health(args: argparse.Namespace) -> int:
    try:
        found = health.reasons(args.config, now=datetime.now(UTC), timeout=float(args.timeout))
    except Exception as error:  # never a traceback in a HEALTHCHECK's log
        found = [f"the check itself failed ({type(error).__name__})"]
    if found:
        print(line(Finding(what="unhealthy", problem=", ".join(found))).removeprefix("FAIL "))
        return EXIT_PROBLEM
    print("healthy")
    return EXIT_OK
