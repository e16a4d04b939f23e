#!/usr/bin/env python3
"""Check a nocontact evidence bundle offline: signatures, Merkle proofs and file hashes.

This file ships in every bundle as verify.py. Run it inside the unzipped bundle
(`python3 verify.py`), or give the directory (`python3 verify.py BUNDLE_DIR`); with
`--key KEY`, the archive key must be exactly KEY (a copy obtained independently), and
with `--contact-key ed25519:...`, the exporting contact's custody key must be exactly it
(else compare the fingerprint printed with the one the contact gives you).

Rules this script keeps:
1. Standalone: the Python standard library (3.8 or later) and the `openssl` command
   (OpenSSL 3, for Ed25519) only. It imports nothing of nocontact and needs no key that
   opens anything: the examiner runs it on their own machine.
2. Every claim is recomputed, none is taken on trust: manifest.sig must be a C2SP signed
   note by the exporting contact's custody key (the manifest's `exporter`, printed with
   its fingerprint) that names the SHA-256 of manifest.json; the checkpoint must verify
   under the archive key and name its origin; each sealed file is hashed into its
   archive leaf (kind 1, its index) under the leaf rule of the archive's format version
   (rule 5) and proven into the checkpoint's tree with the RFC 9162 section 2.1.3.2
   algorithm, written out below; every listed file's SHA-256 and
   size are checked; a listed file that is missing, or a file the manifest does not list,
   is a problem. The items and the entries left out (`left_out`, each with why) must
   name every entry of the checkpoint's tree once. Every signed record in custody.json
   must verify under its contact's custody key (the same bytes the archive checks:
   a header line, then sorted compact JSON of contact, action, items, nonce and reason),
   and the export's own record must be there, signed by the exporter, naming the items.
3. Every problem is reported, one line each, then one verdict line; exit status 0 only
   when there is no problem at all. A manifest it cannot read ends the check early.
4. Every item, and every custody record the manifest proves (`witnessing.custody`), has
   a C2SP tlog-proof in proofs/ ("c2sp.org/tlog-proof@v1": index, inclusion hashes,
   then the checkpoint with its cosignatures). Each is read strictly and checked: its
   index is the entry's, its checkpoint verifies under the archive key and names the
   archive, its hashes lead from the leaf hash recomputed from the sealed file to that
   checkpoint's root, and every cosignature by a witness key in use verifies
   (cosignature/v1: Ed25519 over "cosignature/v1", the time, the checkpoint body). The
   keys in use are those given with --witness-key, else those the bundle lists; a
   cosignature by any other key is counted as unverified, never as checked. Items whose
   proof carries no cosignature are listed as not yet witnessed, as the manifest says.
5. What it cannot check is said in VERIFY.txt: that the originals are the decryption of
   the sealed entries rests on the custodian's declaration, and whether this script is
   itself unmodified must be checked against a copy from outside the bundle.
5. The leaf rule follows the manifest's `archive.format_version`: versions 1 and 2 hash
   the sealed file itself, SHA-256(0x00 || 0x01 || index || file); version 3 hashes its
   SHA-256, SHA-256(0x00 || 0x01 || index || SHA-256(file)). A bundle made before
   version 3 names no version and is read as version 2; any other version is a problem.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

PROOF_HEADER = b"c2sp.org/tlog-proof@v1"
COSIGNATURE_KIND = 4  # a witness's cosignature/v1 key (a log's own key is kind 1)
FORMAT = "nocontact-evidence-bundle"
VERSION = 1
ITEM_KIND = 1  # an archive entry of kind 1 is a held item
# The archive's format versions, and whether the leaf is over the file's SHA-256 (rule 5).
LEAF_OVER_DIGEST = {1: False, 2: False, 3: True}
UNNAMED_VERSION = 2  # what a bundle that names no archive format version was made from
SIGNATURE_HEADER = FORMAT + "/" + str(VERSION)
DASH = "\u2014 "  # a C2SP signature line starts with an em dash and a space
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
CUSTODY_HEADER = b"nocontact custody record v1\n"
CUSTODY_KEY_PREFIX = "ed25519:"
# Files a bundle carries that the manifest does not (or cannot) list.
UNLISTED = frozenset(
    ["manifest.json", "manifest.sig", "verify.py", "VERIFY.txt", "declaration-template.txt"]
)
# What file managers leave behind after unzipping; never evidence, never a problem.
LITTER = frozenset([".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX", "__pycache__"])
CHUNK = 1 << 20


class Unverifiable(Exception):
    """A signature that cannot be checked at all on this machine (no usable openssl)."""


@dataclass(frozen=True)
class Key:
    """A C2SP Ed25519 verifier key: name+keyid+base64(0x01 || public key)."""

    name: str
    key_id: bytes
    public: bytes
    text: str


def parse_key(text: str, kind: int = 1) -> Key:
    """The verifier key in `text` (of `kind`: 1 a log's Ed25519 key, 4 a witness's
    cosignature key); ValueError if it is not one, or its key id is wrong."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or not parts[0] or any(c.isspace() for c in parts[0]):
        raise ValueError("not name+keyid+base64")
    try:
        blob = base64.b64decode(parts[2], validate=True)
    except binascii.Error:
        raise ValueError("key is not base64") from None
    if len(blob) != 33 or blob[0] != kind:
        raise ValueError("not an Ed25519 key" if kind == 1 else "not a cosignature/v1 key")
    key_id = hashlib.sha256(parts[0].encode() + b"\n" + blob).digest()[:4]
    if key_id.hex() != parts[1].lower():
        raise ValueError("key id does not match the key")
    return Key(name=parts[0], key_id=key_id, public=blob[1:], text=text.strip())


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is `public`'s Ed25519 signature of `message` (by openssl)."""
    der = ED25519_SPKI_PREFIX + public
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n"
    pem += "-----END PUBLIC KEY-----\n"
    with tempfile.TemporaryDirectory() as scratch:
        paths = [os.path.join(scratch, name) for name in ("key.pem", "message", "signature")]
        for path, data in ((paths[0], pem.encode()), (paths[1], message), (paths[2], signature)):
            with open(path, "wb") as handle:
                handle.write(data)
        command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", paths[0], "-rawin",
                   "-in", paths[1], "-sigfile", paths[2]]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as error:
            raise Unverifiable("cannot run openssl (" + str(error) + ")") from None
    if done.returncode == 0 and "Verified Successfully" in done.stdout:
        return True
    if "Verification Failure" in done.stdout:
        return False
    detail = (done.stderr.strip().splitlines() or ["no output"])[0]
    raise Unverifiable("openssl cannot check Ed25519 signatures here (OpenSSL 3 is needed): "
                       + detail)  # fmt: skip


def open_note(key: Key, note: bytes) -> str:
    """The text of a C2SP signed note if `key` signed it; ValueError saying why not."""
    try:
        text = note.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    body, separator, signatures = text.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise ValueError("not a signed note (no signature block)")
    body += "\n"
    for line in signatures[:-1].split("\n"):
        if not line.startswith(DASH):
            raise ValueError("malformed signature line")
        name, _, encoded = line[len(DASH) :].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError("signature is not base64") from None
        if name == key.name and blob[:4] == key.key_id:
            if ed25519_verify(key.public, body.encode(), blob[4:]):
                return body
            raise ValueError("the signature by " + key.name + " does not verify")
    raise ValueError("not signed by " + key.name)


def signature_lines(note: bytes) -> list[tuple[str, bytes]]:
    """(key name, base64-decoded signature) of each signature line of a signed note."""
    text = note.decode("utf-8")
    _, separator, block = text.rpartition("\n\n")
    if not separator or not block.endswith("\n"):
        raise ValueError("not a signed note (no signature block)")
    found = []
    for line in block[:-1].split("\n"):
        name, _, encoded = line[len(DASH) :].partition(" ")
        if not line.startswith(DASH) or not name:
            raise ValueError("malformed signature line")
        try:
            found.append((name, base64.b64decode(encoded, validate=True)))
        except binascii.Error:
            raise ValueError("signature is not base64") from None
    return found


def cosigned_at(key: Key, blob: bytes, body: str) -> int | None:
    """The time `key`'s cosignature/v1 `blob` (key id, time, signature) states over the
    checkpoint `body`, or None if it does not verify."""
    if len(blob) != 4 + 8 + 64:
        return None
    timestamp = int.from_bytes(blob[4:12], "big")
    message = ("cosignature/v1\ntime " + str(timestamp) + "\n" + body).encode()
    return timestamp if ed25519_verify(key.public, message, blob[12:]) else None


def parse_tlog_proof(data: bytes) -> tuple[int, list[bytes], bytes]:
    """(index, inclusion hashes, checkpoint note) of a C2SP tlog-proof; ValueError if not
    one. The optional "extra" line is unauthenticated and not used."""
    head, blank, note = data.partition(b"\n\n")
    lines = head.split(b"\n")
    if not blank or lines[0] != PROOF_HEADER:
        raise ValueError("not a c2sp.org/tlog-proof@v1")
    rest = lines[1:]
    if rest and rest[0].startswith(b"extra "):
        rest = rest[1:]
    if not rest or not rest[0].startswith(b"index "):
        raise ValueError("no index line")
    digits = rest[0][len(b"index ") :]
    if not digits.isdigit() or len(digits) > 19 or (digits[:1] == b"0" and digits != b"0"):
        raise ValueError("the index is not a decimal number")
    hashes = []
    for line in rest[1:]:
        try:
            node = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise ValueError("a proof hash is not base64") from None
        if len(node) != 32:
            raise ValueError("a proof hash is not a SHA-256 hash")
        hashes.append(node)
    if not note.endswith(b"\n"):
        raise ValueError("the checkpoint is cut short")
    return int(digits), hashes, note


def custody_public(line: str) -> bytes:
    """The 32-byte key of a custody key line, "ed25519:<base64>"; ValueError if not one."""
    if not line.startswith(CUSTODY_KEY_PREFIX):
        raise ValueError("not a custody key")
    try:
        raw = base64.b64decode(line[len(CUSTODY_KEY_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("custody key is not base64") from None
    if len(raw) != 32:
        raise ValueError("custody key is not 32 bytes")
    return raw


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    """(origin, tree size, root hash) of a C2SP tlog-checkpoint text."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "" or not lines[1].isdigit():
        raise ValueError("not a checkpoint (origin, size, root)")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except binascii.Error:
        raise ValueError("checkpoint root is not base64") from None
    if len(root) != 32:
        raise ValueError("checkpoint root is not a SHA-256 hash")
    return lines[0], int(lines[1]), root


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_root(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root `proof` leads to from leaf `index` of `size`, or None."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


class Check:
    """One run over one bundle: the problems found, and what was established."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.problems: list[str] = []
        self.listed: set[str] = set()
        self.bates: set[str] = set()
        self.leaves: set[int] = set()
        self.key: Key | None = None
        self.size = -1
        self.root: bytes | None = None
        self.witness_keys: list[Key] = []
        self.anchors: dict[bytes, Any] = {}  # checkpoint note -> (size, root, cosigners)
        self.cosigned: dict[str, list[int]] = {}  # witness -> [proofs, latest time]
        self.unverified: set[str] = set()
        self.not_witnessed: list[str] = []
        self.proofs = 0
        self.proven: set[str] = set()  # entries whose tlog-proof checked out
        self.unverifiable = False
        self.over_digest = False  # the leaf rule (rule 5), set from the manifest

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print("problem: " + text)

    def path(self, name: object) -> str | None:
        """The local path of a listed file, once; None (and a problem) if it is unsafe."""
        parts = name.split("/") if isinstance(name, str) else [""]
        if any(part in ("", ".", "..") or "\\" in part for part in parts):
            self.problem("the manifest names an unsafe path: " + repr(name))
            return None
        if name in self.listed:
            self.problem(str(name) + ": listed twice in the manifest")
            return None
        self.listed.add(str(name))
        return os.path.join(self.directory, *parts)

    def file(
        self, entry: Any, leaf_index: int | None = None, kind: int = ITEM_KIND
    ) -> bytes | None:
        """Check one listed file's hash and size; with `leaf_index`, return its leaf hash
        (an entry of `kind`: a held item unless said)."""
        path = self.path(entry["name"])
        if path is None:
            return None
        name = entry["name"]
        if not os.path.isfile(path):
            self.problem(name + ": listed in the manifest but missing from the bundle")
            return None
        digest, leaf, size = hashlib.sha256(), hashlib.sha256(), 0
        if leaf_index is not None:
            leaf.update(b"\x00" + bytes([kind]) + leaf_index.to_bytes(8, "big"))
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(CHUNK), b""):
                digest.update(chunk)
                if not self.over_digest:
                    leaf.update(chunk)
                size += len(chunk)
        if self.over_digest:
            leaf.update(digest.digest())
        if digest.hexdigest() != entry["sha256"]:
            self.problem(name + ": SHA-256 does not match the manifest (file altered)")
        if size != entry["size"]:
            self.problem(name + ": " + str(size) + " bytes, the manifest says "
                         + str(entry["size"]))  # fmt: skip
        return leaf.digest() if leaf_index is not None else None

    def leaf_rule(self, manifest: dict[str, Any]) -> bool:
        """The archive's leaf rule, from its format version (rule 5); False if unknown."""
        archive = manifest.get("archive")
        version = UNNAMED_VERSION  # a malformed archive section is reported with the signatures
        if isinstance(archive, dict):
            version = archive.get("format_version", UNNAMED_VERSION)
        if type(version) is not int or version not in LEAF_OVER_DIGEST:
            self.problem("archive format version " + repr(version) + " is not one this "
                         "verifier knows (1, 2 or 3): use a newer verify.py")  # fmt: skip
            return False
        self.over_digest = LEAF_OVER_DIGEST[version]
        print("archive format:   version " + str(version) + ", leaf over the sealed file's "
              + ("SHA-256" if self.over_digest else "bytes"))  # fmt: skip
        return True

    def signatures(
        self, manifest: dict[str, Any], manifest_bytes: bytes, pinned: str, contact: str
    ) -> None:
        """The exporter's key and manifest.sig; the archive key and the checkpoint."""
        exporter = manifest["exporter"]
        note_key = parse_key(exporter["note_key"])
        custody_key = exporter["custody_key"]
        print("exported by:      contact " + str(exporter["fingerprint"]))
        print("their custody key: " + custody_key)
        print("its fingerprint:  " + hashlib.sha256(custody_key.strip().encode()).hexdigest()[:16]
              + " (compare it with the one the contact gives you)")  # fmt: skip
        if custody_public(custody_key) != note_key.public:
            self.problem("the exporter's note key is not their custody key")
        if contact and contact.strip() != custody_key.strip():
            self.problem("the exporter's custody key is not the key given with --contact-key")
        archive = manifest["archive"]
        self.key = parse_key(archive["verifier_key"])
        print("archive key:      " + self.key.text)
        print("archive key id:   " + self.key.key_id.hex())
        if pinned and pinned.strip() != self.key.text:
            self.problem("the archive key is not the key given with --key")
        expected = SIGNATURE_HEADER + "\n" + hashlib.sha256(manifest_bytes).hexdigest() + "\n"
        try:
            with open(os.path.join(self.directory, "manifest.sig"), "rb") as handle:
                if open_note(note_key, handle.read()) != expected:
                    self.problem("manifest.sig is signed but names another manifest.json")
        except FileNotFoundError:
            self.problem("manifest.sig: missing from the bundle")
        except (OSError, ValueError) as error:
            self.problem("manifest.sig: " + str(error))
        try:
            origin, size, root = parse_checkpoint(
                open_note(self.key, archive["checkpoint"].encode("utf-8"))
            )
        except ValueError as error:
            self.problem("checkpoint: " + str(error))
            return
        if origin != self.key.name or origin != archive["origin"]:
            self.problem("checkpoint: it names the log " + origin + ", not the archive's")
        elif size != archive["tree_size"] or root.hex() != archive["root_hash"]:
            self.problem("checkpoint: tree size or root differ from the manifest's")
        else:
            self.size, self.root = size, root

    def item(self, item: Any) -> None:
        """One held item: its sealed entry is in the signed tree; its files are intact."""
        bates, index = item["bates"], item["leaf_index"]
        if not isinstance(bates, str) or not isinstance(index, int) or bates in self.bates:
            self.problem("item " + repr(bates) + ": Bates number missing or used twice")
            return
        if index in self.leaves:
            self.problem(bates + ": archive entry " + str(index) + " is listed twice")
        self.bates.add(bates)
        self.leaves.add(index)
        leaf = self.file(item["sealed"], index)
        stated = bytes.fromhex(item["leaf_hash"])
        if leaf is not None and leaf != stated:
            self.problem(bates + ": the sealed file does not hash to the manifest's leaf hash")
        if self.root is not None:
            proof = [bytes.fromhex(node) for node in item["inclusion_proof"]]
            if inclusion_root(stated, index, self.size, proof) != self.root:
                self.problem(bates + ": the inclusion proof does not lead to the checkpoint")
        for entry in item["files"]:
            self.file(entry)
        cosigners = self.tlog_proof(bates, item.get("tlog_proof"), index, leaf or stated)
        if cosigners is not None and not cosigners:
            self.not_witnessed.append(bates)

    def witnesses(self, manifest: dict[str, Any], given: list[str]) -> None:
        """The witness keys cosignatures are checked with: --witness-key, else the
        bundle's; the witnesses the bundle lists without a key are named unverified."""
        listed = manifest["witnessing"]["witnesses"]
        if given:
            self.witness_keys = [parse_key(text, COSIGNATURE_KIND) for text in given]
            source = "given with --witness-key"
        else:
            self.witness_keys = [
                parse_key(w["key"], COSIGNATURE_KIND) for w in listed if w.get("key")
            ]
            source = "listed in the bundle: compare it with the witness's own"
        for key in self.witness_keys:
            print("witness key:      " + key.text + " (" + source + ")")
        for witness in listed:
            if not witness.get("key"):
                print("witness:          " + str(witness["name"]) + " (key id "
                      + str(witness["key_id"]) + "): unverified: key not given")  # fmt: skip

    def anchor(self, note: bytes) -> Any:
        """(size, root, cosigners) of a proof's checkpoint, checked once per checkpoint;
        ValueError saying why it does not verify."""
        if note in self.anchors:
            return self.anchors[note]
        if self.key is None:
            raise ValueError("the archive key is unknown")
        body = open_note(self.key, note)
        origin, size, root = parse_checkpoint(body)
        if origin != self.key.name:
            raise ValueError("its checkpoint names the log " + origin + ", not the archive's")
        cosigners = []
        for name, blob in signature_lines(note):
            if name == self.key.name and blob[:4] == self.key.key_id:
                continue
            keys = [k for k in self.witness_keys if k.name == name and k.key_id == blob[:4]]
            if not keys:
                self.unverified.add(name)
            elif cosigned_at(keys[0], blob, body) is None:
                raise ValueError("the cosignature by " + name + " does not verify")
            else:
                tally = self.cosigned.setdefault(name, [0, 0])
                tally[1] = max(tally[1], int.from_bytes(blob[4:12], "big"))
            cosigners.append(name)
        self.anchors[note] = (size, root, cosigners)
        return self.anchors[note]

    def tlog_proof(self, label: str, entry: Any, index: int, leaf: bytes) -> list[str] | None:
        """Check one entry's tlog-proof file; the witnesses cosigning its checkpoint, or
        None (and a problem) if it does not prove the entry."""
        if not isinstance(entry, dict):
            self.problem(label + ": no tlog-proof in the manifest")
            return None
        self.file(entry)
        name = str(entry["name"])
        try:
            with open(os.path.join(self.directory, *name.split("/")), "rb") as handle:
                proven, hashes, note = parse_tlog_proof(handle.read(1 << 20))
            if proven != index:
                raise ValueError("it proves entry " + str(proven) + ", not " + str(index))
            size, root, cosigners = self.anchor(note)
        except OSError:
            return None  # missing: already a problem (file)
        except Unverifiable as error:
            if not self.unverifiable:  # one line: no signature can be checked here
                self.problem("tlog-proofs cannot be checked: " + str(error))
            self.unverifiable = True
            return None
        except (ValueError, UnicodeDecodeError) as error:
            self.problem(label + ": " + name + ": " + str(error))
            return None
        if inclusion_root(leaf, index, size, hashes) != root:
            self.problem(label + ": " + name + ": the inclusion hashes do not lead to its"
                         " checkpoint (proof altered)")  # fmt: skip
            return None
        self.proofs += 1
        self.proven.add(label)
        for witness in cosigners:
            if witness in self.cosigned:
                self.cosigned[witness][0] += 1
        return list(cosigners)

    def custody_proofs(self, manifest: dict[str, Any]) -> None:
        """Each custody record the manifest proves: its stored entry is in the log."""
        seen: set[int] = set()
        for record in manifest["witnessing"]["custody"]:
            sequence, kind = record["sequence"], record["kind"]
            label = "custody record " + str(sequence)
            if not isinstance(sequence, int) or sequence in seen or kind not in (1, 2):
                self.problem(label + ": listed twice or malformed in the manifest")
                continue
            seen.add(sequence)
            leaf = self.file(record["sealed"], sequence, kind)
            stated = bytes.fromhex(record["leaf_hash"])
            if leaf is not None and leaf != stated:
                self.problem(label + ": the sealed file does not hash to its leaf hash")
            self.tlog_proof(label, record["tlog_proof"], sequence, leaf or stated)
        print("custody proofs:   " + str(len(seen)) + " records proven in the log; "
              + str(len(manifest["witnessing"]["custody_not_proven"]))
              + " written after its latest checkpoint (this export's own, at least)")  # fmt: skip

    def witnessed(self, manifest: dict[str, Any]) -> None:
        """What the proofs' cosignatures show, and the items not yet witnessed."""
        for name, (count, latest) in sorted(self.cosigned.items()):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(latest))
            print("cosigned by:      " + name + ": " + str(count) + " proofs checked, latest"
                  " cosignature " + stamp)  # fmt: skip
        for name in sorted(self.unverified):
            print("cosigned by:      " + name + ": unverified (no key for it)")
        shown = ", ".join(self.not_witnessed[:20])
        more = len(self.not_witnessed) - 20
        print("not yet witnessed: " + (shown or "none")
              + (" and " + str(more) + " more" if more > 0 else ""))  # fmt: skip
        stated = [b for b in manifest["witnessing"]["not_witnessed"] if b in self.proven]
        if sorted(self.not_witnessed) != sorted(stated):
            self.problem("the manifest's list of items not yet witnessed is not what the"
                         " proofs show")  # fmt: skip

    def accounts(self, manifest: dict[str, Any]) -> None:
        """What was left out, and the custody records."""
        try:
            self.left_out(manifest)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            self.problem("the manifest's selection or left_out is malformed: " + repr(error))
        try:
            self.custody(manifest)
        except Unverifiable as error:
            self.problem("custody signatures cannot be checked: " + str(error))
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
            self.problem("custody.json is malformed: " + repr(error))

    def left_out(self, manifest: dict[str, Any]) -> None:
        """Every entry of the tree is an item of the bundle or left out, with why."""
        whys: dict[str, int] = {}
        indices = sorted(self.leaves)
        for entry in manifest["left_out"]:
            indices.append(entry["leaf_index"])
            whys[str(entry["why"])] = whys.get(str(entry["why"]), 0) + 1
        print("selection:        " + json.dumps(manifest["selection"], sort_keys=True))
        summary = ", ".join(str(n) + " " + why for why, n in sorted(whys.items()))
        print("left out:         " + (summary or "nothing"))
        if self.size >= 0 and sorted(indices) != list(range(self.size)):
            self.problem("the items and the entries left out do not name each entry once")

    def custody(self, manifest: dict[str, Any]) -> None:
        """custody.json: every signed record verifies; the export's own record is there."""
        names = [f["name"] for f in manifest["other_files"] if f.get("role") == "custody"]
        if len(names) != 1:
            self.problem("the manifest lists no custody.json")
            return
        with open(os.path.join(self.directory, *names[0].split("/")), "rb") as handle:
            custody = json.loads(handle.read().decode("utf-8"))
        keys, unsigned, own = custody["custody_keys"], 0, None
        for entry in custody["entries"]:
            if not entry.get("signature"):
                unsigned += 1
                continue
            body = {k: entry[k] for k in ("action", "contact", "items", "nonce", "reason")}
            message = CUSTODY_HEADER + json.dumps(body, sort_keys=True,
                                                  separators=(",", ":")).encode()  # fmt: skip
            key = keys.get(entry["contact"])
            if key is None or not ed25519_verify(
                custody_public(key), message, base64.b64decode(entry["signature"])
            ):
                self.problem("custody record " + str(entry["sequence"]) + ": its signature "
                             "does not verify under its contact's custody key")  # fmt: skip
            elif entry["sequence"] == manifest["export_custody_entry"]:
                own = entry
        print("custody records:  " + str(len(custody["entries"])) + " (" + str(unsigned)
              + " unsigned, from an older version)")  # fmt: skip
        exporter = manifest["exporter"]
        if (
            own is None
            or own["action"] != "export"
            or own["contact"] != exporter["fingerprint"]
            or keys.get(own["contact"]) != exporter["custody_key"]
            or sorted(own["items"]) != sorted(self.leaves)
        ):
            self.problem("custody.json lacks this export's own signed record")

    def unlisted(self) -> None:
        """Files in the bundle that the manifest does not list."""
        known = self.listed | UNLISTED
        for top, folders, files in os.walk(self.directory):
            folders[:] = sorted(f for f in folders if f not in LITTER)
            for name in sorted(files):
                local = os.path.relpath(os.path.join(top, name), self.directory)
                relative = local.replace(os.sep, "/")
                if relative not in known and name not in LITTER:
                    self.problem(relative + ": in the bundle but not in the manifest")


def _read_manifest(check: Check, directory: str) -> tuple[dict[str, Any], bytes] | None:
    """manifest.json, if it is a bundle manifest this verifier reads (else a problem)."""
    try:
        with open(os.path.join(directory, "manifest.json"), "rb") as handle:
            manifest_bytes = handle.read()
        manifest = json.loads(manifest_bytes.decode("utf-8"))
    except (OSError, ValueError) as error:
        check.problem("manifest.json cannot be read: " + str(error))
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        check.problem("manifest.json is not a nocontact evidence bundle manifest")
        return None
    if manifest.get("version") != VERSION:
        check.problem("manifest version " + repr(manifest.get("version")) + " is not 1")
        return None
    return manifest, manifest_bytes


def check_bundle(
    directory: str, pinned: str = "", contact: str = "", witness_keys: list[str] | None = None
) -> tuple[Check, dict[str, Any] | None]:
    """Run every check on the bundle in `directory`; problems are printed as found."""
    check = Check(directory)
    read = _read_manifest(check, directory)
    if read is None:
        return check, None
    manifest, manifest_bytes = read
    print("manifest SHA-256: " + hashlib.sha256(manifest_bytes).hexdigest())
    if not check.leaf_rule(manifest):
        return check, None
    try:
        check.signatures(manifest, manifest_bytes, pinned, contact)
    except Unverifiable as error:
        check.problem("signatures cannot be checked: " + str(error))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        check.problem("the manifest's archive section is malformed: " + repr(error))
    try:
        check.witnesses(manifest, witness_keys or [])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        check.problem("a witness key cannot be read: " + repr(error))
    items = manifest.get("items")
    if not isinstance(items, list) or manifest.get("item_count") != len(items):
        check.problem("the manifest's item list is malformed or its count is wrong")
        items = []
    for number, item in enumerate(items, start=1):
        try:
            check.item(item)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            check.problem("item #" + str(number) + " of the manifest is malformed: " + repr(error))
    for entry in manifest.get("other_files") or []:
        try:
            check.file(entry)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            check.problem("a file entry of the manifest is malformed: " + repr(error))
    try:
        check.custody_proofs(manifest)
        check.witnessed(manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        check.problem("the manifest's witnessing section is malformed: " + repr(error))
    check.accounts(manifest)
    check.unlisted()
    return check, manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a nocontact evidence bundle offline.")
    parser.add_argument("directory", nargs="?", default=".", help="the unzipped bundle")
    parser.add_argument("--key", default="", help="the archive key you expect (signing.pub)")
    parser.add_argument(
        "--contact-key",
        default="",
        help="the exporting contact's custody key you expect (ed25519:...)",
    )
    parser.add_argument(
        "--witness-key",
        action="append",
        default=[],
        help="a witness's key you expect (name+keyid+base64); repeatable. Given, only these"
        " keys check cosignatures, not the ones the bundle lists",
    )
    arguments = parser.parse_args(argv)
    check, manifest = check_bundle(
        arguments.directory, arguments.key, arguments.contact_key, arguments.witness_key
    )
    if check.problems or manifest is None or check.key is None or check.root is None:
        count = max(1, len(check.problems))
        print("bundle FAILED: " + str(count) + " problem" + ("s" if count != 1 else ""))
        return 1
    print("bundle OK: " + str(len(manifest["items"])) + " items verified against checkpoint"
          " of size " + str(check.size) + ", root " + check.root.hex() + ", key "
          + check.key.text + "; " + str(check.proofs) + " tlog-proofs checked, "
          + str(len(check.not_witnessed)) + " items not yet witnessed; "
          + str(len(manifest["left_out"])) + " entries left out"
          " (see above); exported by contact "
          + str(manifest["exporter"]["fingerprint"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
