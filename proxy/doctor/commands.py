"""The `doctor` and `health` commands of `nocontact`.

Rules this module keeps:
1. Thin: read the arguments, run the checks in a fixed order, print one line per finding
   as it comes (so a slow check shows where doctor is), exit 0 or 1 (package rule 1).
2. A config that does not load is one `FAIL config` line (its first problem, and how many
   more), and the other checks are not run: they read the config. Exit 1.
3. A check that breaks unexpectedly is one FAIL line naming the check and the error's
   type, and the others still run: never a traceback.
4. The checks' libraries (twilio, imapclient: a third of a second) are imported only when
   doctor runs (`checkup`): every other command would pay for them.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from proxy.config import load_config
from proxy.doctor import health
from proxy.doctor.findings import Finding, fail, line
from proxy.doctor.transports import TEST_ALERT
from proxy.errors import ConfigError

EXIT_OK = 0
EXIT_PROBLEM = 1
DOCTOR_TIMEOUT = 10.0
HEALTH_TIMEOUT = 5.0


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
    from proxy.doctor.checkup import checks  # noqa: PLC0415 - rule 4

    failed = False
    named = checks(config, Path(args.config), timeout=float(args.timeout),
                   send_test_alert=args.send_test_alert)  # fmt: skip
    for name, check in named:
        try:
            findings = check()
        except Exception as error:  # rule 3
            findings = [fail(name, f"the check itself failed ({type(error).__name__})")]
        for finding in findings:
            print(line(finding), flush=True)
            failed = failed or not finding.ok
    return EXIT_PROBLEM if failed else EXIT_OK


def _health(args: argparse.Namespace) -> int:
    try:
        found = health.verdict(args.config, now=datetime.now(UTC), timeout=float(args.timeout))
    except Exception as error:  # never a traceback in a HEALTHCHECK's log
        found = health.Verdict(reasons=[f"the check itself failed ({type(error).__name__})"])
    if not found.reasons:
        print(found.line())
        return EXIT_OK
    said = found.line().removeprefix("unhealthy: ")
    print(line(Finding(what="unhealthy", problem=said)).removeprefix("FAIL "))
    return EXIT_PROBLEM
