"""Held mail leaving the mailbox entirely: COPYUID read as RFC 4315 writes it, and a real
Dovecot, Gmail-like (an expunge from INBOX leaves the message in All Mail) or without Trash.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient

from proxy.channels.imap import watch
from proxy.channels.imap.removal import copied
from proxy.pipeline import Fate
from tests import servers
from tests.imap_helpers import (
    ABOUT_HIM,
    ALLOWED,
    FROM_HIM,
    Daemon,
    append,
    append_raw,
    flags,
    imap,
    message,
    sealed,
    token,
    tokens,
    wait_for,
    watching,
)

HER_OWN = "From: friend@example.org\r\nSubject: {token}\r\n\r\nold news, deleted\r\n"
WARNING = "held_removal is trash but the server has no \\\\Trash folder"


@pytest.mark.parametrize(
    ("answers", "uids", "expected"),
    [
        ([b"7 3 11"], [3], (7, [11])),
        ([b"7 3:5,9 20:23"], [3, 4, 5, 9], (7, [20, 21, 22, 23])),
        ([b"7 5:3 23:21"], [3, 4, 5], (7, [21, 22, 23])),  # a range either way round
        ([b"7 3 11", b"7 4 12"], [3, 4], (7, [11, 12])),  # a MOVE answered in parts
        ([b"7 4 12"], [3, 4], (7, [12])),  # 3 was expunged by someone else meanwhile
        ([], [3], None),  # no COPYUID: the server did not say
        ([b"7 3 11", b"8 4 12"], [3, 4], None),  # two UIDVALIDITYs
        ([b"7 3:4 11"], [3, 4], None),  # counts differ
        ([b"7 8 11"], [3], None),  # a UID we did not move
        ([b"7 3 1:4294967295"], [3], None),  # more copies than messages moved
        ([b"7 3"], [3], None),
        ([b"x 3 11"], [3], None),
        ([b"7 3 11:a"], [3], None),
    ],
)
def test_copyuid_answers_name_only_copies_of_what_was_moved(
    answers: list[bytes], uids: list[int], expected: tuple[int, list[int]] | None
) -> None:
    """The new UIDs come from COPYUID only when it adds up to copies of the moved UIDs."""
    assert copied(answers, uids) == expected


def _folders(server: servers.Dovecot) -> list[str]:
    """Every folder of the account, as LIST names them."""
    with imap(server) as client:
        _, listed = client.list()
    return [
        line.decode().split(' "/" ', 1)[1].strip('"') for line in listed if isinstance(line, bytes)
    ]


def _everywhere(server: servers.Dovecot) -> dict[str, Counter[str]]:
    """Subject tokens of every folder of the account."""
    return {folder: tokens(server, folder) for folder in _folders(server)}


def _nowhere(server: servers.Dovecot, *marks: str) -> bool:
    return not any(found[mark] for found in _everywhere(server).values() for mark in marks)


@pytest.fixture
def gmail() -> Iterator[servers.Dovecot]:
    """A private Dovecot that keeps what an expunge takes from INBOX, as Gmail does."""
    with servers.dovecot(gmail=True) as server:
        yield server


def test_the_gmail_like_server_keeps_what_an_expunge_from_inbox_took(
    gmail: servers.Dovecot, tmp_path: Path
) -> None:
    """held_removal expunge on a Gmail-like server: gone from INBOX, yet still in All Mail.
    (The leak trash removal closes; this proves the test server reproduces it.)"""
    daemon = Daemon(tmp_path, gmail, held_removal="expunge")
    with daemon.running():
        held = append(gmail, "INBOX", FROM_HIM)
        wait_for(lambda: not tokens(gmail, "INBOX")[held], why=daemon.tail)
    assert tokens(gmail, servers.ALL_MAIL)[held] == 1
    assert sealed(daemon.archive) == Counter([held])


def test_on_gmail_held_mail_leaves_every_folder_and_nothing_else_moves(
    gmail: servers.Dovecot, tmp_path: Path
) -> None:
    """held_removal auto on a server advertising X-GM-EXT-1: held mail, from INBOX and Junk,
    is in no folder at all afterwards (not INBOX, Trash, All Mail); her mail in INBOX and
    in Trash (a \\Deleted one too) keeps its place and flags."""
    her_trash = {
        append(gmail, servers.TRASH, HER_OWN, flags="(\\Seen)"): frozenset({b"\\Seen"}),
        append(gmail, servers.TRASH, HER_OWN, flags="(\\Deleted)"): frozenset({b"\\Deleted"}),
    }
    allowed = append(gmail, "INBOX", ALLOWED, flags="(\\Flagged)")
    daemon = Daemon(tmp_path, gmail)
    held = [append(gmail, "INBOX", FROM_HIM)]
    with daemon.running():
        held += [append(gmail, "INBOX", FROM_HIM), append(gmail, servers.JUNK, ABOUT_HIM)]
        wait_for(lambda: _nowhere(gmail, *held), why=daemon.tail)
        time.sleep(0.5)
    assert flags(gmail, servers.TRASH) == her_trash
    assert flags(gmail, "INBOX") == {allowed: frozenset({b"\\Flagged"})}
    assert sum(_everywhere(gmail).values(), Counter()) == Counter([allowed, *her_trash])
    assert sealed(daemon.archive) == Counter(held)


def test_a_held_copy_a_crash_left_in_trash_is_expunged_at_the_next_start(
    gmail: servers.Dovecot, tmp_path: Path
) -> None:
    """A crash between the move to Trash and the expunge there leaves his message in her
    Trash: the next start finds it by its bytes (the archive holds its mark) and expunges
    it; her own mail in Trash stays."""
    raw = message(FROM_HIM, held := token())
    append_raw(gmail, "INBOX", raw)
    daemon = Daemon(tmp_path, gmail)
    with daemon.running():
        wait_for(lambda: _nowhere(gmail, held), why=daemon.tail)
    append_raw(gmail, servers.TRASH, raw)  # the copy a crash would have left
    hers = append(gmail, servers.TRASH, HER_OWN)
    with daemon.running():
        wait_for(lambda: _nowhere(gmail, held), why=daemon.tail)
        time.sleep(0.5)
    assert tokens(gmail, servers.TRASH) == Counter([hers])
    assert sealed(daemon.archive) == Counter([held])


class _NoCopyUid(IMAPClient):  # type: ignore[misc]  # imapclient is untyped
    """A client that never hears COPYUID, as from a server that does not send it."""

    def move(self, messages: Any, folder: Any) -> Any:
        answer = super().move(messages, folder)
        self._imap.untagged_responses.pop("COPYUID", None)
        return answer


def test_without_copyuid_only_a_copy_with_the_same_bytes_is_expunged_from_trash(
    gmail: servers.Dovecot, tmp_path: Path
) -> None:
    """No COPYUID: the moved copy is found in Trash by size and SHA-256, so her message of
    exactly the same size, already in Trash, is left there."""
    theirs = append(gmail, "INBOX", FROM_HIM)
    hers = append(
        gmail,
        servers.TRASH,
        FROM_HIM.replace("Mark <mark.smith@gmail.com>", "Mina <mina.smith@gmail.org>"),
    )

    held: list[bytes] = []

    def handle(found: list[watch.Found]) -> list[watch.Judged]:
        held.extend(raw for raw, _, _ in found if theirs.encode() in raw)
        return [Fate.HELD if theirs.encode() in raw else Fate.KEPT for raw, _, _ in found]

    with watching(tmp_path, gmail, handle, client=_NoCopyUid, held_removal="trash"):
        wait_for(lambda: _nowhere(gmail, theirs), timeout=10.0)
    assert tokens(gmail, servers.TRASH) == Counter([hers])
    assert len(held) == 1


def test_trash_asked_of_a_server_without_trash_keeps_held_mail_and_retries(
    tmp_path: Path,
) -> None:
    """held_removal trash and no \\Trash folder: held mail is sealed once and stays in INBOX,
    untouched, and a line says why (naming no message); once the server has a Trash folder,
    the retry removes it from every folder."""
    with servers.dovecot() as server:
        daemon = Daemon(tmp_path, server, held_removal="trash")
        with daemon.running():
            held = append(server, "INBOX", FROM_HIM, flags="(\\Flagged)")
            wait_for(lambda: sealed(daemon.archive) == Counter([held]), why=daemon.tail)
            time.sleep(3.0)  # retried after 1 s and 2 s: never sealed twice, never moved
            assert flags(server, "INBOX") == {held: frozenset({b"\\Flagged"})}
            assert sealed(daemon.archive) == Counter([held])
            server.stop()
            server.add_trash()
            server.start()
            wait_for(lambda: _nowhere(server, held), timeout=60.0, why=daemon.tail)
            assert servers.TRASH in _folders(server)
        assert sealed(daemon.archive) == Counter([held])
        log = daemon.log.read_text()
        assert held not in log
        lines = [json.loads(line) for line in log.splitlines() if WARNING[:20] in line]
        assert lines
        assert all(
            line["event"].startswith("imap " + WARNING.replace("\\\\", "\\")) for line in lines
        )
