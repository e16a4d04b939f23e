"""Benchmark: how fast and how well held items are told apart by urgency (issue 23).

Run: .venv/bin/python bench/alerts.py [--seconds S] [section ...]

Sections (all by default, in this order):
- classification: `assess_folded` on 10 KB texts, one core, median of several runs: what
  the daemon spends, since normalize has already folded a message's text for the rules
  (`InboundMessage.search_text`). Three kinds of text: prose (letters in the five
  languages, accents and all: the common case), prose with one threat in its middle, and
  dense lookalikes (every line a harmless idiom, negation or news item, so the grammar
  runs around hundreds of trigger words: the worst honest case). Then `assess` with its
  own fold, for a caller that has only the text: `proxy.fold` costs far more on accented
  text than on ASCII (a per-character table look-up, off CPython's ASCII fast path).
  Goal: >= 5,000 classifications/s of 10 KB prose on one core.
- corpus: urgent precision and recall on tests/data/threats, per language, overall and on
  the held-out cases. Goal: >= 0.9 each.
- delivery: from a held urgent message to its alert at a local json:// transport,
  through the real daemon and SMTP filter path (bench/alert_delivery.py). Goal: p99 <= 5 s.
A section is a function `(args) -> list[Row]` in SECTIONS.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.alerts.lexicon import LANGUAGES
from proxy.alerts.threats import Profile, assess, assess_folded, compile_profile
from proxy.config.model import Alerts, AlertTransport
from proxy.fold import fold
from tests.threat_corpus import CORPUS, Score, heldout, labelled, score

TEXT_BYTES = 10 * 1024
RATE_GOAL = 5_000
QUALITY_GOAL = 0.9
PROSE = {
    "en": "thanks for sending the forms yesterday the meeting with the school is on thursday "
    "at four and I will bring the documents we talked about please let me know if the time "
    "works for you and whether the children need anything for the trip next week",
    "es": "gracias por mandar los papeles ayer la reunión con el colegio es el jueves a las "
    "cuatro y llevaré los documentos que hablamos avísame si te viene bien la hora",
    "fr": "merci pour les papiers d'hier la réunion avec l'école est jeudi à quatre heures "
    "et j'apporterai les documents dont nous avons parlé dis-moi si l'heure te convient",
    "de": "danke für die Unterlagen von gestern das Treffen mit der Schule ist am Donnerstag "
    "um vier und ich bringe die Dokumente mit über die wir gesprochen haben",
    "pt": "obrigado por mandar os papéis ontem a reunião com a escola é na quinta às quatro "
    "e eu levo os documentos de que falamos me avisa se o horário está bom",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: what was measured, the figure, and the goal."""

    what: str
    figure: str
    goal: str = ""
    met: bool | None = None


def profile() -> Profile:
    """A profile with a family's config terms, as a real one would have."""
    return compile_profile(Alerts(
        transports={"phone": AlertTransport(url="ntfy://ntfy.example/topic")},
        children=["Emma", "Noah"], places=["Rosenweg 12", "Sunny Bakery"],
    ))  # fmt: skip


def ten_kb(parts: list[str], rng: random.Random) -> str:
    """About 10 KB of `parts` in random order, one per line."""
    lines: list[str] = []
    size = 0
    while size < TEXT_BYTES:
        line = rng.choice(parts)
        lines.append(line)
        size += len(line.encode()) + 1
    return "\n".join(lines)[:TEXT_BYTES]


def rate(action: Callable[[], object], seconds: float) -> float:
    """Calls per second of `action`: the median of five timed runs."""
    results = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            for _ in range(20):
                action()
            count += 20
        results.append(count / elapsed)
    return statistics.median(results)


def classification(args: argparse.Namespace) -> list[Row]:
    if hasattr(os, "sched_setaffinity"):
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})  # one core
        try:
            return _classification(args)
        finally:
            os.sched_setaffinity(0, cores)
    return _classification(args)


def _classification(args: argparse.Namespace) -> list[Row]:
    rng = random.Random(23)
    family = profile()
    prose_lines = [sentence for text in PROSE.values() for sentence in text.split(" and ")]
    prose = [ten_kb(prose_lines, rng) for _ in range(8)]
    threat = [p[: len(p) // 2] + "\nI know where you live. " + p[len(p) // 2 :] for p in prose]
    cases = [case for language in LANGUAGES for case in labelled(CORPUS / f"{language}.tsv")]
    lookalikes = [text for urgent, text in cases if not urgent]
    dense = [ten_kb(lookalikes, rng) for _ in range(8)]
    rows = []
    kinds = (("10 KB prose", prose), ("10 KB prose + a threat", threat),
             ("10 KB of lookalikes (worst case)", dense))  # fmt: skip
    for name, texts in kinds:
        folded = [fold(text) for text in texts]
        turn = iter(range(1 << 62))
        per_second = rate(lambda folded=folded, turn=turn: assess_folded(  # type: ignore[misc]
            folded[next(turn) % len(folded)], family), args.seconds)  # fmt: skip
        is_prose = name == "10 KB prose"
        rows.append(Row(
            what=f"assess_folded, {name}", figure=f"{per_second:,.0f}/s",
            goal=f">= {RATE_GOAL:,}/s" if is_prose else "",
            met=per_second >= RATE_GOAL if is_prose else None,
        ))  # fmt: skip
    english = [ten_kb(PROSE["en"].split(" and "), rng) for _ in range(8)]
    for name, texts in (("10 KB prose", prose), ("10 KB English (ASCII) prose", english)):
        turn = iter(range(1 << 62))
        per_second = rate(lambda texts=texts, turn=turn: assess(  # type: ignore[misc]
            texts[next(turn) % len(texts)], family), args.seconds)  # fmt: skip
        rows.append(Row(what=f"assess with its fold, {name}", figure=f"{per_second:,.0f}/s"))
    return rows


def corpus(args: argparse.Namespace) -> list[Row]:
    plain = compile_profile(None)
    scores = {language: score(labelled(CORPUS / f"{language}.tsv"), plain)
              for language in LANGUAGES}  # fmt: skip
    scores["overall"] = sum(scores.values(), Score())
    scores["held out"] = score(heldout(CORPUS / "heldout.tsv"), plain)
    rows = []
    for name, result in scores.items():
        met = result.precision >= QUALITY_GOAL and result.recall >= QUALITY_GOAL
        rows.append(Row(
            what=f"urgent, {name} ({result.cases} cases)",
            figure=f"P {result.precision:.3f} R {result.recall:.3f}",
            goal=f">= {QUALITY_GOAL} each", met=met,
        ))  # fmt: skip
    return rows


def delivery(args: argparse.Namespace) -> list[Row]:
    """The time from an urgent held message to its alert (bench/alert_delivery.py)."""
    from bench import alert_delivery  # noqa: PLC0415 - only this section runs a daemon

    found, tiers = alert_delivery.latencies(args.alerts, args.dir)
    p99 = alert_delivery.percentile(found, 0.99)
    seen = ", ".join(f"{tier} {count}" for tier, count in sorted(tiers.items()))
    return [
        Row(what=f"held -> alert at json://, {len(found)} alerts ({seen})",
            figure=f"p50 {statistics.median(found) * 1000:,.1f} ms"),
        Row(what="", figure=f"p99 {p99 * 1000:,.1f} ms", goal="p99 <= 5 s",
            met=p99 <= alert_delivery.GOAL_P99),
    ]  # fmt: skip


SECTIONS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "classification": classification,
    "corpus": corpus,
    "delivery": delivery,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per rate measured")
    parser.add_argument("--alerts", type=int, default=100, help="alerts the delivery times")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent.parent / "var",
                        help="where the delivery section's daemon keeps its files")  # fmt: skip
    parser.add_argument("sections", nargs="*", choices=[*SECTIONS, []], default=[])
    args = parser.parse_args(argv)
    print("bench/alerts.py: classification and corpus on one core; delivery through a real daemon")
    print(f"{'measure':<48} {'figure':>22} {'goal':>14}  met")
    failed = False
    for name in args.sections or list(SECTIONS):
        for row in SECTIONS[name](args):
            met = "" if row.met is None else ("yes" if row.met else "NO")
            failed = failed or row.met is False
            print(f"{row.what:<48} {row.figure:>22} {row.goal:>14}  {met}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
