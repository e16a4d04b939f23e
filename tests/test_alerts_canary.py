"""No alert, log line or file carries a word of a held message (alerts rule 2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from structlog.testing import capture_logs

from proxy import logs
from proxy.alerts.service import AlertService
from proxy.archive import Archive
from proxy.daemon import NO_NEXT_HOP
from proxy.pipeline import Arrival, Pipeline
from proxy.rules import compile_rules
from tests.alerts_helpers import Clock, alerts_config, receiving
from tests.factories import RECIPIENT

CANARIES = ("Mark Smith", "mark.smith", "Subjectcanary4471", "Bodycanary9032",
            "Lilycanary", "5550100199", "Elm Street")  # fmt: skip
LETTER = (
    b"From: Mark Smith <mark.smith@gmail.com>\r\nTo: Sam <sam@home.example>\r\n"
    b"Subject: Subjectcanary4471 about Lilycanary\r\nMessage-ID: <c1@gmail.example>\r\n"
    b"Date: Sun, 01 Mar 2026 12:00:00 +0000\r\n\r\n"
    b"I know where you live, 14 Elm Street. Bodycanary9032. Call +1 555 010 0199.\r\n"
)


def test_a_held_message_leaves_no_word_in_alerts_logs_or_files(tmp_path: Path) -> None:
    """A held letter full of canaries (his name, address, number, her children's and
    home's names, subject and body words) goes through the real pipeline, whose threat
    detection makes it urgent, into an urgent alert, its repeat and a digest: none of the
    canaries is in any alert text, any log line, or any file under the archive directory
    (the alerts' state included)."""
    root = tmp_path / "archive"
    sent: list[str] = []

    async def main() -> None:
        archive = await Archive.open(root, recipients=[RECIPIENT])
        clock = Clock()
        async with receiving() as receiver:
            config = alerts_config(
                str(root), {"dana": receiver.url("dana")},
                contacts=[{"name": "Dana Reyes", "alerts": {"transports": ["dana"]}}],
                digest={"every": "daily", "at": "14:00"}, timezone="Europe/Berlin",
                children=["Lilycanary"], places=["Elm Street"],
            )  # fmt: skip
            pipeline = Pipeline(rules=compile_rules(config), archive=archive,
                                next_hop=NO_NEXT_HOP, hostname="nocontact.test",
                                default_region="US")  # fmt: skip
            service = await AlertService.open(config, archive, clock=clock)
            pipeline.alerts = service.held
            await pipeline.receive(Arrival(raw=LETTER, sender="mark.smith@gmail.com",
                                           recipients=("sam@home.example",),
                                           peer="127.0.0.1", helo="gmail.example"))  # fmt: skip
            await service.step()
            clock.advance(hours=2)  # past 14:00 Berlin: the digest
            await service.step()
            sent.extend(m["title"] + "\n" + m["message"] for m in receiver.got.get("dana", []))
            await service.close()
        await archive.close()

    with capture_logs(processors=[logs.redact]) as captured:
        asyncio.run(main())
    assert len(sent) == 3  # urgent, repeated once (30 min), digest
    assert any("urgent:proximity" in text for text in sent)  # "I know where you live"
    assert any(text.startswith("nocontact: digest") for text in sent)
    lines = [repr(line) for line in captured]
    files = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    assert (root / "alerts") in files
    for canary in CANARIES:
        assert not any(canary.lower() in text.lower() for text in sent), canary
        assert not any(canary.lower() in line.lower() for line in lines), canary
        for path, data in files.items():
            assert canary.encode().lower() not in data.lower(), (canary, path)
