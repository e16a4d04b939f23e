"""`nocontact health`: is the running daemon up, judged from outside, for a container's
HEALTHCHECK or a monitor.

Rules this module keeps:
1. Healthy means all of: the config loads; the archive's writer lock is held (a daemon
   runs on it); the `checkpoint` file verifies against `signing.pub` and was signed at
   most `STALE_AFTER` ago, or two `archive.checkpoint_every` if longer (a live daemon
   signs at every tick, whatever came in); the SMTP listener greets with 220; the
   webhook listener answers HTTP; every next hop answers (doctor's own check).
2. Only what anyone on the host could see is looked at: no archive entry is read, no
   watched mailbox opened (the IMAP watcher's health is the daemon's, whose lock and
   ticks are checked), no message sent.
3. The result is one line: `healthy`, or `unhealthy: ` and the reasons, fixed phrases
   ("smtp listener down", "next hop down"), none of which could date a held item: a
   checkpoint's age is that of the cadence, and never printed.
4. `freshness_problem` and `replica_problem` are pure; every network step has `timeout`.
5. With a `replicate:` section, the line ends with `; replica lag N s`: the whole seconds
   since the replicator last found the bucket up to date (its state file, state.py),
   and nothing else about the replica, never a size or a count. Past `LAG_TICKS` times
   (`archive.checkpoint_every` + `replicate.every`) it is unhealthy ("replica behind");
   no readable state file is "replica lag unknown". The replicator writes the file after
   every pass, whatever arrived, so the lag is that of its passes.
"""

from __future__ import annotations

import http.client
import smtplib
from dataclasses import dataclass
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
from proxy.replica.state import lag_seconds

LAG_TICKS = 3  # a replica this many ticks and passes behind is stuck (rule 5)
STALE_AFTER = timedelta(seconds=2 * TIME_GRAIN)  # two ticks missed: the daemon is stuck
_MOST_NOTE_BYTES = 64 << 10
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - where to reach one, not bind


def freshness_problem(
    signed: datetime | None, now: datetime, *, every: int = TIME_GRAIN
) -> str | None:
    """Whether a checkpoint signed at `signed` is recent enough at `now`, for an archive
    that signs every `every` seconds (rule 1): two ticks, or two grains, missed."""
    if signed is None:
        return "no signed checkpoint"
    stale_after = max(STALE_AFTER, timedelta(seconds=2 * every))
    if now - signed > stale_after:
        return f"no checkpoint signed in {stale_after // timedelta(minutes=1)} minutes"
    return None


def replica_problem(lag: float | None, config: Config) -> str | None:
    """Whether a replica `lag` seconds behind is within bounds (rule 5)."""
    if config.replicate is None:
        return None
    if lag is None:
        return "replica lag unknown"
    limit = LAG_TICKS * (config.archive.checkpoint_every + config.replicate.every)
    return "replica behind" if lag > limit else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What `health` found: the reasons it is unhealthy (none: healthy), and the replica's
    lag in whole seconds when there is a replica and its state file says it."""

    reasons: list[str]
    replica_lag: int | None = None

    def line(self) -> str:
        """The one line printed (rules 3 and 5)."""
        text = "unhealthy: " + ", ".join(self.reasons) if self.reasons else "healthy"
        return text if self.replica_lag is None else f"{text}; replica lag {self.replica_lag} s"


def verdict(path: str, *, now: datetime, timeout: float) -> Verdict:
    """The daemon's health and its replica's lag (rules 1 and 5)."""
    try:
        config = load_config(path)
    except ConfigError:
        return Verdict(reasons=["config invalid (run nocontact doctor)"])
    found = reasons(config, now=now, timeout=timeout)
    if config.replicate is None:
        return Verdict(reasons=found)
    lag = lag_seconds(Path(config.replicate.state_file), now.timestamp())
    problem = replica_problem(lag, config)
    return Verdict(
        reasons=found if problem is None else [*found, problem],
        replica_lag=None if lag is None else int(lag),
    )


def reasons(config: Config, *, now: datetime, timeout: float) -> list[str]:
    """Why the daemon of `config` is unhealthy; empty when it is healthy (rule 1)."""
    archive = Path(config.archive.path)
    found = []
    if not writer_is_live(archive):
        found.append("daemon not running")
    problem = freshness_problem(_signed_at(archive), now, every=config.archive.checkpoint_every)
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
