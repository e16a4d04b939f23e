"""Run a fuzz target for a bounded time, from its seeds, and say what broke it.

Usage: python -m fuzz.run [TARGET|all] [SECONDS] [--survey] [--work DIR] [-- LIBFUZZER-FLAGS]

Rules this module keeps:
1. Each target runs in its own process (atheris owns the process it fuzzes in), with
   libFuzzer's bounds always set: `-max_total_time`, `-max_len` (the target's), `-timeout`
   (a hang), `-rss_limit_mb` (a memory blowup), and `-artifact_prefix` so a breaking input
   is kept as a file under the work directory.
2. Seeds are gathered fresh into the work directory each run: the target's own
   fuzz/seeds/<target>, CPython's email test messages (Debian's libpython3.11-testsuite)
   and the messages of tests/test_rules.py for email, config.example.yaml for config, the
   labelled corpus (tests/data/threats) for threats. The
   corpus libFuzzer grows is kept in the work directory, so a later run starts from it.
3. An outcome is judged by libFuzzer's exit status and the artifact it names, never by
   scraping for words alone: exit 0 and no artifact is a pass.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"
THREAT_CORPUS = ROOT / "tests" / "data" / "threats"
CPYTHON_EMAIL_DATA = Path("/usr/lib/python3.11/test/test_email/data")
HANG_SECONDS = 20
RSS_LIMIT_MB = 2048
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_EXCEPTION = re.compile(r"=== Uncaught Python exception: ===\n(.*?)\n\n", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A fuzz target: its module, the longest input libFuzzer may make for it, and the
    packages instrumented for coverage (the code under test and the parsers it calls)."""

    name: str
    module: str
    max_len: int
    instrument: tuple[str, ...]


TARGETS = {
    t.name: t
    for t in (
        Target(name="email", module="fuzz.fuzz_email", max_len=64 * 1024,
               instrument=("proxy", "email", "html")),
        Target(name="sms", module="fuzz.fuzz_sms", max_len=16 * 1024,
               instrument=("proxy", "phonenumbers")),
        Target(name="webhook", module="fuzz.fuzz_webhook", max_len=16 * 1024,
               instrument=("proxy", "twilio", "multidict")),
        Target(name="config", module="fuzz.fuzz_config", max_len=16 * 1024,
               instrument=("proxy", "yaml")),
        Target(name="portal", module="fuzz.fuzz_portal", max_len=16 * 1024,
               instrument=("proxy", "webauthn", "cbor2", "urllib")),
        Target(name="threats", module="fuzz.fuzz_threats", max_len=16 * 1024,
               instrument=("proxy",)),
        Target(name="replica", module="fuzz.fuzz_replica", max_len=16 * 1024,
               instrument=("proxy",)),
    )
}  # fmt: skip
# Not run by scripts/fuzz: a target that breaks on purpose, to test this harness.
CANARY = Target(name="canary", module="fuzz.fuzz_canary", max_len=64, instrument=("fuzz",))


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one run ended: libFuzzer's exit status, the input that broke it, its log."""

    target: str
    returncode: int
    artifact: Path | None
    log: Path
    summary: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and self.artifact is None


def run(
    target: Target, seconds: int, work: Path, *, survey: Path | None = None,
    seeds: Path | None = None, flags: Sequence[str] = (),
) -> Outcome:  # fmt: skip
    """Fuzz `target` for `seconds` from its seeds (or from `seeds`, a directory, if given),
    keeping corpus and artifacts in `work`; `flags` go to libFuzzer after ours."""
    home = work / target.name
    corpus, artifacts = home / "corpus", home / "artifacts"
    for directory in (corpus, artifacts):
        directory.mkdir(parents=True, exist_ok=True)
    if seeds is None:
        seeds = home / "seeds"
        gather_seeds(target.name, seeds)
    log = home / "fuzz.log"
    env = dict(os.environ)
    env.pop("NOCONTACT_FUZZ_SURVEY", None)
    if survey is not None:
        env["NOCONTACT_FUZZ_SURVEY"] = str(survey)
    command = [
        sys.executable, "-m", "fuzz.launch", target.name,
        f"-max_total_time={seconds}", f"-max_len={target.max_len}",
        f"-timeout={HANG_SECONDS}", f"-rss_limit_mb={RSS_LIMIT_MB}",
        f"-artifact_prefix={artifacts}/", "-print_final_stats=1", *flags,
        str(corpus), str(seeds),
    ]  # fmt: skip
    with log.open("wb") as output:
        finished = subprocess.run(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, check=False
        )
    text = log.read_text(encoding="utf-8", errors="replace")
    written = _ARTIFACT.findall(text)
    artifact = Path(written[-1]) if written else None
    caught = _EXCEPTION.findall(text)
    summary = caught[-1] if caught else "\n".join(text.splitlines()[-6:])
    return Outcome(
        target=target.name,
        returncode=finished.returncode,
        artifact=artifact,
        log=log,
        summary=summary,
    )


def gather_seeds(name: str, seeds: Path) -> None:
    """Fill `seeds` (emptied first) with every seed input of target `name`."""
    shutil.rmtree(seeds, ignore_errors=True)
    seeds.mkdir(parents=True)
    own = SEEDS / name
    if own.is_dir():
        for path in sorted(own.iterdir()):
            shutil.copyfile(path, seeds / path.name)
    if name == "email":
        for path in sorted(CPYTHON_EMAIL_DATA.glob("msg_*.txt")):
            shutil.copyfile(path, seeds / f"cpython-{path.name}")
        for index, raw in enumerate(_rule_test_emails()):
            (seeds / f"test-rules-{index:02d}.eml").write_bytes(raw)
    elif name == "config":
        shutil.copyfile(ROOT / "config.example.yaml", seeds / "config.example.yaml")
    elif name == "sms":
        for index, (sender, text) in enumerate(_rule_test_texts()):
            (seeds / f"test-rules-{index:02d}.txt").write_bytes(f"{sender}\n{text}".encode())
    elif name == "threats":
        for corpus in sorted(THREAT_CORPUS.glob("*.tsv")):
            lines = corpus.read_text(encoding="utf-8").splitlines()
            for index, line in enumerate(lines):
                text = line.rpartition("\t")[2]
                (seeds / f"{corpus.stem}-{index:03d}.txt").write_bytes(text.encode())


def _rule_test_emails() -> list[bytes]:
    """The sample emails of tests/test_rules.py, built as tests/factories.py builds them."""
    from tests.test_rules import EMAIL_CASES  # noqa: PLC0415 - only when gathering seeds

    return [
        f"{headers}\nContent-Type: text/plain; charset=utf-8\n\n{body}".encode()
        for headers, body, _ in EMAIL_CASES
    ]


def _rule_test_texts() -> list[tuple[str, str]]:
    """The sample texts of tests/test_rules.py: (sender, text)."""
    from tests.test_rules import SMS_CASES  # noqa: PLC0415 - only when gathering seeds

    return [(sender, text) for sender, text, _ in SMS_CASES]


def describe(outcome: Outcome) -> str:
    """A few lines on a run: passed, or the input that broke it and why."""
    if outcome.passed:
        return f"{outcome.target}: no finding (log: {outcome.log})"
    lines = [f"{outcome.target}: FAILED, libFuzzer exit status {outcome.returncode}"]
    if outcome.artifact is not None:
        data = outcome.artifact.read_bytes() if outcome.artifact.exists() else b""
        preview = repr(data[:300]) + (" ..." if len(data) > 300 else "")
        lines += [f"  input: {outcome.artifact} ({len(data)} bytes)", f"  {preview}"]
    lines += [f"  log: {outcome.log}", *("  " + line for line in outcome.summary.splitlines())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line of scripts/fuzz: exit 0 if every target ran clean, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz",
        description=__doc__.split("\n")[0],
        epilog="Anything after -- goes to libFuzzer, e.g. -- -len_control=0",
    )
    parser.add_argument("target", nargs="?", default="all", choices=[*TARGETS, "all"])
    parser.add_argument("seconds", nargs="?", type=int, default=300)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "fuzz")
    parser.add_argument(
        "--survey",
        action="store_true",
        help="keep going after a finding; write each distinct one to WORK/TARGET/survey",
    )
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    args, flags = parser.parse_args(argv[:split]), argv[split + 1 :]
    names = list(TARGETS) if args.target == "all" else [args.target]
    clean = True
    for name in names:
        survey = args.work / name / "survey" if args.survey else None
        outcome = run(TARGETS[name], args.seconds, args.work, survey=survey, flags=flags)
        print(describe(outcome))
        if survey is not None:
            found = sorted(p.name for p in survey.glob("*") if p.suffix != ".txt")
            print(f"  survey: {len(found)} distinct in {survey}: {', '.join(found)}")
            clean = clean and not found
        clean = clean and outcome.passed
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
