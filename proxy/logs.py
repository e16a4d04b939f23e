"""Logging, with a redaction step that nothing is logged around.

Rules this module keeps:
1. This module holds the process's only global logging state: `configure` sets it once.
2. Invariant 2 ("nothing is shown") holds for logs: no subject, body, address, number or
   display name of any message, and no hint of whether a message was held, ever reaches a
   log line. `redact` enforces it for every event, whatever the calling code passed:
   - only keys on an allow list keep their values; any other key's value is replaced;
   - message, decision and identity values and raw bytes are replaced wherever they appear;
   - email addresses and phone numbers inside any remaining text are masked;
   - an exception is logged as its type and where it was raised, never its text (which
     can quote a header).
3. JSON lines when the output is not a terminal (for journald and log shippers); readable
   lines on a terminal.
4. The daemon never waits for its log (`configure(background=True)`): lines are handed to
   one writer thread, which writes them in order, all waiting lines in one write. A log
   file on a disk busy with the archive's fsyncs took ~0.1 ms a line, and a stalled
   journald would take forever; either way, answering the senders must not wait for it.
   At most `QUEUED_LINES` wait; past that, new lines are dropped and then counted in one
   line of their own, so a dead sink cannot fill the memory. `drain` (also at exit)
   writes what waits and stops the thread; a line logged after it is written at once.
   Short commands write at once.
5. Libraries' stdlib logging (aiosmtpd, asyncio, aiohttp...) reaches the same output
   through the same redaction, at WARNING and above, as its logger's name and level only:
   a library's message text is never written.
"""

from __future__ import annotations

import atexit
import logging
import queue
import re
import sys
import threading
import traceback
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from proxy.message import Decision, Envelope, Identity, InboundMessage

REDACTED = "[redacted]"

# Keys whose values are about the daemon, never about a message. Add to this list only
# keys whose values cannot carry message content.
SAFE_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "logger",
        "channel",
        "component",
        "listen",
        "config",
        "archive",
        "version",
        "error",
        "where",
        "attempt",
        "retry_in",
        "signal",
        "problems",
        "dropped",
        "period_seconds",
        "smtp",
        "imap",
        "sms",
        "contact",  # a trusted contact's name, from the config (proxy.contact_keys rule 4)
        "order_person",  # a person's config id, for his court order (proxy.order_files)
        "order_sha256",  # the SHA-256 of his court order's file (proxy.order_files)
    }
)

# Values the daemon itself produced or was configured with: never message content, and
# masking their digits (a timestamp, 127.0.0.1:2525) would only make the log unreadable.
_OWN_VALUES = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "component",
        "listen",
        "config",
        "archive",
        "order_person",
        "order_sha256",
    }
)

_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)*")
_NUMBER = re.compile(r"\+?\d[\d\s().\-/]{5,}\d")
_SENSITIVE_TYPES = (InboundMessage, Decision, Identity, Envelope, bytes, bytearray, memoryview)


def _mask(text: str) -> str:
    return _NUMBER.sub("[number]", _ADDRESS.sub("[address]", text))


def _clean(value: object) -> object:
    if isinstance(value, _SENSITIVE_TYPES):
        return REDACTED
    if isinstance(value, str):
        return _mask(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return _mask(str(value))


def _describe(error: BaseException) -> tuple[str, str]:
    """An exception's type and innermost frame, without its message."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
    return type(error).__name__, where


def redact(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """The structlog processor that enforces the module rules; runs before rendering."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    if isinstance(error, BaseException):
        event_dict["error"], event_dict["where"] = _describe(error)
    for key in list(event_dict):
        if key not in SAFE_KEYS:
            event_dict[key] = REDACTED
        elif key in _OWN_VALUES and isinstance(event_dict[key], str):
            continue
        else:
            event_dict[key] = _clean(event_dict[key])
    return event_dict


QUEUED_LINES = 100_000
_STOP = None


class _QueuedLog:
    """The log's own thread (rule 4): lines in, written in order, never waited for."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._dropped = 0  # counted by `msg`, reset by the thread: a race only undercounts
        self._drained = False  # after `drain`, lines are written at once, never lost
        self._thread = threading.Thread(target=self._write_forever, name="log", daemon=True)
        self._thread.start()

    def msg(self, message: str) -> None:
        if self._drained:
            self._write(message + "\n")
            return
        if self._lines.qsize() >= QUEUED_LINES:
            self._dropped += 1
            return
        self._lines.put(message)

    debug = info = warning = error = critical = exception = msg

    def _write_forever(self) -> None:
        stop = False
        while not stop:
            lines: list[str] = []
            line = self._lines.get()
            while True:
                if line is _STOP:
                    stop = True
                    break
                lines.append(line)
                try:
                    line = self._lines.get_nowait()
                except queue.Empty:
                    break
            if lines:
                self._write("\n".join(lines) + "\n")
            if self._dropped and not stop and self._lines.qsize() < QUEUED_LINES:
                # Said in the log's own format, next round; only when there is room for it.
                dropped, self._dropped = self._dropped, 0
                get_logger("log").warning("log lines dropped: the log was not keeping up",
                                          dropped=dropped)  # fmt: skip

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed or broken sink: nowhere left to say so
            pass

    def drain(self) -> None:
        self._drained = True  # set first: every line queued before it is written by the thread
        if self._thread.is_alive():
            self._lines.put(_STOP)
            self._thread.join(timeout=5.0)


_running: list[_QueuedLog] = []  # the daemon's log thread, while it runs (rule 1)


def drain() -> None:
    """Write every line the log thread still holds and stop it (rule 4); safe to repeat."""
    while _running:
        _running.pop().drain()


atexit.register(drain)


def configure(
    *, level: str = "info", stream: TextIO | None = None, background: bool = False
) -> None:
    """Set up structlog for the process: timestamps, levels, redaction, then rendering;
    `background` for the daemon: written on the log's own thread (rule 4)."""
    drain()
    output = stream if stream is not None else sys.stderr
    renderer: structlog.typing.Processor
    if output.isatty():
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_factory(output, background),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [_Library()]
    root.setLevel(logging.WARNING)


class _Library(logging.Handler):
    """Libraries' own stdlib log records, passed on as their logger's name and level only
    (rule 5): never their text, which can name a sender (aiosmtpd's 'mail.log' writes
    '%r unrecognised: %s' with the client's address and what it typed)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(component=record.name)
        if record.exc_info and record.exc_info[1] is not None:
            logger.log(record.levelno, "library log", exc_info=record.exc_info)
        else:
            logger.log(record.levelno, "library log")


def _factory(output: TextIO, background: bool) -> Callable[..., Any]:
    if not background:
        return structlog.PrintLoggerFactory(file=output)
    queued = _QueuedLog(output)
    _running.append(queued)
    return lambda *_: queued


def get_logger(component: str) -> structlog.typing.FilteringBoundLogger:
    """A logger for one part of the daemon, e.g. get_logger("smtp")."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(component=component)
    return logger
