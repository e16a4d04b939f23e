"""Folding: look-alike, case, accents, invisible characters and line breaks can't hide a name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.fold import fold

SAME = [
    ("Mark", "MARK"),
    ("Mark", "\u041c\u0430rk"),  # Cyrillic capital Em and small a
    ("Mark", "M\u0430RK"),
    ("Mark", "Márk"),
    ("Mark", "Ｍａｒｋ"),  # full-width
    ("Mark", "Ma\u200brk"),  # zero-width space
    ("Mark", "Ma\u00adrk"),  # soft hyphen
    ("Mark", "rnark"),  # "rn" reads as "m"
    ("Mike", "MIKE"),
    ("Mike", "M1ke"),
    ("Mark Smith", "mark\n  smith"),
    ("Mark Smith", "Mark\tSmith"),
    ("José", "JOSE"),
    ("Straße", "STRASSE"),
]

DIFFERENT = [
    ("Mark", "Mars"),
    ("Mark", "Marc"),
    ("Ann", "Anna"),
    ("Mark Smith", "MarkSmith"),
]


@pytest.mark.parametrize(("name", "written"), SAME)
def test_written_forms_fold_alike(name: str, written: str) -> None:
    """Each way of writing a name that a reader would read as the name folds the same."""
    assert fold(name) == fold(written)


@pytest.mark.parametrize(("name", "other"), DIFFERENT)
def test_other_words_stay_apart(name: str, other: str) -> None:
    """Folding does not merge words a reader can tell apart."""
    assert fold(name) != fold(other)


@given(st.text())
def test_fold_is_idempotent(text: str) -> None:
    """Folding folded text changes nothing, so config and message meet in one form."""
    assert fold(fold(text)) == fold(text)


@given(st.text())
def test_fold_has_no_runs_of_space(text: str) -> None:
    """All whitespace, line breaks included, collapses to single spaces."""
    folded = fold(text)
    assert "  " not in folded
    assert folded == folded.strip()
    assert "\n" not in folded
