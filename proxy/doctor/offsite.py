"""Whether what keeps the evidence off the server is there: the replica's bucket and the
witnesses.

Rules this module keeps:
1. The replica (`replicate:`): the store opens (credentials, bucket, Object Lock:
   store.py rule 3), and the bucket's `archive.json` is absent (nothing replicated yet) or
   this archive's own: another archive's replica would be refused by every pass.
2. The bucket must not be on this machine: an S3 server's operator is above Object Lock
   (docs/replication.md, "What it cannot guarantee"), so a bucket on the archive's own
   server protects nothing. An endpoint whose host is loopback, or resolves to an address
   this machine can bind, is a FAIL saying so.
3. Each witness (`witnesses:`) is not on this machine either (a witness on the archive's
   own server vouches for nothing), and answers HTTP at `<url>/add-checkpoint`: a GET,
   which a witness refuses (it takes only POST there), so it changes nothing; any answer
   below 500 means one is listening. TLS is verified for https, as the submitter does.
4. Nothing read says anything of held items: only whether the bucket is this archive's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from proxy.archive import layout
from proxy.config import Config
from proxy.config.model import Replicate, Witness
from proxy.doctor.findings import Finding, fail, ok
from proxy.replica.process import bucket_settings
from proxy.replica.store import StoreError, open_store

_SERVER_ERROR = 500


def check_offsite(config: Config, timeout: float) -> list[Finding]:
    found = []
    if config.replicate is not None:
        found.append(_replica(config.replicate, Path(config.archive.path), timeout))
    found += [_witness(witness, timeout) for witness in config.witnesses]
    return found


def _replica(replicate: Replicate, archive: Path, timeout: float) -> Finding:
    """Rules 1 and 2."""
    what = f"replica bucket {replicate.bucket}"
    if replicate.endpoint is not None and on_this_machine(replicate.endpoint, timeout):
        return fail(what, f"{replicate.endpoint} is this machine: whoever runs an S3 server can "
                    "remove what Object Lock keeps; put the bucket with a storage provider or "
                    "an advocacy organisation")  # fmt: skip
    problem = bucket_problem(replicate, archive)
    return (
        ok(f"{what} has Object Lock and is this archive's")
        if problem is None
        else fail(what, problem)
    )


def bucket_problem(replicate: Replicate, archive: Path) -> str | None:
    """Why the replica's bucket cannot take this archive's replica (rule 1), or None."""
    try:
        there = open_store(bucket_settings(replicate)).get(layout.MANIFEST)
    except StoreError as error:
        return str(error)
    try:
        ours = (archive / layout.MANIFEST).read_bytes()
    except OSError as error:
        return f"cannot read {archive / layout.MANIFEST} ({error.strerror})"
    if there is not None and there != ours:
        return "holds another archive's replica (use another bucket or prefix)"
    return None


def on_this_machine(url: str, timeout: float) -> bool:
    """Whether `url`'s host is this machine (rule 2): loopback, or an address it can bind."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    finally:
        socket.setdefaulttimeout(previous)
    return any(_local(address) for address in addresses)


def _local(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if parsed.is_loopback:
        return True
    family = socket.AF_INET6 if parsed.version == 6 else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return True
    return False


def _witness(witness: Witness, timeout: float) -> Finding:
    """Rule 3."""
    what = f"witness {witness.url}"
    if on_this_machine(witness.url, timeout):
        return fail(what, "is this machine: a witness must be run by someone else, elsewhere")
    problem = witness_problem(witness.url, timeout)
    return ok(f"{what} answers") if problem is None else fail(what, problem)


def witness_problem(base: str, timeout: float) -> str | None:
    """Why the witness at `base` does not answer (rule 3), or None when it does."""
    url = base.rstrip("/") + "/add-checkpoint"
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (https, or loopback http)
            pass
    except urllib.error.HTTPError as error:
        if error.code >= _SERVER_ERROR:
            return f"answered HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"does not answer ({getattr(error, 'reason', error)})"
    return None
