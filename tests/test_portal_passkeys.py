"""Passkeys as a second factor: py_webauthn's ceremonies checked with a software
authenticator (real P-256 keys, CBOR and signatures), every hostile response refused
without an exception, and the accounts' passkey login, throttle, adding and removing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

from proxy.portal import passkeys, throttle
from proxy.portal.passkeys import Assertion, Passkey, RelyingParty
from proxy.portal.refusals import EnrollProblem, LoginRefused
from tests.portal_helpers import (
    ADDRESS,
    EMAIL,
    HANDLE,
    PARTY,
    START,
    STRONG,
    Enrollment,
    SoftKey,
    code,
    copy_enrollment,
    enroll,
)

CHALLENGE = b"c" * 32


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


def register(key: SoftKey, challenge: bytes = CHALLENGE) -> Passkey:
    found = passkeys.registered(PARTY, key.create(challenge), challenge=challenge, name="laptop",
                                now=START)  # fmt: skip
    assert found is not None
    return found


# The relying party (rule 1)


@pytest.mark.parametrize(
    ("public_url", "rp_id", "origin"),
    [
        ("https://home.example/portal", "home.example", "https://home.example"),
        ("https://Home.Example:443/portal", "home.example", "https://home.example"),
        ("https://home.example:8443", "home.example", "https://home.example:8443"),
        ("http://localhost:8089", "localhost", "http://localhost:8089"),
        ("http://127.0.0.1", "127.0.0.1", "http://127.0.0.1"),
    ],
)
def test_the_relying_party_is_the_public_urls_host_and_origin(
    public_url: str, rp_id: str, origin: str
) -> None:
    """The RP id is public_url's host (lower case), the origin its scheme://host[:port],
    the default port left out as browsers do."""
    assert passkeys.relying_party(public_url) == RelyingParty(id=rp_id, origin=origin)


# Registration


def test_registration_options_ask_for_a_discoverable_passkey_and_exclude_known_ones() -> None:
    """The options carry the challenge, the RP id, the random user handle, resident key
    required, user verification preferred, and the contact's passkeys as excluded."""
    known = register(SoftKey())
    options = json.loads(passkeys.registration_options(
        PARTY, user_handle=HANDLE, login=EMAIL, existing=[known], challenge=CHALLENGE))  # fmt: skip
    assert options["challenge"] == _b64(CHALLENGE)
    assert options["rp"] == {"id": "home.example", "name": passkeys.RP_NAME}
    assert options["user"]["id"] == HANDLE
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert [c["id"] for c in options["excludeCredentials"]] == [known.credential_id]


def test_a_registration_answering_the_challenge_is_a_passkey() -> None:
    """A genuine response gives the credential id, the COSE key and the counter."""
    key = SoftKey()
    found = register(key)
    assert found.credential_id == _b64(key.credential)
    assert found.public_key == _b64(key.cose())
    assert (found.sign_count, found.name, found.created) == (0, "laptop", START)
    assert Passkey.from_json(found.to_json()) == found


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"challenge": b"d" * 32}, "another challenge"),
        ({"origin": "https://evil.example"}, "another origin"),
        ({"party": RelyingParty(id="evil.example", origin=PARTY.origin)}, "another RP id"),
    ],
)
def test_a_registration_for_anything_else_is_refused(change: dict[str, Any], why: str) -> None:
    """A response to another challenge, from another origin, or for another RP id is None."""
    challenge = change.pop("challenge", CHALLENGE)
    response = SoftKey().create(challenge, **change)
    found = passkeys.registered(PARTY, response, challenge=CHALLENGE, name="x", now=START)
    assert found is None, why


def test_a_registration_without_a_live_challenge_is_refused() -> None:
    """No challenge (never issued, expired or used) refuses even a genuine response."""
    response = SoftKey().create(CHALLENGE)
    assert passkeys.registered(PARTY, response, challenge=None, name="x", now=START) is None


# Login (rules 2 to 4)


def test_a_genuine_assertion_gives_the_passkey_with_its_new_counter() -> None:
    """The account's passkey, signing the challenge from the origin, is accepted; the
    counter it reported is what the portal keeps."""
    key = SoftKey()
    known = register(key)
    used = passkeys.asserted(PARTY, Assertion(response=key.get(CHALLENGE), challenge=CHALLENGE),
                             passkeys=[known], user_handle=HANDLE)  # fmt: skip
    assert used is not None
    assert (used.credential_id, used.sign_count) == (known.credential_id, 1)


def test_counters_that_do_not_grow_are_refused_unless_both_are_zero() -> None:
    """A counter equal to or below the stored one is refused (a cloned authenticator);
    an authenticator that keeps no counter (0, and 0 stored) is accepted."""
    key = SoftKey()
    known = register(key)

    def answer(stored: int, reported: int) -> Passkey | None:
        response = key.get(CHALLENGE, count=reported)
        return passkeys.asserted(PARTY, Assertion(response=response, challenge=CHALLENGE),
                                 passkeys=[Passkey(**{**_fields(known), "sign_count": stored})],
                                 user_handle=HANDLE)  # fmt: skip

    assert answer(5, 5) is None
    assert answer(5, 3) is None
    assert answer(5, 0) is None
    assert answer(0, 0) is not None
    assert answer(5, 6) is not None


def _fields(passkey: Passkey) -> dict[str, Any]:
    return {name: getattr(passkey, name) for name in Passkey.__slots__}


@pytest.mark.parametrize(
    "case",
    ["other challenge", "other origin", "other rp id", "unknown credential",
     "other user handle", "bad signature", "no challenge", "registration as login"],
)  # fmt: skip
def test_every_assertion_but_a_genuine_one_is_refused(case: str) -> None:
    """An assertion of another challenge, origin or RP id, by a passkey not the
    account's, for another user handle, with a broken signature, without a live
    challenge, or a create() response in place of get(), is None."""
    key = SoftKey()
    known = register(key)
    challenge: bytes | None = CHALLENGE
    if case == "other challenge":
        response = key.get(b"d" * 32)
    elif case == "other origin":
        response = key.get(CHALLENGE, origin="https://evil.example")
    elif case == "other rp id":
        response = key.get(CHALLENGE, party=RelyingParty(id="evil.example", origin=PARTY.origin))
    elif case == "unknown credential":
        response = SoftKey(credential=b"\x01" * 16).get(CHALLENGE)
    elif case == "other user handle":
        key.user_handle = _b64(b"v" * 32)
        response = key.get(CHALLENGE)
    elif case == "bad signature":
        data = json.loads(key.get(CHALLENGE))
        data["response"]["signature"] = _b64(b"\x30\x06\x02\x01\x01\x02\x01\x01")
        response = json.dumps(data)
    elif case == "no challenge":
        response, challenge = key.get(CHALLENGE), None
    else:
        response = key.create(CHALLENGE)
    assertion = Assertion(response=response, challenge=challenge)
    assert passkeys.asserted(PARTY, assertion, passkeys=[known], user_handle=HANDLE) is None


HOSTILE = [
    "",
    "{",
    "null",
    "[]",
    '"text"',
    "1e999",
    "[" * 10_000,  # deeper than json's recursion limit, within MAX_RESPONSE
    "[" * 100_000,
    "{}" * 10,
    json.dumps({"rawId": 5}),
    json.dumps({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": []}),
    json.dumps({"id": "é", "rawId": "é", "type": "public-key", "response": {}}),
    "x" * (passkeys.MAX_RESPONSE + 1),
]


@pytest.mark.parametrize("response", HOSTILE)
def test_hostile_responses_are_refused_without_an_exception(response: str) -> None:
    """Broken, deep, huge or wrongly typed JSON is None from both ceremonies."""
    known = register(SoftKey())
    assertion = Assertion(response=response, challenge=CHALLENGE)
    assert passkeys.asserted(PARTY, assertion, passkeys=[known], user_handle=HANDLE) is None
    assert passkeys.registered(PARTY, response, challenge=CHALLENGE, name="x", now=START) is None


def test_a_user_handle_that_is_not_base64url_is_refused() -> None:
    """py_webauthn itself raises binascii.Error on a userHandle that is not base64url;
    here it is a refusal like any other."""
    key = SoftKey()
    known = register(key)
    data = json.loads(key.get(CHALLENGE))
    data["response"]["userHandle"] = "a"
    response = json.dumps(data)
    assertion = Assertion(response=response, challenge=CHALLENGE)
    assert passkeys.asserted(PARTY, assertion, passkeys=[known], user_handle="a") is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=4),
    max_leaves=20,
)  # fmt: skip
_FIELDS = st.sampled_from(
    [
        "id",
        "rawId",
        "type",
        "response",
        "clientDataJSON",
        "authenticatorData",
        "signature",
        "userHandle",
        "attestationObject",
    ]
)


@settings(max_examples=300, deadline=None)
@given(swaps=st.lists(st.tuples(_FIELDS, _JSON | st.binary(max_size=40).map(_b64)), max_size=4))
def test_a_genuine_response_with_any_fields_replaced_never_raises(
    swaps: list[tuple[str, Any]],
) -> None:
    """Any field of a real assertion or registration replaced by any JSON value (or other
    base64url) is refused or accepted, never an exception."""
    key = SoftKey()
    known = register(key)
    for response in (key.get(CHALLENGE), key.create(CHALLENGE)):
        data = json.loads(response)
        for name, value in swaps:
            inner = data.get("response")
            target = inner if isinstance(inner, dict) and name in inner else data
            target[name] = value
        text = json.dumps(data)
        used = passkeys.asserted(PARTY, Assertion(response=text, challenge=CHALLENGE),
                                 passkeys=[known], user_handle=HANDLE)  # fmt: skip
        made = passkeys.registered(PARTY, text, challenge=CHALLENGE, name="x", now=START)
        if text == response:  # nothing swapped, or swapped for itself: the genuine one
            assert (used is None) != (made is None)


# Records (rule 5)


def test_names_are_one_short_printable_line() -> None:
    """Control characters go, whitespace folds to single spaces, the name is cut."""
    assert passkeys.clean_name("  my\tlaptop\n\x00\x1b[31m ") == "my laptop [31m"
    assert len(passkeys.clean_name("x" * 500)) == passkeys.NAME_CHARS
    assert passkeys.clean_name("\n\t ") == ""


def test_damaged_passkey_records_are_skipped() -> None:
    """A record whose passkeys are not a list, or one entry that lacks a field, loses only
    what is damaged."""
    good = register(SoftKey()).to_json()
    assert passkeys.listed({"passkeys": [good, {"name": "x"}, 5]}) == [Passkey.from_json(good)]
    assert passkeys.listed({"passkeys": "x"}) == []
    assert passkeys.listed({}) == []


# Accounts (accounts.py rules 4 and 8)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Enrollment:
    """Priya enrolled once (scrypt takes seconds), with CONFIG's https public_url
    (home.example, PARTY's)."""
    return enroll(tmp_path_factory.mktemp("passkeys") / "state")


@pytest.fixture
def account(template: Enrollment, tmp_path: Path) -> Enrollment:
    """A fresh copy of the template's state, with its own clock."""
    return copy_enrollment(template, tmp_path)


def add(enrollment: Enrollment, key: SoftKey, name: str = "laptop") -> Passkey:
    accounts = enrollment.accounts
    options = json.loads(accounts.passkey_options("Priya Raman", CHALLENGE))
    key.user_handle = options["user"]["id"]
    return accounts.add_passkey(EMAIL, STRONG, name=name, response=key.create(CHALLENGE),
                                challenge=CHALLENGE, client_address=ADDRESS)  # fmt: skip


def passkey_login(enrollment: Enrollment, key: SoftKey, passphrase: str = STRONG) -> Any:
    assertion = Assertion(response=key.get(CHALLENGE), challenge=CHALLENGE)
    return enrollment.accounts.login(EMAIL, passphrase, "", ADDRESS, passkey=assertion)


def test_a_passkey_replaces_the_code_but_never_the_passphrase(account: Enrollment) -> None:
    """With a passkey added, login takes passphrase + passkey (no code) and unwraps the
    identity; the same passkey with a wrong passphrase is refused; the code still works."""
    key = SoftKey()
    added = add(account, key)
    assert account.accounts.passkeys_of("Priya Raman") == [added]
    unlocked = passkey_login(account, key)
    assert unlocked.recipient == account.enrolled.recipient
    with pytest.raises(LoginRefused):
        passkey_login(account, key, passphrase="wrong horse battery staple")
    assert account.accounts.login(EMAIL, STRONG, code(account.secret, account.clock), ADDRESS)


def test_the_counter_is_kept_so_a_replayed_assertion_is_refused(account: Enrollment) -> None:
    """After a login the stored counter is the one reported: the same assertion again (a
    recorded answer, or a clone behind) is refused."""
    key = SoftKey()
    add(account, key)
    response = key.get(CHALLENGE)
    assertion = Assertion(response=response, challenge=CHALLENGE)
    account.accounts.login(EMAIL, STRONG, "", ADDRESS, passkey=assertion)
    assert account.accounts.passkeys_of("Priya Raman")[0].sign_count == 1
    with pytest.raises(LoginRefused):
        account.accounts.login(EMAIL, STRONG, "", ADDRESS, passkey=assertion)


def test_failed_passkey_logins_count_towards_the_lock(account: Enrollment) -> None:
    """Five refused passkeys (a key not the account's) lock the account: a right code
    is refused while locked, and accepted once the lock is over."""
    add(account, SoftKey())
    stranger = SoftKey(credential=b"\x02" * 16)
    for _ in range(throttle.LOCK_AFTER):
        account.clock.advance(minutes=1)
        with pytest.raises(LoginRefused):
            passkey_login(account, stranger)
    account.clock.advance(seconds=30)
    with pytest.raises(LoginRefused):
        account.accounts.login(EMAIL, STRONG, code(account.secret, account.clock), ADDRESS)
    account.clock.advance(minutes=16)
    assert account.accounts.login(EMAIL, STRONG, code(account.secret, account.clock), "::1")


def test_adding_and_removing_take_the_passphrase(account: Enrollment) -> None:
    """A wrong passphrase adds nothing and removes nothing (LoginRefused, counted);
    the right one removes the passkey named, and it no longer logs in."""
    accounts, key = account.accounts, SoftKey()
    accounts.passkey_options("Priya Raman", CHALLENGE)
    with pytest.raises(LoginRefused):
        accounts.add_passkey(EMAIL, "wrong horse battery staple", name="x",
                             response=key.create(CHALLENGE), challenge=CHALLENGE,
                             client_address=ADDRESS)  # fmt: skip
    added = add(account, key)
    with pytest.raises(LoginRefused):
        accounts.remove_passkey(EMAIL, "wrong horse battery staple",
                                credential_id=added.credential_id,
                                client_address=ADDRESS)  # fmt: skip
    assert accounts.passkeys_of("Priya Raman") == [added]
    assert accounts.remove_passkey(EMAIL, STRONG, credential_id=added.credential_id,
                                   client_address=ADDRESS) == added  # fmt: skip
    assert accounts.passkeys_of("Priya Raman") == []
    with pytest.raises(LoginRefused):
        passkey_login(account, key)


def test_what_adding_refuses_says_why(account: Enrollment) -> None:
    """No name, a response that does not check out, the same passkey twice and an
    eleventh passkey are each refused with their reason."""
    accounts = account.accounts
    accounts.passkey_options("Priya Raman", CHALLENGE)
    reasons = {"give the passkey a name": {"name": " \n"},
               "could not be checked": {"response": "{"}}  # fmt: skip
    for reason, change in reasons.items():
        form = {"name": "x", "response": SoftKey().create(CHALLENGE)} | change
        with pytest.raises(EnrollProblem, match=reason):
            accounts.add_passkey(EMAIL, STRONG, challenge=CHALLENGE, client_address=ADDRESS,
                                 **form)  # fmt: skip
    key = SoftKey()
    add(account, key)
    with pytest.raises(EnrollProblem, match="added already"):
        add(account, key)
    for n in range(passkeys.MOST - 1):
        add(account, SoftKey(credential=bytes([n + 10]) * 16), name=f"key {n}")
    with pytest.raises(EnrollProblem, match="remove one first"):
        add(account, SoftKey(credential=b"\xff" * 16))
    assert len(accounts.passkeys_of("Priya Raman")) == passkeys.MOST


def test_the_user_handle_is_random_and_kept(account: Enrollment) -> None:
    """The account's WebAuthn user handle is 32 random bytes, made once: the same in every
    registration's options, and nothing of the contact's name or email."""
    first = json.loads(account.accounts.passkey_options("Priya Raman", CHALLENGE))["user"]
    again = json.loads(account.accounts.passkey_options("Priya Raman", b"d" * 32))["user"]
    assert first["id"] == again["id"]
    assert len(base64url_to_bytes(first["id"])) == 32
    assert first["name"] == EMAIL
    assert "priya" not in base64url_to_bytes(first["id"]).decode("latin-1").lower()
