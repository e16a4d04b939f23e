"""`nocontact verify --from` and `nocontact restore`: the replica from the command line.

Rules this module keeps:
1. Thin: parse, call check.py / restore.py, print. One line per problem, naming the
   object, then one verdict line: `replica OK, root <hex>` (no count of entries, as
   `verify` prints none) or `replica BAD`, exit 0 or 1.
2. A replica that cannot be read at all (unreachable, no bucket, refused credentials) or
   bad input is one line on stderr and exit 2 (cli.py's rule 2); never a traceback.
3. `restore` restores only a replica that verifies, and prints where it wrote and the root.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from proxy.archive.note import NoteError, Verifier
from proxy.errors import InputError
from proxy.replica.check import Problem, Replica, ReplicaReport, check_replica
from proxy.replica.local import check_local
from proxy.replica.restore import restore
from proxy.replica.sources import open_replica

EXIT_OK = 0
EXIT_CHECK_FAILED = 1


def add_source_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """--from and how to reach it (shared by verify and restore)."""
    parser.add_argument(
        "--from", dest="source", required=required, metavar="URL",
        help="the replica: s3://BUCKET/PREFIX, or https://HOST/PREFIX (any static web "
        "server holding a copy of the bucket)",
    )  # fmt: skip
    parser.add_argument("--endpoint", metavar="URL", help="the S3 endpoint (default: AWS)")
    parser.add_argument(
        "--credentials", metavar="FILE", help="an AWS credentials file, 0600 ([default])"
    )
    parser.add_argument("--region", default="us-east-1", help="the S3 region")


def pinned_key(text: str | None) -> Verifier | None:
    if text is None:
        return None
    try:
        return Verifier.decode(text)
    except NoteError as error:
        raise InputError(f"--key: {error}") from error


def _checked(args: argparse.Namespace) -> tuple[ReplicaReport, Replica]:
    replica = open_replica(
        args.source, endpoint=args.endpoint, credentials=args.credentials, region=args.region
    )
    return check_replica(replica, pinned=pinned_key(args.key)), replica


def _show(problems: list[Problem]) -> None:
    for problem in problems:
        print(problem)


def verify_replica(args: argparse.Namespace) -> int:
    """`nocontact verify --from URL [--archive DIR] [--key KEY]` (rule 1)."""
    report, _ = _checked(args)
    problems = list(report.problems)
    if report.ok and args.archive is not None:
        problems += check_local(report, Path(args.archive))
    _show(problems)
    if problems or report.checkpoint is None:
        print("replica BAD")
        return EXIT_CHECK_FAILED
    print(f"replica OK, root {report.checkpoint.root.hex()}")
    if args.archive is not None:
        print(f"archive {args.archive} OK: one log with the replica (the smaller is a prefix)")
    return EXIT_OK


def _restore(args: argparse.Namespace) -> int:
    report, replica = _checked(args)
    if not report.ok or report.checkpoint is None:
        _show(report.problems)
        print("restore REFUSED: the replica does not verify; nothing was written")
        return EXIT_CHECK_FAILED
    restore(replica, report, Path(args.to))
    print(f"restored to {args.to}, root {report.checkpoint.root.hex()} (no signing.key: "
          "start a new archive to go on holding)")  # fmt: skip
    return EXIT_OK


def add_restore_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "restore", help="rebuild a lost archive directory from its replica (verified first)"
    )
    add_source_arguments(parser, required=True)
    parser.add_argument("--to", required=True, metavar="DIR", help="a new or empty directory")
    parser.add_argument(
        "--key", metavar="VERIFIER", help="the archive's signing.pub you expect (pins it)"
    )
    parser.set_defaults(run=_restore)
