"""Text on PDF pages for the contact's report: fonts, safe characters, wrapping, page flow.

Rules this module keeps:
1. Only the DejaVu fonts that matplotlib ships are used, so a report looks the same on every
   machine and needs no system font.
2. Any string may be drawn. A character the font has no glyph for, a control or format
   character (bidi overrides, zero-width marks), a lone surrogate: each is written as
   `[U+XXXX]`, so nothing is hidden, nothing is lost and nothing raises.
3. Text is measured with the font's own advance widths, so a wrapped line never runs past
   the margin and a table cell never spills into the next one.
4. Speed: a report may hold hundreds of thousands of lines, so the per-line work is a
   regular expression and a width sum, both in C; the per-character Python loop runs only
   for a word too long for its line.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.fonts import TTFFont

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SANS, BOLD, MONO = "nc-sans", "nc-bold", "nc-mono"
_FONT_FILES = {SANS: "DejaVuSans.ttf", BOLD: "DejaVuSans-Bold.ttf", MONO: "DejaVuSansMono.ttf"}
# Categories drawn as [U+XXXX] even when the font has a glyph: they are invisible or reorder
# text, and a rendering offered as evidence must not hide anything.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_TOKENS = re.compile(r"\S+\s*|\s+")
ELLIPSIS = "…"
_PAGES = "{pages-in-all}"  # replaced by the page count; long enough for 6 digits
# A table or summary cell: x from the left margin, width, font family, text.
Cell = tuple[float, float, str, str]


def _codepoint(match: re.Match[str]) -> str:
    return f"[U+{ord(match.group()):04X}]"


def _unsafe_pattern(codepoints: list[int]) -> re.Pattern[str]:
    """A pattern matching every character *not* in `codepoints` (sorted, unique)."""
    ranges: list[str] = []
    start = prev = codepoints[0]
    for cp in [*codepoints[1:], -2]:
        if cp != prev + 1:
            ranges.append(f"\\U{start:08x}" if start == prev else f"\\U{start:08x}-\\U{prev:08x}")
            start = cp
        prev = cp
    return re.compile(f"[^{''.join(ranges)}]")


@dataclass(frozen=True, slots=True)
class Face:
    """One registered font: what it can draw and how wide each character is (per 1 pt)."""

    family: str
    widths: dict[str, float]
    unsafe: re.Pattern[str]

    @classmethod
    def of(cls, family: str, font: TTFFont) -> Face:
        widths = {
            chr(cp): w / 1000
            for cp, w in font.cw.items()
            if unicodedata.category(chr(cp)) not in _HIDDEN_CATEGORIES
        }
        return cls(family, widths, _unsafe_pattern(sorted(map(ord, widths))))

    def clean(self, text: str) -> str:
        """The text with every character this face cannot honestly show as [U+XXXX]."""
        return self.unsafe.sub(_codepoint, text)

    def width(self, clean: str, size: float) -> float:
        return sum(map(self.widths.__getitem__, clean)) * size

    def fit(self, text: str, size: float, width: float) -> str:
        """One line of at most `width` points; a longer text is cut and ends with '…'."""
        line = self.clean(" ".join(text.split()))
        if self.width(line, size) <= width:
            return line
        room = width / size - self.widths[ELLIPSIS]
        ends = list(accumulate(map(self.widths.__getitem__, line)))
        return line[: bisect_right(ends, room)] + ELLIPSIS

    def wrap(self, text: str, size: float, width: float) -> list[str]:
        """Lines of at most `width` points: source lines kept, long ones broken at spaces."""
        limit = width / size
        out: list[str] = []
        for raw in text.expandtabs(4).splitlines() or [""]:
            line = self.clean(raw)
            if sum(map(self.widths.__getitem__, line)) <= limit:
                out.append(line)
            else:
                out.extend(self._break(line, limit))
        return out

    def _break(self, line: str, limit: float) -> list[str]:
        out: list[str] = []
        current, used = "", 0.0
        for token in _TOKENS.findall(line):
            body = token.rstrip()
            if current and used + self.width(body, 1) > limit:
                out.append(current.rstrip())
                current, used = "", 0.0
            if self.width(body, 1) > limit:  # a word wider than the line: cut where it must be
                *whole, current = self._cut(body, limit)
                out.extend(whole)
                current += token[len(body) :]
                used = self.width(current, 1)
            else:
                current += token
                used += self.width(token, 1)
        if current.strip() or not out:
            out.append(current.rstrip())
        return out

    def _cut(self, word: str, limit: float) -> list[str]:
        ends = list(accumulate(map(self.widths.__getitem__, word)))
        pieces, start = [], 0
        while start < len(word):
            base = ends[start - 1] if start else 0.0
            stop = max(start + 1, bisect_right(ends, base + limit))
            pieces.append(word[start:stop])
            start = stop
        return pieces


class Pages(FPDF):
    """An FPDF document with the three DejaVu faces and a page footer 'page N of M'."""

    def __init__(self, *, footer: str) -> None:
        super().__init__(unit="pt", format="A4")
        self.set_auto_page_break(False)
        self.set_compression(True)
        self.alias_nb_pages(_PAGES)
        self.faces: dict[str, Face] = {}
        for family, name in _FONT_FILES.items():
            self.add_font(family, "", str(FONT_DIR / name))
            font = self.fonts[family]
            assert isinstance(font, TTFFont)
            self.faces[family] = Face.of(family, font)
        # The footer is drawn with cell(), which knows the page-count alias; braces are
        # taken out of the caller's text so it can never contain the alias.
        self._footer = self.faces[SANS].clean(footer.replace("{", "(").replace("}", ")"))
        self.y_cursor = 0.0
        self.margin = 40.0
        self.orientation = "P"

    def footer(self) -> None:
        self.set_font(SANS, size=7)
        self.set_text_color(110)
        self.set_xy(self.margin, self.h - 28)
        self.cell(
            self.w - 2 * self.margin, 10, f"{self._footer} · page {self.page_no()} of {_PAGES}"
        )
        self.set_text_color(0)

    @property
    def right(self) -> float:
        return self.w - self.margin

    @property
    def bottom(self) -> float:
        return self.h - self.margin - 8

    def new_page(self, orientation: str = "P") -> None:
        self.add_page(orientation=orientation)
        self.orientation = orientation
        self.y_cursor = self.margin

    def room(self, height: float) -> bool:
        return self.y_cursor + height <= self.bottom

    def advance(self, lead: float) -> bool:
        """Move the cursor one line down; True when that took a new page."""
        fresh = not self.room(lead)
        if fresh:
            self.new_page(self.orientation)
        self.y_cursor += lead
        return fresh

    def row(self, size: float, cells: Sequence[Cell], *, gray: int = 0) -> None:
        """Cells on the cursor's baseline, each cut to its width (no page flow here)."""
        if gray:
            self.set_text_color(gray)
        for x, width, family, text in cells:
            line = self.faces[family].fit(text, size, width)
            if line:
                self.set_font(family, size=size)
                self.text(self.margin + x, self.y_cursor, line)
        if gray:
            self.set_text_color(0)

    def line_of(self, family: str, size: float, text: str, *, x: float = 0, gray: int = 0) -> None:
        """One line, cut to the margin, on the next line down; a new page when needed."""
        self.advance(size * 1.3)
        self.row(size, [(x, self.right - self.margin - x, family, text)], gray=gray)

    def paragraph(self, family: str, size: float, text: str, *, x: float = 0) -> None:
        """Wrapped text flowing over pages."""
        self.lines(
            family, size, self.faces[family].wrap(text, size, self.right - self.margin - x), x=x
        )

    def lines(
        self, family: str, size: float, lines: Sequence[str], *, x: float = 0, label: str = ""
    ) -> None:
        """Already clean, already wrapped lines flowing over pages; `label` heads each new one."""
        lead = size * 1.3
        self.set_font(family, size=size)
        for line in lines:
            if self.advance(lead):
                if label:
                    self.row(7, [(x, self.right - self.margin - x, SANS, label)], gray=110)
                    self.y_cursor += lead
                self.set_font(family, size=size)
            if line:
                self.text(self.margin + x, self.y_cursor, line)

    def rule(self, gap: float = 4) -> None:
        self.y_cursor += gap
        self.set_draw_color(170)
        self.line(self.margin, self.y_cursor, self.right, self.y_cursor)
        self.set_draw_color(0)
        self.y_cursor += gap
