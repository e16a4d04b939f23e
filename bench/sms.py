"""Benchmark: the SMS channel's webhook, held texts, against a bare aiohttp signature check.

Run: .venv/bin/python bench/sms.py [--rate R] [--seconds S] [--concurrency C,C,...]
     [--load-seconds T] [--repeats K] [--dir DIR] [--py-spy [EXE]]

Three processes besides this one's: nocontact (`python -m proxy run`, only channels.sms
configured) and a bare aiohttp app (this file with --bare-child), each in its own session
on a free port of 127.0.0.1, started and stopped here. The Twilio REST API is the loopback
fake of tests/twilio_fake.py, served from this process: it creates every inbound message
(so each SID is unique and real to the daemon) and takes the daemon's cleanup requests.
Archive, auth token and state live in a temporary directory under DIR (default <repo>/var,
which git ignores: a real disk, since every hold is fsynced), removed at the end.

Targets, each sent the same requests (a text from mark, +1 555 010 0199, a blocked person,
to the public number, a fresh MessageSid each, signed with twilio's RequestValidator over
public_url + "/sms", posted form-encoded to the local port):
  - nocontact, every text held: signature checked, the webhook sealed (age), the seal noted
    with its mark and appended to the archive (fsynced), the SID recorded handled, then
    answered; the provider cleanup (delete the text, redact_at_provider: true) is queued
    in memory and runs at a quiet moment.
  - a bare aiohttp app (on uvloop, as the daemon) whose POST /sms reads the form, checks
    X-Twilio-Signature with the daemon's own function (`signed_params`) and answers the
    same empty TwiML: the floor any aiohttp webhook stands on.

Method:
  - warm-up: WARMUP requests to each target (closed loop, 4 clients).
  - latency: one aiohttp ClientSession (keep-alive, no connection limit), open loop at R
    requests/s (default 50) for S s (default 20; a late request is sent at once); latency
    is from the POST to the whole answer read, p50/p99/max; daemon first, then bare.
  - throughput: a closed loop of C clients, each one request at a time, for T s (default
    10), req/s; for each C of a sweep (default 16, 32, 64), daemon then bare, the whole
    sweep K times (default 3), the median per target and C reported, so a drift in what
    else the machine does skews both alike. A target's throughput is its best median over
    the sweep: the rate it can sustain. A server that makes each answer durable first
    (group commit: one fsync for everyone waiting) needs more requests in flight to reach
    it than one that answers at once, as a database does; a single C would measure how
    many clients the bench ran as much as the server. Twilio sends webhooks concurrently,
    one request per message. The table shows every C, so the ratio at each is there too.
    After each daemon run the bench waits for its outbox to drain (every held text deleted
    at the fake) before going on, so the daemon's left-over cleanup does not run during
    the bare handler's turn. Also: the server's CPU per request (its process group, /proc)
    and the cores this process (the clients and the fake) kept busy: near 1.0 means the
    load generator, not the server, set the pace.
  - every answer must be 200 with the empty <Response />; anything else stops the bench.
  - afterwards: the archive is verified keylessly (`verify_archive`) and every sealed item
    decrypted with the bench contact's key: one item per held answer, no SID twice, none
    missing. The fake's log says how many deletions (DELETE .../Messages/SM....json) it
    received and whether any held text is still there.

Goals (issue 6): nocontact p99 <= 25 ms at 50 signed requests/s, and nocontact's
throughput >= 0.5 x the bare handler's
(each its best over the sweep).

--py-spy [EXE]: after the timed runs, one more closed-loop run against nocontact with py-spy
recording it (--gil: whichever thread holds the GIL), keeping DIR/py-spy-sms-held.txt
(collapsed stacks) and printing the frames most often on top of the stack and the functions
of proxy/, aiohttp and twilio by inclusive share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pyrage
import uvloop
import yaml
from twilio.request_validator import RequestValidator

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/sms.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from bench.procs import (  # noqa: E402
    Server,
    cpu_seconds,
    free_port,
    scratch,
    start_py_spy,
    stop,
    top_frames,
)
from tests.factories import config_data, write_secret  # noqa: E402
from tests.twilio_fake import FakeTwilio  # noqa: E402

HOST = "127.0.0.1"
PUBLIC_URL = "https://bench.example/twilio"
NUMBER = "+15550107777"  # in no rule of config_data
FORWARD_TO = "+15550108888"
MARK_PHONE = "+15550100199"  # mark's "(555) 010-0199"
EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response />'
FORM = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "TwilioProxy/1.1"}
REFUSED = "webhook refused: bad or missing signature"  # the daemon's log event for a forgery
REDACTION = re.compile(r"/Messages/(SM\w+)\.json$")
ROOTS = re.compile(r"\(proxy/(__main__|cli|daemon)\.py\)$")
PROFILED = re.compile(r"\((proxy|aiohttp|twilio)/")
WARMUP = 200
GOAL_P99_MS = 25.0
GOAL_RATIO = 0.5
SATURATED = 0.9  # client cores from which the load generator, not the server, sets the pace
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0


class BenchError(Exception):
    """An expected failure: printed as one line, exit status 1."""


def url(server: Server) -> str:
    return f"http://{HOST}:{server.port}/sms"


# -- processes -----------------------------------------------------------------------------


def last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


async def start(name: str, command: list[str], port: int, log: Path) -> Server:
    """Start `command` in a new session and wait, serving the fake meanwhile, until `port`
    accepts connections."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    server = Server(name=name, process=process, port=port, log=log)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop(process)
            raise BenchError(f"{name} exited at start ({process.returncode}): {last_line(log)}")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return server
    stop(process)
    raise BenchError(f"{name} did not listen on port {port} in {START_TIMEOUT:.0f} s")


# -- the two servers -----------------------------------------------------------------------


def bare_child(port: int, token: str, public_url: str) -> None:
    """In a child process: POST /sms checks the signature as the daemon does, answers TwiML."""
    from aiohttp import web  # noqa: PLC0415 - only the child serves

    from proxy.channels.sms.webhooks import signed_params  # noqa: PLC0415

    validator = RequestValidator(token)

    async def text(request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get("X-Twilio-Signature", "")
        if signed_params(validator, public_url + request.path_qs, body, signature) is None:
            return web.Response(status=403)
        return web.Response(text=EMPTY, content_type="text/xml")

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/sms", text)
    # The daemon's own event loop (uvloop), so the two differ only in what they do.
    web.run_app(app, host=HOST, port=port, access_log=None, print=None,
                loop=uvloop.new_event_loop())  # fmt: skip


async def start_bare(work: Path, token: str) -> Server:
    port = free_port()
    command = [sys.executable, __file__, "--bare-child", str(port), token, PUBLIC_URL]
    return await start("bare aiohttp", command, port, work / "bare.log")


def write_config(work: Path, fake: FakeTwilio, port: int, recipient: str) -> Path:
    token_file = work / "twilio-auth-token"
    write_secret(token_file, fake.auth_token + "\n")
    token_file.chmod(0o600)
    sms = {
        "listen": f"{HOST}:{port}", "public_url": PUBLIC_URL, "account_sid": fake.account_sid,
        "auth_token_file": str(token_file), "number": NUMBER, "forward_to": FORWARD_TO,
        "redact_at_provider": True, "reconcile_every": 3600, "api_base_url": fake.base_url,
        "state_dir": str(work / "sms"),
    }  # fmt: skip
    data = config_data(
        archive={"path": str(work / "archive")},
        contacts=[{"name": "Bench", "role": "lawyer", "age_recipient": recipient}],
        channels={"sms": sms},
    )
    config = work / "nocontact.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


async def start_daemon(work: Path, fake: FakeTwilio, recipient: str) -> Server:
    """The daemon, listening, after its first reconciliation pass (lists read at the fake)."""
    port = free_port()
    config = write_config(work, fake, port, recipient)
    command = [sys.executable, "-m", "proxy", "run", "-c", str(config)]
    server = await start("nocontact", command, port, work / "nocontact.log")
    deadline = time.monotonic() + 10
    while not fake.asked("GET", "/Calls.json") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return server


# -- load ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Request:
    sid: str
    body: bytes
    signature: str


@dataclass(slots=True)
class Target:
    """One server, the requests it was sent, and what was measured."""

    name: str
    server: Server
    held: bool
    answered: list[str] = field(default_factory=list)  # SIDs answered 200 + EMPTY
    latencies: list[float] = field(default_factory=list)  # seconds, the paced client
    runs: dict[int, list[Run]] = field(default_factory=dict)  # clients -> closed-loop runs
    drains: list[float] = field(default_factory=list)  # seconds until the outbox was empty

    def rate(self, clients: int) -> float:
        """The median req/s of the runs with this many clients."""
        return statistics.median(run.rate for run in self.runs[clients])

    @property
    def peak(self) -> int:
        """The number of clients at which the median req/s was highest."""
        return max(self.runs, key=self.rate)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True, slots=True)
class Run:
    """One closed-loop run."""

    rate: float  # req/s
    cpu: float  # server CPU seconds per request
    client_cores: float  # this process's CPU seconds per wall second


class Load:
    """Makes signed webhook requests for new texts from mark and sends them."""

    def __init__(self, fake: FakeTwilio) -> None:
        self.fake = fake
        self.validator = RequestValidator(fake.auth_token)
        self.count = 0
        self.wrong: list[str] = []  # what a wrong answer was, first one first

    def request(self) -> Request:
        self.count += 1
        body = f"It's me. Pick up. I only want to talk, that's all. ({self.count})"
        sid, params = self.fake.inbound_message(sender=MARK_PHONE, to=NUMBER, body=body)
        signature = str(self.validator.compute_signature(PUBLIC_URL + "/sms", params))
        return Request(sid=sid, body=urllib.parse.urlencode(params).encode(),
                       signature=signature)  # fmt: skip

    async def send(self, session: aiohttp.ClientSession, target: Target, request: Request) -> float:
        """POST one request; seconds to the whole answer. A wrong answer is noted."""
        headers = {**FORM, "X-Twilio-Signature": request.signature}
        started = time.perf_counter()
        try:
            async with session.post(url(target.server), data=request.body,
                                    headers=headers) as response:  # fmt: skip
                status, text = response.status, await response.text()
        except aiohttp.ClientError as error:
            status, text = 0, f"{type(error).__name__}: {error}"
        elapsed = time.perf_counter() - started
        if status == 200 and text == EMPTY:
            target.answered.append(request.sid)
        else:
            self.wrong.append(f"{target.name} answered {status} {text[:120]!r}")
        return elapsed

    def check(self) -> None:
        if self.wrong:
            more = f" (and {len(self.wrong) - 1} more)" if len(self.wrong) > 1 else ""
            raise BenchError(f"a wrong answer: {self.wrong[0]}{more}")

    async def paced(self, target: Target, *, rate: float, seconds: float) -> list[float]:
        """Open loop: one request every 1/rate s, each on its own task; late ones at once."""
        requests = [self.request() for _ in range(max(1, round(rate * seconds)))]
        loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await self.send(session, target, self.request())  # open the connection
            tasks = []
            began = loop.time()
            for index, request in enumerate(requests):
                pause = began + index / rate - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                tasks.append(asyncio.create_task(self.send(session, target, request)))
            latencies = await asyncio.gather(*tasks)
        self.check()
        return list(latencies)

    async def refused(self, target: Target) -> None:
        """A request signed with another token must get 403: both targets check signatures."""
        request = self.request()
        params = dict(urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True))
        forged = RequestValidator("not-" + self.fake.auth_token)
        headers = {**FORM, "X-Twilio-Signature": forged.compute_signature(PUBLIC_URL + "/sms",
                                                                          params)}  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(url(target.server), data=request.body, headers=headers) as response,
        ):
            if response.status != 403:
                raise BenchError(f"{target.name} answered {response.status} to a forged "
                                 f"signature, not 403")  # fmt: skip

    async def warm_up(self, target: Target, *, count: int = WARMUP, clients: int = 4) -> None:
        """`count` requests, `clients` at a time: connections opened, code paths warm."""
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(0, count, clients):
                await asyncio.gather(*(
                    self.send(session, target, self.request()) for _ in range(clients)
                ))  # fmt: skip
        self.check()

    async def closed(self, target: Target, *, clients: int, seconds: float) -> tuple[int, float]:
        """Closed loop: `clients` each send one request at a time until `seconds` have
        passed; returns the requests answered and the wall time to the last answer."""
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            deadline = time.perf_counter() + seconds

            async def client() -> int:
                sent = 0
                while time.perf_counter() < deadline and not self.wrong:
                    await self.send(session, target, self.request())
                    sent += 1
                return sent

            began = time.perf_counter()
            counts = await asyncio.gather(*(client() for _ in range(clients)))
            wall = time.perf_counter() - began
        self.check()
        return sum(counts), wall

    async def timed_run(self, target: Target, *, clients: int, seconds: float) -> None:
        pgid = target.server.process.pid
        cpu, own = cpu_seconds(pgid), time.process_time()
        count, wall = await self.closed(target, clients=clients, seconds=seconds)
        run = Run(rate=count / wall, cpu=(cpu_seconds(pgid) - cpu) / max(count, 1),
                  client_cores=(time.process_time() - own) / wall)  # fmt: skip
        target.runs.setdefault(clients, []).append(run)


class Redactions:
    """Deletions (DELETE Messages/SM....json) the fake received, per SID, counted as they
    come: a poll reads only the requests since the last one."""

    def __init__(self, fake: FakeTwilio) -> None:
        self._fake = fake
        self._read = 0  # of fake.requests
        self._settled = 0  # of the held SIDs, in order: all deleted before this one
        self.found: Counter[str] = Counter()

    def update(self) -> Counter[str]:
        requests = self._fake.requests
        for asked in requests[self._read :]:
            if asked.method != "DELETE":
                continue
            if match := REDACTION.search(asked.path):
                self.found[match.group(1)] += 1
        self._read = len(requests)
        return self.found

    def left(self, held: list[str]) -> int:
        """How many of `held` (every held SID so far, in order) are not deleted yet."""
        found = self.update()
        while self._settled < len(held) and held[self._settled] in found:
            self._settled += 1
        return sum(1 for sid in held[self._settled :] if sid not in found)


async def drained(redactions: Redactions, held: list[str]) -> float:
    """Seconds until every held SID so far has been deleted at the fake."""
    began = time.perf_counter()
    while time.perf_counter() - began < DRAIN_TIMEOUT:
        if redactions.left(held) == 0:
            return time.perf_counter() - began
        await asyncio.sleep(0.1)
    missing = redactions.left(held)
    raise BenchError(f"the outbox did not drain in {DRAIN_TIMEOUT:.0f} s ({missing:,} left)")


@contextlib.asynccontextmanager
async def recording(server: Server, spy: str, out: Path) -> AsyncIterator[None]:
    """py-spy on `server` while the block runs: samples of whichever thread holds the GIL."""
    process = start_py_spy(spy, server.pid, out)
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        await asyncio.to_thread(stop, process, signal.SIGINT, 30)  # py-spy writes on SIGINT


# -- afterwards ----------------------------------------------------------------------------


@dataclass(slots=True)
class Audit:
    verified: str  # verify_archive's report or its failure
    items: int  # ITEM entries decrypted
    unique: int  # distinct provider ids among them
    missing: int  # held answers with no item
    foreign: int  # items whose SID no held answer had
    deleting_requests: int
    deleted: int  # distinct SIDs deleted
    still_there: int  # held texts the fake still has


def audit(archive: Path, identity: pyrage.x25519.Identity, fake: FakeTwilio,
          held: list[str]) -> Audit:  # fmt: skip
    from proxy.archive import EntryKind, VerifyFailure, verify_archive  # noqa: PLC0415
    from proxy.archive.metadata import SealedItem  # noqa: PLC0415
    from proxy.archive.reader import SegmentScan, contiguous_segments, mapped  # noqa: PLC0415
    from proxy.archive.seal import open_sealed  # noqa: PLC0415
    from proxy.archive.segments import segment_name  # noqa: PLC0415

    try:
        verified = f"verify OK ({verify_archive(archive).entries:,} entries)"
    except VerifyFailure as failure:
        verified = f"VERIFY FAILED: {failure}"
    sids: list[str] = []
    log_dir = archive / "log"
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                if record.header.kind is EntryKind.SEALED:
                    metadata, _ = open_sealed(pyrage.decrypt(bytes(record.body), [identity]))
                    if isinstance(metadata, SealedItem):  # not a custody record
                        sids.append(str(metadata.provider_id))
                del record
    sealed, answered = set(sids), set(held)
    deletions = Redactions(fake).update()
    there = sum(1 for sid in answered if sid in fake.messages)
    return Audit(
        verified=verified, items=len(sids), unique=len(sealed),
        missing=len(answered - sealed), foreign=len(sealed - answered),
        deleting_requests=sum(deletions.values()), deleted=len(deletions.keys() & answered),
        still_there=there,
    )  # fmt: skip


def daemon_complaints(log: Path, expected: Counter[str]) -> list[str]:
    """The daemon's log lines at warning level or above, and any that are not its JSON (a
    traceback), less the `expected` events (event -> how many)."""
    left, found = Counter(expected), []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):
            if line.strip():
                found.append(line)
            continue
        event = str(entry.get("event"))
        if entry.get("level") in ("warning", "error", "critical"):
            if left[event] > 0:
                left[event] -= 1
            else:
                found.append(line)
    return found


# -- the run -------------------------------------------------------------------------------


@dataclass(slots=True)
class Results:
    daemon: Target
    bare: Target
    audit: Audit
    complaints: list[str]
    load: float  # 1-minute load average at the start
    profile: Path | None  # py-spy's collapsed stacks of the daemon under load


async def run(args: argparse.Namespace, work: Path) -> Results:
    load_average = os.getloadavg()[0]
    identity = pyrage.x25519.Identity.generate()
    fake = FakeTwilio("AC" + secrets.token_hex(16), secrets.token_hex(16))
    await fake.start()
    servers: list[Server] = []
    try:
        servers.append(await start_bare(work, fake.auth_token))
        servers.append(await start_daemon(work, fake, str(identity.to_public())))
        bare = Target(name="bare aiohttp + sig", server=servers[0], held=False)
        daemon = Target(name="nocontact (held)", server=servers[1], held=True)
        load, redactions = Load(fake), Redactions(fake)
        for target in (daemon, bare):
            await load.refused(target)
            await load.warm_up(target)
        await drained(redactions, daemon.answered)
        for target in (daemon, bare):
            print(f"latency: {target.name}, {args.rate:g}/s for {args.seconds:g} s",
                  file=sys.stderr)  # fmt: skip
            target.latencies = await load.paced(target, rate=args.rate, seconds=args.seconds)
        await drained(redactions, daemon.answered)
        for repeat in range(args.repeats):
            for clients in args.concurrency:
                for target in (daemon, bare):
                    print(f"throughput {repeat + 1}/{args.repeats}: {target.name}, "
                          f"{clients} clients", file=sys.stderr)  # fmt: skip
                    await load.timed_run(target, clients=clients, seconds=args.load_seconds)
                    if target.held:
                        target.drains.append(await drained(redactions, target.answered))
        profile = args.dir / "py-spy-sms-held.txt" if args.py_spy else None
        if profile is not None:
            print("py-spy: one more run of nocontact, not counted", file=sys.stderr)
            async with recording(daemon.server, args.py_spy, profile):
                await load.closed(daemon, clients=daemon.peak, seconds=args.load_seconds)
            await drained(redactions, daemon.answered)
        for target in (daemon, bare):
            if target.server.process.poll() is not None:
                raise BenchError(f"{target.name} exited during the run: "
                                 f"{last_line(target.server.log)}")  # fmt: skip
        stop(daemon.server.process)
        servers.remove(daemon.server)
        if daemon.server.process.returncode not in (0, -signal.SIGTERM):
            raise BenchError(f"nocontact stopped with status {daemon.server.process.returncode}: "
                             f"{last_line(daemon.server.log)}")  # fmt: skip
        checked = await asyncio.to_thread(audit, work / "archive", identity, fake,
                                          daemon.answered)  # fmt: skip
        complaints = daemon_complaints(daemon.server.log, Counter({REFUSED: 1}))
    finally:
        for server in reversed(servers):
            stop(server.process)
        await fake.stop()
    return Results(daemon=daemon, bare=bare, audit=checked, complaints=complaints,
                   load=load_average, profile=profile)  # fmt: skip


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(args: argparse.Namespace, results: Results) -> None:
    daemon, bare = results.daemon, results.bare
    sweep = ", ".join(map(str, args.concurrency))
    print(f"bench/sms.py: held texts, {args.rate:g} signed webhooks/s for {args.seconds:g} s, "
          f"then closed loops of {sweep} clients x {args.load_seconds:g} s (median of "
          f"{args.repeats}); {os.cpu_count()} cpus, load average before "
          f"{results.load:.2f}")  # fmt: skip
    print(f" {'latency':<22} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}   (POST to the whole "
          f"answer, {len(daemon.latencies):,} requests per target)")  # fmt: skip
    for target in (daemon, bare):
        print(
            f" {target.name:<22} {target.percentile(0.5) * 1e3:>7.2f} "
            f"{target.percentile(0.99) * 1e3:>7.2f} {max(target.latencies) * 1e3:>7.2f}"
        )
    print(f" {'throughput':<22} {'clients':>7} {'req/s':>7} {'runs':>11} {'cpu ms/req':>10} "
          f"{'client cores':>12}")  # fmt: skip
    for target in (daemon, bare):
        for clients in args.concurrency:
            runs = target.runs[clients]
            rates = [run.rate for run in runs]
            cores = [run.client_cores for run in runs]
            spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
            mark = "  <- best" if clients == target.peak else ""
            print(f" {target.name:<22} {clients:>7} {target.rate(clients):>7,.0f} {spread:>11} "
                  f"{statistics.median(run.cpu for run in runs) * 1e3:>10.3f} "
                  f"{min(cores):.2f}-{max(cores):.2f}{mark}")  # fmt: skip
    ratios = ", ".join(f"{daemon.rate(c) / bare.rate(c):.2f} at {c}" for c in args.concurrency)
    print(f"  runs: slowest-fastest; cpu: the server's process group; client cores: this "
          f"process (clients and the fake) per wall second; ratio at each: {ratios}")  # fmt: skip
    print(f"  outbox drained after each nocontact run in "
          f"{', '.join(f'{s:.1f}' for s in daemon.drains)} s")  # fmt: skip
    bare_cores = statistics.median(run.client_cores for run in bare.runs[bare.peak])
    if bare_cores >= SATURATED:
        print(f"  the load generator was busy {bare_cores:.2f} of a core during the bare runs: "
              f"the bare req/s is a lower bound, the ratio below an upper bound")  # fmt: skip
    p99 = daemon.percentile(0.99) * 1e3
    ratio = daemon.rate(daemon.peak) / bare.rate(bare.peak)
    print(f"goal: p99 <= {GOAL_P99_MS:g} ms: {verdict(p99 <= GOAL_P99_MS)} ({p99:.2f} ms)")
    print(f"goal: throughput >= {GOAL_RATIO:g} x bare: {verdict(ratio >= GOAL_RATIO)} "
          f"({ratio:.2f}: {daemon.rate(daemon.peak):,.0f} req/s at {daemon.peak} clients, "
          f"bare {bare.rate(bare.peak):,.0f} at {bare.peak})")  # fmt: skip
    checked = results.audit
    doubled = checked.items - checked.unique
    print(f"archive: {checked.items:,} items sealed for {len(daemon.answered):,} held answers "
          f"({checked.missing} missing, {doubled} doubled, {checked.foreign} unknown); "
          f"{checked.verified}; provider deletions: {checked.deleting_requests:,} "
          f"({checked.deleted:,} texts deleted, {checked.still_there} still there)")  # fmt: skip
    if results.complaints:
        print(f"nocontact logged {len(results.complaints)} warnings or errors, first ones:")
        for line in results.complaints[:5]:
            print(f"  {line}")
    if results.profile is None:
        return
    if not results.profile.exists():
        print(f"py-spy: no output ({results.profile})")
        return
    own, inclusive = top_frames(results.profile, PROFILED, ROOTS)
    print(f"py-spy --gil, one more nocontact run ({results.profile}): top frames, own samples")
    for share, frame in own:
        print(f"  {share:>6.1%}  {frame}")
    print("  inclusive, functions of proxy/, aiohttp, twilio:")
    for share, frame in inclusive:
        print(f"  {share:>6.1%}  {frame}")


def audit_failures(checked: Audit, held: int) -> str | None:
    if checked.items != held or checked.missing or checked.foreign or checked.unique != held:
        return "the archive does not hold exactly one item per held answer"
    if checked.verified.startswith("VERIFY FAILED"):
        return "the archive did not verify"
    return None


def clients_list(text: str) -> tuple[int, ...]:
    """--concurrency: "16,32,64" -> (16, 32, 64)."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"client counts must be 1 or more: {text!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rate", type=float, default=50.0, help="latency phase, requests/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency phase, per target")
    parser.add_argument("--concurrency", type=clients_list, default=(16, 32, 64),
                        help="closed-loop clients, a comma-separated sweep")  # fmt: skip
    parser.add_argument("--load-seconds", type=float, default=10.0,
                        help="seconds per closed-loop run")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="closed-loop runs (median)")
    parser.add_argument("--dir", type=Path, default=REPO / "var",
                        help="where to make the temporary directory (a real disk)")  # fmt: skip
    parser.add_argument("--py-spy", nargs="?", const="py-spy", default=None, metavar="EXE",
                        help="profile the loaded daemon with py-spy (this executable)")  # fmt: skip
    parser.add_argument("--bare-child", nargs=3, metavar=("PORT", "TOKEN", "URL"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.bare_child:
        port, token, public_url = args.bare_child
        bare_child(int(port), token, public_url)
        return 0
    if args.py_spy and shutil.which(args.py_spy) is None:
        parser.error(f"{args.py_spy} not found (pip install py-spy, e.g. in a separate venv)")
    started = time.perf_counter()
    try:
        with scratch(args.dir, "bench-sms-") as work:
            results = asyncio.run(run(args, work))
    except BenchError as error:
        print(f"bench/sms.py: {error}", file=sys.stderr)
        return 1
    report(args, results)
    print(f"whole run {time.perf_counter() - started:.0f} s")
    failure = audit_failures(results.audit, len(results.daemon.answered))
    if failure is not None:
        print(f"bench/sms.py: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
