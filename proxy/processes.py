"""What the daemon's processes inherit, and what they leave behind when they die.

Rules this module keeps:
1. A child process (the readers, the sealer) gets only the environment Python needs to
   run our code: PYTHONPATH to the directory holding `proxy`, PATH and the locale. No
   TWILIO_AUTH_TOKEN, no password, nothing else the daemon's own environment holds.
2. No core dumps: the daemon and every child set RLIMIT_CORE to 0 at start. A core file
   would hold messages being read, their text, and the secrets of the process.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])  # the directory holding `proxy`
_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE")


def child_environment() -> dict[str, str]:
    """The whole environment of a child process (rule 1)."""
    environment = {name: os.environ[name] for name in _KEPT if name in os.environ}
    environment["PYTHONPATH"] = ROOT
    return environment


def no_core_dumps() -> None:
    """This process dumps no core, whatever the limit it was started with (rule 2)."""
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
