"""What one check found, and the one line it is printed as.

Rules this module keeps:
1. Pure: values in, text out.
2. A finding is `ok` or has a problem; its line is `ok   WHAT` or `FAIL WHAT: WHY`, the
   word first so that `grep ^FAIL` finds every problem.
3. A line is one line: control characters (a server's own text may hold any) become
   spaces, and it is cut at `MOST_CHARACTERS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MOST_CHARACTERS = 400
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    what: str
    problem: str | None = None  # None: all is well

    @property
    def ok(self) -> bool:
        return self.problem is None


def ok(what: str) -> Finding:
    return Finding(what=what)


def fail(what: str, problem: str) -> Finding:
    return Finding(what=what, problem=problem)


def line(finding: Finding) -> str:
    """The finding as one printed line (rules 2 and 3)."""
    if finding.problem is None:
        text = f"ok   {finding.what}"
    else:
        text = f"FAIL {finding.what}: {finding.problem}"
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= MOST_CHARACTERS else text[: MOST_CHARACTERS - 3] + "..."
