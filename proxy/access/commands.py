"""`nocontact contact ...`: the trusted contact's commands.

Rules this module keeps:
1. Thin, like the rest of the CLI: arguments in, the access library called, one result out.
2. Custody first: what a command shows or writes leaves only after its custody record is
   durable in the archive's log. If that fails, nothing is shown (exit 1).
3. A wrong key, a wrong passphrase, a corrupted item or a tampered archive is one clear
   line and exit 1; never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy.access.keys import IdentityProblem, custody_public_key, keygen, load_identity
from proxy.access.reading import AccessProblem, Selection, open_archive
from proxy.access.viewing import held_item, held_list
from proxy.archive.custody_keys import key_fingerprint
from proxy.archive.seal import fingerprint
from proxy.custody import CustodyProblem
from proxy.errors import InputError
from proxy.progress import ProgressBar

if TYPE_CHECKING:
    from proxy.access.bundle import ExportRequest

EXIT_OK, EXIT_FAILED = 0, 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date (YYYY-MM-DD)") from None


def _witness_key(text: str) -> str:
    from proxy.witness.cosignature import CosignatureError, WitnessKey  # noqa: PLC0415

    try:
        return WitnessKey.decode(text).encode()
    except CosignatureError as error:
        raise argparse.ArgumentTypeError(f"not a witness key: {error}") from None


def _zone(name: str | None) -> tzinfo:
    if not name:
        zone = datetime.now().astimezone().tzinfo
        return zone if zone is not None else UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"--timezone: unknown time zone '{name}' (e.g. Europe/London)") from None


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (AccessProblem, IdentityProblem, CustodyProblem) as problem:
            print(f"nocontact: {problem}", file=sys.stderr)
            return EXIT_FAILED

    return guarded


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(since=args.since, until=args.until, person=args.person)


def _public_keys(recipient: str, custody_key: str) -> None:
    print("public keys, for the survivor's config (contacts: - age_recipient: ... and "
          "custody_key: ...):")  # fmt: skip
    print(recipient)
    print(f"custody key: {custody_key}")
    print(f"fingerprint: {fingerprint(recipient)}")
    print(f"custody key fingerprint: {key_fingerprint(custody_key)}")


def _keygen(args: argparse.Namespace) -> int:
    recipient, custody_key = keygen(Path(args.out), protect=args.passphrase)
    print(f"identity written to {args.out} (keep it private; it opens the held items)")
    _public_keys(recipient, custody_key)
    return EXIT_OK


def _pubkey(args: argparse.Namespace) -> int:
    identity, recipient = load_identity(Path(args.identity))
    _public_keys(recipient, custody_public_key(identity))
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    identity, _ = load_identity(Path(args.identity))
    zone = _zone(args.timezone)
    listing = held_list(Path(args.archive), identity, _selection(args))  # custody first
    print(f"{'SEQ':>6}  {'RECEIVED (UTC)':<20} {'LOCAL':<25} {'CHANNEL':<7} "
          f"{'SENDER':<32} {'SUBJECT / FIRST LINE':<40} RULE")  # fmt: skip
    for row in listing.rows:
        moment = row.received_at
        print(f"{row.sequence:>6}  {moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}  "
              f"{moment.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}".ljust(56)
              + f" {row.channel:<7} {row.sender[:32]:<32} "
              f"{row.first_line[:40]:<40} {row.rule}")  # fmt: skip
    if listing.unreadable:
        print(f"({listing.unreadable} items are sealed to other contacts only)")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    identity, _ = load_identity(Path(args.identity))
    text = held_item(Path(args.archive), identity, args.seq)  # custody first
    print(f"Item {args.seq} — derived rendering; the original is kept byte for byte")
    print(text)
    return EXIT_OK


def _request(args: argparse.Namespace, contact: str) -> ExportRequest:
    config_sha256 = no_contact_since = None
    witness_keys = list(getattr(args, "witness_key", None) or [])
    if args.config is not None:
        from proxy.config import load_config  # noqa: PLC0415 - only when a config is given

        config_sha256 = hashlib.sha256(Path(args.config).read_bytes()).hexdigest()
        config = load_config(args.config)
        no_contact_since = config.no_contact_since
        witness_keys += [witness.key for witness in config.witnesses]
    from proxy.access.bundle import ExportRequest  # noqa: PLC0415 - see _produce

    return ExportRequest(
        out=Path(args.out), reason=getattr(args, "reason", "") or "", contact=contact,
        selection=_selection(args), no_contact_since=args.no_contact_since or no_contact_since,
        config_sha256=config_sha256, timezone=_zone(args.timezone),
        witness_keys=tuple(dict.fromkeys(witness_keys)),
    )  # fmt: skip


def _produce(args: argparse.Namespace, *, action: str) -> int:
    identity, recipient = load_identity(Path(args.identity))
    archive = open_archive(args.archive, identity)
    request = _request(args, fingerprint(recipient))
    bar = ProgressBar(f"{action}: items", archive.covered)
    # The PDF and chart libraries load only for the commands that write them.
    from proxy.access import bundle  # noqa: PLC0415

    write = bundle.export if action == "export" else bundle.report
    try:
        count = write(archive, request, bar.advance)
    finally:
        bar.close()
    print(f"{action} written: {args.out} ({count} items; custody recorded)")
    return EXIT_OK


def add_contact_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    contact = commands.add_parser("contact", help="the trusted contact's tools (decrypt, export)")
    sub = contact.add_subparsers(dest="contact_command", required=True, metavar="COMMAND")

    keys = sub.add_parser("keygen", help="make an age identity for a contact")
    keys.add_argument("--out", required=True, metavar="FILE")
    keys.add_argument("--passphrase", action="store_true", help="protect it with a passphrase")
    keys.set_defaults(run=_guarded(_keygen))
    pubkey = sub.add_parser("pubkey", help="print an identity's public keys again")
    pubkey.add_argument("--identity", required=True, metavar="FILE")
    pubkey.set_defaults(run=_guarded(_pubkey))

    def reading(
        name: str, text: str, run: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--archive", required=True, metavar="DIR")
        parser.add_argument("--identity", required=True, metavar="FILE")
        parser.set_defaults(run=_guarded(run))
        return parser

    def selecting(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--since", type=_day, metavar="YYYY-MM-DD")
        parser.add_argument("--until", type=_day, metavar="YYYY-MM-DD")
        parser.add_argument("--person", metavar="ID", help="the blocked person's id")
        parser.add_argument(
            "--timezone", metavar="ZONE", help="local zone (default: this machine's)"
        )

    listing = reading("list", "list held items", _list)
    selecting(listing)
    show = reading("show", "show one held item as safe text", _show)
    show.add_argument("seq", type=int, metavar="SEQ")
    for name, text in (("export", "write the evidence bundle (zip)"),
                       ("report", "write the pattern report (PDF)")):  # fmt: skip
        parser = reading(name, text, functools.partial(_produce, action=name))
        selecting(parser)
        parser.add_argument("--out", required=True, metavar="FILE")
        parser.add_argument("--reason", required=name == "export", metavar="TEXT",
                            help="why (recorded in the custody log)")  # fmt: skip
        parser.add_argument("--config", metavar="FILE", help="the survivor's config (its hash "
                            "and no_contact_since go into the bundle)")  # fmt: skip
        parser.add_argument("--no-contact-since", type=_day, metavar="YYYY-MM-DD")
        if name == "export":
            export = parser
    export.add_argument("--witness-key", action="append", type=_witness_key, metavar="KEY",
                        help="a witness's verifier key (name+keyid+base64): its cosignatures"
                        " in the bundle's proofs are checked (repeatable; a --config's"
                        " witnesses are used too)")  # fmt: skip
