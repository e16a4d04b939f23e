"""`nocontact witness ...`: run a witness, or print its key.

Rules this module keeps:
1. Thin, like `proxy.cli`: parse, call, print one result; every refusal is a
   `NocontactError` that `proxy.cli.main` prints as one line (exit 2).
2. `witness keygen -c FILE` makes the key if absent and prints only the public verifier
   key (name+keyid+base64, type 0x04), for the survivor's config `witnesses:`. The
   private key is never printed.
"""

from __future__ import annotations

import argparse

from proxy.errors import InputError


def _serve(args: argparse.Namespace) -> int:
    if args.config is None:
        raise InputError("witness: give -c FILE to run the witness, or a command (keygen)")
    from proxy import logs  # noqa: PLC0415
    from proxy.witness import server  # noqa: PLC0415 - aiohttp loads only to serve

    logs.configure(level="info", background=True)
    try:
        return server.serve(args.config)
    finally:
        logs.drain()


def _keygen(args: argparse.Namespace) -> int:
    from proxy.witness.config import load_witness_config  # noqa: PLC0415
    from proxy.witness.server import witness_key  # noqa: PLC0415

    print(witness_key(load_witness_config(args.config)).key.encode())
    return 0


def add_witness_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `witness` (run it) and `witness keygen` to the `nocontact` subcommands."""
    witness = commands.add_parser(
        "witness", help="cosign other logs' consistent checkpoints: `witness -c FILE` runs it"
    )
    witness.add_argument("-c", "--config", metavar="FILE", help="the witness's own config")
    witness.set_defaults(run=_serve)
    sub = witness.add_subparsers(dest="witness_command", required=False, metavar="COMMAND")
    keygen = sub.add_parser(
        "keygen", help="make the witness key if absent; print its public verifier key"
    )
    keygen.add_argument("-c", "--config", required=True, metavar="FILE")
    keygen.set_defaults(run=_keygen)
