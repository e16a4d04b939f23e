"""Key and secret files, and the directories that hold state: there, and private enough.

Rules this module keeps:
1. A file holding a secret (an IMAP password, the Twilio auth token, a TLS private key, an
   alert URL file) must exist, be readable by whoever runs doctor (the daemon's user), and
   have no bit for group or others (0600).
2. A contact's key file (their age recipient, and the custody key enrollment writes beside
   it) is public, but whoever can write it decides whom held items are sealed to: no write
   bit for group or others, and readable. A portal contact's missing file means "not
   enrolled yet", which is no fault.
3. The archive directory and its `log/` are 0700 and every file in them 0600 (docs/
   archive-format.md). Only the archive's fixed file names are ever printed; a segment is
   "a file in log/", never its name (rule 2 of the package). The state directories (IMAP,
   SMS, portal) are checked the same way, naming only the directory; one not made yet is
   fine (the daemon makes it).
4. `mode_problem` is pure: a mode and what it may have, in; the problem or None, out.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from proxy.archive import layout, once
from proxy.config import Config
from proxy.config.meaning import custody_key_file
from proxy.doctor.findings import Finding, fail, ok

_NO_GROUP_OTHER = 0o077
_NO_GROUP_OTHER_WRITE = 0o022
_ARCHIVE_NAMES = frozenset({
    layout.MANIFEST, layout.SIGNING_KEY, layout.VERIFIER_KEY, layout.HEAD, layout.LOCK,
    layout.RECIPIENTS, layout.CUSTODY_KEYS, layout.LOG_DIR, once.FILE,
})  # fmt: skip
_MOST_ENTRIES = 100_000  # a state directory walk stops here: bounded, whatever is there


def mode_problem(mode: int, forbidden: int, wanted: str) -> str | None:
    """`mode` with none of the `forbidden` bits, or what is wrong (rule 4)."""
    bits = stat.S_IMODE(mode)
    if bits & forbidden:
        return f"mode {bits:04o}, make it {wanted}"
    return None


def check_files(config: Config) -> list[Finding]:
    """Every finding of this module, in a fixed order."""
    return [
        *_secrets(config),
        *_contact_keys(config),
        _archive(Path(config.archive.path)),
        *_state_directories(config),
    ]


def secret_files(config: Config) -> Iterator[str]:
    """Every `*_file` key of the config that holds a secret (rule 1)."""
    channels = config.channels
    if channels.smtp is not None and channels.smtp.tls_key_file is not None:
        yield channels.smtp.tls_key_file
    if channels.imap is not None:
        yield from (a.password_file for a in channels.imap.accounts if a.password_file)
    if channels.sms is not None and channels.sms.auth_token_file is not None:
        yield channels.sms.auth_token_file
    if config.portal is not None and config.portal.tls_key_file is not None:
        yield config.portal.tls_key_file
    if config.alerts is not None:
        yield from (t.url_file for t in config.alerts.transports.values() if t.url_file)


def _secrets(config: Config) -> list[Finding]:
    what = "secret files are private (0600)"
    problems = [
        fail(f"secret file {path}", problem)
        for path in dict.fromkeys(secret_files(config))
        if (problem := _file_problem(Path(path), _NO_GROUP_OTHER, "0600")) is not None
    ]
    return problems or [ok(what)]


def _contact_keys(config: Config) -> list[Finding]:
    problems = []
    for contact in config.contacts:
        if contact.age_recipient_file is None:
            continue
        key = Path(contact.age_recipient_file)
        for path in (key, custody_key_file(str(key))):
            if not path.exists() and (contact.portal or path != key):
                continue  # rule 2: not enrolled yet, or no custody key written beside it
            problem = _file_problem(path, _NO_GROUP_OTHER_WRITE, "0600 or 0644")
            if problem is not None:
                problems.append(fail(f"contact key file {path}", problem))
    return problems or [ok("contact key files are writable by their owner only")]


def _file_problem(path: Path, forbidden: int, wanted: str) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return f"cannot look at it ({error.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "this user cannot read it (run doctor as the daemon's user)"
    return mode_problem(info.st_mode, forbidden, wanted)


def _archive(root: Path) -> Finding:
    what = "archive directory is private (0700, files 0600)"
    if not (root / layout.MANIFEST).is_file():
        return fail("archive directory", f"{root} holds no archive yet (`nocontact run` makes it)")
    for path, where in _walk(root):
        problem = _entry_problem(path)
        if problem is not None:
            named = path.name if path.parent == root and path.name in _ARCHIVE_NAMES else where
            return fail("archive directory", f"{named}: {problem}")
    return ok(what)


def _state_directories(config: Config) -> list[Finding]:
    found = []
    places = [
        ("imap", config.channels.imap.state_dir if config.channels.imap else None),
        ("sms", config.channels.sms.state_dir if config.channels.sms else None),
        ("portal", config.portal.state_dir if config.portal else None),
    ]
    for name, directory in places:
        if directory is None:
            continue
        what = f"{name} state directory is private (0700, files 0600)"
        root = Path(directory)
        problem = next(
            (p for path, _ in _walk(root) if (p := _entry_problem(path)) is not None), None
        )
        if problem is None:
            found.append(ok(what))
        else:
            found.append(fail(f"{name} state directory {root}", f"it or a file in it: {problem}"))
    return found


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    """The root, then what is under it (a bounded walk), each with a name safe to print:
    the directory's own, `log/` or `a file in log/` (rule 3)."""
    if not root.exists():
        return
    yield root, str(root)
    seen = 0
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        for name in (*subdirectories, *files):
            seen += 1
            if seen > _MOST_ENTRIES:
                return
            path = here / name
            inside_log = path.parent.name == layout.LOG_DIR and path.parent.parent == root
            yield path, f"a file in {layout.LOG_DIR}/" if inside_log else "a file in it"


def _entry_problem(path: Path) -> str | None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None  # gone while we looked (a replaced file): nothing to judge
    except OSError as error:
        return f"cannot look at it ({error.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return mode_problem(info.st_mode, _NO_GROUP_OTHER, "0700")
    if stat.S_ISREG(info.st_mode):
        return mode_problem(info.st_mode, _NO_GROUP_OTHER, "0600")
    return None  # the custody socket, a symlink: their own rules
