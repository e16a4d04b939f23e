"""Issue 20's crafted messages through the real daemon: each answered 250, none lost.

Each reproduction is sent by a friend (so it must be read whole and delivered) and by him
(so it must be sealed); every one is answered 250, the friend's arrive byte-identical in
the Maildir and his are in the archive, byte for byte.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests import servers
from tests.hostile_shapes import MIB, nested_multiparts
from tests.test_smtp_integration import FRIEND, MARK, Nocontact, sealed_originals

REPRODUCTIONS = {
    "utf-7 subject": b"Subject: =?utf-7?q?+2AA-?=\r\n\r\nhi\r\n",
    "utf-7 body": b"Content-Type: text/plain; charset=utf-7\r\n\r\n+2AA- hi\r\n",
    "utf-7 display name": b"Reply-To: =?utf-7?q?+2AA-?= <x@example.org>\r\n\r\nhi\r\n",
    "unclosed <a": b"Content-Type: text/html\r\n\r\n" + b"<a " * 40_000 + b"\r\n",
    "phone-like digits": b"\r\n" + b"".join(b"+1 212 555 %04d\r\n" % i for i in range(MIB // 17)),
    "many headers": b"".join(b"X-H%d: v\r\n" % i for i in range(2 * MIB // 12)) + b"\r\nhi\r\n",
    "deep multipart": nested_multiparts(1_000, 0),
    "one long line": b"\r\n" + b"x" * MIB + b"\r\n",
}


def _letter(sender: str, shape: str) -> bytes:
    return f"From: <{sender}>\r\nTo: <sam@home.example>\r\n".encode() + REPRODUCTIONS[shape]


def test_every_crafted_message_is_answered_250_and_kept(tmp_path: Path) -> None:
    """No reproduction bounces, is deferred or is lost, from a friend or from him."""
    port, mail = servers.free_port(), tmp_path / "mail"
    daemon = Nocontact(tmp_path, port=port, deliver=f"maildir:{mail}")
    daemon.start()
    try:
        for shape in REPRODUCTIONS:
            for sender in (FRIEND, MARK):
                with smtplib.SMTP(servers.HOST, port, timeout=60) as client:
                    # raises on any answer but 250 (smtplib.SMTPDataError), or if it stalls
                    refused = client.sendmail(sender, ["sam@home.example"], _letter(sender, shape))
                    assert refused == {}
    finally:
        assert daemon.stop() == 0
    delivered = sorted(p.read_bytes().split(b"\r\n", 3)[3] for p in (mail / "new").iterdir())
    assert delivered == sorted(_letter(FRIEND, shape) for shape in REPRODUCTIONS)
    assert sorted(sealed_originals(daemon.archive)) == sorted(
        _letter(MARK, shape) for shape in REPRODUCTIONS
    )
