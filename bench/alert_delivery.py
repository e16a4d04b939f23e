"""Benchmark section: from a held message to its alert at a contact's transport.

Run as bench/alerts.py's delivery section: .venv/bin/python bench/alerts.py delivery

The real daemon (`python -m proxy run`, its own process) with the SMTP channel and an
`alerts:` section whose one transport is `json://` to an aiohttp receiver in this process,
on 127.0.0.1. N messages (default 100) are held one at a time through the real SMTP filter
path (smtplib -> aiosmtpd -> pipeline -> archive, fsync'd -> 250); each comes from a new
address of his domain, so each is a *new identity* (elevated, sent at once), and carries a
threat ("I will kill you") that makes it urgent once the threat detection is wired into
the pipeline (it is). Urgent and elevated alerts leave by the same path (enqueue,
the service's step, the sealed state saved, apprise on a worker thread), neither waits for
quiet hours; the tiers seen are printed. Latency: from the start of the SMTP transaction
to the alert's arrival at the receiver. p50 and p99.

Goal (issue 23): p99 <= 5 s.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyrage
from aiohttp import web

HOST = "127.0.0.1"
GOAL_P99 = 5.0
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as connection:
            return bool(connection.recv(512))
    except OSError:
        return False


def letter(number: int) -> tuple[str, bytes]:
    sender = f"m{number}@smith-family.example"
    raw = (f"From: Mark <{sender}>\r\nTo: Sam <sam@home.example>\r\nSubject: answer me\r\n"
           f"Message-ID: <{number}@smith-family.example>\r\n\r\n"
           "Answer me or I will kill you.\r\n").encode()  # fmt: skip
    return sender, raw


def send(port: int, sender: str, raw: bytes) -> None:
    with smtplib.SMTP(HOST, port, timeout=30) as client:
        client.sendmail(sender, ["sam@home.example"], raw)


def write_config(work: Path, smtp_port: int, hook_port: int) -> Path:
    recipient = pyrage.x25519.Identity.generate().to_public()
    config = work / "nocontact.yaml"
    config.write_text(
        f"archive: {{path: {work / 'archive'}}}\n"
        f"contacts: [{{name: Bench, role: lawyer, age_recipient: {recipient},\n"
        "             alerts: {transports: [hook]}}]\n"
        "people: [{id: mark, name: Mark Smith, domains: [smith-family.example]}]\n"
        "default_region: US\n"
        "channels:\n"
        "  smtp:\n"
        f"    listen: {HOST}:{smtp_port}\n"
        f"    deliver: maildir:{work / 'mail'}\n"
        "alerts:\n"
        f"  transports: {{hook: {{url: 'json://{HOST}:{hook_port}/hook'}}}}\n"
        "  digest: {every: 'off'}\n"
        "  escalate_after: 10080\n"
    )
    return config


async def measure(count: int, work: Path) -> tuple[list[float], Counter[str]]:
    arrived: asyncio.Queue[tuple[float, str]] = asyncio.Queue()

    async def take(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        arrived.put_nowait((time.perf_counter(), str(body.get("title", ""))))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port, smtp_port = free_port(), free_port()
    await web.TCPSite(runner, HOST, hook_port).start()
    config = write_config(work, smtp_port, hook_port)
    log = (work / "daemon.log").open("ab")
    daemon = subprocess.Popen([sys.executable, "-m", "proxy", "run", "-c", str(config)],
                              stdout=log, stderr=log, cwd=REPO)  # fmt: skip
    latencies: list[float] = []
    tiers: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(greets, smtp_port):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((work / "daemon.log").read_text()[-2000:])
            await asyncio.sleep(0.05)
        for number in range(count):
            sender, raw = letter(number)
            started = time.perf_counter()
            await asyncio.to_thread(send, smtp_port, sender, raw)
            at, title = await asyncio.wait_for(arrived.get(), 60)
            latencies.append(at - started)
            tiers[title] += 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.to_thread(daemon.wait, 60)
        log.close()
        await runner.cleanup()
    return latencies, tiers


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latencies(count: int, directory: Path) -> tuple[list[float], dict[str, int]]:
    """`count` held messages' times to their alerts (seconds), and the tiers seen."""
    directory.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="alerts-", dir=directory))
    try:
        return asyncio.run(measure(count, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
