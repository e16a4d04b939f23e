"""Taking mail out of a watched folder: held mail out of the mailbox entirely.

Rules this module keeps:
1. Held mail never stays in the survivor's mailbox, not even in a folder of its own. It
   leaves one of two ways (`held_removal`, settled once per connection by `held_removal`):
   expunge: \\Deleted and UID EXPUNGE where it is; trash: UID MOVE to the server's Trash
   (the folder LIST marks \\Trash, RFC 6154), then \\Deleted and UID EXPUNGE there. Gmail
   needs trash: an expunge from INBOX only takes a label off and the message stays in All
   Mail, while an expunge from Trash deletes it. auto is trash on a server that advertises
   X-GM-EXT-1 (Gmail), else expunge.
2. Nothing else in Trash is ever expunged: only the UIDs the server gave the moved copies
   in its COPYUID answer (RFC 4315), when Trash's UIDVALIDITY is the one it named; without
   that, only Trash messages of a moved message's size whose bytes hash to that message's
   hash. UID EXPUNGE leaves every other \\Deleted message in Trash alone.
3. When trash is asked for and cannot be done (no \\Trash folder, or no UIDPLUS to expunge
   by UID), held mail stays where it is, sealed and untouched, and the watcher looks at it
   again later (watch.py rule 5). That is logged once per connection, as a fact about the
   account, never when a message is held: a log line's time must not say one arrived.
4. After Trash, the watched folder is selected again on the same connection; a changed
   UIDVALIDITY there raises, so the watcher reconnects and scans again (watch.py rule 7).
5. Mail that is not held (pull mode's delivered mail) is the survivor's: moved to the
   folder she chose (`move_pulled_to`), or expunged.
6. A crash (or a dropped connection) between the move to Trash and the expunge there
   leaves a held copy in Trash. At every start the account's Trash is swept
   (`sweep_trash`): each message there that arrived in the last `SWEEP_DAYS` days and
   whose bytes the archive holds (its mark, pipeline rule 6) is expunged. Held mail is
   moved within moments of its arrival, so the window covers any crash but one after a
   stop of more than a week; nothing of hers matches, since she has no copy of his.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from imapclient import IMAPClient

from proxy.config.model import ImapAccount

# One held message: its UID in the watched folder, the SHA-256 (hex) and size of its bytes.
Held = tuple[int, str, int]

_FETCH_CHUNK = 50  # Trash messages fetched at once when looking for a copy by its bytes
SWEEP_DAYS = 7  # how far back a start's sweep of Trash looks (rule 6)


class Way(enum.Enum):
    EXPUNGE = "expunge"
    TRASH = "trash"
    KEEP = "keep"  # trash was asked for and this server cannot: held mail stays (rule 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldRemoval:
    """How this connection removes held mail: the way, and for trash the folder's name."""

    way: Way
    trash: str | None = None


class FolderChanged(Exception):
    """The watched folder's UIDVALIDITY changed while we were in Trash: scan it again."""


def trash_folder(client: IMAPClient) -> str | None:
    """The server's Trash: the folder LIST marks with special-use \\Trash, if any.

    Only the attribute counts (no guess by name, as imapclient's find_special_folder
    makes): a folder merely called Trash may be one more label or folder she reads.
    """
    for flags, _, name in client.list_folders():
        if any(flag.lower() == b"\\trash" for flag in flags):
            return str(name)
    return None


def held_removal(account: ImapAccount, client: IMAPClient, folder: str) -> HeldRemoval:
    """How held mail leaves `folder` on this connection (rule 1), or KEEP (rule 3)."""
    how = account.held_removal
    if how == "auto":
        how = "trash" if client.has_capability("X-GM-EXT-1") else "expunge"
    if how == "expunge":
        return HeldRemoval(way=Way.EXPUNGE)
    trash = trash_folder(client)
    if trash is None or not client.has_capability("UIDPLUS"):
        return HeldRemoval(way=Way.KEEP)
    if trash == folder:  # watching Trash itself: an expunge here already deletes
        return HeldRemoval(way=Way.EXPUNGE)
    return HeldRemoval(way=Way.TRASH, trash=trash)


def remove_held(
    client: IMAPClient, removal: HeldRemoval, *, folder: str, uidvalidity: int, held: list[Held]
) -> set[int]:
    """Remove sealed `held` mail from the mailbox; the UIDs left in `folder` (rule 3)."""
    uids = [uid for uid, _, _ in held]
    if removal.way is Way.KEEP or not uids:
        return set(uids)
    if removal.way is Way.EXPUNGE or removal.trash is None:
        expunge(client, uids)
        return set()
    client._imap.untagged_responses.pop("COPYUID", None)  # none from an earlier command
    if client.has_capability("MOVE"):
        client.move(uids, removal.trash)
    else:
        client.copy(uids, removal.trash)
        expunge(client, uids)
    copies = copied(client._imap.untagged_responses.pop("COPYUID", None) or [], uids)
    selected = client.select_folder(removal.trash)
    if copies is not None and copies[0] == int(selected[b"UIDVALIDITY"]):
        targets = copies[1]
    else:
        targets = _same_bytes(client, held)
    if targets:
        expunge(client, targets)
    again = client.select_folder(folder)
    if int(again[b"UIDVALIDITY"]) != uidvalidity:
        raise FolderChanged(folder)
    return set()


def remove(client: IMAPClient, uids: list[int], target: str | None) -> None:
    """Take mail that is not held out of the folder: to `target` (rule 5), or expunged."""
    if target is not None and client.has_capability("MOVE"):
        client.move(uids, target)
        return
    if target is not None:
        client.copy(uids, target)
    expunge(client, uids)


def expunge(client: IMAPClient, uids: list[int]) -> None:
    """\\Deleted and expunge `uids` in the selected folder: by UID when the server can."""
    client.delete_messages(uids, silent=True)
    if client.has_capability("UIDPLUS"):
        client.uid_expunge(uids)
    else:
        client.expunge()


def copied(answers: list[bytes], uids: list[int]) -> tuple[int, list[int]] | None:
    """(UIDVALIDITY, new UIDs) from the COPYUID answers to one MOVE or COPY of `uids`.

    imaplib keeps a response code, tagged or untagged, among its untagged responses; a
    MOVE may answer in several parts. None when there is none, or they do not add up to
    copies of some of `uids` and nothing else.
    """
    validity: int | None = None
    sources: list[int] = []
    targets: list[int] = []
    for answer in answers:
        text = answer.decode("ascii", "replace") if isinstance(answer, bytes) else str(answer)
        parts = text.split()
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        if validity not in (None, int(parts[0])):
            return None
        validity = int(parts[0])
        source, target = _uid_set(parts[1], len(uids)), _uid_set(parts[2], len(uids))
        if source is None or target is None or len(source) != len(target):
            return None
        sources += source
        targets += target
    if validity is None or not set(sources) <= set(uids) or len(targets) > len(uids):
        return None
    return validity, targets


def _uid_set(text: str, most: int) -> list[int] | None:
    """The UIDs of an RFC 4315 uid-set ("5:7,9"), or None if malformed or over `most`."""
    found: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or not (high or low).isdigit():
            return None
        first, last = sorted((int(low), int(high or low)))
        if len(found) + last - first + 1 > most:
            return None
        found.extend(range(first, last + 1))
    return found


def _same_bytes(client: IMAPClient, held: list[Held]) -> list[int]:
    """UIDs of the messages in the selected Trash whose bytes are a held message's (rule 2).

    Candidates are found by exact size (RFC822.SIZE), then kept only if their SHA-256 is
    that of a message just moved: nothing of hers, whatever its size, is ever matched.
    """
    digests = {digest for _, digest, _ in held}
    found: list[int] = []
    for size in sorted({size for _, _, size in held}):
        candidates = client.search(["LARGER", max(size - 1, 0), "SMALLER", size + 1])
        for chunk in _chunks(sorted(candidates), _FETCH_CHUNK):
            for uid, data in client.fetch(chunk, ["BODY.PEEK[]"]).items():
                raw = data.get(b"BODY[]")
                if isinstance(raw, bytes) and hashlib.sha256(raw).hexdigest() in digests:
                    found.append(uid)
    return found


def sweep_trash(client: IMAPClient, trash: str, sealed: Callable[[str], bool]) -> int:
    """Expunge from `trash` the held copies a crash left there (rule 6); how many."""
    client.select_folder(trash)
    since = (datetime.now(UTC) - timedelta(days=SWEEP_DAYS)).date()
    found: list[int] = []
    for chunk in _chunks(sorted(client.search(["SINCE", since])), _FETCH_CHUNK):
        for uid, data in client.fetch(chunk, ["BODY.PEEK[]"]).items():
            raw = data.get(b"BODY[]")
            if isinstance(raw, bytes) and sealed("imap:" + hashlib.sha256(raw).hexdigest()):
                found.append(uid)
    if found:
        expunge(client, found)
    return len(found)


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
