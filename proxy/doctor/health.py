"""`nocontact health`: is the running daemon up, judged from outside, for a container's
HEALTHCHECK or a monitor.

Rules this module keeps:
1. Healthy means all of: the config loads; the archive's writer lock is held (a daemon
   runs on it); the `checkpoint` file verifies against `signing.pub` and was signed at
   most `STALE_AFTER` ago (a live daemon signs at every 10-minute tick, whatever came
   in); the SMTP listener greets with 220; the webhook listener answers HTTP; every next
   hop answers (doctor's own check).
2. Only what anyone on the host could see is looked at: no archive entry is read, no
   watched mailbox opened (the IMAP watcher's health is the daemon's, whose lock and
   ticks are checked), no message sent.
3. The result is one line: `healthy`, or `unhealthy: ` and the reasons, fixed phrases
   ("smtp listener down", "next hop down"), none of which could date a held item: a
   checkpoint's age is that of the cadence, and never printed.
4. `freshness_problem` is pure; every network step has `timeout`.
"""

from __future__ import annotations

import http.client
import smtplib
from datetime import datetime, timedelta
from pathlib import Path

from proxy.archive import layout
from proxy.archive.log import TIME_GRAIN
from proxy.archive.note import NoteError, Verifier, parse_checkpoint
from proxy.archive.verify import writer_is_live
from proxy.config import Config, load_config
from proxy.deliver.address import parse_listen
from proxy.doctor.hops import hop_problem, next_hops
from proxy.errors import ConfigError

STALE_AFTER = timedelta(seconds=2 * TIME_GRAIN)  # two ticks missed: the daemon is stuck
_MOST_NOTE_BYTES = 64 << 10
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - where to reach one, not bind


def freshness_problem(signed: datetime | None, now: datetime) -> str | None:
    """Whether a checkpoint signed at `signed` is recent enough at `now` (rule 1)."""
    if signed is None:
        return "no signed checkpoint"
    if now - signed > STALE_AFTER:
        return f"no checkpoint signed in {STALE_AFTER.seconds // 60} minutes"
    return None


def reasons(path: str, *, now: datetime, timeout: float) -> list[str]:
    """Why the daemon of the config at `path` is unhealthy; empty when it is healthy."""
    try:
        config = load_config(path)
    except ConfigError:
        return ["config invalid (run nocontact doctor)"]
    archive = Path(config.archive.path)
    found = []
    if not writer_is_live(archive):
        found.append("daemon not running")
    problem = freshness_problem(_signed_at(archive), now)
    if problem is not None:
        found.append(problem)
    found += _listeners(config, timeout)
    hostname = config.channels.smtp.hostname if config.channels.smtp else "nocontact.local"
    if any(hop_problem(h, hostname=hostname, timeout=timeout) for h in next_hops(config)):
        found.append("next hop down")
    return found


def _signed_at(archive: Path) -> datetime | None:
    try:
        verifier = Verifier.decode((archive / layout.VERIFIER_KEY).read_text().strip())
        with (archive / layout.HEAD).open("rb") as head:
            note = head.read(_MOST_NOTE_BYTES)
        return parse_checkpoint(verifier.open(note)).time
    except (OSError, NoteError, UnicodeDecodeError):
        return None


def _listeners(config: Config, timeout: float) -> list[str]:
    found = []
    if config.channels.smtp is not None and not _greets(config.channels.smtp.listen, timeout):
        found.append("smtp listener down")
    if config.channels.sms is not None and not _answers_http(config.channels.sms.listen, timeout):
        found.append("webhook listener down")
    return found


def _reachable(listen: str) -> tuple[str, int]:
    """Where to reach a listener bound to `listen` (a wildcard is reached on loopback)."""
    host, port = parse_listen(listen)
    return _WILDCARDS.get(host, host), port


def _greets(listen: str, timeout: float) -> bool:
    host, port = _reachable(listen)
    client = smtplib.SMTP(timeout=timeout)
    try:
        code, _ = client.connect(host, port)
    except (smtplib.SMTPException, OSError):
        client.close()
        return False
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()
    return code == 220


def _answers_http(listen: str, timeout: float) -> bool:
    host, port = _reachable(listen)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("HEAD", "/")
        connection.getresponse().read()
    except (http.client.HTTPException, OSError):
        return False
    finally:
        connection.close()
    return True
