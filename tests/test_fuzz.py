"""The fuzz targets (fuzz/): each runs clean for a bounded time, and no input that ever broke
one breaks it again; with the findings of fuzzing outside normalize (config, webhooks, SMTP,
the replica check).

The runs take NOCONTACT_FUZZ_SECONDS (default 45) each, about six minutes for the seven;
skip them locally with NOCONTACT_FUZZ_SECONDS=0 or deselect them with -k "not fuzz_run".
A failing run prints the input that broke the target (a file under pytest's temporary
directory) and the exception; copy the input to fuzz/regressions/TARGET/ to keep it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from fuzz import invariants
from fuzz.invariants import InvariantBroken, assert_seals, assert_utf8, timed
from fuzz.run import CANARY, ROOT, TARGETS, describe, run
from proxy.archive.seal import seal_item
from proxy.channels.sms.webhooks import signed_params
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.message import InboundMessage
from proxy.replica.check import check_replica
from proxy.rules import decide
from tests.factories import email, make_rules
from tests.replica_helpers import MemoryReplica
from tests.test_smtp import Service, held_items

FUZZ_SECONDS = int(os.environ.get("NOCONTACT_FUZZ_SECONDS", "45"))
FUZZ_SEED = int(os.environ.get("NOCONTACT_FUZZ_SEED", "20"))
# Email findings are normalize's: tests/test_normalize_hostile.py replays them.
REGRESSIONS = sorted(
    p for p in (ROOT / "fuzz" / "regressions").glob("*/*") if p.parent.name != "email"
)
_RECIPIENT = "age1v2pf68wd4y0u803wvxxs9uunz2fvcu4ep6jmk7glm32ss8f0tsuskzl33j"
_CONFIG = f"""\
archive: {{path: ./archive}}
contacts: [{{name: Dana, role: lawyer, age_recipient: {_RECIPIENT}}}]
people: [{{id: mark, name: Mark Smith}}]
"""


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_run_finds_nothing(name: str, tmp_path: Path) -> None:
    """libFuzzer, run on the target from its seeds, finds no exception, slow input or hang.

    With a fixed random seed: a finding here is one anybody can reproduce with the same
    seed (scripts/fuzz -- -seed=N); longer, freely seeded runs are scripts/fuzz's job."""
    if FUZZ_SECONDS <= 0:
        pytest.skip("NOCONTACT_FUZZ_SECONDS=0")
    outcome = run(TARGETS[name], FUZZ_SECONDS, tmp_path, flags=(f"-seed={FUZZ_SEED}",))
    assert outcome.passed, describe(outcome)


def test_fuzz_run_reports_what_broke_the_target(tmp_path: Path) -> None:
    """A target that raises on a seed fails the run, which names that input and the error."""
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "bird").write_bytes(b"a canary")
    outcome = run(CANARY, 30, tmp_path, seeds=seeds)
    assert not outcome.passed
    assert outcome.artifact is not None
    assert outcome.artifact.read_bytes() == b"a canary"
    assert "the canary was found" in describe(outcome)


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_regression_input_keeps_every_invariant(path: Path) -> None:
    """An input that once broke a target (fuzz/regressions/TARGET/) now keeps its invariants."""
    module = importlib.import_module(TARGETS[path.parent.name].module)
    module.check(path.read_bytes())


@dataclass(frozen=True)
class _Nested:
    values: tuple[object, ...]


def test_assert_utf8_finds_a_lone_surrogate_deep_inside() -> None:
    """A lone surrogate in a string nested in dataclasses, tuples and dicts is reported."""
    assert_utf8(_Nested(values=("fine", {"key": ["ok", b"\xff"]})))
    with pytest.raises(InvariantBroken, match=r"\['key'\]\[1\] is not UTF-8"):
        assert_utf8(_Nested(values=("fine", {"key": ["ok", "a\ud800"]})))


def test_assert_seals_opens_the_seal_and_compares_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message seals and opens to itself; a seal holding other bytes breaks the invariant."""
    message = email("From: friend@example.org\nSubject: hi", "Mark Smith")
    decision = decide(message, make_rules())
    assert_seals(message, decision)

    def other_bytes(message: InboundMessage, *args: Any, **kwargs: Any) -> bytes:
        return seal_item(dataclasses.replace(message, raw=b"other"), *args, **kwargs)

    monkeypatch.setattr(invariants, "seal_item", other_bytes)
    with pytest.raises(InvariantBroken, match="payload"):
        assert_seals(message, decision)


def test_timed_fails_a_slow_block() -> None:
    """A block slower than its limit breaks the invariant; a quick one does not."""
    with timed(10, limit=1.0):
        pass
    with pytest.raises(InvariantBroken, match="slow"), timed(10, limit=0.001):
        time.sleep(0.01)


def test_config_with_a_nul_in_a_path_is_a_config_error(tmp_path: Path) -> None:
    """A NUL in a string ("\\0" in YAML) is a config problem, not a ValueError from os.path
    (found by fuzz_config: archive.path "~a\\0b" raised from expanduser)."""
    file = tmp_path / "config.yaml"
    file.write_text(_CONFIG.replace("./archive", '"~a\\0b"'))
    with pytest.raises(ConfigError, match=r"archive\.path: contains a NUL character"):
        load_config(file)


def test_public_url_with_a_bad_port_is_a_config_error(tmp_path: Path) -> None:
    """A public_url whose port is no port is refused by the config (found by fuzz_webhook:
    it was accepted, and then every webhook raised ValueError in the signature check)."""
    file = tmp_path / "config.yaml"
    sms = (
        "channels:\n  sms: {listen: '127.0.0.1:8080', public_url: 'https://sms.example:99999',"
        " account_sid: AC0123456789abcdef0123456789abcdef, number: '+15550100111',"
        " forward_to: '+15550100112'}\n"
    )
    file.write_text(_CONFIG + sms)
    with pytest.raises(ConfigError, match=r"public_url: .* port"):
        load_config(file)


def test_webhook_url_with_undecodable_bytes_is_unsigned() -> None:
    """A request URL holding bytes that are not UTF-8 (aiohttp's pure-Python parser passes
    them on as lone surrogates) is refused as unsigned, not raised on (found by fuzz_webhook:
    UnicodeEncodeError in twilio's compute_signature, a 500)."""
    validator = RequestValidator("token")
    url = "https://sms.example/sms?a=\udcff"
    assert signed_params(validator, url, b"From=%2B15550100199", "c2lnbmF0dXJl") is None


def _bucket(**changed: bytes) -> MemoryReplica:
    """The fuzz target's genuine replica (built on import) with `changed` keys put in."""
    from fuzz import fuzz_replica  # noqa: PLC0415 - builds an archive: only when asked

    return MemoryReplica({**fuzz_replica.GENUINE.objects, **changed})


def test_a_hostile_listing_is_named_one_line_each_and_never_raises() -> None:
    """Keys a hostile S3 server lists (a newline and a terminal escape in a name, a size of
    5,000 digits under checkpoints/ and witnessed/) are each one problem on one line, not a
    ValueError from int() (found by fuzz_replica: two lines, and the escape, on the screen)."""
    digits = "9" * 5000
    bucket = _bucket(**{
        "witnessed/1/\x1b]0;x\x07\nfake": b"", f"checkpoints/{digits}": b"",
        f"witnessed/{digits}/{'a' * 64}": b"",
    })  # fmt: skip
    lines = [str(problem) for problem in check_replica(bucket).problems]
    assert len(lines) == 3
    assert all(line.isprintable() and len(line) < 1200 for line in lines), lines
    assert "'witnessed/1/\\x1b]0;x\\x07\\nfake': not a witnessed copy's name" in "\n".join(lines)


def test_a_manifest_nested_past_the_stack_is_not_a_manifest() -> None:
    """archive.json of 3,000 `[` is a problem, not a RecursionError from json.loads."""
    lines = [
        str(problem) for problem in check_replica(_bucket(**{"archive.json": b"[" * 3000})).problems
    ]
    assert lines == ["archive.json: not a nocontact archive manifest in its exact form"]


@pytest.mark.parametrize("segment_bytes", [10**400, 1 << 40], ids=["past-a-c-long", "1-tib"])
def test_segment_bytes_no_writer_makes_is_not_a_manifest(segment_bytes: int) -> None:
    """No signature covers archive.json's segment_bytes, and restore lays segments out by
    it: one no writer makes (over 1 GiB) is refused, not passed on to restore (found by
    fuzz_replica: the replica verified, then restore raised OverflowError, or made a
    segment of 1 TiB)."""
    genuine = _bucket().objects["archive.json"]
    manifest = genuine.replace(b'"segment_bytes": 1048576', b'"segment_bytes": %d' % segment_bytes)
    assert manifest != genuine
    lines = [
        str(problem) for problem in check_replica(_bucket(**{"archive.json": manifest})).problems
    ]
    assert lines == ["archive.json: not a nocontact archive manifest in its exact form"]


def test_signing_pub_of_another_name_is_named_without_its_name() -> None:
    """The archive's key under a name the bucket's writer chose (control characters, any
    length) is another archive's: said without quoting that name (found by fuzz_replica)."""
    from proxy.archive.note import Verifier  # noqa: PLC0415

    genuine = _bucket().objects["signing.pub"].decode()
    name = "\x1b[2J" + "x" * 200
    renamed = Verifier(name, Verifier.decode(genuine).public).encode() + "\n"
    problems = check_replica(_bucket(**{"signing.pub": renamed.encode()})).problems
    assert [str(problem) for problem in problems] == [
        "signing.pub: is for another archive (its key name is not archive.json's origin)"
    ]


def _smtp_session(port: int, commands: list[bytes]) -> list[bytes]:
    """Each reply (its last line) to `commands`, sent as raw bytes: smtplib sends only ASCII."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        replies = connection.makefile("rb")
        answers = [replies.readline()]
        for command in commands:
            connection.sendall(command + b"\r\n")
            answer = replies.readline()
            while answer[3:4] == b"-":
                answer = replies.readline()
            answers.append(answer)
        return answers


@pytest.mark.parametrize(
    ("ehlo", "rcpt"),
    [(b"EHLO \xffclient", b"RCPT TO:<sam@home.example>"),
     (b"EHLO client", b"RCPT TO:<\xffsam@home.example>")],
    ids=["ehlo", "rcpt-to"],
)  # fmt: skip
def test_8bit_smtp_arguments_do_not_stop_his_mail_being_sealed(
    tmp_path: Path, ehlo: bytes, rcpt: bytes
) -> None:
    """His message after an EHLO or RCPT TO holding a byte that is not UTF-8 (a lone
    surrogate once aiosmtpd decodes it) is sealed and answered 250, not 451 for ever: the
    seal's JSON could not encode it, so his server would retry, then bounce."""
    service = Service(tmp_path, f"maildir:{tmp_path / 'mail'}")
    message = b"From: Mark <mark.smith@gmail.com>\r\nSubject: hi\r\n\r\nit is me\r\n."
    commands = [ehlo, b"MAIL FROM:<mark.smith@gmail.com>", rcpt, b"DATA", message, b"QUIT"]

    async def session() -> list[bytes]:
        async with service.running():
            return await asyncio.to_thread(_smtp_session, service.port, commands)

    replies = asyncio.run(session())
    assert replies[5].startswith(b"250"), replies[5]
    assert len(held_items(service.archive_path)) == 1
