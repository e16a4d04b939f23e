"""Portal accounts: invite, enroll, log in, change a passphrase, reset TOTP, passkeys.

Rules this module keeps:
1. Only contacts marked `portal: true` have accounts; their email is the login name.
2. An invitation (`invite`) is refused, in one line, for an unknown contact, one not marked
   portal, or one already enrolled (enrolling again would make a new key, and items sealed
   to the old one would be lost to them).
3. Enrollment (`begin`, then `enroll`) uses the link once. It needs a strong passphrase and
   a code from the new TOTP secret; it stores the identity only wrapped with the passphrase
   (twice: an age file for `age -d`, and the login wrapping; wrapping.py rules 1 and 5),
   an argon2id hash of the passphrase, the TOTP secret, and SHA-256 hashes of 10 one-time
   recovery codes, then writes the public key to the contact's `age_recipient_file`
   (0600, like every file the daemon's user makes), and the contact's custody key (derived
   from the identity, proxy.access.keys) beside it (`custody_key_file`). Each is written
   whole or not at all (a temporary file renamed over it, `proxy.disk.replace_file`), the
   custody key first: the running daemon sees them within seconds (proxy.contact_keys),
   seals new items to the key and accepts the custody records it signs. If that
   file already holds a key, only the matching identity may be uploaded: a new key would
   leave items already sealed to the old one unreadable.
4. A login (`login`) checks, in order: the throttle (`proxy.portal.throttle`, per account
   and per address), the passphrase (argon2id; a dummy verification for an unknown email),
   the second factor: the TOTP code (each step once, the last one used persisted) or, if
   the contact has added one, a passkey (`proxy.portal.passkeys`; its sign counter
   persisted). Every failure is the same `LoginRefused`, counted by the same throttle,
   after about the same work. Success unwraps the identity in memory from the login
   wrapping (an account made before it had one opens its age file once and gets one); a
   passphrase change rewrites both wrappings. The passphrase is always needed: it
   unwraps the identity; a passkey only replaces the code.
5. Write order, so a crash never leaves a key without its account: the invitation is
   consumed first (single use even across a crash), then the wrapped identity, the
   account record, and last the public key file; a login rewrites a missing key file.
6. Nothing here logs anything, and no exception carries a secret (`proxy.portal.refusals`).
7. One step at a time: every public method that writes holds one lock, so two requests at
   once (the web layer runs these on worker threads) cannot both use one TOTP step or
   passkey counter, or lose a failure count. Within one process only: the portal is one
   process. `passkeys_of` only reads (a record is replaced whole, store.py rule 2), so
   the web layer may call it without waiting for an argon2id verification.
8. Passkeys are optional and never the only second factor: TOTP stays set up (so the
   portal works with JavaScript off). Adding (`add_passkey`) and removing
   (`remove_passkey`) one takes the passphrase, checked and throttled as at login; a
   refusal of it is `LoginRefused`. At most `passkeys.MOST`. The account's WebAuthn user
   handle is random (`passkey_user`), made with the first registration options.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

import argon2

from proxy.config import Config, Contact
from proxy.config.model import Portal
from proxy.portal import invites, keyfiles, passkeys, recovery, throttle, totp, wrapping
from proxy.portal.passphrases import Passphrases, require_strong
from proxy.portal.refusals import EnrollProblem, InviteRefused, LoginRefused, PortalProblem
from proxy.portal.store import Store, record_name

_INVITES = "invites.json"
_THROTTLE = "throttle.json"
P = ParamSpec("P")
R = TypeVar("R")


def _now() -> datetime:
    return datetime.now(UTC)


def _locked(method: Callable[Concatenate[Accounts, P], R]) -> Callable[Concatenate[Accounts, P], R]:
    """The method, run holding the accounts' lock (rule 7)."""

    @functools.wraps(method)
    def locked(self: Accounts, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


@dataclass(frozen=True, slots=True, kw_only=True)
class TotpSetup:
    """A new TOTP secret and the ways to show it to the contact (once)."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)
    qr_svg: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrolled:
    """A finished enrollment: the recovery codes are shown once, then only hashes remain."""

    contact: str
    recipient: str
    recovery_codes: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlocked:
    """A logged-in contact and their identity, in memory only."""

    contact: str
    recipient: str
    identity: Any = field(repr=False)


class Accounts:
    """The portal's accounts, kept under `portal.state_dir`."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = _now,
        hasher: argon2.PasswordHasher | None = None,
    ) -> None:
        if config.portal is None:
            raise PortalProblem("the config has no portal: section")
        self.settings: Portal = config.portal
        self._contacts = {c.name.casefold(): c for c in config.contacts}
        self._logins = {(c.email or "").casefold(): c for c in config.contacts if c.portal}
        self._store = Store(config.portal.state_dir)
        self._clock = clock
        self._passphrases = Passphrases(hasher)
        self.party = passkeys.relying_party(config.portal.public_url)
        self._lock = threading.RLock()  # rule 7

    # Invitations (rule 2)

    @_locked
    def invite(self, contact_name: str) -> str:
        """A one-time enrollment link for the contact named `contact_name`."""
        contact = self._contacts.get(" ".join(contact_name.split()).casefold())
        if contact is None:
            raise PortalProblem(f"no contact named {contact_name!r} in the config")
        if not contact.portal:
            raise PortalProblem(
                f"{contact.name!r} is not a portal contact: add `portal: true` (with email "
                "and age_recipient_file) to their entry in the config"
            )
        if self._account(contact) is not None:
            raise PortalProblem(
                f"{contact.name!r} has already enrolled; they log in with their email"
            )
        token = invites.new_token()
        live = self._invitations()
        live[record_name(contact.name)] = invites.invitation(contact.name, token, self._clock())
        self._save_invitations(live)
        return invites.link(self.settings.public_url, token)

    @_locked
    def begin(self, token: str) -> str:
        """The name of the contact a live link is for; InviteRefused otherwise."""
        return self._invited(token)[1].name

    # Enrollment (rule 3)

    def totp_setup(self, contact_name: str) -> TotpSetup:
        """A new TOTP secret for `contact_name`, with its otpauth:// URI and QR code."""
        contact = self._contacts[contact_name.casefold()]
        secret = totp.new_secret()
        uri = totp.provisioning_uri(secret, contact.email or contact.name)
        return TotpSetup(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri))

    @_locked
    def enroll(
        self,
        token: str,
        passphrase: str,
        totp_code: str,
        totp_secret: str,
        *,
        identity_file: bytes | None = None,
    ) -> Enrolled:
        """Enroll the contact the link is for; `identity_file` is an uploaded keygen file
        (else a new identity is made). EnrollProblem says what to fix; the link stays
        usable until enrollment succeeds."""
        key, contact = self._invited(token)
        require_strong(passphrase, [contact.name, contact.email or "", *contact.name.split()])
        if not totp.well_formed(totp_secret):
            raise EnrollProblem("the authenticator secret is not one the portal made: start again")
        step = totp.check(totp_secret, totp_code, self._clock(), after_step=-1)
        if step is None:
            raise EnrollProblem(
                "that code does not match: check the phone's time and enter the current code"
            )
        identity = (
            wrapping.generate() if identity_file is None else wrapping.parse_upload(identity_file)
        )
        recipient = str(identity.to_public())
        existing = keyfiles.recipient_in_file(contact)
        if existing is not None and existing != recipient:
            raise EnrollProblem(
                "a public key is already set for you: upload the identity that matches it "
                "(made with `nocontact contact keygen`), so items sealed to it stay yours"
            )
        wrapped = wrapping.wrap(identity, passphrase)
        codes = tuple(recovery.new_code() for _ in range(recovery.CODES))
        live = self._invitations()
        live.pop(key, None)
        self._save_invitations(live)  # rule 5: single use, even if what follows fails
        name = record_name(contact.name)
        self._store.write_bytes(f"accounts/{name}.age", wrapped)
        self._store.write(f"accounts/{name}.json", {
            "contact": contact.name,
            "recipient": recipient,
            "passphrase": self._passphrases.hash(passphrase),
            "login_key": self._login_wrapping(contact, identity, passphrase),
            "totp_secret": totp_secret,
            "totp_last_step": step,
            "recovery": [recovery.digest(code) for code in codes],
        })  # fmt: skip
        keyfiles.write_keys(contact, identity)
        return Enrolled(contact=contact.name, recipient=recipient, recovery_codes=codes)

    # Login (rule 4)

    @_locked
    def login(
        self, email: str, passphrase: str, totp_code: str, client_address: str, *,
        passkey: passkeys.Assertion | None = None,
    ) -> Unlocked:  # fmt: skip
        """The contact's identity, unwrapped in memory; LoginRefused for any failure. The
        second factor is `passkey` if given (`totp_code` is then not looked at)."""
        contact, record = self._check_passphrase(email, passphrase, client_address)
        if passkey is None:
            step = totp.check(record["totp_secret"], totp_code, self._clock(),
                              after_step=record["totp_last_step"])  # fmt: skip
            if step is None:
                self._failed(contact, client_address)
            record["totp_last_step"] = step
        else:
            listed = passkeys.listed(record)
            used = passkeys.asserted(self.party, passkey, passkeys=listed,
                                     user_handle=str(record.get("passkey_user", "")))  # fmt: skip
            if used is None:
                self._failed(contact, client_address)
            record["passkeys"] = passkeys.stored(listed, used)  # the counter (rule 4)
        self._save_account(contact, record)
        identity = self._unwrap(contact, record, passphrase)
        self._succeeded(contact)
        recipient = str(identity.to_public())
        if (
            keyfiles.recipient_in_file(contact) is None
            or not keyfiles.custody_key_file(contact).exists()
        ):
            keyfiles.write_keys(contact, identity)  # rule 5
        return Unlocked(contact=contact.name, recipient=recipient, identity=identity)

    @_locked
    def change_passphrase(
        self, email: str, passphrase: str, totp_code: str, *, new_passphrase: str,
        client_address: str,
    ) -> None:  # fmt: skip
        """Rewrap the identity with `new_passphrase`, after a full login with the old one."""
        contact = self._logins.get(email.strip().casefold())
        require_strong(new_passphrase, [email, *(contact.name.split() if contact else [])])
        unlocked = self.login(email, passphrase, totp_code, client_address)
        contact = self._contacts[unlocked.contact.casefold()]
        name = record_name(contact.name)
        self._store.write_bytes(f"accounts/{name}.age", wrapping.wrap(unlocked.identity,
                                                                     new_passphrase))  # fmt: skip
        record = self._account(contact) or {}
        record["passphrase"] = self._passphrases.hash(new_passphrase)
        record["login_key"] = self._login_wrapping(contact, unlocked.identity, new_passphrase)
        self._save_account(contact, record)

    @_locked
    def reset_totp(
        self, email: str, passphrase: str, *, recovery_code: str, new_secret: str,
        new_code: str, client_address: str,
    ) -> int:  # fmt: skip
        """Replace a lost authenticator: the passphrase and one recovery code (consumed)
        prove who it is, a code from `new_secret` confirms the new one. Returns how many
        recovery codes are left."""
        contact, record = self._check_passphrase(email, passphrase, client_address)
        wanted = recovery.digest(recovery.normal(recovery_code))
        stored: list[str] = list(record.get("recovery", []))
        found = [code for code in stored if hmac.compare_digest(code, wanted)]
        if not found:
            self._failed(contact, client_address)
        step = totp.check(new_secret, new_code, self._clock(), after_step=-1)
        if not totp.well_formed(new_secret) or step is None:
            raise EnrollProblem(
                "that code does not match the new secret: check the phone's time and enter "
                "the current code (your recovery code was not used)"
            )
        stored.remove(found[0])
        record.update(recovery=stored, totp_secret=new_secret, totp_last_step=step)
        self._save_account(contact, record)
        self._succeeded(contact)
        return len(stored)

    # Passkeys (rule 8)

    def passkeys_of(self, contact_name: str) -> list[passkeys.Passkey]:
        """The contact's passkeys, oldest first (a read only: no lock, rule 7)."""
        contact = self._contacts.get(contact_name.casefold())
        return passkeys.listed((self._account(contact) if contact else None) or {})

    @_locked
    def passkey_options(self, contact_name: str, challenge: bytes) -> str:
        """Options for registering a new passkey of the contact (JSON for the browser)."""
        contact = self._contacts[contact_name.casefold()]
        record = self._account(contact)
        if record is None:  # a session is only ever opened for an account
            raise PortalProblem(f"{contact.name!r} has no portal account")
        handle = record.get("passkey_user")
        if not isinstance(handle, str):
            record["passkey_user"] = handle = passkeys.new_user_handle()
            self._save_account(contact, record)
        return passkeys.registration_options(
            self.party, user_handle=handle, login=contact.email or contact.name,
            existing=passkeys.listed(record), challenge=challenge,
        )  # fmt: skip

    @_locked
    def add_passkey(
        self, email: str, passphrase: str, *, name: str, response: str,
        challenge: bytes | None, client_address: str,
    ) -> passkeys.Passkey:  # fmt: skip
        """Add the passkey a browser registered with `challenge`, after the passphrase;
        EnrollProblem says why a passkey was not added."""
        contact, record = self._check_passphrase(email, passphrase, client_address)
        listed, name = passkeys.listed(record), passkeys.clean_name(name)
        if len(listed) >= passkeys.MOST:
            raise EnrollProblem(f"you have {passkeys.MOST} passkeys: remove one first")
        if not name:
            raise EnrollProblem("give the passkey a name, such as the device it is on")
        added = passkeys.registered(self.party, response, challenge=challenge, name=name,
                                    now=self._clock())  # fmt: skip
        if added is None:
            raise EnrollProblem("the browser's passkey could not be checked: nothing was "
                                "added; try again")  # fmt: skip
        if any(p.credential_id == added.credential_id for p in listed):
            raise EnrollProblem("that passkey is added already")
        record["passkeys"] = [p.to_json() for p in (*listed, added)]
        self._save_account(contact, record)
        return added

    @_locked
    def remove_passkey(
        self, email: str, passphrase: str, *, credential_id: str, client_address: str
    ) -> passkeys.Passkey:
        """Remove one of the contact's passkeys, after the passphrase; the one removed."""
        contact, record = self._check_passphrase(email, passphrase, client_address)
        listed = passkeys.listed(record)
        gone = [p for p in listed if p.credential_id == credential_id]
        if not gone:
            raise EnrollProblem("that passkey is not one of yours: reload the page")
        record["passkeys"] = [p.to_json() for p in listed if p not in gone]
        self._save_account(contact, record)
        return gone[0]

    # The steps

    def _login_wrapping(self, contact: Contact, identity: Any, passphrase: str) -> dict[str, str]:
        """The identity wrapped for login (wrapping.py rule 5)."""
        return wrapping.wrap_for_login(identity, passphrase, contact.name,
                                       derive=self._passphrases.derive_key)  # fmt: skip

    def _unwrap(self, contact: Contact, record: dict[str, Any], passphrase: str) -> Any:
        """The identity, from the login wrapping; an account enrolled before there was one
        opens its age file (scrypt: slow) once, and gets one."""
        identity = wrapping.unwrap_for_login(record.get("login_key"), passphrase, contact.name,
                                             derive=self._passphrases.derive_key)  # fmt: skip
        if identity is None:
            stored = self._store.read_bytes(f"accounts/{record_name(contact.name)}.age")
            identity = wrapping.unwrap(stored or b"", passphrase)
            if identity is None:  # the hash and the wrappings disagree: a damaged state dir
                raise PortalProblem(f"the stored key of {contact.name!r} does not open: restore it")
            record["login_key"] = self._login_wrapping(contact, identity, passphrase)
            self._save_account(contact, record)
        return identity

    def _check_passphrase(
        self, email: str, passphrase: str, client_address: str
    ) -> tuple[Contact, dict[str, Any]]:
        """The contact and account record, if not throttled and the passphrase is right."""
        now = self._clock()
        contact = self._logins.get(email.strip().casefold())
        record = self._account(contact) if contact is not None else None
        failures = self._throttle()
        waits = [throttle.wait(failures.get(_address_key(client_address)), now)]
        if contact is not None:
            waits.append(throttle.wait(failures.get(_account_key(contact)), now))
        if max(waits) or contact is None or record is None:
            self._passphrases.verify_nothing(passphrase)
            if not max(waits):
                self._failed(contact, client_address)
            raise LoginRefused
        if not self._passphrases.verify(record["passphrase"], passphrase):
            self._failed(contact, client_address)
        return contact, record

    def _failed(self, contact: Contact | None, client_address: str) -> NoReturn:
        """Count a failure against the address (and the account, if any); LoginRefused."""
        now = self._clock()
        failures = self._throttle()
        keys = [_address_key(client_address)]
        keys += [_account_key(contact)] if contact is not None else []
        for key in keys:
            failures[key] = throttle.failed(failures.get(key), now)
        self._save_throttle(failures, now)
        raise LoginRefused

    def _succeeded(self, contact: Contact) -> None:
        failures = self._throttle()
        if failures.pop(_account_key(contact), None) is not None:
            self._save_throttle(failures, self._clock())

    def _invited(self, token: str) -> tuple[str, Contact]:
        now = self._clock()
        live = self._invitations()
        key = invites.match(live, token, now)
        contact = self._contacts.get(live[key].contact.casefold()) if key is not None else None
        if key is None or contact is None or not contact.portal or self._account(contact):
            raise InviteRefused
        return key, contact

    # The records

    def _account(self, contact: Contact) -> dict[str, Any] | None:
        return self._store.read(f"accounts/{record_name(contact.name)}.json")

    def _save_account(self, contact: Contact, record: dict[str, Any]) -> None:
        self._store.write(f"accounts/{record_name(contact.name)}.json", record)

    def _invitations(self) -> dict[str, invites.Invitation]:
        found = (self._store.read(_INVITES) or {}).items()
        parsed = {key: invites.Invitation.from_json(value) for key, value in found}
        return {key: value for key, value in parsed.items() if value is not None}

    def _save_invitations(self, live: dict[str, invites.Invitation]) -> None:
        now = self._clock()
        kept = {key: value.to_json() for key, value in live.items() if value.expires > now}
        self._store.write(_INVITES, kept)

    def _throttle(self) -> dict[str, throttle.Failures]:
        found = (self._store.read(_THROTTLE) or {}).items()
        parsed = {key: throttle.Failures.from_json(value) for key, value in found}
        return {key: value for key, value in parsed.items() if value is not None}

    def _save_throttle(self, failures: dict[str, throttle.Failures], now: datetime) -> None:
        kept = {k: v.to_json() for k, v in failures.items() if not throttle.forgotten(v, now)}
        self._store.write(_THROTTLE, kept)


def _account_key(contact: Contact) -> str:
    return "account:" + record_name(contact.name)


def _address_key(client_address: str) -> str:
    return "address:" + hashlib.sha256(client_address.encode("utf-8", "replace")).hexdigest()[:32]
