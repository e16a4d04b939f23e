"""`nocontact verify --checkpoint`: a checkpoint kept off the server catches a rollback, a
truncation and a rewritten history that the archive alone cannot show, and one that is not
this archive's (issue 23)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from proxy.archive import layout, verify_archive
from proxy.archive.continuation import FORK, ROLLBACK, NotAContinuation, checked, continues, kept
from proxy.archive.merkle import verify_consistency
from proxy.archive.note import Signer
from proxy.cli import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, main
from proxy.message import InboundMessage
from tests.factories import RECIPIENT, email
from tests.rollbacks import checkpoints, entries, hold_signed, roll_back

FROM_MARK = "From: Mark <mark.smith@gmail.com>\nSubject: answer me"


def _held(count: int, words: str = "pick up") -> list[InboundMessage]:
    return [email(FROM_MARK, f"{words} {n}\n") for n in range(count)]


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive with four held items, a checkpoint signed after each."""
    root = tmp_path_factory.mktemp("held") / "archive"
    hold_signed(root, RECIPIENT, _held(4))
    return root


def _copy(held: Path, tmp_path: Path, name: str = "copy") -> Path:
    return Path(shutil.copytree(held, tmp_path / name))


def _keep(root: Path, path: Path) -> Path:
    """Save the archive's current checkpoint as a contact would from an alert."""
    path.write_bytes((root / layout.HEAD).read_bytes())
    return path


def _verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_issues_rollback_passes_plain_verify_and_fails_with_the_alerts_checkpoint(
    held: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Zero everything after entry 2 and copy entry 2's note into `checkpoint`: verify
    --key prints OK while three held items are gone; with the checkpoint from the last
    alert it fails, naming that file and a rollback."""
    root = _copy(held, tmp_path)
    alert = _keep(root, tmp_path / "alert-checkpoint.txt")
    key = (root / layout.VERIFIER_KEY).read_text().strip()
    held_before = sum(1 for entry in entries(root) if entry[3].name == "SEALED")
    assert _verify(capsys, "--archive", str(root), "--key", key, "--checkpoint", str(alert))[0] == 0
    assert checkpoints(root)[:2] == [0, 2]  # entry 1 is the first held item, 2 signs it
    roll_back(root, 2)
    held_after = sum(1 for entry in entries(root) if entry[3].name == "SEALED")
    assert (held_before, held_after) == (4, 1)  # three held items are gone
    code, out, _ = _verify(capsys, "--archive", str(root), "--key", key)
    assert code == EXIT_OK
    assert out.startswith("archive OK, root ")
    code, out, err = _verify(capsys, "--archive", str(root), "--key", key,
                             "--checkpoint", str(alert))  # fmt: skip
    assert code == EXIT_CHECK_FAILED
    assert out == (
        f"archive BAD: checkpoint {alert}: the archive is shorter than this checkpoint: "
        "entries were removed since it was signed (a rollback)\n"
    )
    assert err == ""


def test_a_truncation_keeps_older_checkpoints_and_fails_newer_ones(
    held: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cut back to the third checkpoint: the ones kept up to it still verify, each with its
    consistency proof printed; the latest kept one names the rollback."""
    pristine = _copy(held, tmp_path, "pristine")
    notes = {index: entries(pristine)[index][4] for index in checkpoints(pristine)}
    kept_files = {}
    for index, note in notes.items():
        kept_files[index] = tmp_path / f"checkpoint-{index}"
        kept_files[index].write_bytes(note)
    latest = _keep(pristine, tmp_path / "latest")
    root = _copy(pristine, tmp_path, "cut")
    cut_at = checkpoints(root)[2]
    roll_back(root, cut_at)
    older = [str(kept_files[i]) for i in sorted(notes) if i <= cut_at]
    args = ["--archive", str(root)] + [part for name in older for part in ("--checkpoint", name)]
    code, out, _ = _verify(capsys, *args)
    assert code == EXIT_OK, out
    lines = out.splitlines()
    assert lines[0].startswith("archive OK, root ")
    assert [line.split(" OK, ")[0] for line in lines[1:]] == [f"checkpoint {n}" for n in older]
    assert lines[1].endswith("consistency proof empty (from the empty tree)")  # entry 0's
    assert lines[-1].endswith("consistency proof empty (the same tree)")
    assert len(lines[2].split(" OK, consistency proof ")[1].split()) >= 1  # hex hashes
    assert all("consistency proof" in line for line in lines[1:])
    code, out, _ = _verify(capsys, *args, "--checkpoint", str(latest))
    assert code == EXIT_CHECK_FAILED
    assert out.startswith(f"archive BAD: checkpoint {latest}: the archive is shorter")


def test_a_rewritten_history_is_a_fork(
    held: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Roll back, then hold other items with the archive's own key until the log is longer
    than before: it verifies alone and is longer than the kept checkpoint, but that
    checkpoint's root is not in its history."""
    root = _copy(held, tmp_path)
    alert = _keep(root, tmp_path / "alert")
    size_before = len(entries(root))
    roll_back(root, 2)
    hold_signed(root, RECIPIENT, _held(5, "nothing to see"))
    assert len(entries(root)) > size_before
    assert _verify(capsys, "--archive", str(root))[0] == EXIT_OK
    code, out, _ = _verify(capsys, "--archive", str(root), "--checkpoint", str(alert))
    assert code == EXIT_CHECK_FAILED
    assert out == (
        f"archive BAD: checkpoint {alert}: the archive's history differs from this "
        "checkpoint's: entries it covers were changed or replaced (a fork)\n"
    )


def test_the_consistency_check_is_the_rfcs(held: Path, tmp_path: Path) -> None:
    """Every kept checkpoint of an untouched archive has an RFC 9162 consistency proof to
    the head that verifies; after a fork or a rollback `continues` names which it is."""
    report = verify_archive(held)
    for index in checkpoints(held):
        seen = checked(kept(entries(held)[index][4]), report.verifier, report.checkpoint.origin)
        proof = continues(seen, report)
        if 0 < seen.size < report.checkpoint.size:
            assert verify_consistency(seen.size, report.checkpoint.size, seen.root,
                                      report.checkpoint.root, proof)  # fmt: skip
    latest = checked(kept((held / layout.HEAD).read_bytes()), report.verifier,
                     report.checkpoint.origin)  # fmt: skip
    root = _copy(held, tmp_path)
    roll_back(root, 2)
    with pytest.raises(NotAContinuation) as rolled:
        continues(latest, verify_archive(root))
    assert rolled.value.kind == ROLLBACK
    hold_signed(root, RECIPIENT, _held(5, "other"))
    with pytest.raises(NotAContinuation) as forked:
        continues(latest, verify_archive(root))
    assert forked.value.kind == FORK


def test_a_checkpoint_that_is_not_this_archives_is_named(
    held: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another archive's checkpoint, one signed by another key for this origin, and one
    edited after signing each fail in one line naming the file and why."""
    other = tmp_path / "other"
    hold_signed(other, RECIPIENT, _held(1))
    theirs = _keep(other, tmp_path / "theirs")
    origin = (held / layout.HEAD).read_text().split("\n")[0]
    forged = tmp_path / "forged"
    lines = (held / layout.HEAD).read_text().split("\n")
    forged.write_bytes(Signer.generate(origin).sign("\n".join(lines[:4]) + "\n"))
    edited = tmp_path / "edited"
    edited.write_text((held / layout.HEAD).read_text().replace(f"\n{lines[1]}\n", "\n99\n", 1))
    not_ours = "it is not signed by this archive's key"
    cases = {theirs: "it is for another archive (nocontact.archive/",
             forged: f"{not_ours} (note is not signed by",
             edited: f"{not_ours} (signature does not verify)"}  # fmt: skip
    for path, reason in cases.items():
        code, out, _ = _verify(capsys, "--archive", str(held), "--checkpoint", str(path))
        assert code == EXIT_CHECK_FAILED
        assert out.startswith(f"archive BAD: checkpoint {path}: {reason}"), out
        assert out.count("\n") == 1


def test_a_kept_checkpoint_survives_mail_and_copy_and_paste(
    held: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CRLF line ends and blank space around the note (a mail client, a paste) are fine."""
    mangled = tmp_path / "pasted"
    text = (held / layout.HEAD).read_text()
    mangled.write_text("\n  \n" + text.replace("\n", "\r\n").rstrip() + "  \r\n\r\n")
    code, out, _ = _verify(capsys, "--archive", str(held), "--checkpoint", str(mangled))
    assert code == EXIT_OK
    same = "consistency proof empty (the same tree)"
    assert out.splitlines()[1] == f"checkpoint {mangled} OK, {same}"


def test_bad_checkpoint_files_are_bad_input(
    held: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file, a directory, binary junk, a huge file or text without a signature is
    exit 2 with one line naming it, before the archive is read."""
    junk, huge, unsigned = tmp_path / "junk", tmp_path / "huge", tmp_path / "unsigned"
    junk.write_bytes(b"\xff\xfe\x00garbage")
    huge.write_bytes(b"a" * 100_000)
    unsigned.write_text((held / layout.HEAD).read_text().split("\n\n")[0] + "\n")
    cases = {tmp_path / "missing": "cannot read it (No such file or directory)",
             tmp_path: "cannot read it (Is a directory)",
             junk: "not a checkpoint (not UTF-8 text)",
             huge: "too large to be a checkpoint",
             unsigned: "not a signed checkpoint (no signature line after a blank line)",
             }  # fmt: skip
    for path, reason in cases.items():
        code, out, err = _verify(capsys, "--archive", str(tmp_path / "nowhere"),
                                 "--checkpoint", str(path))  # fmt: skip
        assert (code, out) == (EXIT_BAD_INPUT, "")
        assert err == f"nocontact: --checkpoint {path}: {reason}\n"
