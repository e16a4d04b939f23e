"""Folding text so that a name cannot hide: one canonical form for names and for messages.

Rules this module keeps:
1. `fold` is applied identically to the names in the config and to every message's text,
   so a match in folded space is a match the survivor would have read.
2. What folding erases, per character: compatibility forms (NFKC: full-width, ligatures),
   look-alike letters from other scripts (Unicode UTS #39 confusable skeleton, via ICU, so
   "Mark" spelt with a Cyrillic capital Em and small a still reads "Mark"), case
   (casefold), diacritics ("Márk"), invisible format characters (zero-width spaces, soft
   hyphens) and the difference between spaces, tabs and line breaks (all become one space).
3. Folding errs towards matching: 'i', 'I', 'l' and '1' fold alike, as do "rn" and "m",
   because they are what a reader cannot tell apart.
4. Cost is one C-level `str.translate` pass plus whitespace collapsing (C-level too, no
   object per word): per-character results are computed once, on first sight, and cached
   for the life of the process.
"""

from __future__ import annotations

import re
import unicodedata

import icu

_SPOOF = icu.SpoofChecker()


def _skeleton(text: str) -> str:
    # The ICU skeleton (UTS #39, 4. Confusable Detection): the same for look-alike strings.
    return str(_SPOOF.getSkeleton(0, text))


def _fold_char(char: str, depth: int = 0) -> str:
    """The folded form of one character (possibly empty, possibly several characters),
    made only of characters that fold to themselves: a skeleton can yield characters that
    fold further ('‰' -> 'º/₀₀' -> 'o/oo'), and folding must be idempotent."""
    text = _fold_once(char)
    if text == char or depth >= 4:
        return text
    return "".join(_fold_char(c, depth + 1) for c in text)


def _fold_once(char: str) -> str:
    if char.isspace():
        return " "
    category = unicodedata.category(char)
    if category == "Cf" or category.startswith("M"):
        return ""
    text = unicodedata.normalize("NFKC", char)
    text = _skeleton(text)
    text = text.casefold()
    text = _skeleton(text)
    text = unicodedata.normalize("NFD", text)
    text = "".join(c for c in text if not unicodedata.category(c).startswith("M"))
    text = text.casefold()
    text = "".join(" " if c.isspace() else c for c in text).replace("i", "l").replace("rn", "m")
    if char.isascii() and len(text) != 1:
        # Keep ASCII one-to-one ('"' and '%' have multi-character skeletons) so the common
        # all-ASCII message takes CPython's fast translate path.
        return char
    return text


class _FoldTable(dict[int, str]):
    """A translate table that computes each character's fold the first time it is seen."""

    def __missing__(self, codepoint: int) -> str:
        folded = _fold_char(chr(codepoint))
        self[codepoint] = folded
        return folded


# Runs of spaces become one: each C-level replace pass halves every run, with no object
# per word or per match (splitting into words and joining them made one per word: 25 ms
# for 1 MB of short digit groups; a regex substitution costs as much per run). The runs
# still there after a few passes are long ones, and few: a substitution takes them.
_HALVINGS = 4
_LONG_RUNS = re.compile(" {2,}")
_TABLE = _FoldTable()
for _codepoint in range(128):
    _TABLE[_codepoint]  # warm the ASCII entries so the common case never misses


def fold(text: str) -> str:
    """The canonical matching form of `text`; see the module rules."""
    folded = text.translate(_TABLE)  # whitespace of every kind is now " " (rule 2)
    for _ in range(_HALVINGS):
        if "  " not in folded:
            break
        folded = folded.replace("  ", " ")
    else:
        if "  " in folded:
            folded = _LONG_RUNS.sub(" ", folded)
    return folded.strip(" ").replace("rn", "m")
