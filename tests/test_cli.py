"""The `nocontact` command as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


def nocontact(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_check_config_accepts_the_example() -> None:
    """The shipped example config is valid and check-config says so with exit 0."""
    result = nocontact("check-config", "-c", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK:")


def test_check_config_reports_each_problem_on_one_line(tmp_path: Path) -> None:
    """A broken config exits 2 with FILE:LINE:COL lines on stderr and no traceback."""
    broken = tmp_path / "broken.yaml"
    text = EXAMPLE.read_text().replace("  path: ./var/archive", "  pth: ./var/archive")
    broken.write_text(text.replace("default_region: US", "default_region: 12"))
    result = nocontact("check-config", "-c", str(broken))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) >= 2
    for line in lines:
        assert re.match(rf"{re.escape(str(broken))}:\d+:\d+: ", line), line
    assert "Traceback" not in result.stderr


def test_missing_config_is_one_line(tmp_path: Path) -> None:
    """A config file that does not exist is one clear line and exit 2."""
    result = nocontact("check-config", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_schema_is_json_schema_of_the_config() -> None:
    """`nocontact schema` prints a JSON Schema naming every top-level section."""
    result = nocontact("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"archive", "contacts", "people", "intermediaries", "allow"} <= set(schema["properties"])


@pytest.mark.parametrize(
    ("sms", "expected"),
    [
        (("212.555.0199", "hey it's me"), "hold people.mark.phones direct digest"),
        (
            ("+1 212 555 0177", "saw Mark Smith at the school gate"),
            "hold people.mark.name passive digest",
        ),
        (("+1 212 555 0177", "see you at 5"), "deliver"),
        (("212.555.0199", "I'll kill you"), "hold people.mark.phones direct urgent:threat"),
        (
            ("212.555.0199", "I know where you live, I have a gun"),
            "hold people.mark.phones direct urgent:proximity,urgent:weapon",
        ),
        (
            ("212.555.0199", "you killed it at the recital!"),
            "hold people.mark.phones direct digest",
        ),
        (
            ("+1 212 555 0177", "Mark Smith said: I'm outside"),
            "hold people.mark.name passive urgent:proximity",
        ),
        (("+1 212 555 0177", "I'm outside"), "deliver"),  # delivered: never assessed
        (("(212) 555-0110", "hearing about Mark Smith moved"), "deliver"),
    ],
)
def test_test_rules_sms(sms: tuple[str, str], expected: str) -> None:
    """test-rules prints the verdict for a text, as the README shows."""
    result = nocontact("test-rules", "-c", str(EXAMPLE), "--sms", *sms)
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"From: Mark <Mark.Smith+x@googlemail.com>\nSubject: hi\n\nplease\n",
         "hold people.mark.emails direct digest"),
        (b"From: Mark <mark.smith@gmail.com>\nSubject: saw you\n\nI followed you home.\n",
         "hold people.mark.emails direct urgent:surveillance"),
        (b"From: friend@example.org\nSubject: news\n\nMarky is back in town\n",
         "hold people.mark.aliases passive digest"),
        (b"From: linda.smith@example.net\n\nhow are you\n",
         "hold intermediaries.his-mother passive digest"),
        (b"From: friend@example.org\nSubject: lunch\n\nnoon?\n", "deliver"),
        (b"\x00\xff not an email at all", "deliver"),
        (b"From: friend@example.org\nSubject: =?utf-7?q?+2AA-?=\n\nhi\n", "deliver"),
        (b"From: =?utf-7?q?+2AA-?= <mark.smith@gmail.com>\n\nhi\n",
         "hold people.mark.emails direct digest"),
        (b"From: friend@example.org\nContent-Type: text/html\n\n" + b"<a " * 40_000
         + b">Mark Smith", "hold people.mark.name passive digest"),
    ],
)  # fmt: skip
def test_test_rules_email(tmp_path: Path, message: bytes, expected: str) -> None:
    """test-rules prints the verdict for a .eml file, even a broken one."""
    sample = tmp_path / "sample.eml"
    sample.write_bytes(message)
    result = nocontact("test-rules", "-c", str(EXAMPLE), "--email", str(sample))
    assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_test_rules_missing_sample(tmp_path: Path) -> None:
    """A sample file that does not exist is one clear line and exit 2."""
    result = nocontact("test-rules", "-c", str(EXAMPLE), "--email", str(tmp_path / "x.eml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"nocontact: {tmp_path / 'x.eml'}: no such file"


def test_usage_errors_exit_2() -> None:
    """A command line argparse rejects exits 2 with usage, not a traceback."""
    result = nocontact("test-rules", "-c", str(EXAMPLE))
    assert result.returncode == 2
    assert "usage:" in result.stderr
