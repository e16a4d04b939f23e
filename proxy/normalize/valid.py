"""Text that can always be written: no lone surrogates, on any decode path.

Rules this module keeps:
1. Every string normalize hands on encodes to UTF-8. Decoders the standard library offers
   can yield lone surrogates: UTF-7 (`+2AA-` is U+D800), UTF-16 with a broken pair, and
   `surrogateescape` for bytes that are not UTF-8. One such character made the seal, the
   log and `test-rules` raise, so a crafted subject kept a message undecided forever.
2. A lone surrogate becomes U+FFFD, the replacement character, as a reader's screen
   would show it; two that make a pair become the character they spell; every other
   character is kept, so a name around them still matches.
3. Cost is one C-level pass (an encode attempt); text that fails it is rewritten by two
   more (UTF-16 with surrogates passed, then decoded with replacement), never per character.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (rule 2)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A pair of surrogates that spells one character becomes that character; a lone one
        # cannot be decoded from UTF-16 and becomes U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text
