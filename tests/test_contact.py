"""The trusted contact's commands, end to end: keys, list, show, export, report, custody.

Held items come in through the real SMTP channel (aiosmtpd on loopback, the pipeline, a
real archive); the contact's commands run through `proxy.cli.main` as a user would.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pyrage
import pytest
import yaml
from pypdf import PdfReader

from proxy.access.keys import PASSPHRASE_ENV
from proxy.access.reading import open_archive
from proxy.archive import Archive
from proxy.channels.sms.capture import ArrivalKind, Webhook, capture
from proxy.channels.sms.provider import Media
from proxy.cli import main
from proxy.message import Channel
from proxy.normalize import normalize_sms
from proxy.rules import decide
from tests.factories import RECEIVED_AT, config_data, make_rules
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
    port, config = free_port(), tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_data(
        archive={"path": str(tmp_path / "archive")},
        contacts=[{"name": "Dana", "role": "lawyer", "age_recipient": recipient}],
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
