"""The portal's evidence pages through aiohttp's test client: export (reason required,
CSRF, a bundle whose verify.py passes), the report PDF and timeline chart, and an item's
attachments as safely named downloads, each with custody recorded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from proxy.archive import layout
from proxy.config.model import Witness
from proxy.portal import evidence
from proxy.portal import web as portal_web
from proxy.witness.cosignature import Cosigner
from proxy.witness.witnessed import Witnessed
from tests.portal_helpers import (
    CANARY,
    PLAIN,
    Portal,
    Raw,
    Template,
    assert_headers,
    copy_portal,
    custody_actions,
    from_mark,
    held_template,
    hidden,
    log_in,
    run,
    send,
)

RTL = "invoice\u202egpj.exe"
ATTACHED = (
    b"From: Mark <mark.smith@gmail.com>\r\nTo: sam@home.example\r\nSubject: files\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
    b'filename="../../etc/passwd"\r\n\r\nroot:x:0:0\r\n'
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
    b"filename*=UTF-8''invoice%E2%80%AEgpj.exe\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"TVqQAA==\r\n--b--\r\n"
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One enrollment and an archive of three held items (one with hostile attachment
    names), copied for each test."""
    messages = [from_mark(PLAIN), from_mark(CANARY), from_mark(ATTACHED)]
    return held_template(tmp_path_factory, "export", messages)


@pytest.fixture
def portal(template: Template, tmp_path: Path) -> Portal:
    return copy_portal(template, tmp_path)


async def csrf(portal: Portal, client: Any, path: str) -> str:
    _, _, body, _ = await send(portal, client, "GET", path)
    return hidden(body.decode(), "csrf")


def downloads_left(portal: Portal) -> list[Path]:
    return list((portal.directory / "portal").glob("download-*"))


def test_export_without_a_reason_shows_the_form_again_and_records_nothing(portal: Portal) -> None:
    """An export with an empty reason is 400 with the form and its message, the filters
    kept; nothing is exported and no custody entry is added."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        token = await csrf(portal, client, "/export")
        status, headers, page, _ = await send(portal, client, "POST", "/export",
                                            {"csrf": token, "reason": "  ",
                                             "since": "2020-01-02"})  # fmt: skip
        assert status == 400
        assert headers["Content-Type"].startswith("text/html")
        assert evidence.NO_REASON in page.decode()
        assert 'value="2020-01-02"' in page.decode()
        assert_headers(headers)

    run(portal, body)
    assert custody_actions(portal) == []
    assert downloads_left(portal) == []


def test_export_without_its_csrf_token_is_refused(portal: Portal) -> None:
    """An export POST without the session's CSRF token, or with a wrong one, is 403 and
    nothing is exported."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        for data in ({"reason": "court"}, {"reason": "court", "csrf": "x" * 43}):
            status, _, _, _ = await send(portal, client, "POST", "/export", data)
            assert status == 403
            status, _, _, _ = await send(portal, client, "POST", "/report", data)
            assert status == 403

    run(portal, body)
    assert custody_actions(portal) == []


def test_export_streams_a_bundle_whose_verify_py_passes(portal: Portal, tmp_path: Path) -> None:
    """With a reason, the export is a zip download named for the day, with no copy left in
    the state directory; its bundled verify.py passes; custody holds the export with its
    reason, signed."""
    got: list[Raw] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        token = await csrf(portal, client, "/export")
        got.append(await send(portal, client, "POST", "/export",
                               {"csrf": token, "reason": "protective order"}))  # fmt: skip

    run(portal, body)
    status, headers, data, _ = got[0]
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"].startswith('attachment; filename="nocontact-evidence-')
    assert '.zip"' in headers["Content-Disposition"]
    assert_headers(headers)
    assert downloads_left(portal) == []
    unpacked = tmp_path / "bundle"
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        bundle.extractall(unpacked)
    result = subprocess.run([sys.executable, "-I", "verify.py"], cwd=unpacked,
                            capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list((unpacked / "originals").glob("*.eml"))) == 3
    assert custody_actions(portal) == [("export", (1, 2, 3), "verified")]


def test_the_portal_checks_cosignatures_with_the_configured_witnesses(
    portal: Portal, tmp_path: Path
) -> None:
    """With `witnesses:` configured, every item's tlog-proof carries the configured witness's
    cosignature, the manifest lists its key as checked, and verify.py checks it."""
    witness = Cosigner.generate("advocacy.example/witness")
    root = portal.directory / "archive"
    note = (root / layout.HEAD).read_bytes()
    body_text = note.decode().rpartition("\n\n")[0] + "\n"
    size = int(body_text.split("\n")[1])
    Witnessed(root).keep(size, note, [witness.cosign(body_text, 1_772_366_400)])
    configured = Witness(url="https://witness.advocacy.example", key=witness.key.encode())
    portal.config = portal.config.model_copy(update={"witnesses": [configured]})
    got: list[Raw] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        token = await csrf(portal, client, "/export")
        got.append(await send(portal, client, "POST", "/export",
                               {"csrf": token, "reason": "hearing"}))  # fmt: skip

    run(portal, body)
    unpacked = tmp_path / "bundle"
    with zipfile.ZipFile(io.BytesIO(got[0][2])) as bundle:
        bundle.extractall(unpacked)
    manifest = json.loads((unpacked / "manifest.json").read_text())
    assert manifest["witnessing"]["witnesses"][0]["key"] == witness.key.encode()
    assert [item["witnessed_by"] for item in manifest["items"]] == [[witness.name]] * 3
    result = subprocess.run([sys.executable, "-I", "verify.py"], cwd=unpacked,
                            capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cosigned by:      {witness.name}: 3 proofs checked" in result.stdout


def test_report_pdf_and_timeline_chart(portal: Portal) -> None:
    """The report downloads as a PDF; the report page shows the chart from the portal
    itself, a PNG; each records a signed "report" custody entry."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, page, _ = await send(portal, client, "GET", "/report?chart=1&since=2000-01-01")
        assert 'src="/report/timeline.png?since=2000-01-01"' in page.decode()
        token = hidden(page.decode(), "csrf")
        status, headers, pdf, _ = await send(portal, client, "POST", "/report", {"csrf": token})
        assert status == 200
        assert headers["Content-Type"] == "application/pdf"
        assert headers["Content-Disposition"].startswith('attachment; filename="nocontact-report-')
        assert pdf.startswith(b"%PDF")
        status, headers, png, _ = await send(portal, client, "GET", "/report/timeline.png")
        assert status == 200
        assert headers["Content-Type"] == "image/png"
        assert png.startswith(b"\x89PNG")
        assert_headers(headers)

    run(portal, body)
    assert custody_actions(portal) == [("report", (1, 2, 3), "verified")] * 2
    assert downloads_left(portal) == []


def test_parts_download_with_safe_names_and_custody_first(portal: Portal) -> None:
    """The item page links each attachment; each downloads as an attachment of type
    application/octet-stream under a name with no path and no bidi control; a part that
    is not there records nothing."""

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, page, _ = await send(portal, client, "GET", "/items/3")
        assert 'href="/items/3/parts/1"' in page.decode()
        assert 'href="/items/3/parts/2"' in page.decode()
        assert "\u202e" not in page.decode()
        status, headers, data, _ = await send(portal, client, "GET", "/items/3/parts/1")
        assert status == 200
        assert data == b"root:x:0:0"
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"] == (
            "attachment; filename=\"passwd.txt\"; filename*=UTF-8''passwd.txt"
        )
        assert_headers(headers)
        status, headers, data, _ = await send(portal, client, "GET", "/items/3/parts/2")
        assert status == 200
        assert data == b"MZ\x90\x00"
        assert headers["Content-Disposition"] == (
            "attachment; filename=\"invoicegpj.exe\"; filename*=UTF-8''invoicegpj.exe"
        )
        status, _, _, _ = await send(portal, client, "GET", "/items/3/parts/3")
        assert status == portal_web.NOT_SHOWN

    run(portal, body)
    assert custody_actions(portal) == [("show", (3,), "verified")] * 3


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd.bin"),
        ("..\\..\\boot.ini", "boot.ini"),
        (RTL, "invoicegpj.exe"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("...", "part-7.bin"),
        ("." * 72 + " ...........0", "0.bin"),  # found by fuzz/fuzz_portal.py
        (". .hidden.txt", "hidden.txt"),
        ("", "part-7.bin"),
        ("/", "part-7.bin"),
        ("\u2066\u200f", "part-7.bin"),
        ("x" * 500 + ".pdf", "x" * 116 + ".pdf"),
    ],
)
def test_part_names_are_safe(name: str, safe: str) -> None:
    """A sender's attachment name loses any path, control and bidi characters."""
    assert evidence.part_name(name, 7) == safe


def test_export_records_custody_before_its_first_byte_and_shows_progress(portal: Portal) -> None:
    """The export's custody entry is in the archive when its first byte arrives (the bundle
    is streamed as it is made); the page's progress id then reports every item written;
    another id is 404."""
    seen: dict[str, Any] = {}

    async def body(client: Any) -> None:
        await log_in(portal, client)
        _, _, page, _ = await send(portal, client, "GET", "/export")
        token, progress = hidden(page.decode(), "csrf"), hidden(page.decode(), "progress")
        assert len(progress) == 32
        cookie = "; ".join(f"{k}={v}" for k, v in portal.cookies.items())
        form = {"csrf": token, "reason": "court date", "progress": progress}
        async with client.post("/export", data=form, headers={"Cookie": cookie}) as response:
            assert response.status == 200
            first = await response.content.readexactly(4)
            seen["at first byte"] = custody_actions(portal)
            rest = await response.read()
        assert zipfile.is_zipfile(io.BytesIO(first + rest))
        status, _, state, _ = await send(portal, client, "GET", f"/export/progress/{progress}")
        seen["progress"] = (status, state)
        status, _, _, _ = await send(portal, client, "GET", "/export/progress/" + "0" * 32)
        seen["unknown"] = status

    run(portal, body)
    assert seen["at first byte"] == [("export", (1, 2, 3), "verified")]
    status, state = seen["progress"]
    assert status == 200
    assert state == b'{"total": 3, "done": 3, "finished": true, "failed": false}'
    assert seen["unknown"] == 404


def test_export_of_a_selection_says_what_it_left_out(portal: Portal, tmp_path: Path) -> None:
    """A streamed export of no items (dates before any) still lists every entry of the log
    in the manifest, each with why it was left out, and its verify.py passes."""
    got: list[Raw] = []

    async def body(client: Any) -> None:
        await log_in(portal, client)
        token = await csrf(portal, client, "/export")
        form = {"csrf": token, "reason": "check", "until": "2000-01-01"}
        got.append(await send(portal, client, "POST", "/export", form))

    run(portal, body)
    status, _, data, _ = got[0]
    assert status == 200
    unpacked = tmp_path / "bundle"
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        bundle.extractall(unpacked)
    manifest = json.loads((unpacked / "manifest.json").read_text())
    reasons = {entry["why"] for entry in manifest["left_out"]}
    assert "after --until" in reasons
    assert "checkpoint" in reasons
    assert {1, 2, 3} <= {entry["leaf_index"] for entry in manifest["left_out"]}
    result = subprocess.run([sys.executable, "-I", "verify.py"], cwd=unpacked,
                            capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert custody_actions(portal) == [("export", (), "verified")]
