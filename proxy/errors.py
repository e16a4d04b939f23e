"""The few errors nocontact raises on purpose.

Rules this module keeps:
1. Every error a user can see derives from `NocontactError` and carries a message fit to
   print as one line: the CLI prints `str(error)` and never a traceback.
2. No error message ever contains a held message's sender, subject, body or count.
3. `RetryLater` marks faults the sender must be told to retry (SMTP 451, HTTP 503): the
   message is neither delivered nor sealed yet, so nothing may be acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass


class NocontactError(Exception):
    """Base class: something the user can act on, explained in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigProblem:
    """One thing wrong with a config file, located to the character."""

    file: str
    line: int
    column: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(NocontactError):
    """The config cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InputError(NocontactError):
    """A file or value given on the command line cannot be used."""


class RetryLater(NocontactError):
    """A transient fault: tell the sender to try again; nothing was acknowledged."""
