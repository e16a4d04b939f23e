"""The evidence bundle's manifest: what is in the bundle, and why it can be believed.

Rules this module keeps:
1. Pure: values in, bytes out. No archive access, no key that opens anything, no clock
   (`created_at` is an argument); the exporter gathers the values, this module states them.
2. It certifies only what verifies: every item's inclusion proof is checked against the
   signed checkpoint's root before a byte is written (in a version 3 archive, its leaf
   against its sealed file's SHA-256 too), and the checkpoint must verify under the
   archive key it names. Anything else raises `ValueError`; the export stops.
3. One exact form: the manifest is JSON with sorted keys, two-space indent, UTF-8 and a
   trailing newline, so the same bundle always yields the same bytes and the same hash.
4. The manifest's signature is a C2SP signed note by the exporting contact's custody key
   (named "nocontact.contact/<fingerprint>"; the manifest carries it as `exporter`, in
   note form and as the "ed25519:..." line the contact gives out), whose text is
   "nocontact-evidence-bundle/1", then the manifest's SHA-256 in hex. Its first line can
   never be a checkpoint's (a checkpoint's is the archive origin). The items stay
   anchored to the archive's own signed checkpoint by their inclusion proofs.
5. Every path named in the manifest is a plain relative path inside the bundle (no "..",
   no absolute paths, no backslashes) and names one file only: the offline verifier
   (verify_bundle.py, a copy of which ships in every bundle) opens exactly these paths.
6. It says what it left out: `selection` (the filters), and `left_out`, every entry of
   the checkpoint's tree that is not an item of the bundle with why; the items and
   `left_out` together name each index below the tree size exactly once.
7. `witnessing` names each item's and custody record's tlog-proof file (checked when it
   was made: witnessing.py rule 4), the witnesses whose cosignatures they carry (with
   their keys, or "unverified: key not given"), the items not yet witnessed, and the
   custody records no signed checkpoint covers yet (this export's own, at least).
8. It names the archive's format version (`archive.format_version`) and states its leaf
   rule in words (`leaf_hash`): a sealed file is hashed into its leaf whole in versions 1
   and 2, by its SHA-256 in version 3 (docs/archive-format.md); the verifier picks the
   rule by the version. A bundle made before version 3 names no version: the verifier
   reads it as version 2, which is what it was.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from proxy.archive import layout
from proxy.archive.custody_keys import key_fingerprint, parse_key
from proxy.archive.merkle import verify_inclusion
from proxy.archive.metadata import SealedItem
from proxy.archive.note import Checkpoint, NoteError, Signer, Verifier, parse_checkpoint
from proxy.archive.records import EntryKind, LeafRule

FORMAT = "nocontact-evidence-bundle"
VERSION = 1
SIGNATURE_HEADER = f"{FORMAT}/{VERSION}"
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
# The two files the manifest can never list: itself, and its signature.
RESERVED = (MANIFEST_NAME, SIGNATURE_NAME)
_INDEX = "leaf_index as 8 bytes big-endian"
LEAF_RULES = {  # by the archive's leaf rule (rule 7)
    LeafRule.BODY: f"SHA-256(0x00 || 0x01 || {_INDEX} || sealed file bytes)",
    LeafRule.BODY_SHA256: f"SHA-256(0x00 || 0x01 || {_INDEX} || SHA-256(sealed file bytes))",
}
TREE_RULE = "RFC 9162 section 2.1 (RFC 6962) Merkle tree, inclusion proofs per 2.1.3.2"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleFile:
    """One file in the bundle, as the manifest lists it."""

    name: str  # path inside the zip, e.g. "originals/NC-000001.eml"
    sha256: str  # lowercase hex
    size: int
    role: str  # "original" | "media" | "audio" | "sealed" | "custody" | "report" | ...


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleItem:
    """One held item: its archive entry (sealed, in the tree) and its decrypted original(s)."""

    bates: str  # "NC-000001"
    leaf_index: int  # the entry's index in the archive log
    sealed: BundleFile  # the stored entry body, byte for byte
    leaf_hash: bytes  # 32 bytes, as stored in the log
    metadata: SealedItem  # the decrypted sealed metadata
    files: Sequence[BundleFile]  # the original(s): .eml; SMS parameters and media; audio
    tlog_proof: BundleFile | None = None  # proofs/<bates>.tlog-proof (rule 7)
    witnessed_by: tuple[str, ...] = ()  # the witnesses cosigning its proof's checkpoint


@dataclass(frozen=True, slots=True, kw_only=True)
class CustodyProof:
    """A custody record's stored entry (sealed) and its tlog-proof (rule 7)."""

    sequence: int
    kind: int  # the entry's kind byte, hashed into its leaf
    leaf_hash: bytes
    sealed: BundleFile
    tlog_proof: BundleFile
    witnessed_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Witnessing:
    """What the bundle says about witnesses (rule 7), beside the items' own proofs."""

    witnesses: Sequence[Mapping[str, object]] = ()
    custody: Sequence[CustodyProof] = ()
    custody_not_proven: Sequence[int] = ()


def manifest_digest(manifest: bytes) -> str:
    """The SHA-256 (hex) that the signature and the declaration name."""
    return hashlib.sha256(manifest).hexdigest()


def signature_text(manifest: bytes) -> str:
    """The text of the manifest's signed note."""
    return f"{SIGNATURE_HEADER}\n{manifest_digest(manifest)}\n"


def sign_manifest(manifest: bytes, signer: Signer) -> bytes:
    """manifest.sig: a C2SP signed note by the exporting contact's custody key naming the
    manifest's SHA-256 (rule 4)."""
    return signer.sign(signature_text(manifest))


def build_manifest(
    *,
    items: Sequence[BundleItem],
    proofs: Mapping[int, Sequence[bytes]],
    checkpoint: bytes,
    verifier_key: str,
    archive_version: int,
    other_files: Sequence[BundleFile],
    software: str,
    created_at: str,
    config_sha256: str | None,
    exported_by: str,
    exporter_key: str,
    custody_key: str,
    reason: str,
    selection: Mapping[str, object],
    left_out: Sequence[tuple[int, str]],
    custody_index: int,
    witnessing: Witnessing | None = None,
) -> bytes:
    """manifest.json for a bundle; raises ValueError if anything in it would not verify."""
    verifier = Verifier.decode(verifier_key)
    if archive_version not in layout.VERSIONS:
        raise ValueError(f"archive format version {archive_version!r} is not one nocontact knows")
    rule = layout.leaf_rule(archive_version)
    try:
        head = parse_checkpoint(verifier.open(checkpoint))
    except NoteError as error:  # already a ValueError; reworded for the exporter's message
        raise ValueError(f"checkpoint does not verify under the archive key: {error}") from None
    if head.origin != verifier.name:
        raise ValueError(f"the checkpoint names {head.origin!r}, not the key's {verifier.name!r}")
    if config_sha256 is not None and not _HEX64.fullmatch(config_sha256):
        raise ValueError("config_sha256 is not a lowercase hex SHA-256")
    exporter = Verifier.decode(exporter_key)
    if exporter.public != parse_key(custody_key) or exporter.name != _contact_name(exported_by):
        raise ValueError("the exporter's note key is not their custody key")

    names: set[str] = set(RESERVED)
    bates_seen: set[str] = set()
    leaves_seen: set[int] = set()
    entries: list[dict[str, object]] = []
    for item in items:
        if not item.bates or item.bates in bates_seen:
            raise ValueError(f"Bates number {item.bates!r} is empty or used twice")
        if item.leaf_index in leaves_seen:
            raise ValueError(f"archive entry {item.leaf_index} is listed twice")
        bates_seen.add(item.bates)
        leaves_seen.add(item.leaf_index)
        proof = _proven(item, proofs.get(item.leaf_index), head, rule)
        if not item.files:
            raise ValueError(f"{item.bates}: no original files")
        entries.append(_item_entry(item, proof, names))
    witnessed = _witnessing(items, witnessing or Witnessing(), names)
    accounted = sorted([*leaves_seen, *(index for index, _ in left_out)])
    if accounted != list(range(head.size)):
        raise ValueError("the items and the entries left out do not name each entry once")

    return _dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "software": software,
            "created_at": created_at,
            "hash_algorithm": "SHA-256",
            "leaf_hash": LEAF_RULES[rule],
            "merkle_tree": TREE_RULE,
            "archive": {
                "origin": verifier.name,
                "format_version": archive_version,
                "verifier_key": verifier.encode(),
                "key_id": verifier.key_id.hex(),
                "checkpoint": checkpoint.decode("utf-8"),
                "checkpoint_time": head.body().split("\n")[3].removeprefix("time "),
                "tree_size": head.size,
                "root_hash": head.root.hex(),
            },
            "config_sha256": config_sha256,
            "exported_by": exported_by,
            "exporter": {
                "fingerprint": exported_by,
                "custody_key": custody_key,
                "custody_key_fingerprint": key_fingerprint(custody_key),
                "note_key": exporter.encode(),
            },
            "export_custody_entry": custody_index,
            "reason": reason,
            "selection": dict(selection),
            "left_out": [{"leaf_index": index, "why": why} for index, why in sorted(left_out)],
            "item_count": len(entries),
            "items": entries,
            "other_files": [_file_entry(f, names) for f in other_files],
            "witnessing": witnessed,
        }
    )


def _witnessing(
    items: Sequence[BundleItem], witnessing: Witnessing, names: set[str]
) -> dict[str, object]:
    """The manifest's `witnessing` section (rule 7)."""
    custody = []
    for record in witnessing.custody:
        if len(record.leaf_hash) != 32:
            raise ValueError(f"custody record {record.sequence}: leaf hash is not 32 bytes")
        custody.append({
            "sequence": record.sequence, "kind": record.kind,
            "leaf_hash": record.leaf_hash.hex(), "sealed": _file_entry(record.sealed, names),
            "tlog_proof": _file_entry(record.tlog_proof, names),
            "witnessed_by": list(record.witnessed_by),
        })  # fmt: skip
    return {
        "proof_format": "c2sp.org/tlog-proof@v1",
        "witnesses": [dict(witness) for witness in witnessing.witnesses],
        "not_witnessed": [i.bates for i in items if i.tlog_proof and not i.witnessed_by],
        "custody": custody,
        "custody_not_proven": sorted(witnessing.custody_not_proven),
    }


def _proven(
    item: BundleItem, proof: Sequence[bytes] | None, head: Checkpoint, rule: LeafRule
) -> Sequence[bytes]:
    """`item`'s inclusion proof, if it leads to the checkpoint's root, and (in a version 3
    archive) its leaf is its sealed file's (rule 2); else ValueError."""
    if proof is None:
        raise ValueError(f"{item.bates}: no inclusion proof for entry {item.leaf_index}")
    if len(item.leaf_hash) != 32 or not verify_inclusion(
        item.leaf_hash, item.leaf_index, head.size, proof, head.root
    ):
        raise ValueError(
            f"{item.bates}: entry {item.leaf_index} is not proven to be in the tree of "
            f"size {head.size}"
        )
    if (rule is LeafRule.BODY_SHA256 and _HEX64.fullmatch(item.sealed.sha256)
            and item.leaf_hash != _leaf_of(item)):  # fmt: skip
        raise ValueError(f"{item.bates}: the sealed file's SHA-256 is not its leaf's")
    return proof


def _leaf_of(item: BundleItem) -> bytes:
    """A version 3 item's leaf, from its sealed file's SHA-256 (records.py rule 2)."""
    entry = bytes([EntryKind.SEALED]) + item.leaf_index.to_bytes(8, "big")
    return hashlib.sha256(b"\x00" + entry + bytes.fromhex(item.sealed.sha256)).digest()


def _contact_name(fingerprint: str) -> str:
    """The name a contact's custody key signs notes under (rule 4)."""
    return f"nocontact.contact/{fingerprint}"


def _item_entry(item: BundleItem, proof: Sequence[bytes], names: set[str]) -> dict[str, object]:
    metadata = item.metadata
    sealed = metadata.to_json()  # the manifest quotes the seal's own form of each value
    tlog = None if item.tlog_proof is None else _file_entry(item.tlog_proof, names)
    return {
        "tlog_proof": tlog,
        "witnessed_by": list(item.witnessed_by),
        "bates": item.bates,
        "leaf_index": item.leaf_index,
        "leaf_hash": item.leaf_hash.hex(),
        "inclusion_proof": [node.hex() for node in proof],
        "sealed": _file_entry(item.sealed, names),
        "files": [_file_entry(f, names) for f in item.files],
        "received_at": sealed["received_at"],
        "sealed_at": sealed["sealed_at"],
        "channel": sealed["channel"],
        "sender": metadata.main_sender or None,  # as the report and the listing name it
        "senders": sealed["senders"],
        "subject": sealed["subject"],
        "rule": sealed["rule"],
        "original_sha256": metadata.payload_sha256,
        "original_bytes": metadata.payload_bytes,
    }


def _file_entry(entry: BundleFile, names: set[str]) -> dict[str, object]:
    """The manifest's record of one file, after checking its name and hash are usable."""
    parts = entry.name.split("/")
    if not all(_SAFE_PART.fullmatch(part) for part in parts):
        raise ValueError(f"{entry.name!r} is not a plain relative path inside the bundle")
    if entry.name in names:
        raise ValueError(f"{entry.name!r} is listed twice or is a name the bundle reserves")
    if not _HEX64.fullmatch(entry.sha256):
        raise ValueError(f"{entry.name}: sha256 is not lowercase hex")
    if entry.size < 0:
        raise ValueError(f"{entry.name}: negative size")
    names.add(entry.name)
    return {"name": entry.name, "sha256": entry.sha256, "size": entry.size, "role": entry.role}


def _dumps(data: Mapping[str, object]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
