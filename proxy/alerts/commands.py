"""`nocontact alerts ack`: a contact without the portal acknowledges an urgent alert.

Rules this module keeps:
1. It asks the running daemon over its alerts socket (acks.py) and prints one line:
   acknowledged (exit 0), or no open alert with that code (exit 1). A daemon that does
   not answer is one line on stderr (exit 2, cli.py rule 2).
2. It prints nothing about held items: not the item, not how many alerts are open.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from proxy.alerts.acks import ask_ack


def add_alert_commands(commands: Any) -> None:
    """Add `alerts ack` to the CLI's subcommands."""
    alerts = commands.add_parser("alerts", help="alerts to the contacts")
    verbs = alerts.add_subparsers(dest="alerts_command", required=True, metavar="COMMAND")
    ack = verbs.add_parser("ack", help="acknowledge an urgent alert by its code")
    ack.add_argument("--archive", required=True, metavar="DIR")
    ack.add_argument("code", metavar="CODE", help="the acknowledgement code in the alert")
    ack.set_defaults(run=_ack)


def _ack(args: argparse.Namespace) -> int:
    code = str(args.code).strip().upper()
    if ask_ack(Path(args.archive), code):
        print("acknowledged: the alert will not be repeated or escalated")
        return 0
    print("no open alert has this code (acknowledged already, or mistyped)")
    return 1
