"""`nocontact replicate -c FILE [--once]`: the off-site replica of the sealed log.

Rules this module keeps:
1. Thin, like `proxy.cli`: parse, load the config's archive and `replicate:` sections
   (`load_replica_config`: the replicator needs no other section's files), hand over to
   `proxy.replica.process`; every refusal is a `NocontactError` that `proxy.cli.main`
   prints as one line (exit 2).
2. boto3 loads only when the command runs, never for the CLI's other commands.
"""

from __future__ import annotations

import argparse


def _replicate(args: argparse.Namespace) -> int:
    from proxy import logs  # noqa: PLC0415
    from proxy.config import load_replica_config  # noqa: PLC0415
    from proxy.replica import process  # noqa: PLC0415 - boto3 loads only to replicate

    archive, replicate = load_replica_config(args.config)
    if args.once:
        logs.configure(level="warning")
        return process.run(archive, replicate, once=True)
    logs.configure(level="info", background=True)
    try:
        return process.run(archive, replicate, once=False)
    finally:
        logs.drain()


def add_replicate_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `replicate` to the `nocontact` subcommands."""
    replicate = commands.add_parser(
        "replicate",
        help="copy the sealed log's signed checkpoints to the replicate: bucket (S3, Object "
        "Lock), a pass every few seconds until SIGTERM",
    )
    replicate.add_argument("-c", "--config", required=True, metavar="FILE")
    replicate.add_argument(
        "--once", action="store_true", help="one pass, then exit (0: the bucket is up to date)"
    )
    replicate.set_defaults(run=_replicate)
