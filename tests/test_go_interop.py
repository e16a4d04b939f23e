"""An independent implementation accepts our checkpoints and proofs: Go's
golang.org/x/mod/sumdb/note and tlog (Debian's golang-golang-x-mod-dev), run by
tests/interop/checkpoint.go, check a real archive's signed checkpoints, inclusion proofs,
a consistency proof and an evidence bundle's manifest, and reject each kind of tampering.

Runs offline: GOPATH mode over Debian's source tree, no module download. Skipped only when
`go` is not installed (scripts/test installs it).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
import pytest

from proxy.access.keys import custody_public_key, custody_signing_key
from proxy.access.manifest import BundleFile, BundleItem, build_manifest
from proxy.archive import Archive, CustodyRecord, EntryKind, layout
from proxy.archive.merkle import MerkleTree
from proxy.archive.metadata import SealedItem
from proxy.archive.note import Signer, Verifier, parse_checkpoint
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.seal import fingerprint, open_sealed
from proxy.archive.segments import segment_name
from proxy.rules import decide
from tests.factories import email, make_rules, sms
from tests.old_archives import created_as

PROGRAM = Path(__file__).parent / "interop" / "checkpoint.go"
GOPATH = "/usr/share/gocode"  # Debian's golang-*-dev source tree
IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GO_SUM_ORIGIN = "go.sum database tree"


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    index: int
    body: bytes
    stored_hash: bytes


@dataclass(frozen=True)
class Source:
    """A real archive as it lies on disk: its verifier key, entries and checkpoints."""

    root: Path
    verifier_key: str
    entries: list[Entry]
    notes: list[bytes]  # every checkpoint entry's signed note, in log order


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go checker, built offline against Debian's golang.org/x/mod."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed: scripts/test installs Debian's golang-go")
    build = tmp_path_factory.mktemp("go-interop")
    binary = build / "checkpoint"
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(PROGRAM)],
        env=_go_env(build / "cache"), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return binary


def _go_env(cache: Path) -> dict[str, str]:
    """GOPATH mode over Debian's tree, no module proxy: nothing is downloaded."""
    return {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOPROXY": "off",
            "GOFLAGS": "", "CGO_ENABLED": "0", "GOCACHE": str(cache)}  # fmt: skip


def _entries(root: Path) -> list[Entry]:
    found = []
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                header = record.header
                found.append(Entry(header.kind, header.index, bytes(record.body),
                                   record.stored_hash))  # fmt: skip
                del record
    return found


@pytest.fixture(scope="module", params=[3, 2], ids=["version-3", "version-2"])
def source(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Source:
    """Held mail and SMS and a custody record, over two runs, a checkpoint after each batch,
    in a new (version 3) archive and in one made as version 2 (its own leaf rule)."""
    root = tmp_path_factory.mktemp("go-interop-archive") / "archive"
    version: int = request.param
    rules = make_rules()
    runs = [
        [email("From: Mark <mark.smith@gmail.com>\nSubject: hello", "it's me\n"),
         sms("+1 555 010 0199", "answer me")],
        [email("From: Carol <carol@example.net>\nSubject: news", "Mark says hi.\n"),
         email("From: Mark <mark.smith@gmail.com>\nSubject: again", "why won't you answer\n"),
         sms("+1 555 010 0199", "pick up")],
    ]  # fmt: skip

    async def run(messages: list[Any], custody: bool) -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT], clock=lambda: NOW,
                                     checkpoint_every=0)  # fmt: skip
        for message in messages:
            await archive.hold(message, decide(message, rules))
        if custody:
            await archive.record_custody(
                CustodyRecord(contact="SHA256:abc", action="export", items=(1, 2), at=NOW)
            )
        await archive.close()

    with created_as(version):
        asyncio.run(run(runs[0], custody=False))
    asyncio.run(run(runs[1], custody=True))
    assert layout.read_manifest(root).version == version  # reopened, it kept its version
    entries = _entries(root)
    notes = [entry.body for entry in entries if entry.kind is EntryKind.CHECKPOINT]
    verifier_key = (root / layout.VERIFIER_KEY).read_text().strip()
    return Source(root=root, verifier_key=verifier_key, entries=entries, notes=notes)


def _head(source: Source, note: bytes) -> tuple[int, bytes]:
    head = parse_checkpoint(Verifier.decode(source.verifier_key).open(note))
    return head.size, head.root


def _case(source: Source) -> dict[str, Any]:
    """Two signed checkpoints (an early one and the `checkpoint` file's latest), the
    consistency proof between them, and every entry's inclusion proof in each."""
    latest = (source.root / layout.HEAD).read_bytes()
    early = next(note for note in source.notes if 1 < _head(source, note)[0] < 5)
    (old_size, old_root), (new_size, new_root) = _head(source, early), _head(source, latest)
    assert old_size < new_size
    tree = MerkleTree([entry.stored_hash for entry in source.entries])
    assert tree.root(old_size) == old_root
    assert tree.root(new_size) == new_root
    records = [
        {"checkpoint": position, "kind": int(entry.kind), "index": entry.index,
         "body": base64.b64encode(entry.body).decode(),
         "proof": [node.hex() for node in tree.inclusion_proof(entry.index, size)]}
        for position, size in enumerate((old_size, new_size))
        for entry in source.entries[:size]
    ]  # fmt: skip
    return {
        "verifier_key": source.verifier_key,
        "format_version": layout.read_manifest(source.root).version,
        "checkpoints": [early.decode(), latest.decode()],
        "consistency": [[node.hex() for node in tree.consistency_proof(old_size, new_size)]],
        "records": records,
    }


def _check(checker: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(checker), *arguments], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip


def _check_case(
    checker: Path, tmp_path: Path, case: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "case.json"
    path.write_text(json.dumps(case))
    return _check(checker, str(path))


def test_go_accepts_checkpoints_and_proofs(checker: Path, source: Source, tmp_path: Path) -> None:
    """Go's note.Open and tlog accept both checkpoints, every inclusion proof (items,
    custody record and checkpoint entries alike) and the consistency proof between them."""
    case = _case(source)
    result = _check_case(checker, tmp_path, case)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "verdict: accepted"
    assert not [line for line in lines if line.startswith("FAIL")]
    kinds = {record["kind"] for record in case["records"]}
    assert kinds == {EntryKind.SEALED, EntryKind.CHECKPOINT}
    checked = [line for line in lines if "(tlog.CheckRecord)" in line]
    assert len(checked) == len(case["records"])
    assert sum("(tlog.CheckTree)" in line for line in lines) == 1


def test_only_the_origin_line_differs_from_what_tlog_parses(
    checker: Path, source: Source, tmp_path: Path
) -> None:
    """tlog.ParseTree accepts only the go.sum log's origin line; our C2SP checkpoint's
    first line is the archive's origin, and the checker says each time it parses the rest
    under the go.sum origin (everything after the first line is what tlog expects)."""
    result = _check_case(checker, tmp_path, _case(source))
    origin = Verifier.decode(source.verifier_key).name
    notes = [line for line in result.stdout.splitlines() if line.startswith("note:")]
    assert len(notes) == 2
    assert all(f'rejects origin "{origin}"' in line for line in notes)
    assert all(f'accepts only "{GO_SUM_ORIGIN}"' in line for line in notes)


def _flip_signature(case: dict[str, Any]) -> None:
    note = case["checkpoints"][1]
    body, signature_line = note.rstrip("\n").rsplit("\n", 1)
    dash_name, encoded = signature_line.rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[10] ^= 0x01  # inside the Ed25519 signature, after the 4-byte key id
    case["checkpoints"][1] = f"{body}\n{dash_name} {base64.b64encode(blob).decode()}\n"


def _change_root(case: dict[str, Any]) -> None:
    lines = case["checkpoints"][1].split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 0x01
    lines[2] = base64.b64encode(root).decode()
    case["checkpoints"][1] = "\n".join(lines)


def _other_key(case: dict[str, Any]) -> None:
    case["verifier_key"] = Signer.generate(case["verifier_key"].split("+")[0]).verifier.encode()


def _flip_hex(text: str) -> str:
    return f"{int(text[0], 16) ^ 1:x}{text[1:]}"


def _wrong_inclusion_hash(case: dict[str, Any]) -> None:
    record = case["records"][-1]
    record["proof"][0] = _flip_hex(record["proof"][0])


def _wrong_consistency_hash(case: dict[str, Any]) -> None:
    proof = case["consistency"][0]
    proof[-1] = _flip_hex(proof[-1])


def _wrong_leaf(case: dict[str, Any]) -> None:
    record = case["records"][-1]
    body = bytearray(base64.b64decode(record["body"]))
    body[len(body) // 2] ^= 0x01
    record["body"] = base64.b64encode(body).decode()


def _entries_swapped(case: dict[str, Any]) -> None:
    sealed = [r for r in case["records"] if r["kind"] == EntryKind.SEALED and r["checkpoint"] == 1]
    first, second = sealed[0], sealed[1]
    first["body"], second["body"] = second["body"], first["body"]


def _wrong_kind(case: dict[str, Any]) -> None:
    next(r for r in case["records"] if r["kind"] == EntryKind.SEALED)["kind"] = EntryKind.CUSTODY


def _checkpoints_swapped(case: dict[str, Any]) -> None:
    case["checkpoints"].reverse()


def _other_version(case: dict[str, Any]) -> None:
    case["format_version"] = {3: 2, 2: 3}[case["format_version"]]  # the other leaf rule


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "flipped signature byte": (_flip_signature, "FAIL: checkpoint 1"),
    "changed root hash": (_change_root, "FAIL: checkpoint 1"),
    "another archive's key": (_other_key, "FAIL: checkpoint 0"),
    "wrong inclusion proof hash": (_wrong_inclusion_hash, "(tlog.CheckRecord): "),
    "wrong consistency proof hash": (_wrong_consistency_hash, "(tlog.CheckTree): "),
    "wrong leaf bytes": (_wrong_leaf, "(tlog.CheckRecord): "),
    "entries swapped": (_entries_swapped, "(tlog.CheckRecord): "),
    "entry re-kinded": (_wrong_kind, "(tlog.CheckRecord): "),
    "newer checkpoint given first": (_checkpoints_swapped, "(tlog.CheckTree): "),
    "the other version's leaf rule": (_other_version, "(tlog.CheckRecord): "),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_go_rejects_tampering(checker: Path, source: Source, tmp_path: Path, name: str) -> None:
    """Each kind of tampering makes Go fail the check it breaks and reject the whole."""
    change, failed = TAMPERS[name]
    case = copy.deepcopy(_case(source))
    change(case)
    result = _check_case(checker, tmp_path, case)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "verdict: rejected"
    assert any(line.startswith("FAIL") and failed in line for line in lines), result.stdout


def test_go_rejects_a_checkpoint_for_another_origin(
    checker: Path, source: Source, tmp_path: Path
) -> None:
    """A checkpoint signed with the archive's own key but naming another origin is refused:
    the origin is checked against the key's name, since tlog.ParseTree cannot."""
    name = Verifier.decode(source.verifier_key).name
    signer = Signer.from_pem(name, (source.root / layout.SIGNING_KEY).read_bytes())
    case = _case(source)
    body = case["checkpoints"][1].split("\n\n")[0] + "\n"
    case["checkpoints"][1] = signer.sign(body.replace(name, "nocontact.archive/other", 1)).decode()
    result = _check_case(checker, tmp_path, case)
    assert result.returncode == 1, result.stdout
    assert "FAIL: checkpoint 1: signed by" in result.stdout
    assert 'origin "nocontact.archive/other" is not the key\'s name' in result.stdout


def test_go_refuses_unreadable_input(checker: Path, tmp_path: Path) -> None:
    """Input that is not a case is one clear error line and exit 2, never accepted."""
    path = tmp_path / "case.json"
    path.write_text("not json")
    result = _check(checker, str(path))
    assert result.returncode == 2
    assert result.stdout.startswith("error: ")
    assert "accepted" not in result.stdout


def _bundle(source: Source, target: Path) -> Path:
    """An unzipped bundle's manifest.json and sealed/ files for every held item, built by
    the exporter's own build_manifest (which ships the same proofs the zip carries)."""
    checkpoint = (source.root / layout.HEAD).read_bytes()
    size, _ = _head(source, checkpoint)
    covered = source.entries[:size]
    tree = MerkleTree([entry.stored_hash for entry in source.entries])
    items: list[BundleItem] = []
    proofs: dict[int, list[bytes]] = {}
    left_out: list[tuple[int, str]] = []
    for entry in covered:
        seal = None
        if entry.kind is EntryKind.SEALED:
            seal = open_sealed(pyrage.decrypt(entry.body, [IDENTITY]))
        if seal is None or not isinstance(seal[0], SealedItem):
            left_out.append((entry.index, "checkpoint" if seal is None else "custody record"))
            continue
        bates = f"NC-{len(items) + 1:06d}"
        (target / "sealed").mkdir(parents=True, exist_ok=True)
        (target / "sealed" / f"{bates}.age").write_bytes(entry.body)
        items.append(BundleItem(
            bates=bates, leaf_index=entry.index, sealed=_file(f"sealed/{bates}.age", entry.body,
            "sealed"), leaf_hash=entry.stored_hash, metadata=seal[0],
            files=[_file(f"originals/{bates}.eml", seal[1], "original")],
        ))  # fmt: skip
        proofs[entry.index] = tree.inclusion_proof(entry.index, size)
    contact = fingerprint(RECIPIENT)
    signer = Signer(f"nocontact.contact/{contact}", custody_signing_key(IDENTITY))
    manifest = build_manifest(
        items=items, proofs=proofs, checkpoint=checkpoint, verifier_key=source.verifier_key,
        archive_version=layout.read_manifest(source.root).version, other_files=[],
        software="nocontact test", created_at="2026-03-02T09:30:00Z",
        config_sha256=None, exported_by=contact, exporter_key=signer.verifier.encode(),
        custody_key=custody_public_key(IDENTITY), reason="for the hearing",
        selection={"since": None, "until": None, "person": None}, left_out=left_out,
        custody_index=size,
    )  # fmt: skip
    (target / "manifest.json").write_bytes(manifest)
    return target


def _file(name: str, data: bytes, role: str) -> BundleFile:
    return BundleFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data), role=role)


def test_go_accepts_an_evidence_bundle(checker: Path, source: Source, tmp_path: Path) -> None:
    """Go checks a bundle's manifest as an examiner would: the archive's checkpoint under
    its key, and each sealed file's leaf hash and inclusion proof against it."""
    bundle = _bundle(source, tmp_path / "bundle")
    result = _check(checker, "-bundle", str(bundle))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "verdict: accepted"
    items = json.loads((bundle / "manifest.json").read_text())["items"]
    assert len(items) == 5
    assert sum("(tlog.CheckRecord)" in line for line in lines) == len(items)


def test_go_rejects_a_bundle_with_a_changed_sealed_file(
    checker: Path, source: Source, tmp_path: Path
) -> None:
    """One flipped byte in one sealed file fails its leaf hash and its inclusion proof."""
    bundle = _bundle(source, tmp_path / "bundle")
    sealed = bundle / "sealed" / "NC-000003.age"
    data = bytearray(sealed.read_bytes())
    data[-1] ^= 0x01
    sealed.write_bytes(data)
    result = _check(checker, "-bundle", str(bundle))
    assert result.returncode == 1
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failures) == 2
    assert all(line.startswith("FAIL: NC-000003") for line in failures)
    assert result.stdout.splitlines()[-1] == "verdict: rejected"
