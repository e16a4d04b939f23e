"""Benchmark: the IMAP channel's exposure window against imapfilter, pull mode, and sweep.

Run: .venv/bin/python bench/imap.py [--messages N] [--sweep N] [--seed S] [--dir DIR]

One private Dovecot (tests/servers.py: loopback, Maildir, passwd-file user) serves every
part, in this order; INBOX is emptied between parts. Daemons run as their own processes
(own session), started and stopped here; archives and state live in a temporary directory
under DIR (default <repo>/var, which git ignores: a real disk, since every hold is fsynced).
imapfilter must be installed (Debian package imapfilter).

1. Exposure, nocontact watch mode (`python -m proxy run`, IDLE on INBOX and Junk): an
   appender connection APPENDs N (200) held messages (From: Mark <mark.smith@gmail.com>, a
   unique Subject each) at random 50-150 ms gaps; each message's UID comes from the
   APPENDUID response code (UIDPLUS). A poller on a third connection (EXAMINE INBOX) runs
   NOOP + UID SEARCH ALL every ~POLL_SECONDS; a message's exposure is from its APPEND's
   tagged OK to the reply of the first poll, sent after that OK, that no longer lists its
   UID. Resolution: one poll interval plus one round trip (a few ms).
2. The same for imapfilter: an IDLE loop in Lua (`enter_idle`, then `contain_from` +
   `delete_messages`), plain IMAP to the same Dovecot.
3. The same for nocontact with `poll_seconds: 0.05` (the low-latency setting for
   self-hosted servers, instead of IDLE), with the Dovecot CPU it costs while idle.
4. Pull mode: the daemon with `mode: pull` and `deliver: maildir:LOCAL`; 50 held + 50
   allowed messages appended in random order; a watcher lists LOCAL/new and LOCAL/cur every
   ~2 ms and reads every new file: a held message there is a failure.
5. Sweep: a folder filled with 20,000 messages (1% held) written straight into Dovecot's
   Maildir (.Bench/new, owned by dovecot) and indexed by one SELECT before timing; then
   `python -m proxy imap sweep` on it, wall time, minus the wall time of a sweep of an empty
   folder (interpreter start-up, imports, archive open, login). Checked afterwards: the
   held 1% is gone and everything else is still there.

Goals (issue 5): watch p99 <= imapfilter p99 + 20 ms (same run); pull mode: held mail
never visible locally; sweep >= 1,000 messages/s.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import os
import pwd
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from pathlib import Path

import pyrage
import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/imap.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from tests import servers  # noqa: E402
from tests.factories import config_data, write_secret  # noqa: E402
from tests.imap_helpers import imap as imap_client  # noqa: E402

HELD_FROM = "Mark <mark.smith@gmail.com>"
ALLOWED_FROM = "Jordan Lee <jordan.lee@friends.example>"
POLL_SECONDS = 0.005
LOCAL_POLL_SECONDS = 0.002
GAP_SECONDS = (0.05, 0.15)
SETTLE_SECONDS = 10.0
GOAL_MARGIN_MS = 20.0
GOAL_SWEEP_RATE = 1000.0
LOW_LATENCY_POLL = 0.05
BODY = "It's me. I just want to talk. " * 30 + "\r\n"  # ~1 KB
TICKS = os.sysconf("SC_CLK_TCK")


def message(sender: str, token: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {servers.ADDRESS}\r\nSubject: {token}\r\n"
        f"Date: {formatdate(localtime=True)}\r\nMessage-ID: {make_msgid('bench')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{BODY}"
    ).encode()


# -- IMAP helpers --------------------------------------------------------------------------


def imap(dovecot: servers.Dovecot) -> contextlib.AbstractContextManager[imaplib.IMAP4]:
    """A logged-in client; a longer timeout than the tests' (a 20,000-message SELECT)."""
    return imap_client(dovecot, timeout=30)


def empty(dovecot: servers.Dovecot, folder: str = "INBOX") -> None:
    with imap(dovecot) as client:
        _, count = client.select(folder)
        if count and count[0] and int(count[0]) > 0:
            client.store("1:*", "+FLAGS.SILENT", "\\Deleted")
            client.expunge()
        client.close()


def uids(client: imaplib.IMAP4) -> set[int]:
    _, data = client.uid("SEARCH", "ALL")
    first = data[0] if data else None
    return {int(uid) for uid in first.split()} if isinstance(first, bytes) else set()


def append(client: imaplib.IMAP4, raw: bytes, folder: str = "INBOX") -> int:
    """APPEND and return the new message's UID (from APPENDUID)."""
    status, data = client.append(folder, None, None, raw)
    text = data[0].decode() if data and isinstance(data[0], bytes) else ""
    found = re.search(r"APPENDUID \d+ (\d+)", text)
    if status != "OK" or found is None:
        raise RuntimeError(f"APPEND failed or no APPENDUID: {status} {data!r}")
    return int(found.group(1))


class Poller(threading.Thread):
    """NOOP + UID SEARCH ALL on its own connection every `interval`; notes when UIDs vanish."""

    def __init__(self, dovecot: servers.Dovecot, interval: float = POLL_SECONDS) -> None:
        super().__init__(name="poller", daemon=True)
        self.dovecot, self.interval = dovecot, interval
        self.pending: dict[int, float] = {}  # UID -> when its APPEND completed
        self.gone: dict[int, float] = {}  # UID -> exposure in seconds
        self.polls = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def watch(self, uid: int, appended: float) -> None:
        with self.lock:
            self.pending[uid] = appended

    def run(self) -> None:
        try:
            with imap(self.dovecot) as client:
                client.select("INBOX", readonly=True)
                self.ready.set()
                while not self.halt.is_set():
                    sent = time.monotonic()
                    client.noop()  # brings in the EXPUNGEs of other sessions
                    present = uids(client)
                    answered = time.monotonic()
                    client.untagged_responses.clear()
                    with self.lock:
                        for uid, appended in list(self.pending.items()):
                            if appended < sent and uid not in present:
                                self.gone[uid] = answered - appended
                                del self.pending[uid]
                    self.polls += 1
                    time.sleep(max(0.0, self.interval - (time.monotonic() - sent)))
        except BaseException as error:  # reported by the main thread
            self.error = error
            self.ready.set()

    def wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return
            time.sleep(0.05)


@dataclass(slots=True)
class Exposure:
    name: str
    seconds: list[float] = field(default_factory=list)
    missed: int = 0  # still visible SETTLE_SECONDS after the last append
    polls_per_s: float = 0.0
    note: str = ""

    def pct(self, q: float) -> float:
        ordered = sorted(self.seconds)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def measure_exposure(
    name: str, dovecot: servers.Dovecot, count: int, rng: random.Random
) -> Exposure:
    """Append `count` held messages at irregular gaps; how long each stays in INBOX."""
    poller = Poller(dovecot)
    poller.start()
    poller.ready.wait(30)
    if poller.error is not None:
        raise poller.error
    started = time.monotonic()
    with imap(dovecot) as client:
        client.select("INBOX")
        for _ in range(count):
            uid = append(client, message(HELD_FROM, uuid.uuid4().hex))
            poller.watch(uid, time.monotonic())
            time.sleep(rng.uniform(*GAP_SECONDS))
    poller.wait_empty(SETTLE_SECONDS)
    poller.halt.set()
    poller.join(10)
    if poller.error is not None:
        raise poller.error
    result = Exposure(name, list(poller.gone.values()), missed=len(poller.pending))
    result.polls_per_s = poller.polls / (time.monotonic() - started)
    return result


def wait_removed(dovecot: servers.Dovecot, what: str, timeout: float = 60.0) -> None:
    """Append one held message and wait until the filter has removed it (warm-up, ready)."""
    with imap(dovecot) as client:
        client.select("INBOX")
        uid = append(client, message(HELD_FROM, uuid.uuid4().hex))
        deadline = time.monotonic() + timeout
        while uid in uids(client):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not remove a held message in {timeout:.0f} s")
            time.sleep(0.05)
            client.noop()


# -- processes -----------------------------------------------------------------------------


def write_config(work: Path, dovecot: servers.Dovecot, **extra: object) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    password = work / "password"
    write_secret(password, servers.PASSWORD)
    recipient = str(pyrage.x25519.Identity.generate().to_public())
    account = {"name": "home", "host": servers.HOST, "port": dovecot.imap_port, "tls": "none",
               "username": servers.USER, "password_file": str(password), **extra}  # fmt: skip
    data = config_data(
        archive={"path": str(work / "archive")},
        contacts=[{"name": "Bench", "role": "lawyer", "age_recipient": recipient}],
        channels={"imap": {"accounts": [account], "state_dir": str(work / "imap")}},
    )
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


@contextlib.contextmanager
def process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session, stopped with SIGTERM (then SIGKILL) afterwards."""
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                 stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        yield child
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


@contextlib.contextmanager
def daemon(work: Path, dovecot: servers.Dovecot, **extra: object) -> Iterator[None]:
    config = write_config(work, dovecot, **extra)
    command = [sys.executable, "-m", "proxy", "run", "-c", str(config)]
    with process(command, work / "daemon.log") as child:
        try:
            if extra.get("mode") != "pull":
                wait_removed(dovecot, "nocontact")
            yield
        except BaseException:
            print(servers.log_tail(work / "daemon.log"), file=sys.stderr)
            raise
        if child.poll() is not None:
            raise RuntimeError(f"daemon exited: {servers.log_tail(work / 'daemon.log')}")


IMAPFILTER_LUA = """\
options.timeout = 60
options.starttls = false
options.subscribe = false
options.info = false
account = IMAP {{
  server = '{host}',
  port = {port},
  username = '{user}',
  password = '{password}',
}}
account.INBOX:delete_messages(account.INBOX:contain_from('mark.smith@gmail.com'))
while true do
  local r = account.INBOX:enter_idle()
  local m = account.INBOX:contain_from('mark.smith@gmail.com')
  account.INBOX:delete_messages(m)
end
"""


@contextlib.contextmanager
def imapfilter(work: Path, dovecot: servers.Dovecot) -> Iterator[None]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "imapfilter.lua"
    config.write_text(
        IMAPFILTER_LUA.format(
            host=servers.HOST, port=dovecot.imap_port, user=servers.USER, password=servers.PASSWORD
        )
    )
    config.chmod(0o600)
    (work / "home").mkdir(exist_ok=True)
    command = ["env", f"HOME={work / 'home'}", "imapfilter", "-c", str(config)]
    with process(command, work / "imapfilter.log"):
        try:
            wait_removed(dovecot, "imapfilter")
        except BaseException:
            print(servers.log_tail(work / "imapfilter.log"), file=sys.stderr)
            raise
        yield


def dovecot_cpu_seconds() -> float:
    """User + system CPU of every dovecot-owned process (imap, index workers)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
        except (OSError, ValueError):
            continue
        if comm.startswith("imap") or comm.startswith("dovecot"):
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


# -- pull mode -----------------------------------------------------------------------------


@dataclass(slots=True)
class PullResult:
    held_seen: int = 0
    allowed_seen: int = 0
    allowed_sent: int = 0
    held_sent: int = 0
    upstream_left: int = 0
    scans: int = 0


def measure_pull(
    work: Path, dovecot: servers.Dovecot, held: int, allowed: int, rng: random.Random
) -> PullResult:
    local = work / "local"
    result = PullResult(held_sent=held, allowed_sent=allowed)
    held_tokens: set[str] = set()
    allowed_tokens: set[str] = set()
    halt = threading.Event()

    def watch_local() -> None:
        seen: set[str] = set()
        while not halt.is_set():
            for sub in ("new", "cur"):
                with contextlib.suppress(FileNotFoundError):
                    for entry in os.scandir(local / sub):
                        key = entry.name.split(":", 1)[0]
                        if key in seen:
                            continue
                        seen.add(key)
                        try:
                            text = Path(entry.path).read_bytes().decode(errors="replace")
                        except FileNotFoundError:
                            seen.discard(key)  # moved new -> cur meanwhile: read it there
                            continue
                        subject = re.search(r"^Subject: (\w+)", text, re.M)
                        token = subject.group(1) if subject else ""
                        if token in held_tokens or "mark.smith@gmail.com" in text:
                            result.held_seen += 1
                        elif token in allowed_tokens:
                            result.allowed_seen += 1
            result.scans += 1
            time.sleep(LOCAL_POLL_SECONDS)

    kinds = [True] * held + [False] * allowed
    rng.shuffle(kinds)
    with daemon(work, dovecot, mode="pull", deliver=f"maildir:{local}"):
        watcher = threading.Thread(target=watch_local, name="local-watcher", daemon=True)
        watcher.start()
        with imap(dovecot) as client:
            client.select("INBOX")
            for is_held in kinds:
                token = uuid.uuid4().hex
                (held_tokens if is_held else allowed_tokens).add(token)
                append(client, message(HELD_FROM if is_held else ALLOWED_FROM, token))
                time.sleep(rng.uniform(0.01, 0.05))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                client.noop()
                if not uids(client) and result.allowed_seen >= allowed:
                    break
                time.sleep(0.05)
            result.upstream_left = len(uids(client))
        time.sleep(0.2)
        halt.set()
        watcher.join(10)
    return result


# -- sweep ---------------------------------------------------------------------------------


def fill_maildir(dovecot: servers.Dovecot, folder: str, total: int, held_every: int) -> int:
    """Write `total` messages into the folder's Maildir new/ directly; return how many held."""
    with imap(dovecot) as client:
        client.create(folder)
    base = dovecot.root / "mail" / servers.USER / f".{folder}"
    new = base / "new"
    new.mkdir(parents=True, exist_ok=True)
    owner = pwd.getpwnam("dovecot")
    now = int(time.time())
    held = 0
    for index in range(total):
        is_held = index % held_every == 0
        held += is_held
        raw = message(HELD_FROM if is_held else ALLOWED_FROM, f"bulk{index}")
        path = new / f"{now}.M{index}P{os.getpid()}.bench"
        path.write_bytes(raw)
        os.chown(path, owner.pw_uid, owner.pw_gid)
    for directory in (base, new, base / "cur", base / "tmp"):
        if directory.exists():
            os.chown(directory, owner.pw_uid, owner.pw_gid)
    with imap(dovecot) as client:  # let Dovecot index them now, not inside the timed sweep
        client.select(folder)
        client.uid("SEARCH", "ALL")
        client.close()
    return held


@dataclass(slots=True)
class SweepResult:
    messages: int
    wall: float
    empty_wall: float
    reported: float
    left: int
    expected_left: int

    @property
    def rate(self) -> float:
        return self.messages / max(self.wall - self.empty_wall, 1e-9)


def run_sweep(config: Path) -> tuple[float, float]:
    """Wall time of `python -m proxy imap sweep`, and the time it reports itself."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "imap", "sweep", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"sweep failed ({done.returncode}): {done.stderr[-2000:]}")
    reported = sum(float(s) for s in re.findall(r"looked at in ([\d.]+) s", done.stderr))
    return wall, reported


def measure_sweep(work: Path, dovecot: servers.Dovecot, total: int) -> SweepResult:
    with imap(dovecot) as client:
        client.create("Empty")
    empty_wall, _ = run_sweep(write_config(work / "empty", dovecot, folders=["Empty"]))
    held = fill_maildir(dovecot, "Bench", total, held_every=100)
    wall, reported = run_sweep(write_config(work / "full", dovecot, folders=["Bench"]))
    with imap(dovecot) as client:
        client.select("Bench", readonly=True)
        left = len(uids(client))
    return SweepResult(total, wall, empty_wall, reported, left, total - held)


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--pull", type=int, default=50, help="held and allowed, each")
    parser.add_argument("--sweep", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=REPO / "var")
    args = parser.parse_args()
    servers.require("imapfilter", "imapfilter")
    rng = random.Random(args.seed)
    args.dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-imap-", dir=args.dir))
    dovecot = servers.Dovecot(servers.make_root("nocontact-bench-imap-"))
    dovecot.start()
    began = time.monotonic()
    try:
        exposures: list[Exposure] = []
        print(f"[1/5] nocontact watch (IDLE): {args.messages} held messages", file=sys.stderr)
        with daemon(work / "watch", dovecot):
            exposures.append(
                measure_exposure("nocontact watch (IDLE)", dovecot, args.messages, rng)
            )
        empty(dovecot)
        print(f"[2/5] imapfilter (IDLE): {args.messages} held messages", file=sys.stderr)
        with imapfilter(work / "imapfilter", dovecot):
            exposures.append(measure_exposure("imapfilter (IDLE)", dovecot, args.messages, rng))
        empty(dovecot)
        print(f"[3/5] nocontact poll_seconds={LOW_LATENCY_POLL}", file=sys.stderr)
        with daemon(work / "poll", dovecot, poll_seconds=LOW_LATENCY_POLL):
            cpu = dovecot_cpu_seconds()
            time.sleep(5.0)
            idle_cpu = (dovecot_cpu_seconds() - cpu) / 5.0
            low = measure_exposure(
                f"nocontact poll_seconds={LOW_LATENCY_POLL}", dovecot, args.messages, rng
            )
            low.note = f"idle cost: Dovecot CPU {idle_cpu * 100:.1f}% of a core"
            exposures.append(low)
        empty(dovecot)
        print(f"[4/5] pull mode: {args.pull} held + {args.pull} allowed", file=sys.stderr)
        pull = measure_pull(work / "pull", dovecot, args.pull, args.pull, rng)
        empty(dovecot)
        print(f"[5/5] sweep of {args.sweep} messages", file=sys.stderr)
        sweep = measure_sweep(work / "sweep", dovecot, args.sweep)
    finally:
        dovecot.stop()
        shutil.rmtree(dovecot.root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    report(exposures, pull, sweep, time.monotonic() - began)
    return 0


def report(exposures: list[Exposure], pull: PullResult, sweep: SweepResult, elapsed: float) -> None:
    print(
        f"\nExposure window: held message visible in INBOX, from APPEND's OK until a "
        f"poller (NOOP + UID SEARCH every {POLL_SECONDS * 1000:.0f} ms) sees it gone"
    )
    print(
        f"{'':34} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8} "
        f"{'missed':>6} {'polls/s':>7}"
    )
    for row in exposures:
        mean = statistics.fmean(row.seconds) * 1000 if row.seconds else float("nan")
        print(
            f"{row.name:34} {len(row.seconds):>4} {row.pct(0.5):>8.1f} {row.pct(0.99):>8.1f} "
            f"{row.pct(1.0):>8.1f} {mean:>8.1f} {row.missed:>6} {row.polls_per_s:>7.0f}"
            + (f"  ({row.note})" if row.note else "")
        )
    ours, theirs = exposures[0].pct(0.99), exposures[1].pct(0.99)
    verdict = "met" if ours <= theirs + GOAL_MARGIN_MS and exposures[0].missed == 0 else "MISSED"
    print(
        f"goal: nocontact p99 {ours:.1f} ms <= imapfilter p99 {theirs:.1f} ms + "
        f"{GOAL_MARGIN_MS:.0f} ms: {verdict}"
    )
    print(
        f"\nPull mode ({pull.held_sent} held + {pull.allowed_sent} allowed, local Maildir "
        f"scanned {pull.scans} times)"
    )
    print(
        f"held ever visible locally: {pull.held_seen} (goal 0): "
        f"{'met' if pull.held_seen == 0 else 'MISSED'}"
    )
    print(
        f"allowed delivered locally: {pull.allowed_seen}/{pull.allowed_sent}; "
        f"left upstream: {pull.upstream_left}"
    )
    net = sweep.wall - sweep.empty_wall
    print(f"\nSweep of {sweep.messages:,} messages (1% held)")
    print(
        f"wall {sweep.wall:.2f} s, empty-folder sweep {sweep.empty_wall:.2f} s (start-up), "
        f"net {net:.2f} s; sweep's own report {sweep.reported:.2f} s"
    )
    print(
        f"messages/s: {sweep.rate:,.0f} net, {sweep.messages / sweep.wall:,.0f} with "
        f"start-up (goal >= {GOAL_SWEEP_RATE:,.0f}): "
        f"{'met' if sweep.rate >= GOAL_SWEEP_RATE else 'MISSED'}"
    )
    print(f"left in folder: {sweep.left:,} (expected {sweep.expected_left:,})")
    print(f"\nwhole run: {elapsed:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
