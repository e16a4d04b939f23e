"""`nocontact portal ...`: the portal's command line (the web pages are the portal itself).

Rules this module keeps:
1. Thin, like `proxy.cli`: parse, call `proxy.portal.accounts`, print one result; every
   refusal is a `NocontactError` that `proxy.cli.main` prints as one line (exit 2).
2. The enrollment link is printed once, to stdout, for the survivor to pass on by a
   channel they trust; it is never logged.
"""

from __future__ import annotations

import argparse

from proxy.config import load_config
from proxy.errors import InputError
from proxy.portal.accounts import Accounts
from proxy.portal.invites import LIFETIME


def _invite(args: argparse.Namespace) -> int:
    link = Accounts(load_config(args.config)).invite(args.contact)
    hours = int(LIFETIME.total_seconds() // 3600)
    print(f"enrollment link for {args.contact} (works once, for {hours} hours):")
    print(link)
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.config is None:
        raise InputError("portal: give -c FILE to run the portal, or a command (invite)")
    from proxy import logs  # noqa: PLC0415
    from proxy.portal import serving  # noqa: PLC0415 - aiohttp and jinja2 load only to serve

    logs.configure(level="info", background=True)
    try:
        return serving.serve(args.config)
    finally:
        logs.drain()


def add_portal_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `portal` (run it) and `portal invite` to the `nocontact` subcommands."""
    portal = commands.add_parser(
        "portal", help="the web portal for trusted contacts: `portal -c FILE` runs it"
    )
    portal.add_argument("-c", "--config", metavar="FILE", help="run the portal of this config")
    portal.set_defaults(run=_serve)
    portal_commands = portal.add_subparsers(dest="portal_command", required=False,
                                            metavar="COMMAND")  # fmt: skip
    invite = portal_commands.add_parser(
        "invite", help="print a one-time link a portal contact enrolls with (24 hours)"
    )
    invite.add_argument("-c", "--config", required=True, metavar="FILE")
    invite.add_argument("--contact", required=True, metavar="NAME", help="their name in the config")
    invite.set_defaults(run=_invite)
