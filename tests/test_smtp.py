"""The SMTP channel: replies come last, held and delivered look alike, faults mean 451."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyrage
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink
from aiosmtpd.smtp import SMTP, Envelope, Session
from structlog.testing import capture_logs

from proxy import logs
from proxy.archive import Archive, EntryKind, verify_archive
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.seal import parse_sealed
from proxy.archive.segments import segment_name
from proxy.channels.smtp import ACCEPTED, SmtpHandler, serve_smtp
from proxy.config.model import SmtpChannel
from proxy.deliver.address import parse_destination
from proxy.deliver.hops import open_next_hop
from proxy.pipeline import Pipeline
from tests.factories import config_data, loopback_certificate, make_rules

IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
HELD = b"From: Mark <mark.smith@gmail.com>\r\nSubject: CANARY\r\n\r\nit's me\r\n"
ALLOWED = b"From: friend@example.org\r\nSubject: lunch\r\n\r\nnoon?\r\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def held_items(root: Path) -> list[tuple[dict[str, Any], bytes]]:
    """Every sealed item in an archive, decrypted with the test contact's key."""
    found = []
    log_dir = root / "log"
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                if record.header.kind is EntryKind.SEALED:
                    found.append(parse_sealed(pyrage.decrypt(bytes(record.body), [IDENTITY])))
                del record
    return found


def maildir_messages(root: Path) -> list[bytes]:
    new = root / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.exists() else []


class Service:
    """An in-process SMTP channel on a free port, with a real archive and next hop."""

    def __init__(self, tmp: Path, deliver: str, **settings: Any) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.settings = SmtpChannel(listen=f"127.0.0.1:{self.port}", deliver=deliver, **settings)
        self.archive_path = tmp / "archive"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SmtpHandler]:
        archive = await Archive.open(self.archive_path, recipients=[RECIPIENT])
        pipeline = Pipeline(
            rules=make_rules(), archive=archive,
            next_hop=open_next_hop(parse_destination(self.settings.deliver), hostname="test"),
            hostname="nocontact.test", default_region="US",
        )  # fmt: skip
        handler = SmtpHandler(pipeline)
        server = await serve_smtp(self.settings, handler)
        try:
            yield handler
        finally:
            server.close()
            await server.wait_closed()
            await pipeline.next_hop.aclose()
            await archive.close()

    async def send(self, sender: str, message: bytes, **options: Any) -> tuple[int, bytes]:
        """Send with smtplib (in a thread) and return the reply to DATA."""
        return await asyncio.to_thread(self._send, sender, message, options)

    def _send(self, sender: str, message: bytes, options: dict[str, Any]) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("client.test")
            if options.get("starttls"):
                import ssl  # noqa: PLC0415 - only this test path needs it

                client.starttls(context=ssl._create_unverified_context())  # noqa: S323 - self-signed test cert
                client.ehlo("client.test")
            client.mail(sender, options.get("mail_options", []))
            client.rcpt("sam@home.example")
            reply: tuple[int, bytes] = client.data(message)
            return reply


def test_held_is_sealed_and_allowed_is_delivered_byte_identical(tmp_path: Path) -> None:
    """A held message is sealed and a delivered one arrives byte for byte, plus one Received."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}")

    async def run() -> list[tuple[int, bytes]]:
        async with service.running():
            return [
                await service.send("mark.smith@gmail.com", HELD),
                await service.send("friend@example.org", ALLOWED),
            ]

    replies = asyncio.run(run())
    assert replies[0] == replies[1] == (250, ACCEPTED[4:].encode())
    (delivered,) = maildir_messages(tmp_path / "mail")
    trace, _, rest = delivered.partition(b"\r\n\tby nocontact.test (nocontact) with ESMTP;\r\n\t")
    assert trace.startswith(b"Received: from client.test (127.0.0.1)")
    assert rest.split(b"\r\n", 1)[1] == ALLOWED
    ((metadata, original),) = held_items(service.archive_path)
    assert original == HELD
    assert metadata["rule"]["id"] == "people.mark.emails"
    assert metadata["envelope"] == {"sender": "mark.smith@gmail.com",
                                    "recipients": ["sam@home.example"]}  # fmt: skip
    verify_archive(service.archive_path)


def test_next_hop_down_means_450_at_rcpt_and_nothing_kept(tmp_path: Path) -> None:
    """A next hop that cannot be asked about the recipient: 450 at RCPT (try later), the
    same for his mail and a friend's, and nothing is stored anywhere."""
    service = Service(tmp_path, f"smtp://127.0.0.1:{free_port()}")

    async def run() -> list[tuple[bytes, bytes]]:
        async with service.running():
            return [
                await asyncio.to_thread(_envelope_replies, service.port, sender, "sam@home.example")
                for sender in ("friend@example.org", "mark.smith@gmail.com")
            ]

    replies = asyncio.run(run())
    assert replies[0] == replies[1]
    assert replies[0][1].startswith(b"450 4.1.1 ")
    assert held_items(service.archive_path) == []


class _Recorder(Sink):
    def __init__(self, code: str = "250 OK") -> None:
        self.messages: list[bytes] = []
        self.code = code

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        if self.code.startswith("250"):
            self.messages.append(envelope.original_content or b"")
        return self.code


@contextlib.contextmanager
def sink(code: str = "250 OK") -> Iterator[tuple[int, _Recorder]]:
    recorder = _Recorder(code)
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def test_smtp_next_hop_gets_exact_bytes_and_utf8(tmp_path: Path) -> None:
    """Over SMTP, an SMTPUTF8 message with 8-bit text reaches the next hop unchanged."""
    message = "From: Zoë <zoë@exämple.org>\r\nSubject: café\r\n\r\nnaïve\r\n".encode()
    with sink() as (port, recorder):
        service = Service(tmp_path, f"smtp://127.0.0.1:{port}")

        async def run() -> tuple[int, bytes]:
            async with service.running():
                return await service.send("zoë@exämple.org", message,
                                          mail_options=["SMTPUTF8", "BODY=8BITMIME"])  # fmt: skip

        assert asyncio.run(run())[0] == 250
    (received,) = recorder.messages
    assert received.endswith(message)
    assert received.count(b"Received:") == 1


def test_next_hop_refusal_of_allowed_mail_is_passed_back(tmp_path: Path) -> None:
    """A permanent refusal by the next hop is the sender's answer; a 4xx becomes 451."""
    for code, expected in (("550 5.1.1 no such user", 550), ("452 4.2.2 full", 451)):
        with sink(code) as (port, _):
            service = Service(tmp_path / str(expected), f"smtp://127.0.0.1:{port}")
            (tmp_path / str(expected)).mkdir()

            async def run(service: Service = service) -> tuple[int, bytes]:
                async with service.running():
                    return await service.send("friend@example.org", ALLOWED)

            assert asyncio.run(run())[0] == expected


def test_held_mail_never_reaches_the_next_hop(tmp_path: Path) -> None:
    """Mail from him is sealed and answered 250 even while the next hop refuses everything."""
    with sink("550 5.7.1 refused") as (port, recorder):
        service = Service(tmp_path, f"smtp://127.0.0.1:{port}")

        async def run() -> tuple[int, bytes]:
            async with service.running():
                return await service.send("mark.smith@gmail.com", HELD)

        assert asyncio.run(run())[0] == 250
    assert recorder.messages == []
    assert len(held_items(service.archive_path)) == 1


def test_archive_failure_means_451(tmp_path: Path) -> None:
    """If sealing fails (the archive's segment vanished), the sender is told to retry."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}")

    async def run() -> tuple[int, bytes]:
        async with service.running():
            (service.archive_path / "log" / segment_name(1)).unlink()
            return await service.send("mark.smith@gmail.com", HELD)

    with capture_logs(processors=[logs.redact]) as captured:
        assert asyncio.run(run())[0] == 451
    refusals = [e for e in captured if e["event"] == "message not accepted, sender told to retry"]
    assert refusals
    assert all("error" not in e and "where" not in e for e in refusals)  # nothing says "held"


def test_size_limit_is_552(tmp_path: Path) -> None:
    """A message over max_message_bytes is refused with 552 and stored nowhere."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}", max_message_bytes=2048)

    async def run() -> int:
        async with service.running():
            try:
                return (
                    await service.send("friend@example.org", ALLOWED + (b"x" * 70 + b"\r\n") * 80)
                )[0]
            except smtplib.SMTPDataError as error:
                return error.smtp_code

    assert asyncio.run(run()) == 552
    assert maildir_messages(tmp_path / "mail") == []


def test_starttls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    """With a certificate configured, STARTTLS is offered and mail flows over TLS."""
    cert, key = loopback_certificate(tmp_path)
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}",
                      tls_cert_file=str(cert), tls_key_file=str(key))  # fmt: skip

    async def run() -> tuple[int, bytes]:
        async with service.running():
            return await service.send("friend@example.org", ALLOWED, starttls=True)

    assert asyncio.run(run())[0] == 250
    assert len(maildir_messages(tmp_path / "mail")) == 1


# -- the daemon as a process -------------------------------------------------------------


def _write_config(
    path: Path, port: int, people: list[dict[str, Any]] | None = None, *,
    recipient: str | None = None,
) -> None:  # fmt: skip
    data = config_data(
        archive={"path": str(path.parent / "archive")},
        contacts=[
            {"name": "Test Contact", "role": "lawyer", "age_recipient": recipient or RECIPIENT}
        ],
        channels={"smtp": {"listen": f"127.0.0.1:{port}",
                           "deliver": f"maildir:{path.parent / 'mail'}"}},
    )  # fmt: skip
    if people is not None:
        data["people"] = people
    path.write_text(yaml.safe_dump(data))


def _wait_for_port(port: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited: {process.communicate()[1]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise AssertionError("daemon did not start listening")


@contextlib.contextmanager
def daemon(config: Path, port: int, **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """`nocontact run -c config`, once it listens on `port`; its output piped unless
    `popen` says where (stdout=, stderr=), killed if still running at the end."""
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy", "run", "-c", str(config)], text=True, **streams,
    )  # fmt: skip
    try:
        _wait_for_port(port, process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def stopped(process: subprocess.Popen[str]) -> str:
    """SIGTERM the daemon; its stderr, once it has exited 0."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    return stderr


def _send_sync(port: int, sender: str, message: bytes) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(sender, ["sam@home.example"], message)
    return 250


def test_sigterm_stops_cleanly_and_sighup_reloads_rules(tmp_path: Path) -> None:
    """SIGHUP applies new rules without a restart, a broken config is refused, SIGTERM exits 0."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    newcomer = b"From: new.alias@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
    with daemon(config, port) as process:
        _send_sync(port, "new.alias@example.net", newcomer)
        people = [{"id": "mark", "name": "Mark Smith", "emails": ["new.alias@example.net"]}]
        _write_config(config, port, people=people)
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        _send_sync(port, "new.alias@example.net", newcomer)
        config.write_text("people: [not valid")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        _send_sync(port, "new.alias@example.net", newcomer)
        stderr = stopped(process)
    assert len(maildir_messages(tmp_path / "mail")) == 1
    assert len(held_items(tmp_path / "archive")) == 2
    assert "reload refused" in stderr
    assert "new.alias" not in stderr
    verify_archive(tmp_path / "archive")


def test_second_daemon_on_the_same_archive_refuses(tmp_path: Path) -> None:
    """A second daemon on an archive in use exits 2 with one clear line."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    with daemon(config, port):
        other = tmp_path / "other.yaml"
        _write_config(other, free_port())
        other.write_text(other.read_text())
        result = subprocess.run(
            [sys.executable, "-m", "proxy", "run", "-c", str(other)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2
    assert "in use by another nocontact process" in result.stderr
    assert "Traceback" not in result.stderr


def test_example_config_runs_with_no_other_server(tmp_path: Path) -> None:
    """The shipped example starts as is, with a loud demo-key warning, and holds his mail."""
    example = Path(__file__).resolve().parent.parent / "config.example.yaml"
    text = example.read_text()
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("listen: 127.0.0.1:2525", f"listen: 127.0.0.1:{port}"))
    with daemon(config, port) as process:
        _send_sync(port, "mark.smith@gmail.com", HELD)
        _send_sync(port, "friend@example.org", ALLOWED)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert "DEMO CONTACT" in stderr
    assert (tmp_path / "var" / "demo-contact.key").exists()
    assert len(maildir_messages(tmp_path / "var" / "mail")) == 1
    verify_archive(tmp_path / "var" / "archive")


def test_dot_stuffed_lines_arrive_unchanged(tmp_path: Path) -> None:
    """Lines that start with dots (stuffed by the client) arrive exactly as written."""
    message = (
        b"From: friend@example.org\r\nSubject: dots\r\n\r\n.one\r\n..two\r\n.\r\n...\r\nend\r\n"
    )
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}")

    async def run() -> tuple[int, bytes]:
        async with service.running():
            return await service.send("friend@example.org", message)

    assert asyncio.run(run())[0] == 250
    (delivered,) = maildir_messages(tmp_path / "mail")
    assert delivered.endswith(b"\r\n" + message)


LONG_HEADER = b"DKIM-Signature: v=1; h=" + b":".join([b"from"] * 999) + b"\r\n"
LONG_BODY_LINE = b"\r\n" + b"y" * (1 << 20) + b"\r\n"


def _long_line_letters() -> list[tuple[str, bytes]]:
    """His and a friend's message with a 5,000-byte header line, then with a 1 MB line."""
    letters = []
    for sender, message in (("mark.smith@gmail.com", HELD), ("friend@example.org", ALLOWED)):
        head, _, body = message.partition(b"\r\n\r\n")
        assert len(LONG_HEADER) > 5000
        letters.append((sender, head + b"\r\n" + LONG_HEADER + b"\r\n" + body))
        letters.append((sender, message + b"." + LONG_BODY_LINE))  # a stuffed dot, too
    return letters


def test_long_lines_are_accepted_held_and_delivered(tmp_path: Path) -> None:
    """The daemon takes a 5,000-byte header line and a 1 MB line: sealed when held,
    delivered byte-identical when allowed, 250 either way."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    letters = _long_line_letters()
    with daemon(config, port) as process:
        replies = []
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("client.test")
            for sender, message in letters:
                client.mail(sender)
                client.rcpt("sam@home.example")
                replies.append(client.data(message)[0])
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert replies == [250] * 4
    delivered = maildir_messages(tmp_path / "mail")
    allowed = [m for s, m in letters if s == "friend@example.org"]
    assert sorted(m.split(b"\r\n", 3)[3] for m in delivered) == sorted(allowed)
    sealed = [original for _, original in held_items(tmp_path / "archive")]
    assert sorted(sealed) == sorted(m for s, m in letters if s == "mark.smith@gmail.com")
    verify_archive(tmp_path / "archive")


def test_long_line_over_the_size_limit_is_552_held_or_not(tmp_path: Path) -> None:
    """One line longer than max_message_bytes is 552 for his mail and a friend's alike,
    and nothing is kept."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}", max_message_bytes=4096)

    async def run() -> list[tuple[int, bytes]]:
        replies = []
        async with service.running():
            for sender, message in (
                ("mark.smith@gmail.com", HELD),
                ("friend@example.org", ALLOWED),
            ):
                replies.append(await service.send(sender, message + b"z" * 5000 + b"\r\n"))
        return replies

    held, allowed = asyncio.run(run())
    assert held == allowed
    assert held[0] == 552
    assert maildir_messages(tmp_path / "mail") == []
    assert held_items(service.archive_path) == []


def _envelope_replies(port: int, sender: str, recipient: str) -> tuple[bytes, bytes]:
    """The raw replies to MAIL and RCPT (smtplib would not send control characters)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        lines = sock.makefile("rb")

        def say(command: bytes) -> bytes:
            sock.sendall(command + b"\r\n")
            while (line := lines.readline())[3:4] == b"-":
                pass
            return line

        lines.readline()
        say(b"EHLO client.test")
        mail = say(b"MAIL FROM:<" + sender.encode() + b">")
        return mail, say(b"RCPT TO:<" + recipient.encode() + b">")


def test_control_characters_in_an_address_are_501_held_or_not(tmp_path: Path) -> None:
    """MAIL or RCPT with a control character gets Postfix's 501, word for word the same
    whether the sender is his address or a friend's; nothing is sealed or delivered."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}")

    async def run() -> list[tuple[bytes, bytes]]:
        async with service.running():
            return [
                await asyncio.to_thread(_envelope_replies, service.port, sender, recipient)
                for sender, recipient in [
                    ("mark.smith@gmail.com\x01", "sam@home.example"),
                    ("friend@example.org\x01", "sam@home.example"),
                    ("mark.smith@gmail.com", "sam\x7f@home.example"),
                    ("friend@example.org", "sam\x1b@home.example"),
                ]
            ]

    replies = asyncio.run(run())
    assert replies[0] == replies[1] == (b"501 5.1.7 Bad sender address syntax\r\n",
                                        b"503 Error: need MAIL command\r\n")  # fmt: skip
    assert replies[2][1] == replies[3][1] == b"501 5.1.3 Bad recipient address syntax\r\n"
    assert maildir_messages(tmp_path / "mail") == []
    assert held_items(service.archive_path) == []


def test_held_and_delivered_mail_are_answered_after_the_same_time(tmp_path: Path) -> None:
    """The reply to DATA takes reply_after_ms whether the message was sealed or delivered:
    over 40 of each, sent in turn, the medians differ by well under a millisecond, and
    neither comes sooner than the floor. The floor is 50 ms here: on a test machine busy
    with other suites, sealing (a child process and an fsync) has taken 28 ms, and an
    answer later than the floor shows its path's own time (as it would in production if
    reply_after_ms were set below what the disk needs)."""
    port, config = free_port(), tmp_path / "config.yaml"
    _write_config(config, port)
    data = yaml.safe_load(config.read_text())
    data["channels"]["smtp"]["reply_after_ms"] = 50
    config.write_text(yaml.safe_dump(data))
    times: dict[bool, list[float]] = {True: [], False: []}
    with daemon(config, port), smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        for turn in range(82):
            held = turn % 2 == 0
            client.mail("mark.smith@gmail.com" if held else "friend@example.org")
            client.rcpt("sam@home.example")
            started = time.perf_counter()
            code, _ = client.data(HELD if held else ALLOWED)
            if turn >= 2:  # the first of each warms the sealer and the Maildir
                times[held].append(time.perf_counter() - started)
            assert code == 250
    medians = {held: sorted(t)[len(t) // 2] for held, t in times.items()}
    assert min(min(t) for t in times.values()) >= 0.049  # the loop's timers count whole ms
    assert abs(medians[True] - medians[False]) < 0.001, medians
    assert len(held_items(tmp_path / "archive")) == 41
