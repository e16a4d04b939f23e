"""Evidence bundles: the signed manifest, and the offline verifier an examiner runs on them."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import hashlib
import json
import shutil
import string
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyrage
import pytest

from proxy.access import verify_bundle
from proxy.access.bundle_texts import (
    DECLARATION_NAME,
    DECLARATION_TEMPLATE,
    VERIFY_NAME,
    VERIFY_TEXT,
    fill_declaration,
)
from proxy.access.keys import custody_public_key, custody_signing_key
from proxy.access.manifest import (
    BundleFile,
    BundleItem,
    build_manifest,
    manifest_digest,
    sign_manifest,
)
from proxy.access.recording import signed_request
from proxy.access.tlog_proof import make_proof
from proxy.archive import Archive, CustodyRecord, EntryKind, layout
from proxy.archive.merkle import MerkleTree
from proxy.archive.metadata import SealedItem
from proxy.archive.note import NoteError, Signer, Verifier, parse_checkpoint
from proxy.archive.reader import SegmentScan, contiguous_segments, mapped
from proxy.archive.seal import fingerprint, open_sealed
from proxy.archive.segments import segment_name
from proxy.message import Channel
from proxy.rules import decide
from tests.factories import email, make_rules, sms
from tests.old_archives import created_as

IDENTITY = pyrage.x25519.Identity.generate()
RECIPIENT = str(IDENTITY.to_public())
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCRIPT = Path(verify_bundle.__file__)


@dataclass(frozen=True)
class Source:
    """A real archive's held items, read back and decrypted: what an exporter starts from."""

    signer: Signer  # the exporting contact's custody key
    origin: str  # the archive's
    inputs: dict[str, Any]  # build_manifest's arguments
    files: dict[str, bytes]  # every listed file of the bundle, by its name in the bundle


def _records(root: Path) -> list[tuple[EntryKind, int, bytes, bytes]]:
    found = []
    log_dir = root / layout.LOG_DIR
    for number in contiguous_segments(log_dir):
        with mapped(log_dir / segment_name(number)) as buffer:
            for record in SegmentScan(number, buffer):
                header = record.header
                found.append((header.kind, header.index, bytes(record.body), record.stored_hash))
                del record
    return found


def _hold(root: Path) -> None:
    rules = make_rules()
    messages = [
        email("From: Mark <mark.smith@gmail.com>\nSubject: hello", "it's me\n"),
        email("From: Carol <carol@example.net>\nSubject: news", "Mark says hi.\n"),
        sms("+1 555 010 0199", "answer me"),
    ]

    async def run() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT], clock=lambda: NOW)
        for message in messages:
            await archive.hold(message, decide(message, rules))
        await archive.record_custody(
            CustodyRecord(contact="SHA256:abc", action="export", items=(1, 2), at=NOW)
        )
        await archive.close()

    asyncio.run(run())


def _file(name: str, data: bytes, role: str) -> BundleFile:
    return BundleFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data), role=role)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A new (version 3) archive's items, ready to bundle."""
    root = tmp_path_factory.mktemp("bundle-source") / "archive"
    _hold(root)
    assert layout.read_manifest(root).version == 3
    return _source(root)


@pytest.fixture(scope="module")
def old_source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    """A version 2 archive's items (leaves over the whole sealed file), ready to bundle."""
    root = tmp_path_factory.mktemp("bundle-source-v2") / "archive"
    with created_as(2):
        _hold(root)
    assert layout.read_manifest(root).version == 2
    return _source(root)


def _source(root: Path) -> Source:
    origin = layout.read_manifest(root).origin
    contact = fingerprint(RECIPIENT)
    signer = Signer(f"nocontact.contact/{contact}", custody_signing_key(IDENTITY))
    custody_key = custody_public_key(IDENTITY)
    checkpoint = (root / layout.HEAD).read_bytes()
    verifier_key = (root / layout.VERIFIER_KEY).read_text().strip()
    head = parse_checkpoint(Verifier.decode(verifier_key).open(checkpoint))
    records = _records(root)
    tree = MerkleTree([stored for _, _, _, stored in records])
    files: dict[str, bytes] = {}
    items, proofs = [], {}
    held = [(i, body, stored) for kind, i, body, stored in records if kind is EntryKind.SEALED]
    opened = [(entry, open_sealed(pyrage.decrypt(entry[1], [IDENTITY]))) for entry in held]
    held_items = [(entry, seal) for entry, seal in opened if isinstance(seal[0], SealedItem)]
    for number, ((index, body, stored), (metadata, payload)) in enumerate(held_items, start=1):
        assert isinstance(metadata, SealedItem)  # custody records share the entry kind
        bates = f"NC-{number:06d}"
        originals = [_file(f"originals/{bates}.eml", payload, "original")]
        if metadata.channel is Channel.SMS:
            originals = [
                _file(f"originals/{bates}.json", payload, "original"),
                _file(f"originals/{bates}-1.jpg", b"\xff\xd8 not really a photo", "media"),
            ]
        sealed = _file(f"sealed/{bates}.age", body, "sealed")
        files[sealed.name] = body
        text = make_proof(index=index, hashes=tree.inclusion_proof(index, head.size),
                          checkpoint=checkpoint)  # fmt: skip
        tlog = _file(f"proofs/{bates}.tlog-proof", text, "tlog-proof")
        files[tlog.name] = text
        files.update({f.name: payload if f.role == "original" else b"\xff\xd8 not really a photo"
                      for f in originals})  # fmt: skip
        item = BundleItem(bates=bates, leaf_index=index, sealed=sealed, leaf_hash=stored,
                          metadata=metadata, files=originals, tlog_proof=tlog)  # fmt: skip
        items.append(item)
        proofs[index] = tree.inclusion_proof(index, head.size)
    leaves = [item.leaf_index for item in items]
    left_out = [(i, "checkpoint" if kind is EntryKind.CHECKPOINT else "custody record")
                for kind, i, _, _ in records if i < head.size and i not in leaves]  # fmt: skip
    own = signed_request(IDENTITY, action="export", items=leaves, reason="for the hearing")
    entries = [
        {"sequence": 4, "contact": "SHA256:abc", "action": "export", "items": [1, 2],
         "at": "2026-03-01T12:00:00Z", "reason": "", "nonce": "", "signature": "",
         "signed": "unsigned (older version)"},
        {**own.to_json(), "sequence": head.size, "at": "2026-03-02T09:30:00Z",
         "signed": "verified"},
    ]  # fmt: skip
    custody = json.dumps({"custody_keys": {contact: custody_key}, "entries": entries}).encode()
    files["custody.json"] = custody
    inputs: dict[str, Any] = {
        "items": items,
        "proofs": proofs,
        "checkpoint": checkpoint,
        "verifier_key": verifier_key,
        "archive_version": layout.read_manifest(root).version,
        "other_files": [_file("custody.json", custody, "custody")],
        "software": "nocontact 0.1.0",
        "created_at": "2026-03-02T09:30:00Z",
        "config_sha256": "ab" * 32,
        "exported_by": contact,
        "exporter_key": signer.verifier.encode(),
        "custody_key": custody_key,
        "reason": "for the hearing",
        "selection": {"since": None, "until": None, "person": None},
        "left_out": left_out,
        "custody_index": head.size,
    }
    return Source(signer=signer, origin=origin, inputs=inputs, files=files)


def _write_bundle(source: Source, target: Path, **changes: Any) -> Path:
    """An unzipped bundle in `target`, as the exporter lays it out."""
    manifest = build_manifest(**{**source.inputs, **changes})
    for name, data in source.files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    (target / "manifest.json").write_bytes(manifest)
    (target / "manifest.sig").write_bytes(sign_manifest(manifest, source.signer))
    shutil.copyfile(SCRIPT, target / "verify.py")
    (target / VERIFY_NAME).write_text(VERIFY_TEXT)
    declaration = fill_declaration(
        manifest_sha256=manifest_digest(manifest),
        verifier_key=source.inputs["verifier_key"],
        item_count=len(source.inputs["items"]),
        created_at=source.inputs["created_at"],
    )
    (target / DECLARATION_NAME).write_text(declaration)
    return target


def _verify(bundle: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "verify.py", *arguments],
        cwd=bundle, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


Tamper = Callable[[Source, Path], None]


def _flip(name: str, offset: int) -> Tamper:
    """Flip one bit of a file (a negative offset counts from its end)."""

    def tamper(source: Source, bundle: Path) -> None:
        data = bytearray((bundle / name).read_bytes())
        data[offset] ^= 0x01
        (bundle / name).write_bytes(bytes(data))

    return tamper


def _rewrite(name: str, change: Callable[[bytes], bytes]) -> Tamper:
    def tamper(source: Source, bundle: Path) -> None:
        (bundle / name).write_bytes(change((bundle / name).read_bytes()))

    return tamper


def _add(name: str, data: bytes) -> Tamper:
    def tamper(source: Source, bundle: Path) -> None:
        (bundle / name).write_bytes(data)

    return tamper


def _delete(name: str) -> Tamper:
    def tamper(source: Source, bundle: Path) -> None:
        (bundle / name).unlink()

    return tamper


def _resign(source: Source, bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit manifest.json and sign it again with the archive's own key (an insider's forgery)."""
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    edit(manifest)
    data = (json.dumps(manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
    (bundle / "manifest.json").write_bytes(data)
    (bundle / "manifest.sig").write_bytes(sign_manifest(data, source.signer))


# -- the offline verifier ---------------------------------------------------------------


def test_untouched_bundle_verifies(source: Source, tmp_path: Path) -> None:
    """A bundle as exported passes, naming its items, checkpoint, root, key and manifest hash."""
    bundle = _write_bundle(source, tmp_path)
    done = _verify(bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    head = parse_checkpoint(Verifier.decode(source.inputs["verifier_key"]).open(
        source.inputs["checkpoint"]))  # fmt: skip
    key = source.inputs["verifier_key"]
    assert done.stdout.splitlines()[-1] == (
        f"bundle OK: 3 items verified against checkpoint of size {head.size}, "
        f"root {head.root.hex()}, key {key}; 3 tlog-proofs checked, 3 items not yet "
        f"witnessed; {len(source.inputs['left_out'])} entries left "
        f"out (see above); exported by contact {source.inputs['exported_by']}"
    )
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert f"manifest SHA-256: {digest}" in done.stdout
    assert Verifier.decode(key).key_id.hex() in done.stdout
    custody_key = source.inputs["custody_key"]
    assert f"their custody key: {custody_key}" in done.stdout
    assert hashlib.sha256(custody_key.encode()).hexdigest()[:16] in done.stdout
    assert "left out:         3 checkpoint" in done.stdout or "checkpoint" in done.stdout
    assert digest in (bundle / DECLARATION_NAME).read_text()
    assert "problem" not in done.stdout
    assert "archive format:   version 3, leaf over the sealed file's SHA-256" in done.stdout


def test_a_version_2_bundle_verifies_and_a_flipped_sealed_byte_fails(
    old_source: Source, tmp_path: Path
) -> None:
    """A version 2 archive's bundle says so and passes with leaves over the whole sealed
    file, also as bundles made before version 3 wrote it (no version named); a flipped
    byte of a sealed file fails it."""
    bundle = _write_bundle(old_source, tmp_path / "v2")
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    assert manifest["archive"]["format_version"] == 2
    assert manifest["leaf_hash"].endswith("|| sealed file bytes)")
    done = _verify(bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "archive format:   version 2, leaf over the sealed file's bytes" in done.stdout
    _resign(old_source, bundle, _claim_version(None))
    done = _verify(bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "archive format:   version 2" in done.stdout
    _flip("sealed/NC-000002.age", 150)(old_source, bundle)
    done = _verify(bundle)
    assert done.returncode == 1
    assert "problem: NC-000002: the sealed file does not hash to the manifest's leaf hash" in (
        done.stdout
    )
    assert "problem: sealed/NC-000002.age: SHA-256 does not match the manifest" in done.stdout


def test_each_archive_version_hashes_sealed_files_by_its_own_rule(
    old_source: Source, source: Source
) -> None:
    """Each archive's leaves are its own rule's: a version 3 item's leaf is not the
    version 2 one of the same sealed file, and the other way round."""
    for made in (source, old_source):
        item = made.inputs["items"][0]
        body = made.files[item.sealed.name]
        entry = bytes([EntryKind.SEALED]) + item.leaf_index.to_bytes(8, "big")
        whole = hashlib.sha256(b"\x00" + entry + body).digest()
        hashed = hashlib.sha256(b"\x00" + entry + hashlib.sha256(body).digest()).digest()
        version = made.inputs["archive_version"]
        assert item.leaf_hash == (hashed if version == 3 else whole)
        assert item.leaf_hash != (whole if version == 3 else hashed)


def test_verifier_runs_on_a_directory_from_elsewhere(source: Source, tmp_path: Path) -> None:
    """The published copy of the verifier checks a bundle given as an argument."""
    bundle = _write_bundle(source, tmp_path / "bundle")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(bundle)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout


def _set_checkpoint_size(manifest: dict[str, Any]) -> None:
    manifest["archive"]["tree_size"] += 1


def _set_proof(manifest: dict[str, Any]) -> None:
    manifest["items"][1]["inclusion_proof"][0] = "00" * 32


def _move_leaf(manifest: dict[str, Any]) -> None:
    manifest["items"][0]["leaf_index"] += 1


def _claim_version(version: int | None) -> Callable[[dict[str, Any]], None]:
    """Say the archive was of another format version (None: name none, as bundles made
    before version 3 did)."""

    def edit(manifest: dict[str, Any]) -> None:
        if version is None:
            del manifest["archive"]["format_version"]
        else:
            manifest["archive"]["format_version"] = version

    return edit


def _drop_left_out(manifest: dict[str, Any]) -> None:
    manifest["left_out"].pop()


def _forge_custody(source: Source, bundle: Path) -> None:
    """Change a signed custody record's reason, and list the new custody.json in a manifest
    signed again: the record's own signature still names the old reason."""
    custody = json.loads((bundle / "custody.json").read_bytes())
    custody["entries"][-1]["reason"] = "routine check"
    data = json.dumps(custody).encode()
    (bundle / "custody.json").write_bytes(data)

    def edit(manifest: dict[str, Any]) -> None:
        [entry] = [f for f in manifest["other_files"] if f["name"] == "custody.json"]
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    _resign(source, bundle, edit)


def _drop_own_record(source: Source, bundle: Path) -> None:
    """A custody.json without the export's own record, listed in a manifest signed again."""
    custody = json.loads((bundle / "custody.json").read_bytes())
    custody["entries"].pop()
    data = json.dumps(custody).encode()
    (bundle / "custody.json").write_bytes(data)

    def edit(manifest: dict[str, Any]) -> None:
        [entry] = [f for f in manifest["other_files"] if f["name"] == "custody.json"]
        entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    _resign(source, bundle, edit)


def _signed_by_another(source: Source, bundle: Path) -> None:
    """manifest.sig by a key of the same name that is not the exporter's custody key."""
    other = Signer.generate(source.signer.name)
    data = (bundle / "manifest.json").read_bytes()
    (bundle / "manifest.sig").write_bytes(sign_manifest(data, other))


TAMPERING: list[tuple[str, Tamper, str]] = [
    ("original", _flip("originals/NC-000002.eml", 10),
     "originals/NC-000002.eml: SHA-256 does not match the manifest"),
    ("media", _flip("originals/NC-000003-1.jpg", 0),
     "originals/NC-000003-1.jpg: SHA-256 does not match the manifest"),
    ("sealed", _flip("sealed/NC-000001.age", 200),
     "NC-000001: the sealed file does not hash to the manifest's leaf hash"),
    ("manifest", _rewrite("manifest.json", lambda d: d.replace(b"the hearing", b"the Hearing")),
     "manifest.sig is signed but names another manifest.json"),
    ("manifest-byte", _flip("manifest.json", 1000), "manifest"),
    ("signature", _flip("manifest.sig", -8), "manifest.sig: "),
    ("custody", _flip("custody.json", 3), "custody.json: SHA-256 does not match the manifest"),
    ("deleted", _delete("originals/NC-000003.json"),
     "originals/NC-000003.json: listed in the manifest but missing from the bundle"),
    ("deleted-signature", _delete("manifest.sig"), "manifest.sig: "),
    ("added", _add("originals/NC-000004.eml", b"From: someone\n"),
     "originals/NC-000004.eml: in the bundle but not in the manifest"),
    ("truncated", _rewrite("sealed/NC-000002.age", lambda d: d[:-1]),
     "sealed/NC-000002.age: SHA-256 does not match the manifest"),
    ("resigned-proof", lambda s, b: _resign(s, b, _set_proof),
     "NC-000002: the inclusion proof does not lead to the checkpoint"),
    ("resigned-position", lambda s, b: _resign(s, b, _move_leaf),
     "NC-000001: the sealed file does not hash to the manifest's leaf hash"),
    ("resigned-size", lambda s, b: _resign(s, b, _set_checkpoint_size),
     "checkpoint: tree size or root differ from the manifest's"),
    ("resigned-left-out", lambda s, b: _resign(s, b, _drop_left_out),
     "the items and the entries left out do not name each entry once"),
    ("custody-signature", _forge_custody,
     "its signature does not verify under its contact's custody key"),
    ("custody-own-record", _drop_own_record, "custody.json lacks this export's own signed record"),
    ("another-signer", _signed_by_another, "manifest.sig: "),
    ("resigned-version", lambda s, b: _resign(s, b, _claim_version(2)),
     "NC-000001: the sealed file does not hash to the manifest's leaf hash"),
    ("resigned-no-version", lambda s, b: _resign(s, b, _claim_version(None)),
     "NC-000001: the sealed file does not hash to the manifest's leaf hash"),
    ("resigned-unknown-version", lambda s, b: _resign(s, b, _claim_version(4)),
     "archive format version 4 is not one this verifier knows"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [pytest.param(tamper, expected, id=name) for name, tamper, expected in TAMPERING],
)
def test_any_change_fails_and_is_named(
    source: Source, tmp_path: Path, tamper: Callable[[Source, Path], None], expected: str
) -> None:
    """A changed, cut, added or deleted file, or a forged manifest, fails with its problem named."""
    bundle = _write_bundle(source, tmp_path)
    tamper(source, bundle)
    done = _verify(bundle)
    assert done.returncode == 1, done.stdout
    problems = [line for line in done.stdout.splitlines() if line.startswith("problem: ")]
    assert any(expected in line for line in problems), done.stdout
    assert done.stdout.splitlines()[-1] == (
        f"bundle FAILED: {len(problems)} problem" + ("s" if len(problems) > 1 else "")
    )
    assert done.stderr == ""


def test_pinned_key_must_match(source: Source, tmp_path: Path) -> None:
    """With --key, a bundle signed by any other archive key fails; with its own key it passes."""
    bundle = _write_bundle(source, tmp_path)
    other = Signer.generate(source.origin).verifier.encode()
    refused = _verify(bundle, "--key", other)
    assert refused.returncode == 1
    assert "problem: the archive key is not the key given with --key" in refused.stdout
    assert _verify(bundle, "--key", source.inputs["verifier_key"]).returncode == 0


def test_without_openssl_nothing_passes(source: Source, tmp_path: Path) -> None:
    """Where signatures cannot be checked the bundle fails and says why; never passes unchecked."""
    bundle = _write_bundle(source, tmp_path)
    done = subprocess.run(
        [sys.executable, "verify.py"],
        cwd=bundle, capture_output=True, text=True, check=False, timeout=60,
        env={"PATH": str(tmp_path / "no-such-directory")},
    )  # fmt: skip
    assert done.returncode == 1
    assert "problem: signatures cannot be checked: cannot run openssl" in done.stdout
    assert "problem: custody signatures cannot be checked: cannot run openssl" in done.stdout
    assert "problem: tlog-proofs cannot be checked: cannot run openssl" in done.stdout
    assert done.stdout.splitlines()[-1] == "bundle FAILED: 3 problems"


def test_verifier_is_standard_library_python_38() -> None:
    """verify.py parses as Python 3.8 and imports only the standard library, nothing of ours."""
    tree = ast.parse(SCRIPT.read_text(), feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}  # fmt: skip
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
    assert "proxy" not in imported


# -- the manifest ------------------------------------------------------------------------


def test_manifest_is_deterministic_and_complete(source: Source) -> None:
    """The same export gives the same bytes, with every field a court needs per item."""
    manifest = build_manifest(**source.inputs)
    assert manifest == build_manifest(**source.inputs)
    assert manifest.endswith(b"}\n")
    data = json.loads(manifest)
    assert list(data) == sorted(data)
    assert data["format"] == "nocontact-evidence-bundle"
    assert data["version"] == 1
    assert data["hash_algorithm"] == "SHA-256"
    assert data["leaf_hash"].endswith("|| SHA-256(sealed file bytes))")
    assert data["item_count"] == 3
    archive = data["archive"]
    assert archive["verifier_key"] == source.inputs["verifier_key"]
    assert archive["checkpoint"].encode() == source.inputs["checkpoint"]
    assert archive["origin"] == source.origin
    assert archive["format_version"] == 3
    first = data["items"][0]
    assert first["bates"] == "NC-000001"
    assert first["leaf_index"] == 1
    assert first["channel"] == "email"
    assert first["sender"] == "marksmith@gmail.com"
    assert first["subject"] == "hello"
    assert first["rule"] == {"id": "people.mark.emails", "kind": "direct",
                             "reason": "from address is mark"}  # fmt: skip
    assert first["received_at"] == "2026-03-01T12:00:00Z"
    assert first["original_sha256"] == first["files"][0]["sha256"]
    assert first["sealed"]["name"] == "sealed/NC-000001.age"
    assert data["items"][2]["channel"] == "sms"
    assert [f["role"] for f in data["items"][2]["files"]] == ["original", "media"]
    assert data["other_files"][0]["name"] == "custody.json"


def test_signature_is_a_note_that_no_checkpoint_can_stand_for(source: Source) -> None:
    """manifest.sig is the archive key's note naming the manifest's hash, never a checkpoint."""
    manifest = build_manifest(**source.inputs)
    note = sign_manifest(manifest, source.signer)
    text = source.signer.verifier.open(note)
    assert text == f"nocontact-evidence-bundle/1\n{hashlib.sha256(manifest).hexdigest()}\n"
    with pytest.raises(NoteError):
        parse_checkpoint(text)
    assert not source.inputs["checkpoint"].startswith(b"nocontact-evidence-bundle")


def _wrong_proof(source: Source) -> dict[str, Any]:
    proofs = dict(source.inputs["proofs"])
    index = source.inputs["items"][1].leaf_index
    proofs[index] = [bytes(32), *proofs[index][1:]]
    return {"proofs": proofs}


def _swapped_leaves(source: Source) -> dict[str, Any]:
    first, second = source.inputs["items"][:2]
    return {"items": [dataclasses.replace(first, leaf_hash=second.leaf_hash), second]}


def _foreign_checkpoint(source: Source) -> dict[str, Any]:
    return {"verifier_key": Signer.generate(source.origin).verifier.encode()}


def _unsafe_name(source: Source) -> dict[str, Any]:
    return {"other_files": [_file("../custody.json", b"", "custody")]}


def _reserved_name(source: Source) -> dict[str, Any]:
    return {"other_files": [_file("manifest.sig", b"", "signature")]}


def _missing_proof(source: Source) -> dict[str, Any]:
    return {"proofs": {}}


def _twice(source: Source) -> dict[str, Any]:
    first = source.inputs["items"][0]
    return {"items": [first, dataclasses.replace(first, bates="NC-000009")]}


def _another_exporter(source: Source) -> dict[str, Any]:
    other = custody_public_key(pyrage.x25519.Identity.generate())
    return {"custody_key": other}


def _unaccounted(source: Source) -> dict[str, Any]:
    return {"left_out": source.inputs["left_out"][1:]}


def _unknown_version(source: Source) -> dict[str, Any]:
    return {"archive_version": 4}


def _sealed_not_its_leaf(source: Source) -> dict[str, Any]:
    first, *rest = source.inputs["items"]
    sealed = dataclasses.replace(first.sealed, sha256="0" * 64)
    return {"items": [dataclasses.replace(first, sealed=sealed), *rest]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_wrong_proof, "NC-000002: entry {second} is not proven"),
        (_swapped_leaves, "NC-000001: entry {first} is not proven"),
        (_foreign_checkpoint, "checkpoint does not verify"),
        (_unsafe_name, "not a plain relative path"),
        (_reserved_name, "reserves"),
        (_missing_proof, "no inclusion proof"),
        (_twice, "listed twice"),
        (_another_exporter, "not their custody key"),
        (_unaccounted, "do not name each entry once"),
        (_unknown_version, "archive format version 4 is not one nocontact knows"),
        (_sealed_not_its_leaf, "NC-000001: the sealed file's SHA-256 is not its leaf's"),
    ],
)
def test_build_manifest_refuses_what_would_not_verify(
    source: Source, change: Callable[[Source], dict[str, Any]], message: str
) -> None:
    """A wrong proof, leaf, key or path makes the export stop instead of certifying it."""
    first, second = (item.leaf_index for item in source.inputs["items"][:2])
    # Where the items are depends on when the archive wrote its checkpoints.
    with pytest.raises(ValueError, match=message.format(first=first, second=second)):
        build_manifest(**{**source.inputs, **change(source)})


# -- the texts ---------------------------------------------------------------------------


def test_declaration_has_exactly_the_exporters_fields() -> None:
    """The declaration template formats with the four bundle facts and no other field."""
    fields = {name for _, name, _, _ in string.Formatter().parse(DECLARATION_TEMPLATE) if name}
    assert fields == {"manifest_sha256", "verifier_key", "item_count", "created_at"}
    filled = fill_declaration(manifest_sha256="f" * 64, verifier_key="k+1+x", item_count=7,
                              created_at="2026-03-02T09:30:00Z")  # fmt: skip
    assert "f" * 64 in filled
    assert "{" not in filled


@pytest.mark.parametrize("text", [VERIFY_TEXT, DECLARATION_TEMPLATE])
def test_texts_are_plain_ascii_lines(text: str) -> None:
    """The bundle's texts open in any editor: ASCII, no line over 79 columns."""
    assert text.isascii()
    assert max(map(len, text.splitlines())) < 80
