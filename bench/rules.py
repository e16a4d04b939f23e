"""Benchmark: rule decisions per second as the blocklist grows from 10 to 100,000 identities.

Run: .venv/bin/python bench/rules.py [--seconds S]

For each size it builds a config of N identities (addresses, domains, numbers and display
names spread over blocked people, whose names and aliases are scanned for as mentions: up
to 1,000 names at the largest size), then times `decide` on one 10 KB third-party email
that matches nothing — the worst case, since every table is consulted and the whole text
scanned. It also times normalize + decide, the whole pure path of a message.

Goal (issue 2): >= 20,000 decisions/s on one core, and the cost at 100,000 identities no
more than 1.5x the cost at 10.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pyrage

from proxy.config.model import Config
from proxy.message import InboundMessage
from proxy.normalize import normalize_email
from proxy.rules import Rulebook, compile_rules, decide

SIZES = (10, 1_000, 100_000)
MAX_NAMES = 1_000
MESSAGE_BYTES = 10 * 1024
FIRST = (
    "James Robert John Michael David William Richard Joseph Thomas Charles Daniel Matthew "
    "Anthony Mark Steven Paul Andrew Joshua Kevin Brian George Edward Ronald Timothy"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White"
).split()
WORDS = ("the meeting tomorrow is at school please bring the forms and the lunch money we "
         "will see you at practice on saturday thanks again for the photos from the party "
         "market marked remarks smithy johnsons davidson williamsburg order invoice "
         "tracking number shipped delivered your account statement is ready").split()  # fmt: skip


def build_config(identities: int, rng: random.Random) -> Config:
    """A valid config with `identities` identities and up to MAX_NAMES mention names."""
    people_count = max(2, min(MAX_NAMES, identities // 10))
    people: list[dict[str, Any]] = [
        {
            "id": f"p{i}",
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}-{i}",
            "emails": [],
            "domains": [],
            "phones": [],
            "display_names": [],
        }
        for i in range(people_count)
    ]
    for n in range(identities):
        person = people[n % people_count]
        slot = n % 10
        if slot < 4:
            person["emails"].append(f"user{n}.{rng.randrange(10**6)}@mail{n % 997}.example")
        elif slot < 6:
            person["domains"].append(f"d{n}.blocked{n % 991}.example")
        elif slot < 9:
            person["phones"].append(f"+1 415 {n // 10_000 % 1000:03d} {n % 10_000:04d}")
        else:
            person["display_names"].append(f"{rng.choice(FIRST)} {rng.choice(LAST)} {n}")
    data = {
        "archive": {"path": "/tmp/bench-archive"},
        "contacts": [
            {
                "name": "Bench Lawyer",
                "role": "lawyer",
                "age_recipient": str(pyrage.x25519.Identity.generate().to_public()),
            }
        ],
        "people": people,
        "default_region": "US",
    }
    return Config.model_validate(data, context={"default_region": "US"})


def ten_kb_email(rng: random.Random) -> bytes:
    """A 10 KB plain-text email from a friend that mentions no one blocked (worst case)."""
    headers = (
        "From: Jordan Lee <jordan.lee@friends.example>\r\n"
        "To: Sam <sam@home.example>\r\nSubject: Saturday and the school forms\r\n"
        "Message-ID: <bench@friends.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < MESSAGE_BYTES - len(headers):
        roll = rng.random()
        if roll < 0.04:
            words.append(rng.choice(FIRST))  # first names alone: near misses for the scan
        elif roll < 0.06:
            words.append(rng.choice(LAST))
        else:
            words.append(rng.choice(WORDS))
    body = ""
    for index, word in enumerate(words):
        body += word + ("\r\n" if index % 12 == 11 else " ")
    return (headers + body).encode()[:MESSAGE_BYTES]


def rate(action: Callable[[], object], seconds: float) -> float:
    """Calls per second of `action`, median of three timed runs of about `seconds` / 3."""
    calls = 1
    while True:  # size a batch to ~50 ms
        start = time.perf_counter()
        for _ in range(calls):
            action()
        if time.perf_counter() - start > 0.05:
            break
        calls *= 2
    results = []
    for _ in range(3):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            for _ in range(calls):
                action()
            done += calls
        results.append(done / (time.perf_counter() - start))
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    rng = random.Random(2026)
    raw = ten_kb_email(rng)
    received = datetime(2026, 1, 1, tzinfo=UTC)

    def normalized() -> InboundMessage:
        return normalize_email(
            raw, envelope_sender="jordan.lee@friends.example", received_at=received,
            default_region="US",
        )  # fmt: skip

    message = normalized()
    rows = []
    for size in SIZES:
        config = build_config(size, rng)
        start = time.perf_counter()
        rules: Rulebook = compile_rules(config)
        compile_seconds = time.perf_counter() - start
        assert not decide(message, rules).held, "the benchmark email must match nothing"
        decisions = rate(partial(decide, message, rules), args.seconds)
        whole = rate(lambda: decide(normalized(), rules), args.seconds)  # noqa: B023 - run now
        names = sum(1 + len(p.aliases) for p in config.people)
        rows.append((size, names, decisions, whole, compile_seconds))

    print(f"bench/rules.py: one {len(raw):,}-byte email that matches nothing, one core")
    print(
        f"{'identities':>11} {'names':>6} {'decide/s':>10} {'us/decide':>10} "
        f"{'normalize+decide/s':>19} {'compile s':>10}"
    )
    for size, names, decisions, whole, compile_seconds in rows:
        print(
            f"{size:>11,} {names:>6,} {decisions:>10,.0f} {1e6 / decisions:>10.1f} "
            f"{whole:>19,.0f} {compile_seconds:>10.2f}"
        )
    smallest, largest = rows[0][2], rows[-1][2]
    ratio = smallest / largest
    print(f"cost ratio, {SIZES[-1]:,} vs {SIZES[0]} identities: {ratio:.2f} (goal < 1.5)")
    print(f"slowest decide rate: {min(r[2] for r in rows):,.0f}/s (goal >= 20,000/s)")


if __name__ == "__main__":
    main()
