"""Private Dovecot and Postfix instances on loopback, for the integration tests (no pytest).

Rules this module keeps:
1. Real servers, real commands: `dovecot -F -c FILE` and `postfix -c DIR start/stop`, each
   with its own config, run and log directories under one temporary root, listening on
   127.0.0.1 only, on ports picked free when the instance is made.
2. A server is ready when its port greets a client; one that does not come up, or exits,
   raises `ServerError` with the tail of its own log, so a failure explains itself.
3. The one change outside the temporary roots is the single line Postfix insists on in
   /etc/postfix/main.cf (`alternate_config_directories`, plus `maillog_file_prefixes`), kept
   under a lock and pruned of directories that no longer exist, so it never grows.
4. Ownership follows what the daemons demand as root: mail belongs to `dovecot`, Postfix's
   data directory to `postfix`, and every directory on the way is world-searchable.
"""

from __future__ import annotations

import contextlib
import fcntl
import imaplib
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HOST = "127.0.0.1"
USER = "sam"
PASSWORD = "secret"
DOMAIN = "example.test"
ADDRESS = f"{USER}@{DOMAIN}"
JUNK = "Junk"
TRASH = "Trash"
ALL_MAIL = "AllMail"  # Gmail's is "[Gmail]/All Mail"; a name without quotes suits imaplib
START_SECONDS = 20.0

_SYSTEM_MAIN_CF = Path("/etc/postfix/main.cf")
_SYSTEM_LOCK = Path("/etc/postfix/.nocontact-tests.lock")


class ServerError(RuntimeError):
    """A private server did not start, stop or answer as expected."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def greets(port: int, timeout: float = 1.0) -> bool:
    """True when something on `port` accepts a connection and sends its greeting."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as connection:
            return bool(connection.recv(512))
    except OSError:
        return False


def closed(port: int) -> bool:
    """True when nothing accepts connections on `port`."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return False
    except OSError:
        return True


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    log: Path,
    timeout: float = START_SECONDS,
    alive: Callable[[], bool] = lambda: True,
) -> None:
    """Poll `ready` until it holds; `ServerError` with the log's tail on timeout or death."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise ServerError(f"{what} exited; last lines of {log}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise ServerError(
                f"{what} not ready in {timeout:.0f} s; last lines of {log}:\n{log_tail(log)}"
            )
        time.sleep(0.05)


def require(command: str, packages: str) -> None:
    """`ServerError` naming the packages to install when `command` is not installed."""
    if shutil.which(command) is None and not Path("/usr/sbin", command).exists():
        raise ServerError(f"{command} is not installed (Debian: apt-get install {packages})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _chown(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def make_root(prefix: str) -> Path:
    """A fresh world-searchable directory (daemons dropping root must be able to enter it)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


# -- Dovecot -------------------------------------------------------------------------------

_DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = nocontact-test-{imap_port}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 100
mail_location = maildir:{root}/mail/%n
# IDLE learns of new mail through inotify; where it cannot (every test Dovecot's imap
# processes run as the one `dovecot` user, whose inotify instances are capped at 128), it
# looks every mailbox_idle_check_interval, 30 s by default: as long as the tests' waits.
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/home/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox {junk} {{
    special_use = \\Junk
    auto = create
  }}
{extra_mailboxes}}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
"""


_TRASH_MAILBOX = f"""\
  mailbox {TRASH} {{
    special_use = \\Trash
    auto = create
  }}
"""
_ALL_MAIL_MAILBOX = f"""\
  mailbox {ALL_MAIL} {{
    special_use = \\All
    auto = create
  }}
"""
_GMAIL_LIKE = f"""\
imap_capability = +X-GM-EXT-1
mail_plugins = $mail_plugins lazy_expunge
plugin {{
  lazy_expunge = {ALL_MAIL}
  lazy_expunge_exclude = \\Trash
  lazy_expunge_only_last_instance = yes
}}
"""


class Dovecot:
    """A private Dovecot: IMAP and LMTP on loopback, one passwd-file user, Maildir storage."""

    def __init__(
        self, root: Path, *, oauth2_introspection: str | None = None,
        tls: tuple[Path, Path] | None = None, trash: bool = False, gmail: bool = False,
    ) -> None:  # fmt: skip
        """`oauth2_introspection`: a token introspection URL, to accept XOAUTH2 logins.
        `tls`: (certificate, key) PEM files: STARTTLS on the IMAP port, IMAPS on `imaps_port`.
        `trash`: a Trash folder, special-use \\Trash (RFC 6154).
        `gmail`: behave as Gmail does where it matters here (implies `trash`): advertise
        X-GM-EXT-1, and a message expunged from any folder but Trash lands in `ALL_MAIL`
        (Dovecot's lazy_expunge plugin), as on Gmail an expunge only takes a label off and
        the message stays in All Mail; only an expunge from Trash deletes it.
        """
        self.root = root
        self.imap_port = free_port()
        self.lmtp_port = free_port()
        self.config = root / "dovecot.conf"
        self.log = root / "dovecot.log"
        self._process: subprocess.Popen[bytes] | None = None
        for name in ("run", "state", "mail", "home"):
            (root / name).mkdir(mode=0o755, exist_ok=True)
        for name in ("mail", "home"):
            _chown(root / name, "dovecot")
        (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        extra = _TRASH_MAILBOX if trash or gmail else ""
        extra += _ALL_MAIL_MAILBOX if gmail else ""
        conf = _DOVECOT_CONF.format(
            root=root, imap_port=self.imap_port, lmtp_port=self.lmtp_port, junk=JUNK,
            extra_mailboxes=extra,
        )  # fmt: skip
        if gmail:
            conf += _GMAIL_LIKE
        self.imaps_port = 0
        if tls is not None:
            self.imaps_port = free_port()
            certificate, key = tls
            conf = conf.replace(
                "ssl = no", f"ssl = yes\nssl_cert = <{certificate}\nssl_key = <{key}"
            )
            conf = conf.replace(
                "  inet_listener imaps {\n    port = 0\n  }",
                "  inet_listener imaps {\n    address = 127.0.0.1\n"
                f"    port = {self.imaps_port}\n  }}",
            )
        if oauth2_introspection is not None:
            (root / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {oauth2_introspection}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
            conf = conf.replace(
                "auth_mechanisms = plain login", "auth_mechanisms = plain login xoauth2"
            )
            conf += (
                f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n"
                f"  args = {root}/oauth2.conf.ext\n}}\n"
            )
        self.config.write_text(conf)

    def add_trash(self) -> None:
        """Give the server a \\Trash folder from its next start (as if its admin made one)."""
        conf = self.config.read_text()
        if _TRASH_MAILBOX not in conf:
            self.config.write_text(
                conf.replace(f"  mailbox {JUNK} {{", _TRASH_MAILBOX + f"  mailbox {JUNK} {{", 1)
            )

    @property
    def lmtp_url(self) -> str:
        """Where nocontact delivers to reach this Dovecot directly."""
        return f"lmtp://{HOST}:{self.lmtp_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start Dovecot in the foreground (as our child) and wait until IMAP and LMTP greet."""
        if self.running:
            return
        require("dovecot", "dovecot-imapd dovecot-lmtpd")
        with self.log.open("ab") as log:  # config errors come on stderr, before log_path
            self._process = subprocess.Popen(
                ["dovecot", "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_until(
            lambda: greets(self.imap_port) and greets(self.lmtp_port),
            what="dovecot",
            log=self.log,
            alive=lambda: self.running,
        )

    def stop(self) -> None:
        """Stop Dovecot and wait until its ports are closed."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=START_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        wait_until(
            lambda: closed(self.imap_port) and closed(self.lmtp_port),
            what="dovecot shutdown",
            log=self.log,
        )

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """Every message in `folder`, exactly as IMAP returns it (BODY.PEEK[], CRLF lines)."""
        with imaplib.IMAP4(HOST, self.imap_port, timeout=10) as client:
            client.login(USER, PASSWORD)
            client.select(folder, readonly=True)
            _, found = client.uid("SEARCH", "ALL")
            uids = found[0].split() if isinstance(found[0], bytes) else []
            if not uids:
                return []
            _, data = client.uid("FETCH", b",".join(uids).decode(), "(BODY.PEEK[])")
        return [part[1] for part in data if isinstance(part, tuple)]


@contextlib.contextmanager
def dovecot(*, trash: bool = False, gmail: bool = False) -> Iterator[Dovecot]:
    """A started private Dovecot (see `Dovecot` for `trash`, `gmail`), stopped afterwards."""
    server = Dovecot(make_root("nocontact-dovecot-"), trash=trash, gmail=gmail)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


# -- Postfix -------------------------------------------------------------------------------

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "postfix"
FILTER_PORT, REINJECT_PORT = 10025, 10026  # the ports the deploy snippets are written with

# The home server's own part of main.cf: what it already has before nocontact is added.
# Mail for DOMAIN goes to Dovecot over LMTP; retries are quick, for the tests' sake.
_POSTFIX_MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
myhostname = postfix.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relay_domains = {domain}
transport_maps = inline:{{ {domain}=lmtp:inet:127.0.0.1:{lmtp_port} }}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
maillog_file = {root}/maillog
maillog_file_prefixes = {prefixes}
"""

# Retry deferred mail within seconds, not minutes (after the snippet: the last value wins).
_POSTFIX_MAIN_CF_TIMING = """\
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
"""

# The stock services, every one without chroot (a chroot needs copies of /etc files in
# the queue directory). The snippet adds the port-25 listener, nocontact and reinjection.
_POSTFIX_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def deployed_master_cf(
    snippet: str, *, smtp_port: int, filter_port: int, reinject_port: int
) -> str:
    """deploy/postfix/master.cf.snippet as a private instance runs it.

    The only changes: the port-25 listener moves to `smtp_port` on loopback, the two
    loopback ports move to the ones given, and no service is chrooted.
    """
    lines = []
    for line in snippet.splitlines():
        fields = line.split()
        if fields and not line[0].isspace() and not line.startswith("#"):
            if fields[:2] == ["smtp", "inet"]:
                fields[0] = f"{HOST}:{smtp_port}"
            elif fields[0] == f"{HOST}:{REINJECT_PORT}":
                fields[0] = f"{HOST}:{reinject_port}"
            fields[4] = "n"
            line = "  ".join(fields)  # noqa: PLW2901 - the line, rewritten
        lines.append(line.replace(f"[{HOST}]:{FILTER_PORT}", f"[{HOST}]:{filter_port}"))
    text = "\n".join(lines) + "\n"
    for port in (smtp_port, filter_port, reinject_port):
        if str(port) not in text:
            raise ServerError(
                f"{DEPLOY_DIR}/master.cf.snippet no longer has the lines "
                "this test rewrites (smtp inet, 10025, 10026)"
            )
    return text


def _setting_values(line: str) -> list[str]:
    _, _, value = line.partition("=")
    return [item for item in value.replace(",", " ").split() if item]


def _allow_config_dir(directory: Path, *, remove: bool = False) -> None:
    """Add (or remove) `directory` in the system main.cf's alternate_config_directories.

    Postfix refuses `-c DIR` for a directory the default main.cf does not list. Entries
    whose directory is gone are dropped on every call, so the list stays short.
    """
    _SYSTEM_MAIN_CF.parent.mkdir(parents=True, exist_ok=True)
    with _SYSTEM_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lines = _SYSTEM_MAIN_CF.read_text().splitlines() if _SYSTEM_MAIN_CF.exists() else []
        directories: list[str] = []
        prefixes = ["/var", "/dev/stdout", "/tmp"]
        kept = []
        for line in lines:
            if line.startswith("alternate_config_directories"):
                directories = _setting_values(line)
            elif line.startswith("maillog_file_prefixes"):
                prefixes = _setting_values(line)
            else:
                kept.append(line)
        directories = [entry for entry in directories if Path(entry).is_dir()]
        if remove:
            directories = [entry for entry in directories if entry != str(directory)]
        elif str(directory) not in directories:
            directories.append(str(directory))
        parent = str(directory.parent.parent)
        if not any(parent.startswith(prefix) for prefix in prefixes):
            prefixes.append(parent)
        kept.append(f"alternate_config_directories = {', '.join(directories)}")
        kept.append(f"maillog_file_prefixes = {', '.join(prefixes)}")
        replacement = _SYSTEM_MAIN_CF.with_name("main.cf.nocontact-tests")
        replacement.write_text("\n".join(kept) + "\n")
        replacement.replace(_SYSTEM_MAIN_CF)


class Postfix:
    """A private Postfix that relays mail for `DOMAIN` through nocontact into Dovecot.

    The message path is the real deployment's: clients -> smtp_port -> content_filter
    (nocontact on `filter_port`) -> nocontact delivers to `reinject_port` -> LMTP to Dovecot.
    """

    def __init__(self, root: Path, *, lmtp_port: int, filter_port: int) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.queue = root / "queue"
        self.log = root / "maillog"
        self.smtp_port = free_port()
        self.reinject_port = free_port()
        self.filter_port = filter_port
        self.lmtp_port = lmtp_port
        self.config_dir.mkdir(mode=0o755)
        (root / "data").mkdir(mode=0o700)
        _chown(root / "data", "postfix")
        self.queue.mkdir(mode=0o755)
        prefixes = f"/var, /dev/stdout, {root.parent}"
        main_cf = _POSTFIX_MAIN_CF.format(
            root=root, domain=DOMAIN, lmtp_port=lmtp_port, prefixes=prefixes
        )
        main_cf += (DEPLOY_DIR / "main.cf.snippet").read_text() + _POSTFIX_MAIN_CF_TIMING
        master_cf = _POSTFIX_MASTER_CF + deployed_master_cf(
            (DEPLOY_DIR / "master.cf.snippet").read_text(),
            smtp_port=self.smtp_port,
            filter_port=filter_port,
            reinject_port=self.reinject_port,
        )
        (self.config_dir / "main.cf").write_text(main_cf)
        (self.config_dir / "master.cf").write_text(master_cf)

    @property
    def reinject_url(self) -> str:
        """Where nocontact delivers allowed mail back into this Postfix."""
        return f"smtp://{HOST}:{self.reinject_port}"

    def _postfix(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["postfix", "-c", str(self.config_dir), *arguments],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise ServerError(
                f"postfix {' '.join(arguments)} failed ({result.returncode}): "
                f"{result.stderr.strip()}\nlast lines of {self.log}:\n{log_tail(self.log)}"
            )
        return result

    def _master_pid(self) -> int | None:
        try:
            return int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def running(self) -> bool:
        pid = self._master_pid()
        return pid is not None and _pid_alive(pid)

    def start(self) -> None:
        """`postfix -c DIR start`, then wait until both SMTP listeners greet."""
        require("postfix", "postfix")
        _allow_config_dir(self.config_dir)
        self._postfix("set-permissions")
        self._postfix("start")
        wait_until(
            lambda: greets(self.smtp_port) and greets(self.reinject_port),
            what="postfix",
            log=self.log,
            alive=lambda: self.running,
        )

    def stop(self) -> None:
        """`postfix -c DIR stop`, then wait until the master process is gone."""
        pid = self._master_pid()
        if pid is not None and _pid_alive(pid):
            self._postfix("stop", check=False)
            wait_until(lambda: not _pid_alive(pid), what="postfix shutdown", log=self.log)
        _allow_config_dir(self.config_dir, remove=True)

    def queued(self) -> list[dict[str, object]]:
        """The messages in Postfix's queue (`postqueue -j`), one dict each."""
        result = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-j"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        """Ask Postfix to retry every deferred message now (`postqueue -f`)."""
        subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-f"],
            capture_output=True,
            timeout=30,
            check=True,
        )

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        """Wait until Postfix has handed every message on (flushing now and then)."""
        deadline = time.monotonic() + timeout
        last_flush = time.monotonic()
        while self.queued():
            now = time.monotonic()
            if now > deadline:
                raise ServerError(
                    f"postfix queue not empty after {timeout:.0f} s: "
                    f"{self.queued()}\n{log_tail(self.log)}"
                )
            if now - last_flush > 2.0:
                self.flush()
                last_flush = now
            time.sleep(0.1)


@contextlib.contextmanager
def postfix(*, lmtp_port: int, filter_port: int) -> Iterator[Postfix]:
    """A started private Postfix (see `Postfix`), stopped and removed afterwards."""
    server = Postfix(make_root("nocontact-postfix-"), lmtp_port=lmtp_port, filter_port=filter_port)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
