"""The evidence bundle: one zip a court, the police or an examiner can check on their own.

Rules this module keeps:
1. Contents: originals/ (each item byte for byte, named by its Bates number), sealed/
   (each item's stored archive entry, whose leaf hash the inclusion proof covers),
   manifest.json + manifest.sig (signed by the exporting contact's custody key, which the
   manifest carries; the archive's own signing key is never needed), custody.json (every
   custody record this key opens, the export's own included, each with its signature
   and whether it verifies, and the custody keys they are checked against), report.pdf,
   proofs/ (a tlog-proof per item and custody record: rule 5), verify.py + VERIFY.txt,
   declaration-template.txt. The manifest records the selection
   and why every entry of the log it does not list was left out.
2. It certifies only what verifies: the archive is verified before anything is read, and
   every inclusion proof is checked against the signed checkpoint before it is written.
3. One item at a time: originals stream into the zip as they are decrypted and are let
   go. What grows with the item count is the report: its capped renderings, and the PDF,
   whose library keeps every page until it writes the file (~60 KiB per item in all;
   10,000 items peak near 800 MiB, bench/export.py).
4. The zip is written beside `out` under a temporary name and moved into place only after
   the custody record of the export is durable: no bundle leaves without its record. An
   export records it once its items are written and before its custody.json and
   manifest, which then include it (read back and checked: recording.py rule 2).
   A streamed export (`stream_export`, the portal's) cannot wait: its items are fixed
   first from an index of the log, the record made, and only then is its first byte
   written; the bundle is the same either way (one `write_bundle`).
5. Every item, and every custody record a signed checkpoint covers, carries a C2SP
   tlog-proof (`proofs/`, witnessing.py) ending in the checkpoint with the most witness
   cosignatures that covers it; a custody record's stored entry goes in `sealed/` so
   its leaf hash can be recomputed. Witness keys come from the request (config
   `witnesses:` or `--witness-key`); without any, the cosigners are listed unverified.
6. The report beside the items (the bundle's report.pdf, or `report` alone) shows the
   relays and replies of the whole custody log this key opens, however the items were
   selected (`compliance.read_answers`; report.py rules 6 and 7): a relay is counted
   and shown only with the item it names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from proxy import __version__
from proxy.access import bundle_texts
from proxy.access.compliance import Answer, read_answers
from proxy.access.keys import custody_public_key, custody_signing_key
from proxy.access.manifest import (
    BundleFile,
    BundleItem,
    CustodyProof,
    Witnessing,
    build_manifest,
    sign_manifest,
)
from proxy.access.reading import AccessProblem, CustodyEntry, HeldItem, OpenedArchive, Selection
from proxy.access.recording import record
from proxy.access.render import original_files, render, summary, urgency
from proxy.access.report import ReportItem, summarize, write_report
from proxy.access.timeline import timeline_png
from proxy.access.viewing import Contents, Planned
from proxy.access.witnessing import Anchors, anchors
from proxy.alerts.order_mark import abusive, urgent_logistics
from proxy.archive.metadata import SealedCustody
from proxy.archive.note import Signer
from proxy.disk import create_private
from proxy.witness.cosignature import CosignatureError, WitnessKey

_COMPRESSIBLE = {".eml", ".json", ".txt", ".pdf"}  # compressible; everything else is stored as is
MAX_RENDERING = 20_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRequest:
    out: Path
    reason: str
    contact: str  # the exporting contact's key fingerprint
    selection: Selection
    no_contact_since: date | None = None
    config_sha256: str | None = None
    timezone: tzinfo | None = None
    witness_keys: tuple[str, ...] = ()  # verifier keys of the witnesses (rule 5)


def bates(number: int) -> str:
    return f"NC-{number:06d}"


def report_item(label: str, item: HeldItem) -> ReportItem:
    rendering = render(item.metadata, item.payload)
    if len(rendering) > MAX_RENDERING:
        rendering = rendering[:MAX_RENDERING] + "\n[rendering shortened; the original is complete]"
    return ReportItem(
        bates=label, received_at=item.received_at, channel=item.channel, sender=item.sender,
        person=item.person, rule=item.rule_id, summary=summary(item.metadata, item.payload),
        sha256=item.metadata.payload_sha256 or "", rendering=rendering,
        tier=item.metadata.assessment.tier.label, urgency=urgency(item.metadata.assessment),
        order=item.metadata.order, abusive=abusive(item.metadata.assessment),
        urgent_logistics=urgent_logistics(item.metadata.assessment),
        leaf_hash=item.leaf_hash.hex(),
    )  # fmt: skip


def _signer(archive: OpenedArchive, contact: str) -> Signer:
    """The exporting contact's custody key, as the signer of the manifest's note."""
    return Signer(f"nocontact.contact/{contact}", custody_signing_key(archive.identity))


class _Zip:
    """A zip being written, recording each file's SHA-256 and size."""

    def __init__(self, file: BinaryIO | io.RawIOBase) -> None:
        self.file = zipfile.ZipFile(file, "w", allowZip64=True)

    def add(self, name: str, data: bytes, role: str) -> BundleFile:
        compress = (
            zipfile.ZIP_DEFLATED if Path(name).suffix in _COMPRESSIBLE else zipfile.ZIP_STORED
        )
        self.file.writestr(name, data, compress_type=compress, compresslevel=6)
        return BundleFile(name=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                          role=role)  # fmt: skip


def export(archive: OpenedArchive, request: ExportRequest, advance: Callable[[int], None]) -> int:
    """Write the bundle; returns the number of items in it."""

    def write(partial: BinaryIO) -> tuple[int, ...]:
        def contents(sequences: tuple[int, ...]) -> Contents:
            custody = archive.custody()
            own = record(archive.root, archive.identity, action="export", items=sequences,
                         reason=request.reason)  # fmt: skip
            custody.append(CustodyEntry.of(own.index, own.record, archive.custody_keys()))
            return Contents(left_out=list(archive.left_out), custody=custody, own=own.index)

        items = archive.items(request.selection)
        return write_bundle(archive, request, partial, items=items, advance=advance,
                            contents=contents)  # fmt: skip

    return _deliver(archive, request, None, write)


def stream_export(
    archive: OpenedArchive, request: ExportRequest, planned: Planned, file: io.RawIOBase,
    advance: Callable[[int], None],
) -> int:  # fmt: skip
    """Write the bundle of `planned` (custody already recorded: rule 4) to `file`, which
    may be a stream that cannot seek; returns the number of items."""

    def items() -> Iterator[HeldItem]:
        for sequence in planned.sequences:
            item = archive.item(sequence)
            if item is None:
                raise AccessProblem(f"entry {sequence} is no longer an item this key opens")
            yield item

    write_bundle(archive, request, file, items=items(), advance=advance,
                 contents=lambda _: planned.contents)  # fmt: skip
    return len(planned.sequences)


def report(archive: OpenedArchive, request: ExportRequest, advance: Callable[[int], None]) -> int:
    """Write the pattern report alone (PDF); returns the number of items in it."""
    reports, sequences = [], []
    for number, item in enumerate(archive.items(request.selection), 1):
        reports.append(report_item(bates(number), item))
        sequences.append(item.sequence)
        advance(1)

    answers = read_answers(record for _, record in archive.custody_read)  # the whole log's

    def write(partial: BinaryIO) -> tuple[int, ...]:
        partial.write(_pdf(reports, request, answers))
        return tuple(sequences)

    return _deliver(archive, request, "report", write)


def timeline(archive: OpenedArchive, request: ExportRequest) -> bytes | None:
    """The report's timeline chart alone (PNG; None without items), custody ("report")
    recorded first. `request.out` is not written."""
    reports, sequences = [], []
    for item in archive.items(request.selection):
        reports.append(ReportItem(
            bates="", received_at=item.received_at, channel=item.channel, sender=item.sender,
            person=item.person, rule=item.rule_id, summary="", sha256="", rendering="",
            tier=item.metadata.assessment.tier.label,
        ))  # fmt: skip
        sequences.append(item.sequence)
    record(archive.root, archive.identity, action="report", items=sequences,
           reason=request.reason)  # fmt: skip
    counted = summarize(reports, no_contact_since=request.no_contact_since,
                        tz=request.timezone or UTC)  # fmt: skip
    return timeline_png(counted.per_day, since=counted.since)


def _deliver(
    archive: OpenedArchive, request: ExportRequest, action: str | None,
    write: Callable[[BinaryIO], tuple[int, ...]],
) -> int:  # fmt: skip
    """Write beside `out`, record custody (unless `write` did: `action` None), then move
    into place (rule 4). The file is the
    contact's alone from its creation (0600: it holds decrypted originals); an `out` that
    is a symlink, or a `.partial` already there (another export, or one cut short), is
    refused rather than followed or written over."""
    partial = request.out.with_name(request.out.name + ".partial")
    if request.out.is_symlink():
        raise AccessProblem(f"{request.out} is a symlink: give the export a plain file name")
    try:
        fd = create_private(partial)
    except FileExistsError:
        raise AccessProblem(
            f"{partial} already exists: another export is writing it, or one was cut short"
            " (remove it, then export again)"
        ) from None
    except OSError as error:
        raise AccessProblem(f"cannot create {partial}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            sequences = write(file)
            file.flush()
            os.fsync(file.fileno())
        if action is not None:
            record(archive.root, archive.identity, action=action, items=sequences,
                   reason=request.reason)  # fmt: skip
        os.replace(partial, request.out)
    finally:
        partial.unlink(missing_ok=True)
    return len(sequences)


def write_bundle(
    archive: OpenedArchive, request: ExportRequest, file: BinaryIO | io.RawIOBase, *,
    items: Iterable[HeldItem], advance: Callable[[int], None],
    contents: Callable[[tuple[int, ...]], Contents],
) -> tuple[int, ...]:  # fmt: skip
    """Write the zip: `items` one at a time, then what `contents` gives for their
    sequence numbers (custody recorded by then), the report and the signed manifest."""
    signer = _signer(archive, request.contact)
    out = _Zip(file)
    bundled: list[BundleItem] = []
    reports: list[ReportItem] = []
    tree, size = archive.report.tree, archive.covered
    anchored = anchors(archive.root, archive.report, _witness_keys(request))
    with out.file:
        for number, item in enumerate(items, 1):
            label = bates(number)
            files = [
                out.add(f"originals/{name}", data, "original" if i == 0 else "media")
                for i, (name, data) in enumerate(original_files(label, item.metadata, item.payload))
            ]
            sealed = out.add(f"sealed/{label}.age", item.sealed, "sealed")
            proven = anchored.prove(item.sequence, item.leaf_hash)
            proof = out.add(f"proofs/{label}.tlog-proof", proven.text, "tlog-proof")
            bundled.append(BundleItem(bates=label, leaf_index=item.sequence, sealed=sealed,
                                      leaf_hash=item.leaf_hash, metadata=item.metadata,
                                      files=files, tlog_proof=proof,
                                      witnessed_by=proven.cosigners))  # fmt: skip
            reports.append(report_item(label, item))
            advance(1)
        sequences = tuple(item.leaf_index for item in bundled)
        held = contents(sequences)
        keys = archive.custody_keys()
        witnessing = _custody_proofs(archive, anchored, held.custody, out)
        others = [out.add("custody.json", _custody_json(held.custody, keys), "custody")]
        pdf = _pdf(reports, request, read_answers(map(_sealed, held.custody)))
        others.append(out.add("report.pdf", pdf, "report"))
        created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        proofs = {i.leaf_index: tree.inclusion_proof(i.leaf_index, size) for i in bundled}
        manifest = build_manifest(
            items=bundled, proofs=proofs, checkpoint=archive.report.note,
            verifier_key=archive.report.verifier.encode(),
            archive_version=archive.report.version, other_files=others,
            software=f"nocontact {__version__}", created_at=created,
            config_sha256=request.config_sha256, exported_by=request.contact,
            exporter_key=signer.verifier.encode(),
            custody_key=custody_public_key(archive.identity), reason=request.reason,
            selection=request.selection.to_json(), left_out=held.left_out,
            custody_index=held.own, witnessing=witnessing,
        )  # fmt: skip
        out.add("manifest.json", manifest, "manifest")
        out.add("manifest.sig", sign_manifest(manifest, signer), "signature")
        verifier = resources.files("proxy.access").joinpath("verify_bundle.py").read_bytes()
        out.add("verify.py", verifier, "verifier")
        out.add(bundle_texts.VERIFY_NAME, bundle_texts.VERIFY_TEXT.encode(), "instructions")
        declaration = bundle_texts.fill_declaration(
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            verifier_key=archive.report.verifier.encode(), item_count=len(bundled),
            created_at=created,
        )  # fmt: skip
        out.add(bundle_texts.DECLARATION_NAME, declaration.encode(), "declaration")
    return sequences


def _witness_keys(request: ExportRequest) -> list[WitnessKey]:
    try:
        return [WitnessKey.decode(text) for text in request.witness_keys]
    except CosignatureError as error:
        raise AccessProblem(f"a witness key: {error}") from None


def _custody_proofs(
    archive: OpenedArchive, anchored: Anchors, custody: list[CustodyEntry], out: _Zip
) -> Witnessing:
    """Each custody record under a signed checkpoint: its stored entry and its tlog-proof;
    the others (this export's own, at least) named as not proven yet (rule 5)."""
    proofs, later = [], []
    for entry in custody:
        stored = archive.stored(entry.sequence)
        if stored is None:
            later.append(entry.sequence)
            continue
        name = f"custody-{entry.sequence:06d}"
        sealed = out.add(f"sealed/{name}.age", stored.body, "sealed custody")
        proven = anchored.prove(entry.sequence, stored.leaf_hash)
        proof = out.add(f"proofs/{name}.tlog-proof", proven.text, "tlog-proof")
        proofs.append(CustodyProof(sequence=entry.sequence, kind=int(stored.kind),
                                   leaf_hash=stored.leaf_hash, sealed=sealed, tlog_proof=proof,
                                   witnessed_by=proven.cosigners))  # fmt: skip
    return Witnessing(witnesses=[w.to_json() for w in anchored.witnesses], custody=proofs,
                      custody_not_proven=later)  # fmt: skip


def _custody_json(entries: list[CustodyEntry], keys: dict[str, str]) -> bytes:
    """custody.json: the records, and the custody keys their signatures are checked against
    (what the offline verify.py checks them with)."""
    return _json({"custody_keys": keys,
                  "entries": [dataclasses.asdict(entry) for entry in entries]})  # fmt: skip


def _sealed(entry: CustodyEntry) -> SealedCustody:
    """A custody record as the log holds it, from its listing (for `read_answers`)."""
    at = None
    with contextlib.suppress(ValueError):  # no time: not an answer (compliance.py rule 4)
        at = datetime.fromisoformat(entry.at.replace("Z", "+00:00"))
    return SealedCustody(contact=entry.contact, action=entry.action, items=entry.items, at=at,
                         reason=entry.reason)  # fmt: skip


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2, ensure_ascii=False, default=list).encode() + b"\n"


def _pdf(reports: list[ReportItem], request: ExportRequest, answers: tuple[Answer, ...]) -> bytes:
    buffer = io.BytesIO()
    write_report(buffer, items=reports, title="nocontact: record of contact attempts",
                 generated_at=datetime.now(UTC), no_contact_since=request.no_contact_since,
                 timezone=request.timezone, answers=answers)  # fmt: skip
    return buffer.getvalue()
