"""Evidence bundles carry a tlog-proof per item, under the most-cosigned checkpoint, and the
bundle's own verify.py checks each one: the archive's signature, every witness cosignature,
the inclusion of the entry. Exports run through the CLI as a contact would run them; the
cosignatures are made with the witness's own code and kept where the daemon keeps them."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from proxy.access.tlog_proof import parse_proof
from proxy.access.witnessing import UNVERIFIED
from proxy.archive import Archive, CustodyRecord, layout
from proxy.archive.note import parse_checkpoint
from proxy.rules import decide
from proxy.witness.cosignature import DASH, Cosigner
from proxy.witness.witnessed import Witnessed
from tests.factories import make_rules, sms
from tests.test_contact import nocontact, publish_custody_key

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ONE = Cosigner.generate("lawyer.example/witness")
TWO = Cosigner.generate("advocacy.example/witness")
IMPOSTOR = Cosigner.generate("impostor.example/witness")
CHECKED = ["--witness-key", ONE.key.encode(), "--witness-key", TWO.key.encode()]


@dataclass(frozen=True)
class Held:
    archive: Path
    key: Path
    sizes: tuple[int, int, int]  # the three checkpoints' sizes


def _session(root: Path, recipient: str, messages: int, *, custody: bool = False) -> int:
    """Hold `messages` texts (and a custody record), close; the size of the checkpoint."""
    rules = make_rules()

    async def run() -> None:
        archive = await Archive.open(root, recipients=[recipient], clock=lambda: NOW)
        for number in range(messages):
            message = sms("+1 555 010 0199", f"answer me {number}")
            await archive.hold(message, decide(message, rules))
        if custody:
            await archive.record_custody(
                CustodyRecord(contact="SHA256:abc", action="export", items=(1,), at=NOW)
            )
        await archive.close()

    asyncio.run(run())
    note = (root / layout.HEAD).read_bytes()
    return parse_checkpoint(note.decode().rpartition("\n\n")[0] + "\n").size


def _cosign(root: Path, size: int, *cosigners: Cosigner) -> None:
    """What the daemon keeps when witnesses cosign the checkpoint of `size` (witnessed.py)."""
    note = (root / layout.HEAD).read_bytes()
    body = note.decode().rpartition("\n\n")[0] + "\n"
    lines = [cosigner.cosign(body, 1_772_366_400 + size) for cosigner in cosigners]
    Witnessed(root).keep(size, note, lines)


def _keygen(tmp: Path) -> tuple[Path, str]:
    key = tmp / "dana.key"
    code, out, _ = nocontact("contact", "keygen", "--out", str(key))
    assert code == 0
    return key, next(line for line in out.splitlines() if line.startswith("age1"))


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Held:
    """Six held texts under three checkpoints: the first cosigned by both witnesses, the
    second by one (and by a key no one gave), the third by none (its witnessed file is
    not even a note)."""
    tmp = tmp_path_factory.mktemp("witnessed")
    key, recipient = _keygen(tmp)
    root = tmp / "archive"
    first = _session(root, recipient, 3)
    _cosign(root, first, ONE, TWO)
    second = _session(root, recipient, 2, custody=True)
    _cosign(root, second, ONE, IMPOSTOR)
    third = _session(root, recipient, 1)
    (Witnessed(root).directory / str(third)).write_bytes(b"not a note at all\n")
    publish_custody_key(root, key)
    return Held(archive=root, key=key, sizes=(first, second, third))


def _export(held: Held, target: Path, *options: str) -> Path:
    """Export every item with `options`; the bundle unzipped in `target`."""
    out = target.with_suffix(".zip")
    code, _, err = nocontact(
        "contact", "export", "--archive", str(held.archive), "--identity", str(held.key),
        "--out", str(out), "--reason", "hearing", *options,
    )  # fmt: skip
    assert code == 0, err
    with zipfile.ZipFile(out) as bundle:
        bundle.extractall(target)
    return target


def _verify(bundle: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "verify.py", *options], cwd=bundle,
                          capture_output=True, text=True, check=False, timeout=120)  # fmt: skip


def _manifest(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / "manifest.json").read_text())
    return manifest


@pytest.fixture(scope="module")
def checked(held: Held, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle exported with both witnesses' keys given."""
    return _export(held, tmp_path_factory.mktemp("checked") / "bundle", *CHECKED)


def test_each_item_is_proven_under_its_most_cosigned_checkpoint(held: Held, checked: Path) -> None:
    """Items 1-3 under the checkpoint both witnesses cosigned, 4-5 under the one only the
    first did (the impostor's line left out), 6 under the archive's own: not witnessed."""
    first, second, third = held.sizes
    manifest = _manifest(checked)
    names = [ONE.name, TWO.name]
    expected = {"NC-000001": names, "NC-000002": names, "NC-000003": names,
                "NC-000004": [ONE.name], "NC-000005": [ONE.name], "NC-000006": []}  # fmt: skip
    assert {i["bates"]: i["witnessed_by"] for i in manifest["items"]} == expected
    witnessing = manifest["witnessing"]
    assert witnessing["not_witnessed"] == ["NC-000006"]
    assert [w["name"] for w in witnessing["witnesses"]] == names
    assert {w["status"] for w in witnessing["witnesses"]} == {"checked"}
    sizes = {}
    for item in manifest["items"]:
        proof = parse_proof((checked / item["tlog_proof"]["name"]).read_bytes())
        assert proof.index == item["leaf_index"]
        text = proof.checkpoint.decode()
        sizes[item["bates"]] = int(text.split("\n")[1])
        assert IMPOSTOR.name not in text
        assert all(f"{DASH}{name} " in text for name in item["witnessed_by"])
    assert sizes["NC-000001"] == first
    assert sizes["NC-000004"] == second
    assert sizes["NC-000006"] >= third  # the latest signed checkpoint
    (custody,) = witnessing["custody"]
    assert custody["witnessed_by"] == [ONE.name]
    assert (checked / custody["sealed"]["name"]).is_file()
    assert len(witnessing["custody_not_proven"]) == 1  # this export's own record


def test_the_bundles_verify_py_checks_every_proof_and_cosignature(checked: Path) -> None:
    """verify.py passes, names what each witness cosigned and the items not yet witnessed."""
    done = _verify(checked)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not yet witnessed: NC-000006\n" in done.stdout
    assert f"cosigned by:      {ONE.name}: 6 proofs checked" in done.stdout  # 5 items, 1 record
    assert f"cosigned by:      {TWO.name}: 3 proofs checked" in done.stdout
    assert "custody proofs:   1 records proven in the log" in done.stdout
    assert "7 tlog-proofs checked, 1 items not yet witnessed" in done.stdout.splitlines()[-1]


def _first_hash_changed(bundle: Path) -> None:
    path = bundle / "proofs/NC-000002.tlog-proof"
    lines = path.read_bytes().split(b"\n")
    lines[2] = base64.b64encode(bytes(32))
    path.write_bytes(b"\n".join(lines))


def _cosignature_changed(bundle: Path) -> None:
    path = bundle / "proofs/NC-000001.tlog-proof"
    lines = path.read_text().split("\n")
    (number,) = [n for n, line in enumerate(lines) if line.startswith(f"{DASH}{TWO.name} ")]
    blob = bytearray(base64.b64decode(lines[number].rpartition(" ")[2]))
    blob[-1] ^= 0x01
    lines[number] = f"{DASH}{TWO.name} {base64.b64encode(bytes(blob)).decode()}"
    path.write_text("\n".join(lines))


def _item_changed(bundle: Path) -> None:
    path = bundle / "sealed/NC-000003.age"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (
            _first_hash_changed,
            "NC-000002: proofs/NC-000002.tlog-proof: the inclusion hashes do "
            "not lead to its checkpoint",
        ),
        (
            _cosignature_changed,
            f"NC-000001: proofs/NC-000001.tlog-proof: the cosignature by "
            f"{TWO.name} does not verify",
        ),
        (_item_changed, "NC-000003: proofs/NC-000003.tlog-proof: the inclusion hashes do not"),
    ],
    ids=["a proof hash", "a cosignature", "the item"],
)
def test_a_tampered_proof_cosignature_or_item_fails_naming_it(
    checked: Path, tmp_path: Path, tamper: Callable[[Path], None], named: str
) -> None:
    """One change anywhere in an entry's evidence: verify.py fails and says which entry."""
    bundle = tmp_path / "bundle"
    shutil.copytree(checked, bundle)
    tamper(bundle)
    done = _verify(bundle)
    assert done.returncode == 1
    assert f"problem: {named}" in done.stdout


def test_without_keys_the_cosigners_are_listed_unverified(held: Held, tmp_path: Path) -> None:
    """An export that is given no witness key keeps every cosignature and counts it, lists
    each witness by name and key id as unverified, and verify.py says so; a key given to
    verify.py checks that witness's cosignatures."""
    bundle = _export(held, tmp_path / "bundle")
    manifest = _manifest(bundle)
    witnesses = manifest["witnessing"]["witnesses"]
    listed = {(w["name"], w["key_id"], w["key"], w["status"]) for w in witnesses}
    assert listed == {(c.name, c.key.key_id.hex(), None, UNVERIFIED) for c in (ONE, TWO, IMPOSTOR)}
    # two lines each: the newer checkpoint wins, the impostor's line counted like any other
    assert [i["witnessed_by"] for i in manifest["items"]] == [[ONE.name, IMPOSTOR.name]] * 5 + [[]]
    done = _verify(bundle)
    assert done.returncode == 0, done.stdout
    assert f"witness:          {ONE.name} (key id {ONE.key.key_id.hex()}): {UNVERIFIED}" in (
        done.stdout
    )
    assert f"cosigned by:      {IMPOSTOR.name}: unverified (no key for it)" in done.stdout
    pinned = _verify(bundle, "--witness-key", ONE.key.encode())
    assert pinned.returncode == 0, pinned.stdout
    assert f"cosigned by:      {ONE.name}: 6 proofs checked" in pinned.stdout
    assert f"cosigned by:      {IMPOSTOR.name}: unverified (no key for it)" in pinned.stdout


def test_keys_given_to_verify_py_replace_the_bundles(checked: Path) -> None:
    """Keys the examiner gives replace the bundle's: a key that did not make a cosignature
    (same name, another key) leaves it unverified, never checked on the bundle's word."""
    other = Cosigner.generate(TWO.name)
    done = _verify(checked, "--witness-key", other.key.encode())
    assert done.returncode == 0  # a line by another key id is another witness: unverified
    assert f"cosigned by:      {TWO.name}: unverified (no key for it)" in done.stdout
    cosigned = [line for line in done.stdout.splitlines() if line.startswith("cosigned by:")]
    assert cosigned
    assert not any("proofs checked" in line for line in cosigned)


@pytest.fixture
def unwitnessed(tmp_path: Path) -> Held:
    key, recipient = _keygen(tmp_path)
    root = tmp_path / "archive"
    size = _session(root, recipient, 2)
    publish_custody_key(root, key)
    return Held(archive=root, key=key, sizes=(size, size, size))


def test_with_no_witness_the_items_are_said_unwitnessed_and_still_proven(
    unwitnessed: Held, tmp_path: Path
) -> None:
    """No witnessed checkpoint: every proof ends in the archive's own signed checkpoint, the
    manifest and verify.py name every item as not yet witnessed, and inclusion verifies."""
    bundle = _export(unwitnessed, tmp_path / "bundle", *CHECKED)
    manifest = _manifest(bundle)
    assert manifest["witnessing"]["not_witnessed"] == ["NC-000001", "NC-000002"]
    note = manifest["archive"]["checkpoint"].encode()
    for item in manifest["items"]:
        assert parse_proof((bundle / item["tlog_proof"]["name"]).read_bytes()).checkpoint == note
    done = _verify(bundle)
    assert done.returncode == 0, done.stdout
    assert "not yet witnessed: NC-000001, NC-000002\n" in done.stdout
    assert "2 tlog-proofs checked, 2 items not yet witnessed" in done.stdout
