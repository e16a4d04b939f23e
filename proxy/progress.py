"""A progress bar on stderr for long commands (sweep, export).

Rules this module keeps:
1. It counts what the user asked to be looked at (messages in a folder), never what was
   held: a bar must not become a count of his messages.
2. On a terminal it redraws one line; otherwise it prints nothing until `close`, which
   prints one summary line, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, max(total, 0)
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty()
        self._lock = threading.Lock()
        self._drawn = 0.0
        self._started = time.monotonic()

    def advance(self, step: int = 1) -> None:
        with self._lock:
            self.done += step
            now = time.monotonic()
            if self._live and (now - self._drawn > 0.1 or self.done >= self.total):
                self._drawn = now
                self._draw()

    def _draw(self) -> None:
        width = 30
        filled = width if not self.total else min(width, width * self.done // self.total)
        bar = "#" * filled + "." * (width - filled)
        self._stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        self._stream.flush()

    def close(self) -> None:
        seconds = time.monotonic() - self._started
        if self._live:
            self._draw()
            self._stream.write("\n")
        else:
            self._stream.write(f"{self.label}: {self.done} looked at in {seconds:.1f} s\n")
        self._stream.flush()
