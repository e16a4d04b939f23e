"""What the portal refuses, each in one line fit to show.

Rules this module keeps:
1. Every refusal derives from `PortalProblem` (a `NocontactError`): the CLI prints it as is.
2. A refusal that could tell a stranger something (is this link valid? is this an account?
   was it the passphrase or the code?) has one fixed message: `InviteRefused`,
   `LoginRefused`. Only someone who has proved who they are gets a reason (`EnrollProblem`).
3. No message carries a passphrase, code, token, secret or key.
"""

from __future__ import annotations

from proxy.errors import NocontactError

INVITE_REFUSED = "this link cannot be used: it may have been used already or have expired"
LOGIN_REFUSED = "login failed: check your email, passphrase and code, or wait and try again"


class PortalProblem(NocontactError):
    """Something about the portal the user can act on, in one line."""


class InviteRefused(PortalProblem):
    """An enrollment link that is unknown, used or expired: all look the same (rule 2)."""

    def __init__(self) -> None:
        super().__init__(INVITE_REFUSED)


class LoginRefused(PortalProblem):
    """A failed login, whatever failed, locked accounts included (rule 2)."""

    def __init__(self) -> None:
        super().__init__(LOGIN_REFUSED)


class EnrollProblem(PortalProblem):
    """Why an enrollment step was refused (a weak passphrase, a wrong code), for the
    contact who holds a valid link or has logged in."""
