"""Facts about a config that span entries, checked after each value is known to be valid.

Rules this module keeps:
1. An id, or a contact's name, names one entry only: rule ids and custody records must
   point at exactly one person, intermediary or contact.
2. An address, domain or number belongs to one owner: one person, one intermediary, or the
   allow list. Addresses are compared as mailboxes (`canonical_email`), so case, +tags and
   Gmail's dots cannot hide a clash. A clash is reported at the later entry, naming the
   earlier one, because the survivor must decide which is meant.
3. Files the config names are read relative to the config file's directory. A key file
   must hold exactly one age public key; a private key is refused without echoing it, since
   the daemon must never hold a key that opens the archive.
4. The Config returned holds absolute paths and every contact's `age_recipient`.
5. A file holding a secret (an IMAP password, the Twilio auth token, the STARTTLS key) is
   refused if its group or others may read it: one line naming it and its mode.
6. `tls: none` (a password in the clear) only for an IMAP server on a loopback address.
7. A portal contact (`portal: true`) whose key file does not exist yet has not enrolled: it
   keeps no `age_recipient` and items are sealed to the others; once enrollment writes the
   file, a reload reads it (the daemon watches for it). At least one contact must have a
   key now, or nothing could be sealed. Portal contacts need a `portal` section, and log in
   with distinct emails. A key file removed later reads the same as never written.
8. An enrolled portal contact without a `custody_key` in the config gets the one enrollment
   wrote beside their key file (`custody_key_file`), if it is there; a file there that is
   not one custody key is a problem at `age_recipient_file`, like a bad key file.
9. The `alerts:` section and the contacts' `alerts` are checked by
   `proxy.config.alert_checks` (transports that exist, URL files 0600, URLs apprise can
   send to, a real time zone, never her own mailbox or phone).
10. Each person's `court_order:` is checked by `proxy.config.order_checks` (a relay
   contact that exists and can be told, an order file that exists).
11. The `outbound:` section (the SMTP relay replies to him leave by) is checked by
   `proxy.config.outbound_checks` (TLS off only on loopback, a password file 0600).
12. The `replicate:` section (the off-site replica) is checked by
   `proxy.config.replicate_checks` (http only on loopback, a credentials file 0600).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from proxy.config import values
from proxy.config.alert_checks import check_alerts
from proxy.config.files import absolute, file_problem
from proxy.config.load import Document, Loc, dotted
from proxy.config.model import Channels, Config, Contact, Portal
from proxy.config.order_checks import check_orders
from proxy.config.outbound_checks import check_outbound
from proxy.config.replicate_checks import check_replicate
from proxy.deliver.address import Scheme, parse_destination, parse_listen
from proxy.errors import ConfigProblem
from proxy.identity import canonical_email

_MAX_KEY_FILE_BYTES = 64 * 1024
_NOUNS = {"emails": "address", "domains": "domain", "phones": "number"}


def resolve(document: Document, config: Config) -> tuple[Config, list[ConfigProblem]]:
    """The config with files read and paths made absolute, and what is wrong across entries."""
    ids_name_one = "rule ids must name one entry only"
    problems = [
        *_unique(document, ("people", "id"), [p.id for p in config.people], ids_name_one),
        *_unique(
            document, ("intermediaries", "id"), [i.id for i in config.intermediaries], ids_name_one
        ),
        *_unique(
            document,
            ("contacts", "name"),
            [c.name.casefold() for c in config.contacts],
            "custody records must tell contacts apart",
        ),
        *_one_owner(document, config),
    ]
    contacts: list[Contact] = []
    unenrolled = 0
    for index, contact in enumerate(config.contacts):
        resolved, problem = _read_recipient(document, index, contact)
        contacts.append(resolved)
        problems += [problem] if problem else []
        unenrolled += problem is None and resolved.age_recipient is None and not resolved.demo
    problems += _portal_contacts(document, config, none_enrolled=unenrolled == len(contacts))
    archive = config.archive.model_copy(
        update={"path": absolute(document.directory, config.archive.path)}
    )
    channels, wrong = _resolve_channels(document, config)
    problems += wrong
    portal, wrong = _resolve_portal(document, config.portal)
    problems += wrong
    alerts, wrong = check_alerts(document, config.model_copy(update={"channels": channels}))
    problems += wrong
    people, wrong = check_orders(document, config)
    problems += wrong
    outbound, wrong = check_outbound(document, config.outbound)
    problems += wrong
    replicate, wrong = check_replicate(document, config.replicate)
    problems += wrong
    update = {
        "archive": archive,
        "people": people,
        "contacts": contacts,
        "channels": channels,
        "portal": portal,
        "alerts": alerts,
        "outbound": outbound,
        "replicate": replicate,
    }
    return config.model_copy(update=update), problems


def _portal_contacts(
    document: Document, config: Config, *, none_enrolled: bool
) -> list[ConfigProblem]:
    """Rule 7: someone can open what is sealed now; portal contacts have a portal."""
    problems = []
    if none_enrolled:
        problems.append(document.problem(
            ("contacts",), "no contact has a key yet, so held items could be sealed to no one: "
            "give at least one contact age_recipient or an existing age_recipient_file "
            "(portal contacts get theirs only when they enroll)",
        ))  # fmt: skip
    portal = [(i, c) for i, c in enumerate(config.contacts) if c.portal]
    if portal and config.portal is None:
        index = portal[0][0]
        problems.append(document.problem(
            ("contacts", index, "portal"), "needs a portal: section (where contacts enroll)"
        ))  # fmt: skip
    logins: dict[str, int] = {}
    for index, contact in portal:
        login = (contact.email or "").casefold()
        if login in logins:
            problems.append(document.problem(
                ("contacts", index, "email"), f"already the login of contacts[{logins[login]}]: "
                "each portal contact logs in with their own email",
            ))  # fmt: skip
        logins.setdefault(login, index)
    return problems


def _resolve_portal(
    document: Document, portal: Portal | None
) -> tuple[Portal | None, list[ConfigProblem]]:
    if portal is None:
        return None, []
    key = ("portal",)
    problems: list[ConfigProblem] = []
    try:
        parse_listen(portal.listen)
    except ValueError as error:
        problems.append(document.problem((*key, "listen"), str(error)))
    update: dict[str, object] = {"state_dir": absolute(document.directory, portal.state_dir)}
    problems += _resolve_files(document, key, portal, ("tls_cert_file", "tls_key_file"), update)
    return portal.model_copy(update=update), problems


def _resolve_channels(document: Document, config: Config) -> tuple[Channels, list[ConfigProblem]]:
    """Channel settings checked for meaning, with their paths made absolute."""
    channels, problems = _resolve_imap(document, config.channels)
    channels, wrong = _resolve_sms(document, channels)
    problems += wrong
    smtp = channels.smtp
    if smtp is None:
        return channels, problems
    key = ("channels", "smtp")
    try:
        parse_listen(smtp.listen)
    except ValueError as error:
        problems.append(document.problem((*key, "listen"), str(error)))
    update: dict[str, object] = {}
    problems += _resolve_deliver(document, key, smtp.deliver, update)
    problems += _resolve_files(document, key, smtp, ("tls_cert_file", "tls_key_file"), update)
    channels = channels.model_copy(update={"smtp": smtp.model_copy(update=update)})
    return channels, problems


def _resolve_deliver(
    document: Document, key: Loc, written: str, update: dict[str, object]
) -> list[ConfigProblem]:
    """Check a `deliver` next hop; a relative Maildir path is made absolute in `update`."""
    try:
        destination = parse_destination(written)
    except ValueError as error:
        return [document.problem((*key, "deliver"), str(error))]
    if destination.scheme is Scheme.MAILDIR:
        update["deliver"] = "maildir:" + absolute(document.directory, destination.path)
    return []


# Files holding a secret: refused if anyone but their owner may read them.
_SECRETS = frozenset({"password_file", "auth_token_file", "tls_key_file"})


def _resolve_files(
    document: Document, key: Loc, section: object, names: tuple[str, ...],
    update: dict[str, object],
) -> list[ConfigProblem]:  # fmt: skip
    """Files named by `names` in `section` must exist; their absolute paths go to `update`."""
    problems = []
    for name in names:
        written = getattr(section, name)
        if written is not None:
            path = absolute(document.directory, written)
            problem = file_problem(document, (*key, name), path, secret=name in _SECRETS)
            if problem is not None:
                problems.append(problem)
            update[name] = path
    return problems


def _resolve_imap(document: Document, channels: Channels) -> tuple[Channels, list[ConfigProblem]]:
    imap = channels.imap
    if imap is None:
        return channels, []
    problems: list[ConfigProblem] = []
    accounts = []
    for index, account in enumerate(imap.accounts):
        key = ("channels", "imap", "accounts", index)
        update: dict[str, object] = {}
        problems += _resolve_files(document, key, account, ("password_file", "ca_file"), update)
        if account.tls == "none" and not values.loopback_host(account.host):
            problems.append(document.problem(
                (*key, "tls"), f"none sends the password in the clear: only for a server on "
                f"this machine (127.0.0.1, ::1, localhost), not {account.host}",
            ))  # fmt: skip
        if account.deliver is not None:
            problems += _resolve_deliver(document, key, account.deliver, update)
        accounts.append(account.model_copy(update=update))
    seen: dict[str, int] = {}
    for index, account in enumerate(imap.accounts):
        if account.name in seen:
            message = f"already used by channels.imap.accounts[{seen[account.name]}]"
            problems.append(
                document.problem(("channels", "imap", "accounts", index, "name"), message)
            )
        seen.setdefault(account.name, index)
    resolved = imap.model_copy(
        update={"accounts": accounts, "state_dir": absolute(document.directory, imap.state_dir)}
    )
    return channels.model_copy(update={"imap": resolved}), problems


def _resolve_sms(document: Document, channels: Channels) -> tuple[Channels, list[ConfigProblem]]:
    sms = channels.sms
    if sms is None:
        return channels, []
    key = ("channels", "sms")
    problems: list[ConfigProblem] = []
    try:
        parse_listen(sms.listen)
    except ValueError as error:
        problems.append(document.problem((*key, "listen"), str(error)))
    update: dict[str, object] = {"state_dir": absolute(document.directory, sms.state_dir)}
    problems += _resolve_files(document, key, sms, ("auth_token_file",), update)
    if sms.auth_token_file is None and not os.environ.get("TWILIO_AUTH_TOKEN", "").strip():
        problems.append(
            document.problem(
                key, "no Twilio auth token: give auth_token_file or set TWILIO_AUTH_TOKEN"
            )
        )
    if sms.number == sms.forward_to:
        problems.append(
            document.problem((*key, "forward_to"), "must be the survivor's own phone, "
                             "not the public Twilio number")
        )  # fmt: skip
    return channels.model_copy(update={"sms": sms.model_copy(update=update)}), problems


def _unique(
    document: Document, where: tuple[str, str], keys: list[str], why: str
) -> list[ConfigProblem]:
    section, field = where
    first: dict[str, int] = {}
    problems = []
    for index, key in enumerate(keys):
        if key in first:
            message = f"already used by {section}[{first[key]}]: {why}"
            problems.append(document.problem((section, index, field), message))
        else:
            first[key] = index
    return problems


def _one_owner(document: Document, config: Config) -> Iterator[ConfigProblem]:
    seen: dict[str, Loc] = {}
    for loc, identity in _identities(config):
        canonical = canonical_email(identity) if loc[-2] == "emails" else identity
        key = f"{loc[-2]}:{canonical or identity}"
        if key not in seen:
            seen[key] = loc
            continue
        other = seen[key]
        if other[:-2] == loc[:-2]:
            continue  # listed twice for the same owner: redundant, not contradictory
        yield document.problem(loc, f"also listed at {dotted(other)}; {_why(other, loc)}")


def _identities(config: Config) -> Iterator[tuple[Loc, str]]:
    owners: list[tuple[Loc, object]] = [(("people", i), p) for i, p in enumerate(config.people)]
    owners += [(("intermediaries", i), m) for i, m in enumerate(config.intermediaries)]
    owners.append((("allow",), config.allow))
    for owner_loc, owner in owners:
        for field in ("emails", "domains", "phones"):
            for index, identity in enumerate(getattr(owner, field, [])):
                yield (*owner_loc, field, index), identity


def _why(first: Loc, second: Loc) -> str:
    noun = _NOUNS[str(second[-2])]
    owners = {first[0], second[0]}
    if owners == {"people"}:
        return f"each {noun} belongs to one person only"
    if "allow" in owners and "people" in owners:
        return f"a blocked person's {noun} cannot also be allowed"
    if "allow" in owners:
        return f"an intermediary's {noun} cannot also be allowed"
    return f"list the {noun} under the person or the intermediary, not both"


def _read_recipient(
    document: Document, index: int, contact: Contact
) -> tuple[Contact, ConfigProblem | None]:
    if contact.age_recipient_file is None:
        return contact, None
    path = absolute(document.directory, contact.age_recipient_file)
    if (contact.demo or contact.portal) and not os.path.exists(path):
        # demo: made at run; portal: written at enrollment (rule 7)
        return contact.model_copy(update={"age_recipient_file": path}), None
    try:
        recipient = _recipient_in(path)
        custody = _custody_key_in(custody_key_file(path)) if contact.portal else None
    except _UnusableKeyFileError as error:
        return contact, document.problem(("contacts", index, "age_recipient_file"), str(error))
    update = {"age_recipient": recipient, "age_recipient_file": path}
    if contact.custody_key is None and custody is not None:
        update["custody_key"] = custody  # written at enrollment (rule 8)
    return contact.model_copy(update=update), None


def custody_key_file(recipient_file: str) -> Path:
    """Where a portal contact's custody key is written: beside their age_recipient_file."""
    return Path(recipient_file).with_suffix(".custody")


class _UnusableKeyFileError(Exception):
    """Why a key file cannot be used, in words fit for the error line."""


def _recipient_in(path: str) -> str:
    """The one age public key in the file at `path`; never echoes what the file holds."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(_MAX_KEY_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise _UnusableKeyFileError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise _UnusableKeyFileError(f"is a directory, not a key file: {path}") from None
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not text"
        raise _UnusableKeyFileError(f"cannot read {path}: {reason}") from None
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise _UnusableKeyFileError(f"{path} is too large to be an age public key")
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if any(key.upper().startswith("AGE-SECRET-KEY-") for key in keys):
        raise _UnusableKeyFileError(
            f"{path} holds a private key: give only the public key (age1...), which "
            "'nocontact contact keygen' prints; the daemon must never hold the private key"
        )
    if len(keys) != 1:
        raise _UnusableKeyFileError(
            f"{path} must hold exactly one age public key (age1...), found {len(keys)} lines"
        )
    try:
        return values.age_recipient(keys[0])
    except ValueError as error:
        raise _UnusableKeyFileError(f"{path}: {error}") from None


def _custody_key_in(path: Path) -> str | None:
    """The custody key enrollment wrote at `path`, None if there is none; never echoes
    what the file holds."""
    try:
        with open(path, "rb") as stream:
            raw = stream.read(_MAX_KEY_FILE_BYTES + 1)
        text = raw.decode("ascii")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not text"
        raise _UnusableKeyFileError(f"cannot read {path}: {reason}") from None
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise _UnusableKeyFileError(f"{path} is too large to be a custody key")
    try:
        return values.custody_key(text)
    except ValueError as error:
        raise _UnusableKeyFileError(f"{path}: {error}") from None
