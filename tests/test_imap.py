"""The IMAP watcher against a real Dovecot: held mail sealed then removed, the rest untouched."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from proxy.archive import verify_archive
from tests import servers
from tests.factories import config_data, loopback_certificate, write_secret
from tests.imap_helpers import imap
from tests.test_smtp import RECIPIENT, held_items

FROM_HIM = "From: Mark <mark.smith@gmail.com>\r\nSubject: {token}\r\n\r\nit's me\r\n"
ABOUT_HIM = "From: friend@example.org\r\nSubject: {token}\r\n\r\nMarky was at the school\r\n"
ALLOWED = "From: friend@example.org\r\nSubject: {token}\r\n\r\nlunch at noon?\r\n"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[servers.Dovecot]:
    root = servers.make_root("nocontact-imap-")
    server = servers.Dovecot(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _append(server: servers.Dovecot, folder: str, template: str) -> str:
    token = uuid.uuid4().hex
    with imap(server) as client:
        client.append(folder, None, None, template.format(token=token).encode())
    return token


def _folder(server: servers.Dovecot, folder: str) -> dict[str, bytes]:
    """Subject token -> flags of every message in `folder`."""
    with imap(server) as client:
        client.select(folder, readonly=True)
        _, found = client.uid("SEARCH", "ALL")
        uids = found[0].split() if found and found[0] else []
        result: dict[str, bytes] = {}
        for uid in uids:
            _, data = client.uid(
                "FETCH", uid.decode(), "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
            )
            head = data[0]
            if isinstance(head, tuple):
                subject = head[1].decode().split(":", 1)[1].strip()
                result[subject] = head[0]
        return result


def _wait(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def _config(tmp: Path, server: servers.Dovecot, **extra: object) -> Path:
    password = tmp / "password"
    write_secret(password, servers.PASSWORD)
    config = tmp / "config.yaml"
    account = {"name": "home", "host": servers.HOST, "port": server.imap_port, "tls": "none",
               "username": servers.USER, "password_file": str(password), **extra}  # fmt: skip
    data = config_data(
        archive={"path": str(tmp / "archive")},
        contacts=[{"name": "Test Contact", "role": "lawyer", "age_recipient": RECIPIENT}],
        channels={"imap": {"accounts": [account], "state_dir": str(tmp / "imap")}},
    )
    config.write_text(yaml.safe_dump(data))
    return config


@contextlib.contextmanager
def _daemon(tmp: Path, server: servers.Dovecot, **extra: object) -> Iterator[subprocess.Popen[str]]:
    config = _config(tmp, server, **extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait(lambda: (tmp / "archive" / "checkpoint").exists() or process.poll() is not None)
    time.sleep(0.5)  # the watchers log in and select their folders
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr


def test_held_mail_is_sealed_then_removed_and_the_rest_untouched(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """From him or about him: sealed and gone from INBOX and Junk; other mail stays unread."""
    with _daemon(tmp_path, dovecot):
        direct = _append(dovecot, "INBOX", FROM_HIM)
        passive = _append(dovecot, servers.JUNK, ABOUT_HIM)
        allowed = _append(dovecot, "INBOX", ALLOWED)
        _wait(lambda: direct not in _folder(dovecot, "INBOX")
              and passive not in _folder(dovecot, servers.JUNK))  # fmt: skip
        time.sleep(1.0)
        inbox = _folder(dovecot, "INBOX")
    assert allowed in inbox
    assert b"\\Seen" not in inbox[allowed]
    subjects = sorted(m["subject"] for m, _ in held_items(tmp_path / "archive"))
    assert subjects == sorted([direct, passive])
    verify_archive(tmp_path / "archive")


def test_restart_resumes_without_sealing_twice(dovecot: servers.Dovecot, tmp_path: Path) -> None:
    """A restart picks up mail that arrived while it was down, and seals nothing twice."""
    with _daemon(tmp_path, dovecot):
        first = _append(dovecot, "INBOX", FROM_HIM)
        _wait(lambda: first not in _folder(dovecot, "INBOX"))
    second = _append(dovecot, "INBOX", FROM_HIM)  # arrives while the daemon is down
    kept = _append(dovecot, "INBOX", ALLOWED)
    with _daemon(tmp_path, dovecot):
        _wait(lambda: second not in _folder(dovecot, "INBOX"))
        time.sleep(1.0)
    subjects = sorted(m["subject"] for m, _ in held_items(tmp_path / "archive"))
    assert subjects == sorted([first, second])
    assert kept in _folder(dovecot, "INBOX")
    verify_archive(tmp_path / "archive")


def _empty(server: servers.Dovecot) -> None:
    """Expunge everything from INBOX and Junk, so each test starts from an empty mailbox."""
    with imap(server) as client:
        for folder in ("INBOX", servers.JUNK):
            _, count = client.select(folder)
            if count and count[0] and int(count[0]) > 0:
                client.store("1:*", "+FLAGS", "\\Deleted")
                client.expunge()
            client.close()


def test_pull_mode_never_leaves_anything_upstream(dovecot: servers.Dovecot, tmp_path: Path) -> None:
    """Pull mode delivers allowed mail to the local Maildir, seals held mail, empties upstream."""
    _empty(dovecot)
    local = tmp_path / "local"
    with _daemon(tmp_path, dovecot, mode="pull", deliver=f"maildir:{local}"):
        held = _append(dovecot, "INBOX", FROM_HIM)
        allowed = _append(dovecot, "INBOX", ALLOWED)
        _wait(lambda: not _folder(dovecot, "INBOX"))
    delivered = [p.read_bytes() for p in (local / "new").iterdir()]
    assert len(delivered) == 1
    assert allowed.encode() in delivered[0]
    assert held.encode() not in delivered[0]
    assert [m["subject"] for m, _ in held_items(tmp_path / "archive")] == [held]


def test_sweep_command_handles_existing_mail_quietly(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """`nocontact imap sweep` seals and removes held mail already there, printing no detail."""
    _empty(dovecot)
    held = [_append(dovecot, "INBOX", FROM_HIM) for _ in range(3)]
    kept = [_append(dovecot, "INBOX", ALLOWED) for _ in range(7)]
    config = _config(tmp_path, dovecot)
    result = subprocess.run(
        [sys.executable, "-m", "proxy", "imap", "sweep", "-c", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(_folder(dovecot, "INBOX")) == sorted(kept)
    assert sorted(m["subject"] for m, _ in held_items(tmp_path / "archive")) == sorted(held)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("home/INBOX: 10 looked at in ")
    assert all(re.fullmatch(r"home/[^:]+: \d+ looked at in [\d.]+ s", line) for line in lines)


def test_poll_mode_removes_held_mail_faster_than_idle(
    dovecot: servers.Dovecot, tmp_path: Path
) -> None:
    """With poll_seconds, held mail is found by polling, well under Dovecot's IDLE delay."""
    _empty(dovecot)
    with _daemon(tmp_path, dovecot, poll_seconds=0.02, folders=["INBOX"]):
        exposures = []
        for _ in range(5):
            token = _append(dovecot, "INBOX", FROM_HIM)
            appended = time.monotonic()
            _wait(lambda token=token: token not in _folder(dovecot, "INBOX"))
            exposures.append(time.monotonic() - appended)
    assert sorted(exposures)[2] < 0.45  # the median; Dovecot's IDLE alone takes ~0.5 s


def test_pull_mode_delivers_through_dovecot_lmtp(dovecot: servers.Dovecot, tmp_path: Path) -> None:
    """Pull mode hands allowed mail to the home server's Dovecot over LMTP, byte for byte."""
    _empty(dovecot)
    home = servers.Dovecot(servers.make_root("nocontact-home-"))
    home.start()
    try:
        with _daemon(tmp_path, dovecot, mode="pull", deliver=home.lmtp_url,
                     deliver_recipient=servers.USER):  # fmt: skip
            held = _append(dovecot, "INBOX", FROM_HIM)
            allowed = _append(dovecot, "INBOX", ALLOWED)
            _wait(lambda: not _folder(dovecot, "INBOX"))
        delivered = home.messages()
    finally:
        home.stop()
        shutil.rmtree(home.root, ignore_errors=True)
    assert len(delivered) == 1
    assert delivered[0].endswith(ALLOWED.format(token=allowed).encode())
    assert [m["subject"] for m, _ in held_items(tmp_path / "archive")] == [held]


class _Introspection(http.server.BaseHTTPRequestHandler):
    """A stand-in OAuth2 token introspection endpoint: 'good-token' is sam's."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.seen.append(body)
        good = "token=good-token" in body
        answer = json.dumps({"active": good, "username": servers.USER} if good else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads `seen` instead."""


def test_xoauth2_login_with_a_token_command(tmp_path: Path) -> None:
    """oauth2_command's printed token logs in with XOAUTH2, and the account is watched."""
    introspection = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Introspection)
    threading.Thread(target=introspection.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{introspection.server_address[1]}/introspect"
    server = servers.Dovecot(servers.make_root("nocontact-oauth-"), oauth2_introspection=url)
    server.start()
    try:
        config = _config(tmp_path, server)
        data = yaml.safe_load(config.read_text())
        account = data["channels"]["imap"]["accounts"][0]
        del account["password_file"]
        account["oauth2_command"] = [sys.executable, "-c", "print('good-token')"]
        config.write_text(yaml.safe_dump(data))
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "run", "-c", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            held = _append(server, "INBOX", FROM_HIM)
            _wait(lambda: held not in _folder(server, "INBOX"))
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
    finally:
        server.stop()
        introspection.shutdown()
        shutil.rmtree(server.root, ignore_errors=True)
    assert any("token=good-token" in body for body in _Introspection.seen)
    assert [m["subject"] for m, _ in held_items(tmp_path / "archive")] == [held]


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_tls_with_a_ca_file_is_verified_and_works(tmp_path: Path, mode: str) -> None:
    """Over implicit TLS or STARTTLS, a server certificate signed by ca_file is accepted."""
    root = servers.make_root("nocontact-tls-")
    cert, key = loopback_certificate(root)
    server = servers.Dovecot(root, tls=(cert, key))
    server.start()
    try:
        port = server.imaps_port if mode == "implicit" else server.imap_port
        with _daemon(tmp_path, server, tls=mode, port=port, ca_file=str(cert)):
            held = _append(server, "INBOX", FROM_HIM)
            _wait(lambda: held not in _folder(server, "INBOX"))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert [m["subject"] for m, _ in held_items(tmp_path / "archive")] == [held]


def test_an_unverifiable_certificate_is_refused(tmp_path: Path) -> None:
    """Without the CA that signed the server's certificate, nothing is fetched or removed."""
    root = servers.make_root("nocontact-tls-")
    cert, key = loopback_certificate(root)
    server = servers.Dovecot(root, tls=(cert, key))
    server.start()
    try:
        with _daemon(tmp_path, server, tls="implicit", port=server.imaps_port):
            held = _append(server, "INBOX", FROM_HIM)
            time.sleep(3.0)
            still_there = held in _folder(server, "INBOX")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert still_there
    assert held_items(tmp_path / "archive") == []
