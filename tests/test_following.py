"""A long-running reader's follower of the archive (proxy/archive/following.py): checked
once, then only what is new, every entry read checked against the verified tree."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.archive import ArchiveLog, EntryKind, VerifyFailure, layout, verify_archive
from proxy.archive.following import FollowedArchive, follower
from proxy.archive.records import HEADER_BYTES, LeafRule, entry_hash
from proxy.archive.segments import segment_name
from tests.old_archives import copy_version_2, created_as
from tests.rollbacks import checkpoints, entries, roll_back

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _append(root: Path, bodies: list[bytes], *, checkpoint_every: int = 3) -> None:
    log = ArchiveLog.open(root, segment_bytes=4096)
    for i, body in enumerate(bodies):
        log.append([(EntryKind.SEALED, body)], checkpoint=i % checkpoint_every == 0, now=NOW)
    log.close()


def _bodies(root: Path, archive: FollowedArchive) -> list[bytes]:
    size = archive.refresh().checkpoint.size
    return [e.body for e in archive.entries(range(size)) if e.kind is EntryKind.SEALED]


def _offset_of(root: Path, archive: FollowedArchive, index: int) -> tuple[Path, int]:
    """The file and byte offset of entry `index`'s body."""
    walk = archive._walk
    assert walk is not None
    number, offset, _ = walk.position(index)
    return root / layout.LOG_DIR / segment_name(number), offset + HEADER_BYTES


_FIXTURE = [HealthCheck.function_scoped_fixture]


@settings(max_examples=25, deadline=None, suppress_health_check=_FIXTURE)
@given(batches=st.lists(st.lists(st.binary(min_size=1, max_size=900), max_size=6), max_size=5))
def test_following_agrees_with_the_whole_check(tmp_path_factory: pytest.TempPathFactory,
                                               batches: list[list[bytes]]) -> None:  # fmt: skip
    """After every batch (across segment boundaries), the follower's report is the whole
    check's, and it reads back exactly what was written."""
    root = tmp_path_factory.mktemp("follow") / "archive"
    archive = FollowedArchive(root)
    written: list[bytes] = []
    _append(root, [])
    for batch in batches:
        _append(root, batch)
        written += batch
        followed, whole = archive.refresh(), verify_archive(root)
        assert (followed.entries, followed.checkpoint, followed.note) == (
            whole.entries, whole.checkpoint, whole.note
        )  # fmt: skip
        assert followed.tree.root(followed.entries) == whole.tree.root(whole.entries)
        assert _bodies(root, archive) == written


@pytest.mark.parametrize("version", [2, 3])
def test_a_change_to_a_checked_entry_is_caught_when_read(tmp_path: Path, version: int) -> None:
    """An entry edited after it was checked is refused when read, and the follower starts
    over: the next refresh is the whole check, which fails (under either leaf rule)."""
    root = tmp_path / "archive"
    with created_as(version):
        _append(root, [])
    _append(root, [b"first letter" * 20, b"second letter" * 20, b"third" * 20])
    assert layout.read_manifest(root).version == version
    archive = FollowedArchive(root)
    archive.refresh()
    path, offset = _offset_of(root, archive, 1)
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(b"X")
    archive.refresh()  # what was checked is not read again (rule 1) ...
    assert archive.entries(range(0, 1))  # ... an untouched entry still reads
    with pytest.raises(VerifyFailure, match="entry 1 changed since it was verified"):
        archive.entries(range(0, 3))  # ... the changed one is caught (rule 2)
    with pytest.raises(VerifyFailure, match="entry 1: content does not match its hash"):
        archive.refresh()  # rule 3: a whole check again
    with pytest.raises(VerifyFailure, match="not been checked"):
        archive.entries(range(0, 1))


def test_a_version_2_archive_is_followed_with_its_own_leaf_rule(tmp_path: Path) -> None:
    """The version 2 writer's archive, followed, reads back with leaves over the whole
    body, before and after entries are appended to it; it stays version 2."""
    root = copy_version_2(tmp_path / "archive")
    archive = FollowedArchive(root)
    first = archive.refresh()
    assert first.version == 2
    old = archive.entries(range(first.checkpoint.size))
    _append(root, [b"held after version 3 came" * 10])
    report = archive.refresh()
    entries = archive.entries(range(report.checkpoint.size))
    assert entries[: len(old)] == old
    assert b"held after version 3 came" * 10 in [e.body for e in entries]
    for entry in entries:
        whole = entry_hash(entry.kind, entry.index, entry.body, rule=LeafRule.BODY)
        assert entry.leaf_hash == whole == report.tree.leaf(entry.index)
    assert layout.read_manifest(root).version == report.version == 2


def test_new_entries_are_checked_like_any(tmp_path: Path) -> None:
    """What is added after a refresh gets every check: an edited new entry fails it."""
    root = tmp_path / "archive"
    _append(root, [b"a" * 100])
    archive = FollowedArchive(root)
    before = archive.refresh().checkpoint.size
    _append(root, [b"b" * 100, b"c" * 100])
    walk = archive._walk
    assert walk is not None
    number, _offset, _ = walk.position(before)  # the checkpoint the next batch follows
    path = root / layout.LOG_DIR / segment_name(number)
    size = path.stat().st_size
    data = bytearray(path.read_bytes())
    cut = data.index(b"b" * 100)
    data[cut] ^= 1
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size
    with pytest.raises(VerifyFailure, match="content does not match its hash"):
        archive.refresh()


def test_a_removed_segment_or_head_fails_the_next_refresh(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _append(root, [bytes([i]) * 1500 for i in range(8)])  # several 4 KiB segments
    archive = FollowedArchive(root)
    archive.refresh()
    segments = sorted((root / layout.LOG_DIR).iterdir())
    assert len(segments) >= 3
    segments[1].unlink()  # one the follower read before
    with pytest.raises(VerifyFailure, match="missing"):
        archive.refresh()
    (root / layout.HEAD).unlink()
    with pytest.raises(VerifyFailure):
        archive.refresh()


def test_entries_outside_the_signed_log_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _append(root, [b"one" * 10])
    archive = FollowedArchive(root)
    with pytest.raises(VerifyFailure, match="not been checked"):
        archive.entries(range(0, 1))
    size = archive.refresh().checkpoint.size
    with pytest.raises(VerifyFailure, match="signed"):
        archive.entries(range(0, size + 1))


def test_one_follower_per_archive(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    assert follower(root) is follower(tmp_path / "." / "archive")
    assert follower(root) is not follower(tmp_path / "other")


def test_a_rollback_behind_the_followers_back_is_the_archive_as_it_now_is(
    tmp_path: Path,
) -> None:
    """Cut back to an old checkpoint (its note copied into `checkpoint`) after the follower
    checked the whole log: the next refresh reports the old checkpoint, as the whole check
    does, not the one it met before (rule 4), and the entries cut off are not read."""
    root = tmp_path / "archive"
    _append(root, [bytes([n]) * 50 for n in range(10)])
    archive = FollowedArchive(root)
    before = archive.refresh().checkpoint
    marks = checkpoints(root)
    roll_back(root, marks[2])
    after = archive.refresh()
    assert after.checkpoint.size == marks[2] < before.size
    assert (after.checkpoint, after.note) == (verify_archive(root).checkpoint,
                                              verify_archive(root).note)  # fmt: skip
    with pytest.raises(VerifyFailure):
        archive.entries(range(before.size - 1, before.size))


def test_an_older_checkpoint_file_makes_the_refresh_a_whole_check(tmp_path: Path) -> None:
    """Only the `checkpoint` file put back to an older note (the log left whole): the
    refresh checks everything again from the first entry (rule 4), and still passes."""
    root = tmp_path / "archive"
    _append(root, [bytes([n]) * 50 for n in range(7)])
    archive = FollowedArchive(root)
    first = archive.refresh()
    (root / layout.HEAD).write_bytes(entries(root)[checkpoints(root)[1]][4])
    walk = archive._walk
    again = archive.refresh()
    assert archive._walk is not walk  # a new walk: from the first entry
    assert again.checkpoint == first.checkpoint
