"""The deployment files: systemd units that verify clean and score at most 1.5, a sandbox the
daemon and the portal really run in, secrets through systemd credentials, a hardened container.

`systemd-analyze` (Debian's `systemd` package, which scripts/test installs) checks the unit
files without a running systemd. What only a service manager applies (mount namespaces,
PrivateUsers=, capability sets) cannot be tried here; the kernel-side part — the unit's own
SystemCallFilter=, MemoryDenyWriteExecute= and RestrictAddressFamilies= — is applied by
tests/unit_sandbox.py with libseccomp (Debian's python3-seccomp), in a mode where any refused
call ends the process, and the daemon and the portal must do their work inside it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.portal_helpers import CONFIG as PORTAL_CONFIG
from tests.replicator_helpers import grow
from tests.s3_server import SeaweedS3
from tests.servers import free_port
from tests.test_smtp import _wait_for_port

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
CONTAINER = ROOT / "deploy" / "container"
SERVICES = ("nocontact.service", "nocontact-portal.service", "nocontact-replicate.service")
SOCKETS = {"nocontact-smtp.socket": "smtp", "nocontact-webhooks.socket": "webhooks",
           "nocontact-portal.socket": "portal"}  # fmt: skip
INSTALLED = "/usr/local/bin/nocontact"  # where the units expect it (docs/install.md)
MAX_EXPOSURE = 1.5
SANDBOX = ROOT / "tests" / "unit_sandbox.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-seccomp

RECIPIENT = "age1v2pf68wd4y0u803wvxxs9uunz2fvcu4ep6jmk7glm32ss8f0tsuskzl33j"


def _analyze(*arguments: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing: install Debian's systemd package")
    return subprocess.run(
        ["systemd-analyze", *arguments], check=False, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The unit files, with ExecStart's /usr/local/bin/nocontact pointed at this checkout's
    installed command: `verify` checks that the command exists, and nothing else changes."""
    command = Path(sys.executable).with_name("nocontact")
    assert command.exists(), f"no {command}: install nocontact into this environment"
    for unit in (*UNITS.glob("*.service"), *UNITS.glob("*.socket")):
        text = unit.read_text().replace(INSTALLED, str(command))
        (tmp_path / unit.name).write_text(text)
    return tmp_path


def test_every_unit_verifies_clean(units: Path) -> None:
    """`systemd-analyze verify` accepts every unit and prints nothing (252 prints a line and
    still exits 0 for an unknown setting, so silence is the check)."""
    files = sorted(str(path) for path in units.iterdir())
    assert len(files) == len(SERVICES) + len(SOCKETS)
    result = _analyze("verify", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


@pytest.mark.parametrize("service", SERVICES)
def test_the_services_exposure_is_at_most_one_and_a_half(units: Path, service: str) -> None:
    """`systemd-analyze security --offline=yes --threshold=15` passes for each service."""
    result = _analyze("security", "--offline=yes", "--threshold=15", str(units / service))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    print(f"{service}: exposure {found.group(1)}")
    assert result.returncode == 0, result.stdout
    assert float(found.group(1)) <= MAX_EXPOSURE


def _settings(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value)
    return found


def test_each_socket_names_its_descriptor_for_its_service() -> None:
    """Every socket unit hands one listening socket, under the name the daemon or the portal
    claims (proxy.systemd.activation), to a service that exists and speaks sd_notify."""
    for name, descriptor in SOCKETS.items():
        socket_unit = _settings(UNITS / name)
        assert socket_unit["FileDescriptorName"] == [descriptor]
        assert socket_unit["Accept"] == ["no"]
        (service,) = socket_unit["Service"]
        assert service == ("nocontact-portal.service" if descriptor == "portal" else SERVICES[0])
        settings = _settings(UNITS / service)
        assert settings["Type"] == ["notify"]
        assert settings["WatchdogSec"]
        assert settings["User"] == ["nocontact"]


def test_both_services_share_one_user_and_state_directory() -> None:
    """The daemon and the portal run as the same static user with the same private state
    directory, so both reach the archive, the portal's accounts and the custody socket."""
    daemon, portal = (_settings(UNITS / service) for service in SERVICES[:2])
    for key in ("User", "Group", "StateDirectory", "StateDirectoryMode", "UMask"):
        assert daemon[key] == portal[key], key
    assert daemon["StateDirectoryMode"] == ["0700"]
    assert daemon["UMask"] == ["0077"]
    assert "DynamicUser" not in daemon


def _credentials_config(directory: Path) -> str:
    return f"""\
archive:
  path: {directory}/archive
contacts:
  - name: Dana Whitfield
    role: lawyer
    age_recipient: {RECIPIENT}
    alerts: {{transports: [dana-mail], tiers: [urgent]}}
people:
  - id: mark
    name: Mark Smith
channels:
  imap:
    state_dir: {directory}/imap
    accounts:
      - name: gmail
        host: imap.gmail.com
        username: sam@gmail.com
        password_file: ${{CREDENTIALS_DIRECTORY}}/imap-password
  sms:
    listen: 127.0.0.1:8088
    public_url: https://home.example/twilio
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token_file: ${{CREDENTIALS_DIRECTORY}}/twilio-auth-token
    number: "+1 555 010 7777"
    forward_to: "+1 555 010 8888"
    state_dir: {directory}/sms
alerts:
  transports:
    dana-mail: {{url_file: "${{CREDENTIALS_DIRECTORY}}/alerts-mail.url"}}
"""


def _check_config(config: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "check-config", "-c", str(config)],
        check=False, capture_output=True, text=True, env=environ, timeout=60,
    )  # fmt: skip


def test_secrets_come_from_the_credentials_directory(tmp_path: Path) -> None:
    """Every `*_file` secret may name `${CREDENTIALS_DIRECTORY}/name`: with the directory laid
    out as systemd lays it (files 0400 in a 0500 directory) the config checks clean; without
    the variable (no LoadCredential= in the unit) each key that uses it is a line naming it."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secrets = {
        "imap-password": "canary-imap-4711",
        "twilio-auth-token": "canary-twilio-4712",
        "alerts-mail.url": "mailtos://alerts:canary-4713@alerts.example?to=d@x.example",
    }
    for name, value in secrets.items():
        (credentials / name).write_text(value)
        (credentials / name).chmod(0o400)
    credentials.chmod(0o500)
    config = tmp_path / "config.yaml"
    config.write_text(_credentials_config(tmp_path))
    environ = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    checked = _check_config(config, {**environ, "CREDENTIALS_DIRECTORY": str(credentials)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    missing = _check_config(config, environ)
    assert missing.returncode == 2
    named = [line for line in missing.stdout.splitlines() + missing.stderr.splitlines()
             if "environment variable is not set: CREDENTIALS_DIRECTORY" in line]  # fmt: skip
    assert [line.rsplit(": ", 2)[0].rsplit(" ", 1)[-1] for line in named] == [
        "channels.imap.accounts[0].password_file", "channels.sms.auth_token_file",
        "alerts.transports.dana-mail.url_file",
    ]  # fmt: skip
    assert "Traceback" not in missing.stderr
    assert all(value not in missing.stdout + missing.stderr for value in secrets.values())


def _require_sandbox() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing: install Debian's systemd package")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import seccomp"], check=False)
    if probe.returncode != 0:
        pytest.skip(f"{SYSTEM_PYTHON} has no seccomp module: install Debian's python3-seccomp")
    if os.geteuid() != 0:
        pytest.skip("the sandbox drops to the unit's limits as root does under systemd")


def _sandboxed(unit: str, *command: str) -> list[str]:
    """COMMAND under the unit's syscall filter, W^X rule and address families (strict: any
    refused call kills the process). The uid stays: the interpreter lives under /root here."""
    uid, gid = str(os.getuid()), str(os.getgid())
    return [SYSTEM_PYTHON, str(SANDBOX), str(UNITS / unit), uid, gid, "--", *command]


# Any call the filter refuses kills the process, but for these, which the unit answers with
# EPERM (SystemCallErrorNumber=) and whose callers carry on: mbind, numpy's OpenBLAS (loaded
# with matplotlib for the pattern report) asking for a NUMA placement of its buffers.
STRICT = {**os.environ, "UNIT_SANDBOX_STRICT": "mbind"}

EXTENSIONS = """
import asyncio, io, os
import ahocorasick_rs, argon2, icu, pyrage, selectolax.lexbor, uvloop
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from fpdf import FPDF

identity = pyrage.x25519.Identity.generate()
sealed = pyrage.encrypt(b"held", [identity.to_public()])
assert pyrage.decrypt(sealed, [identity]) == b"held"
wrapped = pyrage.passphrase.encrypt(b"key", "correct horse")
assert pyrage.passphrase.decrypt(wrapped, "correct horse") == b"key"
key = Ed25519PrivateKey.generate()
key.public_key().verify(key.sign(b"checkpoint"), b"checkpoint")
Scrypt(salt=b"s" * 16, length=32, n=2**14, r=8, p=1).derive(b"passphrase")
hasher = argon2.PasswordHasher()
assert hasher.verify(hasher.hash("passphrase"), "passphrase")
checker = icu.SpoofChecker()
assert checker.getSkeleton(0, "M\\u0430rk") == checker.getSkeleton(0, "Mark")
assert "hello" in selectolax.lexbor.LexborHTMLParser("<p>hello<b>there").text()
assert ahocorasick_rs.AhoCorasick(["mark"]).find_matches_as_strings("hi mark") == ["mark"]
async def tick():
    await asyncio.sleep(0)
    return 1
assert uvloop.run(tick()) == 1
figure = plt.figure()
plt.plot([1, 2, 3])
figure.savefig(io.BytesIO(), format="png")
pdf = FPDF()
pdf.add_page()
pdf.set_font("helvetica", size=12)
pdf.cell(text="report")
pdf.output()
print("extensions ok")
"""


@pytest.mark.parametrize("service", SERVICES)
def test_the_c_extensions_run_with_memory_deny_write_execute(service: str, tmp_path: Path) -> None:
    """pyrage, cryptography, argon2, PyICU, selectolax, ahocorasick, uvloop, matplotlib and
    fpdf2 each do real work under the service's MemoryDenyWriteExecute= and syscall filter."""
    _require_sandbox()
    environ = {**STRICT, "MPLCONFIGDIR": str(tmp_path)}
    result = subprocess.run(
        _sandboxed(service, sys.executable, "-c", EXTENSIONS),
        check=False, capture_output=True, text=True, env=environ, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.strip() == "extensions ok"


def _daemon_config(directory: Path, port: int) -> Path:
    config = directory / "config.yaml"
    config.write_text(f"""\
archive:
  path: {directory}/archive
contacts:
  - name: Demo Contact
    role: contact
    age_recipient_file: {directory}/demo.pub
    demo: true
people:
  - id: mark
    name: Mark Smith
    emails: [mark.smith@gmail.com]
channels:
  smtp:
    listen: 127.0.0.1:{port}
    deliver: maildir:{directory}/mail
    hostname: nocontact.local
""")
    return config


HELD = b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: hi\r\n\r\nhi\r\n"
ALLOWED = (
    b"From: Ana <ana@example.org>\r\nTo: sam@home.example\r\nSubject: lunch\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Lunch on <b>Friday</b>?</p>\r\n"
)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts, ended with SIGKILL if the test did not end them."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def test_the_daemon_holds_delivers_reloads_and_stops_inside_its_units_filter(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    """Inside nocontact.service's syscall filter and W^X rule the daemon starts, seals a held
    message, delivers an allowed one, reloads on SIGHUP and stops cleanly on SIGTERM."""
    _require_sandbox()
    port = free_port()
    config = _daemon_config(tmp_path, port)
    daemon = subprocess.Popen(
        _sandboxed("nocontact.service", sys.executable, "-m", "proxy", "run", "-c", str(config)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=STRICT, cwd=tmp_path,
    )  # fmt: skip
    running.append(daemon)
    _wait_for_port(port, daemon)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.sendmail("mark.smith@gmail.com", ["sam@home.example"], HELD) == {}
        assert client.sendmail("ana@example.org", ["sam@home.example"], ALLOWED) == {}
    daemon.send_signal(signal.SIGHUP)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        assert client.noop()[0] == 250
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err[-2000:]
    assert "config reloaded" in err
    (delivered,) = (tmp_path / "mail" / "new").iterdir()
    assert b"Lunch on" in delivered.read_bytes()
    verified = subprocess.run(
        [sys.executable, "-m", "proxy", "verify", "--archive", str(tmp_path / "archive")],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_portal_serves_inside_its_units_filter(
    tmp_path: Path, running: list[subprocess.Popen[str]]
) -> None:
    """Inside nocontact-portal.service's syscall filter and W^X rule the portal starts and
    serves its login page, and stops cleanly on SIGTERM."""
    _require_sandbox()
    port = free_port()
    text = PORTAL_CONFIG.replace("portal:\n", f"portal:\n  listen: 127.0.0.1:{port}\n")
    text = text.replace("https://home.example/portal/", f"http://127.0.0.1:{port}/")
    config = tmp_path / "config.yaml"
    config.write_text(text)
    portal = subprocess.Popen(
        _sandboxed("nocontact-portal.service", sys.executable, "-m", "proxy", "portal", "-c",
                   str(config)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=STRICT, cwd=tmp_path,
    )  # fmt: skip
    running.append(portal)
    _wait_for_port(port, portal)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=30) as answer:
        assert answer.status == 200
    portal.send_signal(signal.SIGTERM)
    _, err = portal.communicate(timeout=60)
    assert portal.returncode == 0, err[-2000:]


def test_the_replicator_sees_only_the_archive_and_its_own_state() -> None:
    """nocontact-replicate.service runs as the daemon's user (the archive is 0700) but
    cannot reach the signing key or the portal's, IMAP's and SMS's state, and writes only a
    state directory of its own; it loads no credential but the S3 one (a drop-in's)."""
    replicator = _settings(UNITS / "nocontact-replicate.service")
    daemon = _settings(UNITS / "nocontact.service")
    assert replicator["User"] == daemon["User"]
    assert replicator["StateDirectory"] == ["nocontact-replica"]
    hidden = " ".join(replicator["InaccessiblePaths"]).split()
    assert "-/var/lib/nocontact/archive/signing.key" in hidden
    for state in ("portal", "keys", "imap", "sms"):
        assert f"-/var/lib/nocontact/{state}" in hidden
    assert not any(key.startswith("LoadCredential") for key in replicator)
    assert replicator["ProtectSystem"] == ["strict"]


def test_a_replicator_pass_runs_inside_its_units_filter(server: SeaweedS3, tmp_path: Path) -> None:
    """Inside nocontact-replicate.service's syscall filter and W^X rule, `nocontact
    replicate --once` reads the archive and fills the bucket (a real SeaweedFS)."""
    _require_sandbox()
    archive = tmp_path / "archive"
    grow(archive, [3, 40])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "archive": {"path": str(archive)},
        "contacts": [{"name": "Dana Whitfield", "role": "lawyer", "age_recipient": RECIPIENT}],
        "people": [{"id": "mark", "name": "Mark Smith"}],
        "replicate": {
            "endpoint": server.endpoint, "bucket": server.locked_bucket("deploy-replica"),
            "credentials_file": str(server.write_credentials(tmp_path / "s3-credentials")),
            "retention_days": 1, "state_file": str(tmp_path / "replica" / "replica.json"),
        },
    }))  # fmt: skip
    done = subprocess.run(
        _sandboxed("nocontact-replicate.service", sys.executable, "-m", "proxy", "replicate",
                   "-c", str(config), "--once"),
        check=False, capture_output=True, text=True, env=STRICT, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout == "replica up to date\n"
    listed = server.client().list_objects_v2(Bucket="deploy-replica", Prefix="checkpoints/")
    assert listed["KeyCount"] >= 2


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((CONTAINER / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_compose_service_is_hardened() -> None:
    """Each container: read-only root, every capability dropped, no new privileges, a numeric
    non-root user, a minute to stop, /tmp a tmpfs, config read-only, state in a volume."""
    services = _compose()["services"]
    assert set(services) == {"nocontact", "portal"}
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["stop_grace_period"] == "1m", name
        uid, _, gid = service["user"].partition(":")
        assert uid.isdigit(), name
        assert gid.isdigit(), name
        assert int(uid) != 0, name
        assert int(gid) != 0, name
        assert any(mount.startswith("/tmp:") for mount in service["tmpfs"]), name
        assert "./config:/config:ro" in service["volumes"], name
        assert "state:/state" in service["volumes"], name
        assert all(port.startswith("127.0.0.1:") for port in service["ports"]), name
    assert services["nocontact"]["command"] == ["run", "-c", "/config/config.yaml"]
    assert services["portal"]["command"] == ["portal", "-c", "/config/config.yaml"]


def _instructions() -> list[tuple[str, str]]:
    """The Containerfile's instructions, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (CONTAINER / "Containerfile").read_text())
    lines = [line.strip() for line in joined.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def test_the_image_runs_one_process_as_a_numeric_user_with_a_health_check() -> None:
    """The image: Debian slim, a numeric non-root USER before the end, volumes, a HEALTHCHECK
    running `nocontact health`, the daemon as its one command."""
    instructions = _instructions()
    assert ("ARG", "BASE=docker.io/library/debian:bookworm-slim") in instructions
    users = [value for key, value in instructions if key == "USER"]
    assert users == ["10001:10001"]
    last_stage = max(i for i, (key, _) in enumerate(instructions) if key == "FROM")
    assert next(i for i, (key, _) in enumerate(instructions) if key == "USER") > last_stage
    health = next(value for key, value in instructions if key == "HEALTHCHECK")
    assert '"nocontact", "health", "-c", "/config/config.yaml"' in health
    assert ("ENTRYPOINT", '["nocontact"]') in instructions
    assert ("CMD", '["run", "-c", "/config/config.yaml"]') in instructions
    assert any(key == "VOLUME" and "/state" in value for key, value in instructions)


# What this sandbox's podman needs (and a home server's does not): crun refuses cgroups in
# hybrid mode and runc needs the host's cgroup namespace; the default rlimits exceed the
# hard limits here; the bridge network cannot be set up, so the host's loopback is used.
ENGINE = ["podman", "--runtime", "runc"]
WORKAROUNDS = ["--cgroupns=host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
               "--network=host"]  # fmt: skip
BASE_IMAGE = "localhost/nocontact-test-base:bookworm"
IMAGE = "localhost/nocontact:test"


def _engine(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENGINE, *arguments], check=False, capture_output=True, text=True, timeout=timeout
    )


def _require_container_engine() -> None:
    if os.environ.get("NOCONTACT_CONTAINER_TEST") != "1":
        pytest.skip("building the image takes minutes: set NOCONTACT_CONTAINER_TEST=1 to run it")
    for tool in ("podman", "runc", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing: apt-get install podman runc mmdebstrap")
    if os.geteuid() != 0:
        pytest.skip("the image is built and run by root's podman here")


def _base_image(tmp_path: Path) -> None:
    """A Debian 12 minbase image made from Debian's packages (no image registry is reachable
    here), standing in for debian:bookworm-slim through the Containerfile's BASE."""
    if _engine("image", "exists", BASE_IMAGE).returncode == 0:
        return
    tarball = tmp_path / "bookworm.tar"
    subprocess.run(
        ["mmdebstrap", "--variant=minbase", "--mode=root", "bookworm", str(tarball)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    imported = _engine("import", str(tarball), BASE_IMAGE, timeout=300)
    assert imported.returncode == 0, imported.stderr


def test_the_image_builds_and_runs_read_only_without_capabilities(tmp_path: Path) -> None:
    """The image builds, carries its health check and numeric user, and its daemon, run
    read-only with every capability dropped and no new privileges, holds and delivers mail
    into the state volume and stops cleanly on SIGTERM."""
    _require_container_engine()
    _base_image(tmp_path)
    certificate = os.environ.get("PIP_CERT", "")
    mount = ["-v", f"{certificate}:/run/host-ca.crt:ro", "--build-arg",
             "PIP_CERT=/run/host-ca.crt"] if certificate else []  # fmt: skip
    built = _engine(
        "build", "--format", "docker", *WORKAROUNDS, *mount, "--build-arg", f"BASE={BASE_IMAGE}",
        "-f", str(CONTAINER / "Containerfile"), "-t", IMAGE, str(ROOT), timeout=1800,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    inspected = _engine("image", "inspect", IMAGE, "--format",
                        "{{.Config.User}} {{json .Config.Healthcheck.Test}}")  # fmt: skip
    assert inspected.stdout.strip() == (
        '10001:10001 ["CMD","nocontact","health","-c","/config/config.yaml"]'
    )
    port = free_port()
    config_dir, state = tmp_path / "config", tmp_path / "state"
    config_dir.mkdir(mode=0o755)
    state.mkdir(mode=0o700)
    os.chown(state, 10001, 10001)
    (config_dir / "config.yaml").write_text(
        _daemon_config(tmp_path, port).read_text().replace(str(tmp_path), "/state")
    )
    (config_dir / "config.yaml").chmod(0o644)
    name = f"nocontact-test-{port}"
    started = _engine(
        "run", "-d", "--name", name, *WORKAROUNDS, "--read-only", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "--user", "10001:10001", "--init",
        "--tmpfs", "/tmp:size=64m,mode=1777", "-v", f"{config_dir}:/config:ro",
        "-v", f"{state}:/state", IMAGE,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        for _ in range(120):
            if _engine("logs", name).stderr.count("smtp listening"):
                break
            subprocess.run(["sleep", "0.5"], check=True)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            assert client.sendmail("mark.smith@gmail.com", ["sam@home.example"], HELD) == {}
            assert client.sendmail("ana@example.org", ["sam@home.example"], ALLOWED) == {}
        stopped = _engine("stop", "-t", "60", name)
        assert stopped.returncode == 0, stopped.stderr
        code = _engine("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        assert code == "0", _engine("logs", name).stderr[-2000:]
    finally:
        _engine("rm", "-f", name)
    (delivered,) = (state / "mail" / "new").iterdir()
    assert b"Lunch on" in delivered.read_bytes()
    assert (state / "archive").stat().st_uid == 10001
    assert (state / "archive" / "sealed").exists()
