"""The trusted contact's commands, end to end: keys, list, show, export, report, custody.

Held items come in through the real SMTP channel (aiosmtpd on loopback, the pipeline, a
real archive); the contact's commands run through `proxy.cli.main` as a user would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import socket
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyrage
import pytest
import yaml
from pypdf import PdfReader

from proxy.access.keys import PASSPHRASE_ENV, custody_public_key
from proxy.access.reading import UNSIGNED, open_archive
from proxy.access.recording import signed_request
from proxy.archive import (
    Archive,
    ArchiveLog,
    CustodyRecord,
    EntryKind,
    Recipients,
    layout,
    verify_archive,
)
from proxy.archive.custody_keys import CustodyRequest, keys_file_bytes
from proxy.archive.seal import fingerprint, seal_custody
from proxy.channels.sms.capture import ArrivalKind, Webhook, capture
from proxy.channels.sms.provider import Media
from proxy.cli import main
from proxy.custody import CustodyProblem, record_custody, socket_address
from proxy.message import Channel
from proxy.normalize import normalize_sms
from proxy.rules import decide
from tests.factories import RECEIVED_AT, config_data, email, make_rules
from tests.old_archives import created_as
from tests.test_smtp import Service, _send_sync, daemon, free_port

MESSAGES = [
    (
        "mark.smith@gmail.com",
        b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: please\r\n"
        b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n\r\nI just want to talk.\r\n",
    ),
    (
        "friend@example.org",
        b"From: Jo <friend@example.org>\r\nTo: sam@home.example\r\nSubject: saw him\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Mark Smith was at the <b>school</b>"
        b" gate \xe2\x80\x94 <img src='http://tracker.example/x.png'></p>\r\n",
    ),
    (
        "mark@smith-family.example",
        b"From: M <mark@smith-family.example>\r\nTo: sam@home.example\r\nSubject: =?utf-8?q?"
        b"=C3=A7a_va?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n"
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nlook\r\n--b\r\nContent-Type: image/png\r\n"
        b"Content-Disposition: attachment; filename=us.png\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\niVBORw0KGgo=\r\n--b--\r\n",
    ),
]
ALLOWED = b"From: school@example.org\r\nSubject: trip\r\n\r\nForms due Friday.\r\n"


def publish_custody_key(archive: Path, key: Path) -> str:
    """Publish the custody key of the identity in `key` beside `archive`, as the daemon
    does from a config that names it; the key's line."""
    identity = pyrage.x25519.Identity.from_str(key.read_text().split()[-1])
    line = custody_public_key(identity)
    contact = fingerprint(str(identity.to_public()))
    layout.replace_file(archive / layout.CUSTODY_KEYS, keys_file_bytes({contact: line}))
    return line


def nocontact(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main(list(args))
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """An archive with three held messages, sealed to a contact whose key file is returned."""
    tmp = tmp_path_factory.mktemp("contact")
    key = tmp / "dana.key"
    code, out, _ = nocontact("contact", "keygen", "--out", str(key))
    assert code == 0
    recipient = next(line for line in out.splitlines() if line.startswith("age1"))
    import tests.test_smtp as smtp_tests  # noqa: PLC0415 - the SMTP service seals to its key

    previous = smtp_tests.RECIPIENT
    smtp_tests.RECIPIENT = recipient
    try:
        service = Service(tmp, f"maildir:{tmp / 'mail'}")

        async def send_all() -> None:
            async with service.running():
                for sender, message in MESSAGES:
                    assert (await service.send(sender, message))[0] == 250
                assert (await service.send("school@example.org", ALLOWED))[0] == 250

        asyncio.run(send_all())
    finally:
        smtp_tests.RECIPIENT = previous
    publish_custody_key(service.archive_path, key)
    return service.archive_path, key, recipient


def custody_actions(archive: Path, key: Path) -> list[str]:
    identity = pyrage.x25519.Identity.from_str(key.read_text().split()[-1])
    return [entry.action for entry in open_archive(archive, identity).custody()]


def test_keygen_prints_the_recipient_and_never_overwrites(tmp_path: Path) -> None:
    """keygen writes a 0600 identity, prints its age1 recipient, refuses an existing file."""
    key = tmp_path / "k"
    code, out, _ = nocontact("contact", "keygen", "--out", str(key))
    assert code == 0
    assert key.stat().st_mode & 0o777 == 0o600
    assert any(line.startswith("age1") for line in out.splitlines())
    code, _, err = nocontact("contact", "keygen", "--out", str(key))
    assert code == 1
    assert "never overwritten" in err


def test_passphrase_protected_key_opens_with_its_passphrase_only(
    held: tuple[Path, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --passphrase key is an age scrypt file; the wrong passphrase is one line, exit 1."""
    archive, _, _ = held
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    key = tmp_path / "protected.key"
    assert nocontact("contact", "keygen", "--out", str(key), "--passphrase")[0] == 0
    assert key.read_bytes().startswith(b"age-encryption.org/v1\n")
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    code, _, err = nocontact("contact", "list", "--archive", str(archive), "--identity", str(key))
    assert code == 1
    assert "wrong passphrase" in err


def test_list_and_show_read_the_items_and_record_custody(held: tuple[Path, Path, str]) -> None:
    """list shows each held item once (never the allowed one); show renders safely; both
    leave a custody entry."""
    archive, key, _ = held
    before = custody_actions(archive, key)
    code, out, _ = nocontact("contact", "list", "--archive", str(archive), "--identity", str(key),
                             "--timezone", "America/New_York")  # fmt: skip
    assert code == 0
    assert "please" in out
    assert "mark@smith-family.example" in out
    assert "mark.smith@gmail.com" in out  # as written, not in its matching form (no dots)
    assert "trip" not in out
    rows = [line for line in out.splitlines()[1:] if line.strip()]
    assert len(rows) == 3
    sequence = rows[1].split()[0]
    code, out, _ = nocontact("contact", "show", "--archive", str(archive), "--identity", str(key),
                             sequence)  # fmt: skip
    assert code == 0
    assert "Mark Smith was at the school gate" in out
    assert "tracker.example" not in out  # no remote content, not even its address
    assert custody_actions(archive, key) == [*before, "list", "show"]


def test_a_wrong_key_or_a_tampered_archive_is_one_line_and_exit_1(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """Another contact's key and a flipped byte in the log each fail cleanly."""
    archive, key, _ = held
    other = tmp_path / "other.key"
    nocontact("contact", "keygen", "--out", str(other))
    code, out, err = nocontact("contact", "list", "--archive", str(archive), "--identity",
                               str(other))  # fmt: skip
    assert code == 1
    assert "right key" in err
    assert out == ""
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(archive), str(copy)], check=True)
    segment = copy / "log" / "00000001.seg"
    data = bytearray(segment.read_bytes())
    data[200] ^= 0x01
    segment.write_bytes(bytes(data))
    code, out, err = nocontact("contact", "list", "--archive", str(copy), "--identity", str(key))
    assert code == 1
    assert "does not verify" in err
    assert "Traceback" not in err


def test_a_self_made_key_cannot_tell_an_empty_archive_from_a_full_one(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """A key that is not one of the contacts gets the same one line and exit 1 from an
    archive with items and from one with none (it got an empty listing from the second)."""
    archive, _, recipient = held

    async def empty() -> None:
        opened = await Archive.open(tmp_path / "empty", recipients=[recipient])
        await opened.close()

    asyncio.run(empty())
    other = tmp_path / "other.key"
    nocontact("contact", "keygen", "--out", str(other))
    answers = [
        nocontact("contact", "list", "--archive", str(root), "--identity", str(other))
        for root in (archive, tmp_path / "empty")
    ]
    assert answers[0] == answers[1]
    assert answers[0][0] == 1
    assert "not one of the archive's contacts" in answers[0][2]


def test_export_bundle_verifies_offline_and_a_flipped_byte_fails(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """The bundle's verify.py passes; originals match what was sent; any flip fails it."""
    archive, key, _ = held
    out = tmp_path / "bundle.zip"
    code, _, err = nocontact(
        "contact", "export", "--archive", str(archive), "--identity", str(key),
        "--out", str(out), "--reason", "protective order",
    )  # fmt: skip
    assert code == 0, err
    assert out.stat().st_mode & 0o777 == 0o600  # decrypted originals: hers and the contact's
    unpacked = tmp_path / "bundle"
    with zipfile.ZipFile(out) as bundle:
        bundle.extractall(unpacked)
    result = subprocess.run([sys.executable, "verify.py"], cwd=unpacked, capture_output=True,
                            text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    sent = {hashlib.sha256(message).hexdigest() for _, message in MESSAGES}
    originals = sorted((unpacked / "originals").glob("*.eml"))
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in originals} == sent
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert len(manifest["items"]) == 3
    assert manifest["reason"] == "protective order"
    for target in (originals[0], unpacked / "manifest.json"):
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        result = subprocess.run([sys.executable, "verify.py"], cwd=unpacked,
                                capture_output=True, text=True, check=False)  # fmt: skip
        assert result.returncode == 1, target
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
    assert custody_actions(archive, key)[-1] == "export"
    assert manifest["archive"]["format_version"] == 3
    assert _verifies_until_a_sealed_byte_flips(unpacked)


def _verifies_until_a_sealed_byte_flips(unpacked: Path) -> bool:
    """Whether the bundle's verify.py passes, then fails once a sealed file has one byte
    flipped (its leaf no longer matches)."""
    run = [sys.executable, "verify.py"]
    before = subprocess.run(run, cwd=unpacked, capture_output=True, text=True, check=False)
    sealed = sorted((unpacked / "sealed").glob("*.age"))[0]
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 0x01
    sealed.write_bytes(bytes(data))
    after = subprocess.run(run, cwd=unpacked, capture_output=True, text=True, check=False)
    named = f"{sealed.stem}: the sealed file does not hash to the manifest's leaf hash"
    return before.returncode == 0 and after.returncode == 1 and named in after.stdout


def test_a_version_2_archive_exports_a_bundle_that_verifies_and_stays_version_2(
    tmp_path: Path,
) -> None:
    """An archive made before version 3 exports as before: the bundle names version 2, its
    verify.py passes with that version's leaf rule and fails on a flipped sealed byte, and
    the export's custody record leaves the archive version 2 and verifying."""
    key = tmp_path / "dana.key"
    code, out, _ = nocontact("contact", "keygen", "--out", str(key))
    assert code == 0
    recipient = next(line for line in out.splitlines() if line.startswith("age1"))
    archive = tmp_path / "archive"
    rules = make_rules()

    async def hold() -> None:
        with created_as(2):
            held = await Archive.open(archive, recipients=[recipient])
        for headers, body in (("From: mark.smith@gmail.com\nSubject: hi", "it's me\n"),
                              ("From: Mark <mark@smith-family.example>", "answer\n")):  # fmt: skip
            message = email(headers, body)
            await held.hold(message, decide(message, rules))
        await held.close()

    asyncio.run(hold())
    publish_custody_key(archive, key)
    out_file = tmp_path / "bundle.zip"
    code, _, err = nocontact(
        "contact", "export", "--archive", str(archive), "--identity", str(key),
        "--out", str(out_file), "--reason", "protective order",
    )  # fmt: skip
    assert code == 0, err
    unpacked = tmp_path / "bundle"
    with zipfile.ZipFile(out_file) as bundle:
        bundle.extractall(unpacked)
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert manifest["archive"]["format_version"] == 2
    assert len(manifest["items"]) == 2
    assert _verifies_until_a_sealed_byte_flips(unpacked)
    assert layout.read_manifest(archive).version == 2
    assert verify_archive(archive).version == 2
    assert custody_actions(archive, key)[-1] == "export"


def test_export_refuses_a_partial_left_there_and_a_symlinked_destination(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """An export never writes over a `.partial` already there (another export's) nor
    follows a symlink where the bundle goes: one line, exit 1, nothing touched."""
    archive, key, _ = held
    out = tmp_path / "bundle.zip"
    partial = tmp_path / "bundle.zip.partial"
    partial.write_bytes(b"another export")
    export = ("contact", "export", "--archive", str(archive), "--identity", str(key),
              "--reason", "protective order")  # fmt: skip
    code, _, err = nocontact(*export, "--out", str(out))
    assert code == 1
    assert "already exists" in err.strip().splitlines()[-1]
    assert partial.read_bytes() == b"another export"
    assert not out.exists()
    target = tmp_path / "elsewhere.zip"
    link = tmp_path / "linked.zip"
    link.symlink_to(target)
    code, _, err = nocontact(*export, "--out", str(link))
    assert code == 1
    assert "symlink" in err
    assert not target.exists()


def test_report_has_one_row_per_item_and_is_recorded(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """report.pdf lists every held item once in its table, and the report is in custody."""
    archive, key, _ = held
    out = tmp_path / "report.pdf"
    code, _, err = nocontact(
        "contact", "report", "--archive", str(archive), "--identity", str(key),
        "--out", str(out), "--no-contact-since", "2026-01-01",
    )  # fmt: skip
    assert code == 0, err
    text = "\n".join(page.extract_text() or "" for page in PdfReader(out).pages)
    for number in ("NC-000001", "NC-000002", "NC-000003"):
        assert number in text
    assert "NC-000004" not in text
    assert custody_actions(archive, key)[-1] == "report"


def test_custody_goes_through_the_daemon_while_it_holds_the_archive(tmp_path: Path) -> None:
    """With `nocontact run` holding the archive, list still records custody (via its socket),
    and sees the item held a moment ago: the daemon signs a checkpoint when asked, not only
    at its 10-minute ticks."""
    key = tmp_path / "dana.key"
    _, out, _ = nocontact("contact", "keygen", "--out", str(key))
    recipient = next(line for line in out.splitlines() if line.startswith("age1"))
    custody_key = out.split("custody key: ")[1].split()[0]
    port, config = free_port(), tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_data(
        archive={"path": str(tmp_path / "archive")},
        contacts=[{"name": "Dana", "role": "lawyer", "age_recipient": recipient,
                   "custody_key": custody_key}],
        channels={"smtp": {"listen": f"127.0.0.1:{port}",
                           "deliver": f"maildir:{tmp_path / 'mail'}"}},
    )))  # fmt: skip
    archive = str(tmp_path / "archive")
    with daemon(config, port) as process:
        _send_sync(port, "mark.smith@gmail.com", MESSAGES[0][1])
        code, out, err = nocontact("contact", "list", "--archive", archive, "--identity", str(key))
        assert code == 0, err
        assert "please" in out
        process.terminate()
        process.wait(timeout=60)
    assert custody_actions(Path(archive), key) == ["list"]


def test_texts_and_voicemails_export_as_parameters_media_and_audio(tmp_path: Path) -> None:
    """An MMS exports as its exact capture, readable parameters and the picture; a voicemail
    as its audio; the bundle verifies and show renders the text."""
    key = tmp_path / "k"
    _, out, _ = nocontact("contact", "keygen", "--out", str(key))
    recipient = next(line for line in out.splitlines() if line.startswith("age1"))
    picture, audio = b"\x89PNG\r\n\x1a\n" + bytes(500), b"RIFF" + bytes(3000)
    webhook = Webhook(url="https://home.example/twilio/sms", signature="c2ln",
                      body=b"From=%2B15550100199&Body=open+the+door&NumMedia=1")  # fmt: skip
    texts = [
        capture(kind=ArrivalKind.TEXT, webhook=webhook,
                media=[Media(sid="ME1", content_type="image/png", data=picture)]),
        capture(kind=ArrivalKind.VOICEMAIL, record={"call_sid": "CA1"},
                media=[Media(sid="RE1", content_type="audio/x-wav", data=audio)]),
    ]  # fmt: skip

    async def hold() -> None:
        archive = await Archive.open(tmp_path / "archive", recipients=[recipient])
        rules = make_rules()
        for raw, channel in zip(texts, (Channel.SMS, Channel.VOICE), strict=True):
            message = normalize_sms(sender="+15550100199", recipient="+15550107777", text="",
                                    raw=raw, received_at=RECEIVED_AT, channel=channel)  # fmt: skip
            await archive.hold(message, decide(message, rules))
        await archive.close()

    asyncio.run(hold())
    publish_custody_key(tmp_path / "archive", key)
    archive = str(tmp_path / "archive")
    code, out, err = nocontact("contact", "show", "--archive", archive, "--identity", str(key), "1")
    assert code == 0, err
    assert "open the door" in out
    assert "image/png" in out
    bundle = tmp_path / "b.zip"
    code, _, err = nocontact("contact", "export", "--archive", archive, "--identity", str(key),
                             "--out", str(bundle), "--reason", "r")  # fmt: skip
    assert code == 0, err
    with zipfile.ZipFile(bundle) as zipped:
        names = set(zipped.namelist())
        assert zipped.read("originals/NC-000001.json") == texts[0]
        assert zipped.read("originals/NC-000001-ME1.png") == picture
        assert zipped.read("originals/NC-000002-RE1.wav") == audio
        parameters = json.loads(zipped.read("originals/NC-000001-parameters.json"))
        assert parameters["parameters"]["Body"] == "open the door"
        zipped.extractall(tmp_path / "unpacked")
    assert "originals/NC-000002.json" in names
    result = subprocess.run([sys.executable, "verify.py"], cwd=tmp_path / "unpacked",
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout


def _ask_socket(archive: Path, request: dict[str, object]) -> dict[str, object]:
    """One request on the archive's custody socket, as any local program could send it."""
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection,
        socket_address(archive) as address,
    ):
        connection.settimeout(30)
        connection.connect(address)
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer: dict[str, object] = json.loads(connection.makefile("rb").readline())
    return answer


def test_a_forged_custody_record_is_refused_by_the_daemon(tmp_path: Path) -> None:
    """Over the custody socket, a record without a contact's signature (the issue's: contact
    0123456789abcdef, release, dated 2020), one signed by a key not in the config, and a
    replay of a stored one (at once, with the daemon stopped, and after a restart) are each
    refused with one line; only the real one is stored, dated by the daemon."""
    key, stranger = tmp_path / "dana.key", tmp_path / "stranger.key"
    _, out, _ = nocontact("contact", "keygen", "--out", str(key))
    nocontact("contact", "keygen", "--out", str(stranger))
    recipient = next(line for line in out.splitlines() if line.startswith("age1"))
    custody_key = out.split("custody key: ")[1].split()[0]
    port, config = free_port(), tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_data(
        archive={"path": str(tmp_path / "archive")},
        contacts=[{"name": "Dana", "role": "lawyer", "age_recipient": recipient,
                   "custody_key": custody_key}],
        channels={"smtp": {"listen": f"127.0.0.1:{port}",
                           "deliver": f"maildir:{tmp_path / 'mail'}"}},
    )))  # fmt: skip
    archive = tmp_path / "archive"
    identity = pyrage.x25519.Identity.from_str(key.read_text().split()[-1])
    other = pyrage.x25519.Identity.from_str(stranger.read_text().split()[-1])
    forged: dict[str, object] = {"contact": "0123456789abcdef", "action": "release",
                                 "items": [], "at": "2020-01-01T00:00:00+00:00",
                                 "reason": ""}  # fmt: skip
    with daemon(config, port) as process:
        _send_sync(port, "mark.smith@gmail.com", MESSAGES[0][1])
        assert _ask_socket(archive, forged) == {"error": "not a custody record"}
        unsigned = {**forged, "nonce": "00" * 16, "signature": ""}
        assert "no custody key is configured" in str(_ask_socket(archive, unsigned)["error"])
        wrong = signed_request(other, action="release", items=[], reason="")
        impostor = {**wrong.to_json(), "contact": fingerprint(recipient)}
        assert "not signed by contact" in str(_ask_socket(archive, impostor)["error"])
        real = signed_request(identity, action="show", items=[1], reason="checking")
        assert "index" in _ask_socket(archive, real.to_json())
        assert "stored already" in str(_ask_socket(archive, real.to_json())["error"])
        with pytest.raises(CustodyProblem, match="not signed by contact"):
            record_custody(archive, impostor_request(wrong, fingerprint(recipient)))
        process.terminate()
        process.wait(timeout=60)
    with pytest.raises(CustodyProblem, match="stored already"):  # no daemon: this process writes
        record_custody(archive, real)
    with daemon(config, port) as process:  # a replay after a restart
        assert "stored already" in str(_ask_socket(archive, real.to_json())["error"])
        process.terminate()
        process.wait(timeout=60)
    [entry] = open_archive(archive, identity).custody()
    assert (entry.action, entry.items, entry.reason, entry.signed) == ("show", (1,), "checking",
                                                                     "verified")  # fmt: skip
    assert entry.at[:4] != "2020"
    assert (
        archive / layout.CUSTODY_KEYS
    ).read_text() == f"{fingerprint(recipient)} {custody_key}\n"
    assert (archive / layout.CUSTODY_KEYS).stat().st_mode & 0o777 == 0o600


def impostor_request(request: CustodyRequest, contact: str) -> CustodyRequest:
    """`request`, claiming to be by `contact`."""
    return dataclasses.replace(request, contact=contact)


def test_offline_custody_checks_the_published_keys(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """With no daemon, the tool writing the log itself refuses a record signed by another key
    and stores nothing."""
    archive, _, recipient = held
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(archive), str(copy)], check=True)
    size = (copy / "log" / "00000001.seg").read_bytes()
    other = signed_request(pyrage.x25519.Identity.generate(), action="release", items=[],
                           reason="")  # fmt: skip
    with pytest.raises(CustodyProblem, match="not signed by contact"):
        record_custody(copy, impostor_request(other, fingerprint(recipient)))
    with pytest.raises(CustodyProblem, match="no custody key is configured"):
        record_custody(copy, other)
    assert (copy / "log" / "00000001.seg").read_bytes() == size


def test_keygen_and_pubkey_print_the_same_custody_key(tmp_path: Path) -> None:
    """keygen prints the custody key derived from the identity; pubkey prints it again."""
    key = tmp_path / "k"
    _, made, _ = nocontact("contact", "keygen", "--out", str(key))
    code, again, _ = nocontact("contact", "pubkey", "--identity", str(key))
    assert code == 0
    line = next(x for x in made.splitlines() if x.startswith("custody key: ed25519:"))
    assert line in again.splitlines()
    identity = pyrage.x25519.Identity.from_str(key.read_text().split()[-1])
    assert line == f"custody key: {custody_public_key(identity)}"


def test_a_bad_custody_signature_is_shown_and_fails_the_bundle(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """A custody entry whose signature does not verify (written into a copy of the log by
    hand) reads as such, and the bundle's verify.py names it and fails; an older unsigned
    entry reads as unsigned."""
    archive, key, recipient = held
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(archive), str(copy)], check=True)
    identity = pyrage.x25519.Identity.from_str(key.read_text().split()[-1])
    request = signed_request(identity, action="show", items=[1], reason="a look")
    forged = CustodyRecord(contact=request.contact, action="release", items=(1,),
                           at=datetime.now(UTC), reason="a look", nonce=request.nonce,
                           signature=request.signature)  # fmt: skip
    old = CustodyRecord(contact=request.contact, action="list", items=(), at=datetime.now(UTC))
    log = ArchiveLog.open(copy)
    sealed = [seal_custody(r, Recipients.parse([recipient])) for r in (forged, old)]
    log.append([(EntryKind.SEALED, body) for body in sealed], checkpoint=True,
               now=datetime.now(UTC))  # fmt: skip
    log.close()
    signed = {e.action: e.signed for e in open_archive(copy, identity).custody()[-2:]}
    assert signed == {"release": "SIGNATURE DOES NOT VERIFY", "list": UNSIGNED}
    out = tmp_path / "b.zip"
    code, _, err = nocontact("contact", "export", "--archive", str(copy), "--identity",
                             str(key), "--out", str(out), "--reason", "r")  # fmt: skip
    assert code == 0, err
    with zipfile.ZipFile(out) as bundle:
        bundle.extractall(tmp_path / "unpacked")
    done = subprocess.run([sys.executable, "verify.py"], cwd=tmp_path / "unpacked",
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 1
    assert "its signature does not verify" in done.stdout


def test_an_empty_export_says_what_it_left_out_and_records_itself(
    held: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """--until 2020-01-01 selects nothing: the manifest records the selection and every entry
    it left out with why, custody.json holds the export's own signed record, and verify.py
    passes saying so, naming the exporter's custody key that signed the manifest."""
    archive, key, _ = held
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(archive), str(copy)], check=True)
    out = tmp_path / "b.zip"
    code, _, err = nocontact("contact", "export", "--archive", str(copy), "--identity",
                             str(key), "--out", str(out), "--reason", "court",
                             "--until", "2020-01-01")  # fmt: skip
    assert code == 0, err
    with zipfile.ZipFile(out) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        custody = json.loads(bundle.read("custody.json"))
        bundle.extractall(tmp_path / "unpacked")
    selection = {"since": None, "until": "2020-01-01", "person": None, "channel": None}
    assert manifest["selection"] == selection
    whys = [entry["why"] for entry in manifest["left_out"]]
    assert whys.count("after --until") == 3
    assert len(whys) == manifest["archive"]["tree_size"]
    own = custody["entries"][-1]
    assert (own["sequence"], own["action"], own["signed"]) == (
        manifest["export_custody_entry"],
        "export",
        "verified",
    )
    done = subprocess.run([sys.executable, "verify.py"], cwd=tmp_path / "unpacked",
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "3 after --until" in done.stdout
    identity = pyrage.x25519.Identity.from_str(key.read_text().split()[-1])
    assert f"their custody key: {custody_public_key(identity)}" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("bundle OK: 0 items")
