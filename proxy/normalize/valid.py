"""Text that can always be written: no lone surrogates, on any decode path.

Rules this module keeps:
1. Every string normalize hands on encodes to UTF-8. Decoders the standard library offers
   can yield lone surrogates: UTF-7 (`+2AA-` is U+D800), UTF-16 with a broken pair, and
   `surrogateescape` for bytes that are not UTF-8. One such character made the seal, the
   log and `test-rules` raise, so a crafted subject kept a message undecided forever.
2. A lone surrogate becomes U+FFFD, the replacement character, as a reader's screen
   would show it; every other character is kept, so a name around it still matches.
3. Cost is one C-level pass (an encode attempt); only text that fails it is rewritten.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (rule 2)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(REPLACEMENT, text)
    return text
