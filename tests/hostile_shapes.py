"""Issue 20's hostile message shapes, and a benign letter of any size to judge them by.

Used by the tests (tests/test_limits.py) and the benchmark (bench/hostile.py), so both
speak of the same messages. Every shape is from an ordinary sender and names nobody: a
caller that wants him found appends his name.
"""

from __future__ import annotations

import base64
import os

MIB = 1 << 20
HEAD = b"From: Friend <friend@example.org>\r\nTo: sam@home.example\r\nSubject: hello\r\n"
_TEXT = b"Content-Type: text/plain\r\n\r\n"
_HTML = b"Content-Type: text/html\r\n\r\n"


def benign(size: int) -> bytes:
    """An ordinary letter with a photo attached: prose, then base64 in 76-column lines."""
    prose = b"Dear Sam, the garden is lovely this year and the tomatoes came in.\r\n" * 20
    photo = base64.encodebytes(os.urandom(size * 3 // 4)).replace(b"\n", b"\r\n")
    return (
        HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + prose
        + b"--x\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="garden.jpg"\r\n\r\n' + photo + b"--x--\r\n"
    )  # fmt: skip


def nested_multiparts(depth: int, filler: int) -> bytes:
    """`depth` multiparts inside one another, the innermost holding `filler` bytes of text."""
    opening = b"".join(
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i, i + 1)
        for i in range(depth)
    )
    return (
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n' + opening
        + b"--b%d\r\nContent-Type: text/plain\r\n\r\n" % depth + b"hello\r\n" * (filler // 7)
        + b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth + 1)))
    )  # fmt: skip


def shapes() -> dict[str, bytes]:
    """Each hostile shape of issue 20, about 1 MB unless its name says otherwise."""
    return {
        "lone surrogates (utf-7)": b"From: friend@example.org\r\nSubject: =?utf-7?q?+2AA-?=\r\n"
        b"Content-Type: text/plain; charset=utf-7\r\n\r\n" + b"+2AA- +2ADcAA-\r\n" * (MIB // 16),
        "unclosed <a (quadratic html)": HEAD + _HTML + b"<a " * (MIB // 3),
        "nested <b> html": HEAD + _HTML + b"<b>x" * (MIB // 4),
        "1 MB single line": HEAD + _TEXT + b"a" * MIB + b"\r\n",
        "phone-like digits": HEAD + _TEXT
        + b"".join(b"+1 212 555 %04d, " % (i % 10_000) for i in range(MIB // 17)),
        "many addresses": HEAD + _TEXT + b"a@b.cc " * (MIB // 7),
        "1,000-deep multiparts": HEAD + nested_multiparts(1_000, MIB - 80_000),
        "50,000 tiny parts (2 MB)": HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 50_000 + b"--b--\r\n",
        "100,000 encoded words (1.4 MB)": HEAD.replace(b"Subject: hello\r\n", b"")
        + b"Subject: " + b" ".join([b"=?utf-8?q?a?="] * 100_000) + b"\r\n" + _TEXT + b"hi\r\n",
        "10 MB of headers": HEAD + b"".join(b"X-H%d: v\r\n" % i for i in range(10 * MIB // 12))
        + _TEXT + b"hi\r\n",
    }  # fmt: skip
