"""Reading the labelled threat corpus (tests/data/threats) and scoring the detection on it;
shared by tests/test_alerts_corpus.py and bench/alerts.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from proxy.alerts.threats import Profile, assess
from proxy.alerts.tiers import Tier

CORPUS = Path(__file__).parent / "data" / "threats"


def labelled(path: Path) -> list[tuple[bool, str]]:
    """(urgent?, text) for each `label<TAB>text` line; '#' lines are comments."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, text = line.split("\t", 1)
            cases.append((label == "urgent", text))
    return cases


def heldout(path: Path) -> list[tuple[bool, str]]:
    """(urgent?, text) for each `label<TAB>language<TAB>text` line."""
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, _, text = line.split("\t", 2)
            cases.append((label == "urgent", text))
    return cases


@dataclass(frozen=True, slots=True)
class Score:
    """Counts of urgent found and missed."""

    true_positive: int = 0
    false_positive: int = 0
    false_negative: int = 0
    true_negative: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.true_positive + other.true_positive,
            self.false_positive + other.false_positive,
            self.false_negative + other.false_negative,
            self.true_negative + other.true_negative,
        )

    @property
    def cases(self) -> int:
        return self.true_positive + self.false_positive + self.false_negative + self.true_negative

    @property
    def precision(self) -> float:
        flagged = self.true_positive + self.false_positive
        return self.true_positive / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        urgent = self.true_positive + self.false_negative
        return self.true_positive / urgent if urgent else 1.0

    def __str__(self) -> str:
        return (f"precision {self.precision:.3f} recall {self.recall:.3f} ({self.cases} cases: "
                f"{self.false_positive} false alarms, {self.false_negative} missed)")  # fmt: skip


def score(cases: Iterable[tuple[bool, str]], profile: Profile) -> Score:
    """How well `assess` calls these cases urgent."""
    total = Score()
    for urgent, text in cases:
        flagged = assess(text, profile).tier is Tier.URGENT
        total = total + Score(
            int(flagged and urgent), int(flagged and not urgent),
            int(urgent and not flagged), int(not urgent and not flagged),
        )  # fmt: skip
    return total
