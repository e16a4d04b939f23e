"""The `nocontact` command line.

Rules this module keeps:
1. Thin: parse arguments, call the library, print one result. No policy lives here.
2. Every failure is one clear line on stderr and a documented exit code, never a
   traceback: 0 success, 1 a check failed, 2 bad config or input, 70 internal error.
3. Nothing printed reveals anything about a held message beyond what the user asked of a
   sample they supplied themselves (test-rules).
4. test-rules prints `deliver`, or `hold RULE KIND TIER`, where TIER is `digest` or the
   reasons the sample's text gives (`urgent:threat,urgent:weapon`): what an alert would
   say of it. Reasons that need the history of held items (a burst, a new identity) are
   never shown: one sample has no history.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from proxy import __version__, logs
from proxy.access.commands import add_contact_commands
from proxy.alerts.commands import add_alert_commands
from proxy.archive import VerifyFailure, continuation, verify_archive
from proxy.archive.note import NoteError, Verifier
from proxy.config import Config, json_schema, load_config
from proxy.doctor.commands import add_doctor_commands
from proxy.errors import ConfigError, InputError, NocontactError
from proxy.message import Decision, InboundMessage
from proxy.normalize import normalize_email, normalize_sms
from proxy.portal.commands import add_portal_commands
from proxy.replica.commands import add_restore_command, add_source_arguments, verify_replica
from proxy.replica.replicate_command import add_replicate_commands
from proxy.rules import compile_rules, decide
from proxy.witness.commands import add_witness_commands

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 70

_MAX_SAMPLE_BYTES = 64 * 1024 * 1024


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(
        f"config OK: {args.config} ({_count(len(config.people), 'person', 'people')} blocked, "
        f"{_count(len(config.intermediaries), 'intermediary', 'intermediaries')}, "
        f"{_count(len(config.contacts), 'contact', 'contacts')})"
    )
    return EXIT_OK


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _schema(_args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=False))
    return EXIT_OK


def _test_rules(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    message = _sample(args, config)
    print(_verdict(decide(message, compile_rules(config))))
    return EXIT_OK


def _sample(args: argparse.Namespace, config: Config) -> InboundMessage:
    now = datetime.now(UTC)
    if args.email is not None:
        raw = _read_sample(Path(args.email))
        return normalize_email(
            raw, envelope_sender="", received_at=now, default_region=config.default_region
        )
    sender, text = args.sms
    return normalize_sms(
        sender=sender,
        recipient="",
        text=text,
        raw=json.dumps({"From": sender, "Body": text}).encode(),
        received_at=now,
        default_region=config.default_region,
    )


def _read_sample(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_SAMPLE_BYTES:
            raise InputError(f"{path}: larger than 64 MiB; not a sample message")
        return path.read_bytes()
    except FileNotFoundError as error:
        raise InputError(f"{path}: no such file") from error
    except IsADirectoryError as error:
        raise InputError(f"{path}: is a directory, expected a .eml file") from error
    except OSError as error:
        raise InputError(f"{path}: cannot read it ({error.strerror})") from error


def _verify(args: argparse.Namespace) -> int:
    if args.source is not None:  # the replica (and, with --archive, the local archive too)
        if args.checkpoint:
            raise InputError("--checkpoint goes with --archive alone, not with --from")
        return verify_replica(args)
    if args.archive is None:
        raise InputError("verify needs --archive DIR or --from URL")
    pinned = None
    if args.key is not None:
        try:
            pinned = Verifier.decode(args.key)
        except NoteError as error:
            raise InputError(f"--key: {error}") from error
    kept = [(name, _kept(name)) for name in args.checkpoint or ()]  # bad input before the work
    try:
        report = verify_archive(args.archive, pinned=pinned)
    except VerifyFailure as failure:
        print(f"archive BAD: {failure}")
        return EXIT_CHECK_FAILED
    proofs = []
    for name, given in kept:
        try:
            seen = continuation.checked(given, report.verifier, report.checkpoint.origin)
            proofs.append((name, seen.size, continuation.continues(seen, report)))
        except VerifyFailure as failure:
            print(f"archive BAD: checkpoint {name}: {failure}")
            return EXIT_CHECK_FAILED
    # No count of entries: it would tell whoever runs it how many items were held.
    print(f"archive OK, root {report.checkpoint.root.hex()}")
    for name, size, proof in proofs:
        empty = "the same tree" if size == report.checkpoint.size else "from the empty tree"
        shown = " ".join(node.hex() for node in proof) or f"empty ({empty})"
        print(f"checkpoint {name} OK, consistency proof {shown}")
    return EXIT_OK


def _kept(name: str) -> continuation.Kept:
    """The checkpoint note in the file `name` (a contact's copy), or one clear line."""
    try:
        with Path(name).open("rb") as handle:
            data = handle.read(continuation.MOST_BYTES + 1)
    except OSError as error:
        raise InputError(f"--checkpoint {name}: cannot read it ({error.strerror})") from None
    try:
        return continuation.kept(data)
    except continuation.NotACheckpoint as problem:
        raise InputError(f"--checkpoint {name}: {problem}") from None


def _run(args: argparse.Namespace) -> int:
    from proxy import daemon  # noqa: PLC0415 - the channels' libraries load only to run them

    logs.configure(level=args.log_level, background=True)
    try:
        return daemon.run(args.config)
    finally:
        logs.drain()  # every line written before any last word on stderr


def _imap_sweep(args: argparse.Namespace) -> int:
    from proxy import daemon  # noqa: PLC0415 - as above

    logs.configure(level="warning")
    return daemon.sweep(args.config)


def _verdict(decision: Decision) -> str:
    """`deliver`, or `hold RULE KIND TIER`: the tier as `digest` or the reasons found in
    the text (`urgent:threat,elevated:children`). A burst or a new identity needs the
    history of held items, which one sample does not have: never shown here."""
    if not decision.held:
        return "deliver"
    kind = decision.kind.value if decision.kind is not None else "direct"
    return f"hold {decision.rule_id} {kind} {decision.assessment}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nocontact",
        description="Holds what blocked people send, or say about themselves, sealed as "
        "evidence; lets everything else through.",
    )
    parser.add_argument("--version", action="version", version=f"nocontact {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("-c", "--config", required=True, metavar="FILE")
    check.set_defaults(run=_check_config)

    schema = commands.add_parser("schema", help="print a JSON Schema of the config")
    schema.set_defaults(run=_schema)

    test = commands.add_parser(
        "test-rules", help="show what the rules decide for a sample you wrote yourself"
    )
    test.add_argument("-c", "--config", required=True, metavar="FILE")
    sample = test.add_mutually_exclusive_group(required=True)
    sample.add_argument("--email", metavar="FILE.eml", help="a message file (RFC 5322)")
    sample.add_argument("--sms", nargs=2, metavar=("FROM", "TEXT"), help="a text message")
    test.set_defaults(run=_test_rules)

    run = commands.add_parser("run", help="run the daemon (every configured channel)")
    run.add_argument("-c", "--config", required=True, metavar="FILE")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(run=_run)

    imap = commands.add_parser("imap", help="IMAP accounts")
    imap_commands = imap.add_subparsers(dest="imap_command", required=True, metavar="COMMAND")
    sweep = imap_commands.add_parser(
        "sweep", help="look through every watched folder once (the daemon does this at start)"
    )
    sweep.add_argument("-c", "--config", required=True, metavar="FILE")
    sweep.set_defaults(run=_imap_sweep)

    verify = commands.add_parser(
        "verify", help="check an archive for tampering (needs no decryption key)"
    )
    verify.add_argument(
        "--archive", metavar="DIR",
        help="the archive directory; with --from, it must be one log with the replica",
    )  # fmt: skip
    add_source_arguments(verify, required=False)
    verify.add_argument(
        "--key", metavar="VERIFIER", help="the archive's signing.pub you expect (pins it)"
    )
    verify.add_argument(
        "--checkpoint", action="append", metavar="FILE",
        help="a signed checkpoint kept off the server (an alert's, the portal's): the "
        "archive must continue it, else it was rolled back or rewritten (repeatable)",
    )  # fmt: skip
    verify.set_defaults(run=_verify)
    add_restore_command(commands)
    add_contact_commands(commands)
    add_portal_commands(commands)
    add_alert_commands(commands)
    add_doctor_commands(commands)
    add_witness_commands(commands)
    add_replicate_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see the module rules)."""
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    except NocontactError as error:
        print(f"nocontact: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the last line of defence: never a traceback
        print(
            f"nocontact: internal error ({type(error).__name__}); nothing was changed. "
            "Please report it.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
