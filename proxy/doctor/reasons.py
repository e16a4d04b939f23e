"""Why a host could not be asked, in a few words: one table for every check that talks.

Rules this module keeps:
1. Pure: an exception in, a short phrase out (`connection refused`, `no answer within
   10 s`, `answered 421`, `login refused: [AUTHENTICATIONFAILED] ...`).
2. The table is read in order, the most specific kinds first (an `ssl.SSLError` and a
   `TimeoutError` are `OSError`s too); anything not in it is named by its type. An error
   raised while handling a timeout (smtplib says "closed" when a read timed out) is the
   timeout.
3. No phrase carries a secret: a server's own reply is quoted, never what was sent to it.
"""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from collections.abc import Callable

from imapclient.exceptions import IMAPClientError, LoginError


def _text(error: BaseException) -> str:
    text = str(error)
    if text[:2] in ("b'", 'b"'):  # imapclient passes the server's bytes on as their repr
        text = text[2:-1]
    return text or type(error).__name__


def _smtp_code(error: BaseException) -> str:
    return f"answered {getattr(error, 'smtp_code', '?')}"


def _tls(error: BaseException) -> str:
    return f"TLS failed: {getattr(error, 'reason', None) or type(error).__name__}"


def _exit_status(error: BaseException) -> str:
    return f"oauth2_command failed (exit status {getattr(error, 'returncode', '?')})"


def _os(error: BaseException) -> str:
    return getattr(error, "strerror", None) or type(error).__name__


_Say = Callable[[BaseException, float], str]
_TABLE: tuple[tuple[type[BaseException], _Say], ...] = (
    (smtplib.SMTPServerDisconnected, lambda e, t: "closed the connection"),
    (smtplib.SMTPResponseException, lambda e, t: _smtp_code(e)),
    (LoginError, lambda e, t: f"login refused: {_text(e)}"),
    (IMAPClientError, lambda e, t: _text(e)),
    (subprocess.TimeoutExpired, lambda e, t: f"oauth2_command gave no token within {t:g} s"),
    (subprocess.CalledProcessError, lambda e, t: _exit_status(e)),
    (ssl.SSLError, lambda e, t: _tls(e)),
    (TimeoutError, lambda e, t: f"no answer within {t:g} s"),
    (ConnectionRefusedError, lambda e, t: "connection refused"),
    (OSError, lambda e, t: _os(e)),
)


def why(error: BaseException, timeout: float) -> str:
    """A few words saying why the conversation failed (rules 1 and 2)."""
    if isinstance(error.__context__, TimeoutError):  # smtplib: "closed" when it timed out
        error = error.__context__
    for kind, say in _TABLE:
        if isinstance(error, kind):
            return say(error, timeout)
    return type(error).__name__
