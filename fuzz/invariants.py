"""The invariants every fuzz target checks, and the one rulebook they decide with.

Rules this module keeps:
1. Never raises: a target calls the code under test through `bounded`, and anything that
   escapes it (an exception the code's contract does not name) is a finding.
2. UTF-8 all the way: `assert_utf8` walks a value (dataclasses, tuples, lists, dicts, strings)
   and fails on any string that does not encode, such as one holding a lone surrogate. A
   string like that would make the archive's seal, the logs or a JSON report raise later.
   `assert_seals` seals a message as the archive would and opens the seal again: its
   metadata and the original bytes must come back exactly.
3. Linear cost: one input may take at most `LIMIT_SECONDS` (`NOCONTACT_FUZZ_LIMIT` overrides
   it), at every length up to the target's `-max_len`. A quadratic parser passes small
   inputs and fails here on large ones; libFuzzer's own `-timeout` catches a true hang.
4. Survey mode (`NOCONTACT_FUZZ_SURVEY=DIR`): instead of stopping at the first finding,
   each distinct one (exception type and the innermost line it came from, or "slow") is
   written once to DIR and fuzzing goes on. `scripts/fuzz --survey` uses it to list every
   distinct bug in one long run; CI runs without it and stops at the first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage

from proxy.archive.seal import Recipients, item_metadata, parse_sealed, seal_item
from proxy.config.model import Config
from proxy.message import Decision, InboundMessage
from proxy.rules import Rulebook, compile_rules

LIMIT_SECONDS = float(os.environ.get("NOCONTACT_FUZZ_LIMIT", "2.0"))
RECEIVED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_SURVEY = os.environ.get("NOCONTACT_FUZZ_SURVEY", "")
_MAX_SLOW_SAMPLES = 20

# A fixed age public key: the rulebook never seals, it only has to validate.
_RECIPIENT = "age1v2pf68wd4y0u803wvxxs9uunz2fvcu4ep6jmk7glm32ss8f0tsuskzl33j"
PERSON_NAME = "Mark Smith"


_IDENTITY = pyrage.x25519.Identity.generate()
_RECIPIENTS = Recipients.parse([str(_IDENTITY.to_public())])


class InvariantBroken(AssertionError):
    """A fuzz invariant does not hold for this input (the message says which)."""


def rulebook() -> Rulebook:
    """The rules every target decides with: one person, one intermediary, an allow list."""
    data: dict[str, Any] = {
        "archive": {"path": "/nonexistent/nocontact-fuzz"},
        "contacts": [{"name": "Dana Reyes", "role": "lawyer", "age_recipient": _RECIPIENT}],
        "people": [
            {
                "id": "mark",
                "name": PERSON_NAME,
                "aliases": ["Marky"],
                "emails": ["mark.smith@gmail.com"],
                "domains": ["markscompany.example"],
                "phones": ["(555) 010-0199"],
                "display_names": ["M. Smith"],
            }
        ],
        "intermediaries": [
            {
                "id": "carol",
                "name": "Carol",
                "emails": ["carol@example.net"],
                "phones": ["+1 555 010 0142"],
            }
        ],
        "allow": {"emails": ["dana@reyes-law.example"], "domains": ["court.example.gov"]},
        "default_region": "US",
    }
    config = Config.model_validate(data, context={"default_region": "US"})
    return compile_rules(config)


def assert_utf8(value: object, where: str = "value") -> None:
    """Fail if any string inside `value` cannot be encoded as UTF-8."""
    for path, text in _strings(value, where):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            bad = text[error.start : error.end]
            raise InvariantBroken(f"{path} is not UTF-8: {bad!r} at {error.start}") from None


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, bytes | bytearray | int | float | datetime | type(None)):
        return
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _strings(getattr(value, field.name), f"{path}.{field.name}")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{path}[key]")
            yield from _strings(item, f"{path}[{key!r}]")
    elif isinstance(value, tuple | list | frozenset | set):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def assert_seals(message: InboundMessage, decision: Decision) -> None:
    """Fail unless `message` seals, and the seal opens to its metadata and its exact bytes."""
    sealed = seal_item(message, decision, _RECIPIENTS, sealed_at=RECEIVED_AT)
    metadata, payload = parse_sealed(pyrage.decrypt(sealed, [_IDENTITY]))
    if payload != message.raw:
        raise InvariantBroken("the seal's payload is not the message's bytes")
    expected = json.loads(json.dumps(item_metadata(message, decision, sealed_at=RECEIVED_AT)))
    if {key: metadata.get(key) for key in expected} != expected:
        raise InvariantBroken("the seal's metadata is not the message's")


@contextmanager
def timed(size: int, limit: float = LIMIT_SECONDS) -> Iterator[None]:
    """Fail if the block takes longer than `limit` seconds (for an input of `size` bytes)."""
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    if elapsed > limit:
        raise InvariantBroken(f"slow: {elapsed:.2f} s for {size} bytes (limit {limit} s)")


def guarded(check: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """`check` as a fuzz entry point, which in survey mode records findings and goes on."""
    if not _SURVEY:
        return check
    directory = Path(_SURVEY)
    directory.mkdir(parents=True, exist_ok=True)

    def surveyed(data: bytes) -> None:
        try:
            check(data)
        except Exception as error:  # survey mode: every finding is kept, none stops the run
            _record(directory, data, error)

    return surveyed


def _record(directory: Path, data: bytes, error: Exception) -> None:
    message = str(error)
    if isinstance(error, InvariantBroken) and message.startswith("slow:"):
        if len(list(directory.glob("slow-*"))) >= _MAX_SLOW_SAMPLES:
            return
        signature = "slow-" + hashlib.sha1(data).hexdigest()[:12]  # noqa: S324 - a file name
    else:
        frames = traceback.extract_tb(error.__traceback__)
        last = frames[-1] if frames else None
        where = f"{Path(last.filename).name}:{last.lineno}" if last else "?"
        if isinstance(error, InvariantBroken):
            where = message.split(" is not", 1)[0].split("[", 1)[0]
        signature = f"{type(error).__name__}-{where}".replace("/", "_")
        signature = signature.encode()[:200].decode(errors="ignore")  # a file name's bytes
    sample = directory / signature
    if not sample.exists():
        sample.write_bytes(data)
        note = "".join(traceback.format_exception(error))
        (directory / f"{signature}.txt").write_text(note, encoding="utf-8", errors="replace")
