"""The daemon's watch on portal contacts' key files, and what a reload changed in the keys.

Rules this module keeps:
1. Watched: each portal contact's `age_recipient_file` and the custody key file beside it
   (config/meaning.py rules 7 and 8), in the config in force. No portal contact, no
   watch: the daemon starts none (and one that finds none left ends).
2. Every `WATCH_SECONDS` the watch stats those files, on a worker thread (a stalled disk
   stalls only the watch, never a channel). A file is its device, inode, size and
   modification time, or absent. A file that appears, changes or goes runs the daemon's
   reload, the very one SIGHUP runs, `SETTLE_SECONDS` after it was seen (enrollment
   writes two files), so the whole config is read again. An edit of the config file
   alone is not a trigger: that is what SIGHUP is for. Each file is written whole by
   the portal (a temporary file renamed over it), so the watch never reads half a key.
   The first look is taken after the config was read: a file modified since shortly
   before that read (`since`, less `CLOCK_SLACK_NS` for the file system's coarse clock)
   runs the reload at once, so a key written while the daemon started is not missed.
3. A reload refused (a garbage key file, or a config made invalid meanwhile) logs its one
   line and leaves the old contacts in force; the watch does not retry it until a watched
   file changes again, or SIGHUP.
4. `key_changes` says, contact by contact (by name), what a reload changed: a key added,
   changed or removed, a custody key set. The daemon logs each as a fixed event with the
   contact's name once the archive has applied it: from then on every item is sealed to
   the new set. Demo contacts' keys are the daemon's own doing, and not reported.
5. A key file removed reads as never written (config/meaning.py rule 7): that contact
   leaves the set and new items are sealed to the others, the change recorded in the
   archive's log like any change of contacts. Items already sealed to them stay theirs.
   A config with no key left is invalid, so at least one contact can always open what
   is sealed (rule 3 keeps the old set). The contact's next portal login writes the
   file again (portal/accounts.py rule 5), and the watch takes them back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from proxy.config import Config
from proxy.config.meaning import custody_key_file
from proxy.logs import get_logger

WATCH_SECONDS = 2.0
SETTLE_SECONDS = 0.2
CLOCK_SLACK_NS = 1_000_000_000

KEY_ADDED = "contact key added: new items are sealed to them too"
KEY_CHANGED = "contact key changed: new items are sealed to the new key"
KEY_REMOVED = "contact key removed: new items are sealed to the other contacts"
CUSTODY_KEY_SET = "contact custody key set: their signed custody records are accepted"
FILE_CHANGED = "contact key file changed: reloading the config"

_log = get_logger("daemon")

Look = dict[Path, tuple[int, int, int, int] | None]


def key_files(config: Config) -> tuple[Path, ...]:
    """The files the watch stats (rule 1): each portal contact's key file and custody key."""
    files: list[Path] = []
    for contact in config.contacts:
        if contact.portal and contact.age_recipient_file is not None:
            recipient = contact.age_recipient_file
            files += [Path(recipient), custody_key_file(recipient)]
    return tuple(files)


def look(files: tuple[Path, ...]) -> Look:
    """Each file as its device, inode, size and change time; None if it cannot be seen."""
    seen: Look = {}
    for path in files:
        try:
            stat = os.stat(path)
        except (OSError, ValueError):
            seen[path] = None
            continue
        seen[path] = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return seen


async def watch(
    files: Callable[[], tuple[Path, ...]],
    reload: Callable[[], None],
    *,
    since: int,
    every: float = WATCH_SECONDS,
    settle: float = SETTLE_SECONDS,
) -> None:
    """Run `reload` whenever one of `files()` appears, changes or goes (rule 2), until
    `files()` is empty; `since` is when (time.time_ns) the config in force was read."""
    seen = await asyncio.to_thread(look, files())
    if any(s is not None and s[3] >= since - CLOCK_SLACK_NS for s in seen.values()):
        _reload(reload)  # written while the config was read: perhaps not in it
    while watched := files():
        await asyncio.sleep(every)
        now = await asyncio.to_thread(look, watched)
        if not any(path in seen and seen[path] != now[path] for path in now):
            seen = now  # a file newly watched (a reload added a contact) is its baseline
            continue
        await asyncio.sleep(settle)
        seen = await asyncio.to_thread(look, watched)
        _reload(reload)


def _reload(reload: Callable[[], None]) -> None:
    _log.info(FILE_CHANGED)
    try:
        reload()
    except Exception as error:  # the watch outlives any one reload; SIGHUP's is the same
        _log.error("reload failed; the old config stays", error=type(error).__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyChange:
    """One contact's key, changed by a reload (rule 4): a fixed event and their name."""

    event: str
    contact: str


def key_changes(before: Config, after: Config) -> list[KeyChange]:
    """What `after` changed in the contacts' keys since `before`, contact by contact."""
    old = {c.name.casefold(): c for c in before.contacts if not c.demo}
    changes = []
    for contact in after.contacts:
        if contact.demo:
            continue
        was = old.pop(contact.name.casefold(), None)
        recipient = was.age_recipient if was is not None else None
        if contact.age_recipient != recipient:
            event = (KEY_ADDED if recipient is None else
                     KEY_REMOVED if contact.age_recipient is None else KEY_CHANGED)  # fmt: skip
            changes.append(KeyChange(event=event, contact=contact.name))
        custody = was.custody_key if was is not None else None
        if contact.custody_key is not None and contact.custody_key != custody:
            changes.append(KeyChange(event=CUSTODY_KEY_SET, contact=contact.name))
    changes += [
        KeyChange(event=KEY_REMOVED, contact=c.name)
        for c in old.values()
        if c.age_recipient is not None
    ]
    return changes
