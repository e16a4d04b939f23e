"""Benchmark: the portal's login, held-items list, item page and export, over HTTP.

Run: .venv/bin/python bench/portal.py [--items N] [--requests R] [--dir DIR] [--keep]

Everything lives in a temporary directory under DIR (default <repo>/var, which git ignores),
removed at the end unless --keep.

1. Build (not timed against a goal): the test config (tests/portal_helpers.py's, served
   over plain HTTP on loopback as its HTTP_CONFIG is); its portal contact invited
   and enrolled through the accounts API with the real argon2id settings; an archive whose
   recipient is that contact, with the contact's custody key published. 100 emails from
   mark (tests/factories.py's rulebook holds them), email j received on day j after
   2024-01-01, are sealed once each; the archive then gets N entries, item i being email
   i % 100's seal, appended pre-sealed with `Archive.append` in batches of 512 at once.
   The archive stays open on a thread of its own with its custody socket served, as the
   daemon (`nocontact run`) holds it while contacts use the portal.
2. The real app from `portal_app`, on a loopback port in a thread of its own, driven by an
   aiohttp client in this thread (its own event loop), one request at a time:
   - login: GET /login then POST /login (argon2id + unwrap of the identity), 5 times,
     the clock moved a TOTP step between them (a code is used once); median and max;
   - list: the first GET /items of a session (it builds the session's index: every
     entry decrypted once) reported alone; then R requests for random pages (100 rows
     each, custody recorded for each page), p50 and p99;
   - item: R requests for random items seen on those pages (/items/<seq>), p50 and p99;
   - export: POST /export of the items of days 0-9 (a tenth of N: 10,000 for N=100,000),
     the time to the first byte of the zip and to its last.

Goals (issue 22): login <= 1.5 s; list page p99 <= 300 ms with 100,000 items; item page
p99 <= 100 ms; the first byte of a 10,000-item export within 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import statistics
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pyotp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/portal.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from bench.procs import scratch  # noqa: E402
from proxy.archive import Archive, EntryKind, Recipients  # noqa: E402
from proxy.archive.seal import fingerprint, seal_item  # noqa: E402
from proxy.config import load_config  # noqa: E402
from proxy.config.model import Config  # noqa: E402
from proxy.custody import serve_custody  # noqa: E402
from proxy.normalize import normalize_email  # noqa: E402
from proxy.portal.accounts import Accounts  # noqa: E402
from proxy.portal.keyfiles import custody_key_file  # noqa: E402
from proxy.portal.web import portal_app  # noqa: E402
from proxy.rules import decide  # noqa: E402
from tests.factories import make_rules  # noqa: E402
from tests.portal_helpers import EMAIL, HTTP_CONFIG, STRONG, serving  # noqa: E402

GOAL_LOGIN, GOAL_LIST_P99, GOAL_ITEM_P99, GOAL_EXPORT_FIRST = 1.5, 0.300, 0.100, 2.0
TEMPLATES, BATCH, LOGINS, SEED = 100, 512, 5, 22
FIRST_DAY = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
MESSAGE = (
    "From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: note {n}\r\n\r\n"
    "Message number {n}. I just want to talk, please answer me.\r\n"
)
T = TypeVar("T")
CSRF = re.compile(r'name="(csrf|login_token)" value="([^"]+)"')
SEQUENCE = re.compile(r'<a href="/items/([0-9]+)">')


class Clock:
    """Real time, moved on by hand a TOTP step at a time (each code is used once)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def step(self) -> None:
        self.offset += timedelta(seconds=30)


def enroll(config: Config, clock: Clock) -> tuple[Accounts, str, str]:
    """The config's portal contact enrolled with the real settings; accounts, TOTP secret,
    recipient."""
    accounts = Accounts(config, clock=clock)
    token = accounts.invite("Priya Raman").rsplit("/", 1)[1]
    setup = accounts.totp_setup(accounts.begin(token))
    enrolled = accounts.enroll(token, STRONG, pyotp.TOTP(setup.secret).at(clock()), setup.secret)
    clock.step()
    return accounts, setup.secret, enrolled.recipient


async def seed(config: Config, recipient: str, items: int) -> tuple[Archive, float]:
    """The archive opened as the daemon opens it, and `items` pre-sealed entries appended
    (step 1); the archive, left open, and the seconds taken."""
    contact = next(c for c in config.contacts if c.portal)
    keys = {fingerprint(recipient): custody_key_file(contact).read_text().strip()}
    rules = make_rules()
    sealed = []
    for n in range(TEMPLATES):
        message = normalize_email(MESSAGE.format(n=n).encode(),
                                  envelope_sender="mark.smith@gmail.com",
                                  received_at=FIRST_DAY + timedelta(days=n))  # fmt: skip
        decision = decide(message, rules)
        assert decision.held, "the benchmark email must be held"
        sealed.append(seal_item(message, decision, Recipients.parse([recipient]),
                                sealed_at=datetime.now(UTC)))  # fmt: skip
    start = time.perf_counter()
    archive = await Archive.open(config.archive.path, recipients=[recipient], custody_keys=keys)
    try:
        for first in range(0, items, BATCH):
            await asyncio.gather(*(archive.append(EntryKind.SEALED, sealed[i % TEMPLATES])
                                   for i in range(first, min(items, first + BATCH))))  # fmt: skip
    except BaseException:
        await archive.close()
        raise
    return archive, time.perf_counter() - start


@contextlib.contextmanager
def holding(config: Config, recipient: str, items: int) -> Iterator[float]:
    """The daemon's side, as `nocontact run` keeps it while the portal is used: the archive
    held open on a loop of its own, seeded, with its custody socket served; the seconds
    the seeding took."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="daemon", daemon=True)
    thread.start()

    def call(work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, loop).result()

    try:
        archive, seconds = call(seed(config, recipient, items))
        server = call(serve_custody(archive))
        try:
            yield seconds
        finally:
            server.close()
            call(server.wait_closed())
            call(archive.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def token(page: str, name: str) -> str:
    found: dict[str, str] = dict(CSRF.findall(page))
    return found[name]


async def timed_get(client: aiohttp.ClientSession, url: str) -> tuple[float, str]:
    start = time.perf_counter()
    async with client.get(url, allow_redirects=False) as response:
        text = await response.text()
        assert response.status == 200, (url, response.status, text[:300])
    return time.perf_counter() - start, text


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def drive(
    origin: str, clock: Clock, secret: str, items: int, requests: int
) -> dict[str, list[float]]:
    """Step 2: every measurement, in seconds (and the export's size in bytes)."""
    results: dict[str, list[float]] = {}
    jar = aiohttp.CookieJar(unsafe=True)  # 127.0.0.1
    async with aiohttp.ClientSession(origin, cookie_jar=jar) as client:
        logins = []
        for _ in range(LOGINS):
            jar.clear()
            async with client.get("/login") as response:
                form = {"login_token": token(await response.text(), "login_token"),
                        "email": EMAIL, "passphrase": STRONG,
                        "code": pyotp.TOTP(secret).at(clock())}  # fmt: skip
            start = time.perf_counter()
            async with client.post("/login", data=form, allow_redirects=False) as response:
                await response.read()
                assert response.status == 303, f"login refused: {response.status}"
            logins.append(time.perf_counter() - start)
            clock.step()
        results["login"] = logins
        first, page = await timed_get(client, "/items")
        results["list first"] = [first]
        csrf = token(page, "csrf")
        pages = max(1, -(-items // 100))
        rng = random.Random(SEED)
        seen: list[int] = []
        listing = []
        for _ in range(requests):
            seconds, page = await timed_get(client, f"/items?page={rng.randint(1, pages)}")
            listing.append(seconds)
            seen.extend(int(n) for n in SEQUENCE.findall(page))
        results["list"] = listing
        results["item"] = [(await timed_get(client, f"/items/{rng.choice(seen)}"))[0]
                           for _ in range(requests)]  # fmt: skip
        last = (FIRST_DAY + timedelta(days=9)).date()
        form = {"csrf": csrf, "reason": "benchmark", "since": FIRST_DAY.date().isoformat(),
                "until": last.isoformat(), "person": ""}  # fmt: skip
        start = time.perf_counter()
        async with client.post("/export", data=form, allow_redirects=False) as response:
            assert response.status == 200, f"export: {response.status}"
            size = len(await response.content.readany())
            first_byte = time.perf_counter() - start
            size += len(await response.read())
            results["export"] = [first_byte, time.perf_counter() - start, float(size)]
    return results


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="held items in the archive")
    parser.add_argument("--requests", type=int, default=200, help="list and item requests")
    parser.add_argument("--dir", type=Path, default=REPO / "var",
                        help="where to make the temporary directory (a real disk)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    args = parser.parse_args()
    clock = Clock()
    with scratch(args.dir, "bench-portal-", keep=args.keep) as work:
        (work / "config.yaml").write_text(HTTP_CONFIG)
        config = load_config(work / "config.yaml")
        start = time.perf_counter()
        accounts, secret, recipient = enroll(config, clock)
        enrolled = time.perf_counter() - start
        with (
            holding(config, recipient, args.items) as seeded,
            serving(portal_app(config, accounts=accounts, clock=clock)) as origin,
        ):
            results = asyncio.run(drive(origin, clock, secret, args.items, args.requests))
    exported = args.items // 10
    print(
        f"bench/portal.py: {args.items:,} held items (one key), {args.requests} list and "
        f"item requests, {os.cpu_count()} cpus; under {args.dir}, removed after"
    )
    print(f"build: enrollment {enrolled:.1f} s, {args.items:,} entries appended in "
          f"{seeded:.1f} s")  # fmt: skip
    login, listing, item = results["login"], results["list"], results["item"]
    first_byte, whole, size = results["export"]
    rows = [
        ("login (argon2id + unwrap)", "median", statistics.median(login), None),
        ("", "max", max(login), GOAL_LOGIN),
        ("list, first (builds the index)", "once", results["list first"][0], None),
        ("list, random page", "p50", percentile(listing, 0.50), None),
        ("", "p99", percentile(listing, 0.99), GOAL_LIST_P99),
        ("item page", "p50", percentile(item, 0.50), None),
        ("", "p99", percentile(item, 0.99), GOAL_ITEM_P99),
        (f"export of {exported:,} items", "first byte", first_byte, GOAL_EXPORT_FIRST),
        ("", "last byte", whole, None),
    ]
    print(f"{'':<32} {'':>10} {'ms':>10}  goal")
    for name, what, seconds, goal in rows:
        judged = "" if goal is None else f"<= {goal * 1000:,.0f} ms {verdict(seconds <= goal)}"
        print(f"{name:<32} {what:>10} {seconds * 1000:>10,.1f}  {judged}")
    print(f"(export zip {size / 2**20:,.1f} MiB)")


if __name__ == "__main__":
    main()
