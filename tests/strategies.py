"""Hypothesis strategies for hostile mail: random MIME trees and RFC 2047 encoded words.

Rules this module keeps:
1. Messages are written out by hand, byte by byte, never by the `email` package: a
   generator that can only write well-formed MIME would never write what he sends. Trees
   mix multipart/*, message/rfc822, text/plain and text/html parts, every transfer encoding
   (and bogus ones), real charsets and charsets no codec knows.
2. Encoded words come in every charset a mail client might meet (utf-7, utf-16,
   iso-2022-jp, koi8-r, shift_jis, big5, latin-1 ...) and bogus ones, in q and b form,
   with base64 that may be broken (cut short, padding lost, junk inside).
3. `messages_naming(name)` places a name somewhere a reader would read it (a header, a
   text or HTML part, a forwarded message's headers, an attachment's file name), written
   in any of those ways, in a part whose charset and transfer encoding are spelled in any
   way MIME allows (case, whitespace, comments), whose charset may
   follow a long run of other parameters (a mail client reads the whole header), or is
   named twice (clients differ on which wins), and in HTML split by tags, comments and
   content a browser does not render; the rest of the message is random
   structure around it. Text around the name never joins a letter onto it, so the name
   still stands as words.
"""

from __future__ import annotations

import base64
import binascii
import quopri
from dataclasses import dataclass

from hypothesis import strategies as st

# (label written in the message, Python codec that writes its bytes)
CHARSETS: tuple[tuple[str, str], ...] = (
    ("utf-8", "utf-8"),
    ("UTF-8", "utf-8"),
    ("utf-7", "utf-7"),
    ("utf-16", "utf-16"),
    ("utf-16le", "utf-16-le"),
    ("utf-16be", "utf-16-be"),
    ("iso-2022-jp", "iso2022_jp"),
    ("koi8-r", "koi8_r"),
    ("shift_jis", "shift_jis"),
    ("big5", "big5"),
    ("latin-1", "latin-1"),
    ("iso-8859-15", "iso8859_15"),
    ("windows-1252", "cp1252"),
    ("gb2312", "gb2312"),
    ("euc-kr", "euc_kr"),
    ("us-ascii", "ascii"),
)
# Charsets no codec knows: a reader falls back to UTF-8, so their bytes are written in it.
BOGUS_CHARSETS = ("x-no-such-charset", "utf-8*en", "", "unknown-8bit", "utf-0", "\u00e9")
TRANSFER_ENCODINGS = ("7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode")
SAFE_WORDS = st.text(
    alphabet=st.sampled_from("abcdefghij XYZ0123,.;:!'\"()-\u00e9\u00fc\u00df\u0416\u65e5"),
    max_size=30,
)
# Any code point, lone surrogates included: UTF-7 writes them (b"+2AA-"), and reads them back.
# Characters that broke, or could break, a reader: surrogates, a BOM, NUL, bidi overrides,
# line ends, and what RFC 2047 and MIME give meaning to.
TRICKY = ("\ud800", "\udfff", "\udc80", "\ufeff", "\x00", "\u202e", "\r", "\n", "=?", "?=", "--")
WILD_TEXT = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=())), max_size=40
).map("".join)


@st.composite
def charsets(draw: st.DrawFn) -> tuple[str, str]:
    """A (label, codec) pair: a real charset, or a bogus label whose bytes are UTF-8."""
    if draw(st.booleans()):
        return draw(st.sampled_from(CHARSETS))
    return draw(st.sampled_from(BOGUS_CHARSETS)), "utf-8"


def _encode(text: str, codec: str) -> bytes:
    """`text` in `codec`, exactly where it can be written (UTF-7 writes lone surrogates)."""
    try:
        return text.encode(codec)
    except UnicodeError:
        return text.encode(codec, errors="replace")


def _q_encode(data: bytes) -> str:
    """RFC 2047 "Q": printable ASCII as is (but = ? _), space as _, the rest =XX."""
    out = []
    for byte in data:
        char = chr(byte)
        if byte == 0x20:
            out.append("_")
        elif 0x21 <= byte <= 0x7E and char not in "=?_":
            out.append(char)
        else:
            out.append(f"={byte:02X}")
    return "".join(out)


@st.composite
def broken_base64(draw: st.DrawFn, data: bytes) -> str:
    """`data` in base64, perhaps cut short, stripped of padding or with junk inside."""
    encoded = base64.b64encode(data).decode("ascii")
    damage = draw(st.sampled_from(("none", "cut", "unpadded", "junk", "empty")))
    if damage == "cut" and encoded:
        return encoded[: draw(st.integers(0, len(encoded) - 1))]
    if damage == "unpadded":
        return encoded.rstrip("=")
    if damage == "junk":
        at = draw(st.integers(0, len(encoded)))
        return (
            encoded[:at]
            + draw(st.sampled_from(("!", "*", "==", "\u00e9", " ", "=")))
            + encoded[at:]
        )
    if damage == "empty":
        return ""
    return encoded


@st.composite
def encoded_words(draw: st.DrawFn, text: st.SearchStrategy[str] = WILD_TEXT) -> str:
    """One RFC 2047 encoded word `=?charset?q|b?...?=`, well formed or not."""
    label, codec = draw(charsets())
    data = _encode(draw(text), codec)
    if draw(st.booleans()):
        data = draw(st.binary(max_size=20))
    form = draw(st.sampled_from(("q", "Q", "b", "B", "x")))
    if form in "bB":
        payload = draw(broken_base64(data))
    elif form in "qQ":
        payload = _q_encode(data)
        if draw(st.booleans()):
            payload += draw(st.sampled_from(("=", "=Z", "=4", "?", " ")))
    else:
        payload = binascii.hexlify(data).decode("ascii")
    return f"=?{label}?{form}?{payload}?="


def readable_encoded_words(text: str) -> st.SearchStrategy[str]:
    """`text` as encoded words a reader decodes back to it: any charset that can write it,
    perhaps with an RFC 2231 language (`utf-8*en`), q or b, split over adjacent words at any
    point (whitespace between them is dropped), perhaps beside a word in a charset no codec
    knows (which a reader shows as it can, and which must not hide its neighbours)."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        label, codec = draw(
            st.sampled_from([(lbl, cdc) for lbl, cdc in CHARSETS if _round_trips(text, cdc)])
        )
        label += draw(st.sampled_from(("", "", "*en", "*en-US")))
        cut = draw(st.integers(0, len(text)))
        pieces = [p for p in (text[:cut], text[cut:]) if p]
        words = []
        for piece in pieces:
            data = piece.encode(codec)
            if draw(st.booleans()):
                words.append(f"=?{label}?b?{base64.b64encode(data).decode('ascii')}?=")
            else:
                words.append(f"=?{label}?q?{_q_encode(data)}?=")
        separator = draw(st.sampled_from((" ", "\r\n ", "\n\t")))
        written = separator.join(words)
        if draw(st.booleans()):
            return written
        # A charset no reader knows: "utf-8*en" is not one (RFC 2231 adds a language to
        # utf-8, and a reader decodes it and joins it to the next word, as RFC 2047 says).
        bogus = f"=?{draw(st.sampled_from(('x-no-such-charset', 'unknown-8bit')))}?q?hello?="
        return f"{bogus} {written}" if draw(st.booleans()) else f"{written} , {bogus}"

    return build()


def _round_trips(text: str, codec: str) -> bool:
    try:
        return text.encode(codec).decode(codec) == text
    except UnicodeError:
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Leaf:
    """A text part: its type, charset, transfer encoding and text."""

    subtype: str  # plain | html
    charset: tuple[str, str]
    encoding: str
    text: str
    padding: int = 0  # parameters written before charset= (30 characters each)
    spelling: str = "quoted"  # how charset= is written: a key of CHARSET_SPELLINGS
    encoding_spelling: str = "{}"  # how the transfer encoding is written: a format string


@dataclass(frozen=True, slots=True, kw_only=True)
class Multi:
    """A multipart/* part and its children."""

    subtype: str
    boundary: str
    children: tuple[Part, ...]
    closed: bool  # the closing delimiter is written


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    """A message/rfc822 part: a whole message inside."""

    headers: tuple[tuple[str, str], ...]
    body: Part


Part = Leaf | Multi | Forward

# Ways to write a transfer encoding that a MIME reader must understand: case, and the
# whitespace and comments RFC 2045 allows around a structured header's value.
ENCODING_SPELLINGS = ("{}", "{} ", " {}", "{}\t", "{} (as sent)")

# Ways to write one charset parameter that a MIME reader must understand (RFC 2045, 2231).
# Where one header names two charsets, readers differ on which wins: a filter must read both.
CHARSET_SPELLINGS: dict[str, bytes] = {
    "quoted": b'charset="LABEL"',
    "bare": b"charset=LABEL",
    "upper-key": b"CHARSET=LABEL",
    "folded": b"\n charset=LABEL",
    "rfc2231-extended": b"charset*=us-ascii'en'LABEL",
    "rfc2231-continued": b'charset*0=""; charset*1="LABEL"',
    "comment-after": b"charset=LABEL (the charset)",
    "twice-real-first": b"charset=LABEL; charset=us-ascii",
    "twice-real-last": b"charset=us-ascii; charset=LABEL",
}

HEADER_NAMES = ("From", "To", "Cc", "Subject", "Reply-To", "Sender", "X-Junk", "Content-Type")


@st.composite
def header_values(draw: st.DrawFn) -> str:
    """A header value: plain words, encoded words, raw bytes-as-text, or a mix."""
    pieces = draw(
        st.lists(st.one_of(SAFE_WORDS, encoded_words(), WILD_TEXT, st.just("<a@b.example>")),
                 max_size=4)
    )  # fmt: skip
    return " ".join(pieces)


def leaves(text: st.SearchStrategy[str] = WILD_TEXT) -> st.SearchStrategy[Leaf]:
    """A text/plain or text/html part in any charset and transfer encoding."""
    return st.builds(
        Leaf,
        subtype=st.sampled_from(("plain", "html")),
        charset=charsets(),
        encoding=st.sampled_from(TRANSFER_ENCODINGS),
        text=text,
    )


def _boundaries() -> st.SearchStrategy[str]:
    return st.text(alphabet="abcXYZ019'()+_,-./:=? ", min_size=1, max_size=12)


def mime_trees(max_leaves: int = 8) -> st.SearchStrategy[Part]:
    """A random tree of multipart/*, message/rfc822 and text parts."""

    def extend(children: st.SearchStrategy[Part]) -> st.SearchStrategy[Part]:
        multi = st.builds(
            Multi,
            subtype=st.sampled_from(("mixed", "alternative", "related", "digest", "x-bogus")),
            boundary=_boundaries(),
            children=st.lists(children, max_size=4).map(tuple),
            closed=st.booleans(),
        )
        forward = st.builds(
            Forward,
            headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values()),
                             max_size=3).map(tuple),
            body=children,
        )  # fmt: skip
        return st.one_of(multi, forward)

    return st.recursive(leaves(), extend, max_leaves=max_leaves)


def _body_bytes(leaf: Leaf) -> bytes:
    """A leaf's body in its charset, then its transfer encoding (x-uuencode: left as is)."""
    data = _encode(leaf.text, leaf.charset[1])
    if leaf.encoding == "base64":
        return base64.encodebytes(data)
    if leaf.encoding == "quoted-printable":
        return quopri.encodestring(data)
    return data


def render(part: Part, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The message (or part) as bytes: `headers` first, then the part's own."""
    lines = [f"{name}: {value}".encode("utf-8", "surrogatepass") for name, value in headers]
    return b"\n".join(lines) + (b"\n" if lines else b"") + _render_part(part)


def _render_part(part: Part) -> bytes:
    if isinstance(part, Leaf):
        label = part.charset[0].encode("utf-8", "replace")
        padding = b"".join(b'; x%d="%s"' % (n, b"y" * 20) for n in range(part.padding))
        charset = CHARSET_SPELLINGS[part.spelling].replace(b"LABEL", label)
        head = (
            b"Content-Type: text/" + part.subtype.encode() + padding + b"; " + charset + b"\n"
            b"Content-Transfer-Encoding: "
            + part.encoding_spelling.format(part.encoding).encode() + b"\n\n"
        )  # fmt: skip
        return head + _body_bytes(part) + b"\n"
    if isinstance(part, Forward):
        return b"Content-Type: message/rfc822\n\n" + render(part.body, part.headers)
    boundary = part.boundary.encode()
    out = [b"Content-Type: multipart/" + part.subtype.encode() + b'; boundary="' + boundary
           + b'"\n\npreamble\n']  # fmt: skip
    for child in part.children:
        out.append(b"--" + boundary + b"\n" + _render_part(child))
    if part.closed:
        out.append(b"--" + boundary + b"--\n")
    return b"".join(out)


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    """A whole message: random headers (encoded words and all) over a random MIME tree."""
    headers = draw(
        st.lists(st.tuples(st.sampled_from(HEADER_NAMES[:-1]), header_values()), max_size=5)
    )
    return render(draw(mime_trees()), tuple(headers))


# Where a name can sit in a message and still be read.
PLACES = (
    "subject",
    "subject-encoded",
    "to-display-name",
    "cc-encoded",
    "text-part",
    "html-part",
    "forwarded-from",
    "forwarded-subject",
    "forwarded-text",
    "attachment-name",
)


@st.composite
def messages_naming(draw: st.DrawFn, name: str) -> tuple[str, bytes]:
    """(place, message): a random message with `name` written in it at `place`."""
    place = draw(st.sampled_from(PLACES))
    around = SAFE_WORDS.map(lambda words: f" {words} ")
    before, after = draw(around), draw(around)
    spoken = f"{before}{name}{after}"
    headers: list[tuple[str, str]] = [("From", "friend@example.org")]
    filler = draw(mime_trees(max_leaves=4))
    named: Part
    if place == "subject":
        first, _, rest = name.partition(" ")
        headers.append(("Subject", f"{before}{first}\n {rest}{after}"))  # folded between words
        named = filler
    elif place == "subject-encoded":
        headers.append(("Subject", f"{before}{draw(readable_encoded_words(name))}{after}"))
        named = filler
    elif place == "to-display-name":
        headers.append(("To", f'"{name}" <someone@example.org>, sam@home.example'))
        named = filler
    elif place == "cc-encoded":
        headers.append(("Cc", f"{draw(readable_encoded_words(name))} <x@example.org>"))
        named = filler
    elif place in ("text-part", "html-part", "forwarded-text"):
        subtype = "plain" if place != "html-part" else "html"
        html = f"<p>{before}{draw(html_spellings(name))}{after}</p>"
        text = spoken if subtype == "plain" else html
        label, codec = draw(st.one_of(st.sampled_from(CHARSETS), charsets()))  # real, mostly
        if not _round_trips(text, codec):
            label, codec = "utf-8", "utf-8"
        leaf = Leaf(subtype=subtype, charset=(label, codec),
                    encoding=draw(st.sampled_from(TRANSFER_ENCODINGS[:5])), text=text,
                    padding=draw(st.sampled_from((0, 5, 40, 120))),
                    spelling=draw(st.sampled_from(sorted(CHARSET_SPELLINGS))),
                    encoding_spelling=draw(st.sampled_from(ENCODING_SPELLINGS)))  # fmt: skip
        named = _mixed([filler, leaf], draw(st.booleans()))
        if place == "forwarded-text":
            named = _mixed([filler, Forward(headers=(("Subject", "fwd"),), body=leaf)], True)
    elif place in ("forwarded-from", "forwarded-subject"):
        value = (
            f'"{name}" <someone@example.org>' if place == "forwarded-from"
            else draw(readable_encoded_words(name))
        )  # fmt: skip
        header = "From" if place == "forwarded-from" else "Subject"
        forward = Forward(headers=((header, value),), body=draw(leaves(SAFE_WORDS)))
        named = _mixed([filler, forward], True)
    else:
        return place, _with_attachment(render(filler, tuple(headers)), name)
    return place, render(named, tuple(headers))


@st.composite
def html_spellings(draw: st.DrawFn, name: str) -> str:
    """`name` as HTML a browser shows as that name: split by inline tags, a comment, a
    character reference, or content the browser does not render (hidden, display:none)."""
    at = draw(st.integers(1, len(name) - 1))
    head, tail = name[:at], name[at:]
    inserts = {
        "none": "",
        "inline-tags": "<b></b><span></span>",
        "comment": "<!-- x -->",
        "hidden": "<span hidden>zz</span>",
        "display-none": "<span style='display: none'>zz</span>",
    }
    kind = draw(st.sampled_from(sorted(inserts)))
    if draw(st.booleans()):
        head = f"&#{ord(head[0])};{head[1:]}"
    return f"{head}{inserts[kind]}{tail}"


def _mixed(children: list[Part], filler_first: bool) -> Multi:
    ordered = children if filler_first else children[::-1]
    return Multi(subtype="mixed", boundary="=_outer_=", children=tuple(ordered), closed=True)


def _with_attachment(message: bytes, name: str) -> bytes:
    """`message` wrapped in multipart/mixed with an attachment named after `name` (RFC 2231)."""
    head, _, rest = message.partition(b"\n")  # keep From: as the first line
    quoted = name.replace(" ", "%20")
    return (
        head + b'\nContent-Type: multipart/mixed; boundary="=_att_="\n\n'
        b"--=_att_=\n" + rest + b"\n--=_att_=\n"
        b"Content-Type: application/pdf\n"
        b"Content-Disposition: attachment; filename*=utf-8''" + quoted.encode() + b".pdf\n"
        b"Content-Transfer-Encoding: base64\n\nJVBERi0=\n--=_att_=--\n"
    )


# Digits a reader reads as digits (ASCII, fullwidth, Arabic-Indic, Devanagari, mathematical
# bold), and the separators people and phones put between groups (NBSP and narrow NBSP
# come from copied contact cards; U+2011 is the non-breaking hyphen).
DIGIT_ZEROS = (0x30, 0xFF10, 0x660, 0x966, 0x1D7CE)
PHONE_SEPARATORS = (" ", "-", ".", "\u00a0", "\u202f", "\u2009", "\u2011", "\u2013")


@st.composite
def phone_spellings(draw: st.DrawFn, groups: tuple[str, ...]) -> str:
    """A phone number given as ASCII digit `groups` (("555", "010", "0199")), written with
    any digits a reader reads and any separators between the groups."""
    zero = draw(st.sampled_from(DIGIT_ZEROS))
    separator = draw(st.sampled_from(PHONE_SEPARATORS))
    return separator.join("".join(chr(zero + int(d)) for d in group) for group in groups)


@st.composite
def address_spellings(draw: st.DrawFn, local: str, domain: str) -> str:
    """`local@domain` as a reader still reads it: a fullwidth or small at sign, an
    ideographic or fullwidth full stop in the domain (IDNA reads them as dots), fullwidth
    letters, or a zero-width space inside."""
    at = draw(st.sampled_from(("@", "\uff20", "\ufe6b")))
    dot = draw(st.sampled_from((".", "\u3002", "\uff0e", "\uff61")))
    address = f"{local}{at}{domain.replace('.', dot)}"
    if draw(st.booleans()):
        address = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in address)
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(address) - 1))
        address = address[:cut] + "\u200b" + address[cut:]
    return address
