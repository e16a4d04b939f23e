"""Portal accounts: invitations, enrollment, login, throttling, recovery, and their config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pyrage
import pytest
from structlog.testing import capture_logs

from proxy.access.keys import custody_public_key
from proxy.archive.seal import fingerprint
from proxy.config import load_config
from proxy.daemon import custody_keys, demo_recipients
from proxy.errors import ConfigError
from proxy.portal import throttle, totp, wrapping
from proxy.portal.accounts import Accounts
from proxy.portal.passphrases import Passphrases
from proxy.portal.refusals import (
    INVITE_REFUSED,
    LOGIN_REFUSED,
    EnrollProblem,
    InviteRefused,
    LoginRefused,
    PortalProblem,
)
from tests.portal_helpers import (
    ADDRESS,
    CONFIG,
    DANA,
    EMAIL,
    FAST,
    NEW_STRONG,
    SAM,
    START,
    STRONG,
    Clock,
    Enrollment,
    code,
    copy_enrollment,
    enroll,
    write_config,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Enrollment:
    """One enrollment (scrypt wrapping takes seconds), copied for each test that needs one."""
    enrollment = enroll(tmp_path_factory.mktemp("enrolled") / "state")
    shutil.copytree(enrollment.directory, enrollment.directory.with_name("pristine"))
    return enrollment


@pytest.fixture
def enrolled(template: Enrollment, tmp_path: Path) -> Enrollment:
    """A fresh copy of the template enrollment (as it was enrolled), with its own clock."""
    return copy_enrollment(template, tmp_path, template.directory.with_name("pristine"))


def state_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


# Invitations and enrollment


def test_invite_enroll_login_round_trip(template: Enrollment) -> None:
    """An invited contact enrolls, and logs in with passphrase and code to their identity."""
    accounts, clock = template.accounts, template.clock
    unlocked = accounts.login(EMAIL, STRONG, code(template.secret, clock), ADDRESS)
    assert unlocked.contact == "Priya Raman"
    assert unlocked.recipient == template.enrolled.recipient
    assert str(unlocked.identity.to_public()) == template.enrolled.recipient
    assert "AGE-SECRET" not in repr(unlocked)
    assert len(set(template.enrolled.recovery_codes)) == 10


def test_wrapped_identity_opens_with_the_passphrase_and_the_recipient_file_holds_its_key(
    template: Enrollment,
) -> None:
    """The stored key opens with pyrage.passphrase.decrypt, at a work factor age accepts;
    the recipient file holds its public key, 0600, and the state is private."""
    wrapped_files = list((template.directory / "portal" / "accounts").glob("*.age"))
    assert len(wrapped_files) == 1
    wrapped = wrapped_files[0].read_bytes()
    factor = wrapping.work_factor(wrapped)
    assert factor is not None
    assert factor <= wrapping.AGE_MAX_WORK_FACTOR
    text = pyrage.passphrase.decrypt(wrapped, STRONG).decode()
    secret = next(line for line in text.splitlines() if line.startswith("AGE-SECRET-KEY-1"))
    public = str(pyrage.x25519.Identity.from_str(secret).to_public())
    recipient_file = template.directory / "keys" / "priya.pub"
    assert recipient_file.read_text().strip() == public == template.enrolled.recipient
    assert recipient_file.stat().st_mode & 0o777 == 0o600
    for path in (template.directory / "portal").rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    assert b"AGE-SECRET-KEY" not in state_bytes(template.directory / "portal")
    assert STRONG.encode() not in state_bytes(template.directory)


def test_enrolled_contact_joins_the_recipients_on_reload(enrolled: Enrollment) -> None:
    """After enrollment the config (as a reload reads it) seals to the new key too, and the
    daemon accepts custody records signed with the custody key derived from it."""
    config = load_config(enrolled.directory / "config.yaml")
    recipients = demo_recipients(config)
    assert enrolled.enrolled.recipient in recipients
    enrolled.clock.advance(seconds=30)
    unlocked = enrolled.accounts.login(EMAIL, STRONG, code(enrolled.secret, enrolled.clock),
                                       ADDRESS)  # fmt: skip
    keys = custody_keys(config, recipients)
    assert keys[fingerprint(enrolled.enrolled.recipient)] == custody_public_key(unlocked.identity)


def test_token_is_single_use_and_stored_only_hashed(tmp_path: Path) -> None:
    """The link's token is nowhere in the state files, and a used link is refused."""
    config = load_config(write_config(tmp_path))
    clock = Clock()
    accounts = Accounts(config, clock=clock, hasher=FAST)
    link = accounts.invite("priya raman")
    assert link.startswith("https://home.example/portal/enroll/")
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits, url-safe base64
    assert token.encode() not in state_bytes(tmp_path / "portal")
    assert accounts.begin(token) == "Priya Raman"
    secret = totp.new_secret()
    accounts.enroll(token, STRONG, code(secret, clock), secret)
    with pytest.raises(InviteRefused) as used:
        accounts.begin(token)
    assert str(used.value) == INVITE_REFUSED


def test_expired_unknown_and_replaced_tokens_look_the_same(tmp_path: Path) -> None:
    """An expired link, an unknown one and one replaced by a new invite get one refusal."""
    config = load_config(write_config(tmp_path))
    clock = Clock()
    accounts = Accounts(config, clock=clock, hasher=FAST)
    old = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    new = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    refusals = []
    for token in (old, "not-a-token", new):
        if token == new:
            assert accounts.begin(token) == "Priya Raman"
            clock.advance(hours=24)
        with pytest.raises(InviteRefused) as refused:
            accounts.begin(token)
        refusals.append(str(refused.value))
    assert refusals == [INVITE_REFUSED] * 3


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Nobody", "no contact named 'Nobody' in the config"),
        ("Dana Whitfield", "'Dana Whitfield' is not a portal contact"),
    ],
)
def test_invite_refuses_unknown_and_non_portal_contacts(
    tmp_path: Path, name: str, expected: str
) -> None:
    """Inviting someone who is not a portal contact is one clear line."""
    accounts = Accounts(load_config(write_config(tmp_path)), clock=Clock(), hasher=FAST)
    with pytest.raises(PortalProblem) as refused:
        accounts.invite(name)
    assert str(refused.value).startswith(expected)
    assert "\n" not in str(refused.value)


def test_invite_refuses_an_enrolled_contact(enrolled: Enrollment) -> None:
    """A contact who has enrolled is not invited again (a new key would orphan the old)."""
    with pytest.raises(PortalProblem, match="already enrolled"):
        enrolled.accounts.invite("Priya Raman")


@pytest.mark.parametrize("passphrase", ["password123", "Priya Raman 2024", "qwertyuiop"])
def test_weak_passphrase_is_refused_with_a_reason(tmp_path: Path, passphrase: str) -> None:
    """A guessable passphrase is refused, the reason does not quote it, the link stays."""
    clock = Clock()
    accounts = Accounts(load_config(write_config(tmp_path)), clock=clock, hasher=FAST)
    token = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    secret = totp.new_secret()
    with pytest.raises(EnrollProblem, match="too easy to guess") as refused:
        accounts.enroll(token, passphrase, code(secret, clock), secret)
    assert passphrase not in str(refused.value)
    assert accounts.begin(token) == "Priya Raman"
    assert not (tmp_path / "keys" / "priya.pub").exists()


def test_wrong_totp_code_at_enrollment_is_refused(tmp_path: Path) -> None:
    """Enrollment needs a code from the new secret; a wrong one changes nothing."""
    clock = Clock()
    accounts = Accounts(load_config(write_config(tmp_path)), clock=clock, hasher=FAST)
    token = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    secret = totp.new_secret()
    wrong = code(secret, clock, steps=5)
    with pytest.raises(EnrollProblem, match="code does not match"):
        accounts.enroll(token, STRONG, wrong, secret)
    assert accounts.begin(token) == "Priya Raman"


def test_totp_setup_shows_the_secret_three_ways(tmp_path: Path) -> None:
    """The setup gives an otpauth URI naming the login, an inline SVG QR code, the secret."""
    accounts = Accounts(load_config(write_config(tmp_path)), clock=Clock(), hasher=FAST)
    setup = accounts.totp_setup("Priya Raman")
    assert setup.uri.startswith("otpauth://totp/nocontact:priya.raman%40fastmail.example?")
    assert f"secret={setup.secret}" in setup.uri
    assert setup.qr_svg.startswith("<svg")
    assert setup.secret not in repr(setup)


# Login


def test_wrong_totp_code_is_refused(enrolled: Enrollment) -> None:
    """The right passphrase with a wrong code is refused."""
    wrong = code(enrolled.secret, enrolled.clock, steps=3)
    with pytest.raises(LoginRefused):
        enrolled.accounts.login(EMAIL, STRONG, wrong, ADDRESS)


def test_a_code_is_used_once(enrolled: Enrollment) -> None:
    """A code that logged in once is refused the second time, even within its 30 s."""
    accounts, clock = enrolled.accounts, enrolled.clock
    first = code(enrolled.secret, clock)
    accounts.login(EMAIL, STRONG, first, ADDRESS)
    with pytest.raises(LoginRefused):
        accounts.login(EMAIL, STRONG, first, ADDRESS)
    earlier = code(enrolled.secret, clock, steps=-1)  # older than the one used
    with pytest.raises(LoginRefused):
        accounts.login(EMAIL, STRONG, earlier, ADDRESS)


def test_unknown_email_and_wrong_passphrase_look_the_same(enrolled: Enrollment) -> None:
    """An unknown email, a wrong passphrase and a wrong code get the same refusal."""
    accounts, clock = enrolled.accounts, enrolled.clock
    attempts = [
        ("nobody@example.org", STRONG, code(enrolled.secret, clock)),
        (EMAIL, "wrong " + STRONG, code(enrolled.secret, clock)),
        (EMAIL, STRONG, "000000" if code(enrolled.secret, clock) != "000000" else "111111"),
        ("sam@example.org", STRONG, code(enrolled.secret, clock)),  # a contact, not portal
    ]
    refusals = []
    for index, (email, passphrase, totp_code) in enumerate(attempts):
        with pytest.raises(LoginRefused) as refused:
            accounts.login(email, passphrase, totp_code, f"198.51.100.{index}")
        refusals.append((type(refused.value), str(refused.value)))
    assert refusals == [(LoginRefused, LOGIN_REFUSED)] * len(attempts)


def test_lockout_per_account_then_unlock(enrolled: Enrollment) -> None:
    """Five failures lock the account for 15 minutes from any address; then it opens."""
    accounts, clock = enrolled.accounts, enrolled.clock
    for attempt in range(throttle.LOCK_AFTER):
        with pytest.raises(LoginRefused):
            accounts.login(EMAIL, "wrong " + STRONG, "123456", f"192.0.2.{attempt}")
        clock.advance(seconds=25)  # past every slowing wait
    with pytest.raises(LoginRefused):  # right passphrase and code, new address: locked
        accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), "192.0.2.99")
    clock.advance(minutes=15)
    unlocked = accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), "192.0.2.99")
    assert unlocked.contact == "Priya Raman"


def test_lockout_per_address_then_unlock(enrolled: Enrollment) -> None:
    """Five failures from one address (unknown emails) lock that address, not others."""
    accounts, clock = enrolled.accounts, enrolled.clock
    for attempt in range(throttle.LOCK_AFTER):
        with pytest.raises(LoginRefused):
            accounts.login(f"guess{attempt}@example.org", STRONG, "123456", ADDRESS)
        clock.advance(seconds=25)
    with pytest.raises(LoginRefused):
        accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), "192.0.2.200")
    clock.advance(minutes=15, seconds=30)
    accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)


def test_failures_slow_down_before_the_lock(enrolled: Enrollment) -> None:
    """After the third failure, even the right answer waits: refused until 5 s pass."""
    accounts, clock = enrolled.accounts, enrolled.clock
    for _ in range(throttle.SLOW_AFTER):
        with pytest.raises(LoginRefused):
            accounts.login(EMAIL, "wrong " + STRONG, "123456", ADDRESS)
    with pytest.raises(LoginRefused):
        accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    clock.advance(seconds=5)
    accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)


def test_throttle_table() -> None:
    """The documented numbers: free, free, 5 s, 10 s, then 15 minutes; forgotten after."""
    waits = []
    failures = None
    for _ in range(throttle.LOCK_AFTER):
        failures = throttle.failed(failures, START)
        waits.append(throttle.wait(failures, START).total_seconds())
    assert waits == [0, 0, 5, 10, 900]
    assert throttle.wait(failures, START + timedelta(minutes=15)) == timedelta(0)


# Passphrase change and TOTP recovery


def test_change_passphrase_rewraps(enrolled: Enrollment) -> None:
    """After a change only the new passphrase logs in, and it opens the same identity."""
    accounts, clock = enrolled.accounts, enrolled.clock
    accounts.change_passphrase(
        EMAIL, STRONG, code(enrolled.secret, clock), new_passphrase=NEW_STRONG,
        client_address=ADDRESS,
    )  # fmt: skip
    clock.advance(seconds=30)
    with pytest.raises(LoginRefused):
        accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    unlocked = accounts.login(EMAIL, NEW_STRONG, code(enrolled.secret, clock), ADDRESS)
    assert unlocked.recipient == enrolled.enrolled.recipient


def _account_file(enrolled: Enrollment) -> Path:
    [found] = (enrolled.directory / "portal" / "accounts").glob("*.json")
    return found


def test_login_opens_the_login_wrapping_not_the_age_file(enrolled: Enrollment) -> None:
    """A login opens the identity from the login wrapping (argon2id and ChaCha20-Poly1305):
    with the age file gone it still works; the wrapping holds no secret in the clear and
    is bound to the contact (moved to another name, it does not open)."""
    accounts, clock = enrolled.accounts, enrolled.clock
    next((enrolled.directory / "portal" / "accounts").glob("*.age")).unlink()
    unlocked = accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    assert unlocked.recipient == enrolled.enrolled.recipient
    field = json.loads(_account_file(enrolled).read_text())["login_key"]
    assert sorted(field) == ["nonce", "salt", "sealed"]
    derive = Passphrases(FAST).derive_key
    assert wrapping.unwrap_for_login(field, STRONG, "Priya Raman", derive=derive) is not None
    assert wrapping.unwrap_for_login(field, STRONG, "Someone Else", derive=derive) is None
    assert wrapping.unwrap_for_login(field, NEW_STRONG, "Priya Raman", derive=derive) is None
    hostile: list[object] = [None, [], {"salt": "!!"}, {**field, "sealed": "AAAA"},
                             {**field, "salt": ""}]  # fmt: skip
    for hostile_field in hostile:
        assert (
            wrapping.unwrap_for_login(hostile_field, STRONG, "Priya Raman", derive=derive) is None
        )


def test_an_account_without_a_login_wrapping_opens_its_age_file_once(
    enrolled: Enrollment,
) -> None:
    """An account enrolled before the login wrapping existed logs in through its age file
    and gets one; a passphrase change rewrites it, so the old passphrase opens neither."""
    accounts, clock = enrolled.accounts, enrolled.clock
    path = _account_file(enrolled)
    record = json.loads(path.read_text())
    del record["login_key"]
    path.write_text(json.dumps(record))
    unlocked = accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    assert unlocked.recipient == enrolled.enrolled.recipient
    first = json.loads(path.read_text())["login_key"]
    clock.advance(seconds=30)
    accounts.change_passphrase(
        EMAIL, STRONG, code(enrolled.secret, clock), new_passphrase=NEW_STRONG,
        client_address=ADDRESS,
    )  # fmt: skip
    changed = json.loads(path.read_text())["login_key"]
    assert changed["salt"] != first["salt"]
    derive = Passphrases(FAST).derive_key
    assert wrapping.unwrap_for_login(changed, STRONG, "Priya Raman", derive=derive) is None
    assert wrapping.unwrap_for_login(changed, NEW_STRONG, "Priya Raman", derive=derive)


def test_recovery_code_resets_totp_once(enrolled: Enrollment) -> None:
    """A recovery code moves the account to a new TOTP secret, once only."""
    accounts, clock = enrolled.accounts, enrolled.clock
    recovery = enrolled.enrolled.recovery_codes[3]
    new_secret = totp.new_secret()
    left = accounts.reset_totp(
        EMAIL, STRONG, recovery_code=recovery.upper(), new_secret=new_secret,
        new_code=code(new_secret, clock), client_address=ADDRESS,
    )  # fmt: skip
    assert left == 9
    clock.advance(seconds=30)
    with pytest.raises(LoginRefused):
        accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    accounts.login(EMAIL, STRONG, code(new_secret, clock), ADDRESS)
    other = totp.new_secret()
    with pytest.raises(LoginRefused):
        accounts.reset_totp(
            EMAIL, STRONG, recovery_code=recovery, new_secret=other,
            new_code=code(other, clock), client_address=ADDRESS,
        )  # fmt: skip


# Uploaded identities


def test_enroll_with_an_uploaded_keygen_identity(tmp_path: Path) -> None:
    """A contact may bring their own `nocontact contact keygen` identity; it is wrapped."""
    identity = pyrage.x25519.Identity.generate()
    upload = f"# nocontact contact key\n{identity}\n".encode()
    clock = Clock()
    accounts = Accounts(load_config(write_config(tmp_path)), clock=clock, hasher=FAST)
    token = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    secret = totp.new_secret()
    enrolled = accounts.enroll(token, STRONG, code(secret, clock), secret, identity_file=upload)
    assert enrolled.recipient == str(identity.to_public())
    assert (tmp_path / "keys" / "priya.pub").read_text().strip() == enrolled.recipient


def test_an_existing_key_file_needs_its_own_identity(tmp_path: Path) -> None:
    """If the key file already holds a key, a new identity is refused (no orphaned items)."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "priya.pub").write_text(DANA + "\n")
    clock = Clock()
    accounts = Accounts(load_config(write_config(tmp_path)), clock=clock, hasher=FAST)
    token = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    secret = totp.new_secret()
    with pytest.raises(EnrollProblem, match="already set"):
        accounts.enroll(token, STRONG, code(secret, clock), secret)
    with pytest.raises(EnrollProblem, match="exactly one age identity"):
        accounts.enroll(token, STRONG, code(secret, clock), secret, identity_file=b"x\n")


# Config


def test_unenrolled_portal_contact_is_accepted_and_left_out(tmp_path: Path) -> None:
    """A portal contact without a key file yet loads, and items are sealed to the others."""
    config = load_config(write_config(tmp_path))
    priya = next(c for c in config.contacts if c.portal)
    assert priya.age_recipient is None
    assert priya.age_recipient_file == str(tmp_path / "keys" / "priya.pub")
    assert config.portal is not None
    assert config.portal.state_dir == str(tmp_path / "portal")
    assert config.portal.public_url == "https://home.example/portal"
    assert demo_recipients(config) == [DANA, SAM]


def test_only_unenrolled_contacts_is_refused(tmp_path: Path) -> None:
    """If no contact has a key yet, the config is refused with one clear line."""
    dana = CONFIG.index("  - name: Dana")
    text = CONFIG[:dana] + CONFIG[CONFIG.index("  - name: Priya") : CONFIG.index("  - name: Sam")]
    text += CONFIG[CONFIG.index("people:") :]
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path, text))
    lines = str(refused.value).splitlines()
    assert len(lines) == 1
    assert "contacts: no contact has a key yet" in lines[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("portal:\n  public_url", "portl:\n  public_url"), "needs a portal: section"),
        (("    portal: true\n", "    portal: true\n    demo: true\n"), "not both"),
        (("sam@example.org", EMAIL), None),  # Sam is not a portal contact: no clash
    ],
)
def test_portal_config_problems(
    tmp_path: Path, change: tuple[str, str], expected: str | None
) -> None:
    """A portal contact needs a portal section, and is not a demo contact."""
    text = CONFIG.replace(*change)
    if change[0].startswith("portal:"):
        text = text.split("portl:")[0]
    if expected is None:
        load_config(write_config(tmp_path, text))
        return
    with pytest.raises(ConfigError, match=expected):
        load_config(write_config(tmp_path, text))


def test_portal_cli_prints_the_link(tmp_path: Path) -> None:
    """`nocontact portal invite` prints a one-time link; a non-portal contact is one line."""
    path = write_config(tmp_path)
    run = [sys.executable, "-m", "proxy", "portal", "invite", "-c", str(path), "--contact"]
    result = subprocess.run(
        [*run, "Priya Raman"], capture_output=True, text=True, cwd=ROOT, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    link = result.stdout.splitlines()[-1]
    assert link.startswith("https://home.example/portal/enroll/")
    assert link.rsplit("/", 1)[1].encode() not in state_bytes(tmp_path / "portal")
    refused = subprocess.run(
        [*run, "Dana Whitfield"], capture_output=True, text=True, cwd=ROOT, timeout=120,
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.startswith("nocontact: 'Dana Whitfield' is not a portal contact")
    assert len(refused.stderr.splitlines()) == 1


def test_nothing_secret_is_logged_or_in_a_refusal(enrolled: Enrollment) -> None:
    """Failed steps log nothing and no refusal carries the passphrase, code or token."""
    accounts, clock = enrolled.accounts, enrolled.clock
    canary = "CANARY-passphrase-7f3a"
    token = "CANARY-token-9c1e"
    messages = []
    with capture_logs() as logged:
        for attempt in (
            lambda: accounts.login(EMAIL, canary, "654321", ADDRESS),
            lambda: accounts.login("CANARY@example.org", canary, "654321", ADDRESS),
            lambda: accounts.begin(token),
            lambda: accounts.enroll(token, canary, "654321", totp.new_secret()),
            lambda: accounts.reset_totp(
                EMAIL, canary, recovery_code="CANARY-recovery", new_secret=enrolled.secret,
                new_code="654321", client_address=ADDRESS,
            ),
        ):  # fmt: skip
            with pytest.raises(PortalProblem) as refused:
                attempt()
            messages.append(str(refused.value))
        clock.advance(minutes=16)
        accounts.login(EMAIL, STRONG, code(enrolled.secret, clock), ADDRESS)
    assert logged == []
    for message in messages:
        assert "CANARY" not in message
        assert "654321" not in message


def test_one_code_twice_at_once_logs_in_once(enrolled: Enrollment) -> None:
    """Two logins with the same code at the same moment (two worker threads): one wins."""
    accounts, clock = enrolled.accounts, enrolled.clock
    same = code(enrolled.secret, clock)

    def attempt() -> str:
        try:
            return accounts.login(EMAIL, STRONG, same, ADDRESS).contact
        except LoginRefused:
            return "refused"

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted(pool.map(lambda _: attempt(), range(2)))
    assert results == ["Priya Raman", "refused"]
