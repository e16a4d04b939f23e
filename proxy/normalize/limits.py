"""How much of a message is read closely: documented caps, so reading costs what it should.

Rules this module keeps:
1. The caps bound *analysis*, never delivery or sealing: a message over any cap is still
   delivered or sealed byte for byte, and everything past the caps is still searched, by
   the linear scan in `proxy.rules.scan` (names, addresses, domains and numbers).
2. The standard library's MIME parser costs per line times the nesting depth, and per
   part; it is given only a prefix of the message, cut at a line end before the first cap
   it would pass: `header_bytes` of header block, `body_bytes` or `body_lines` of body,
   `parts` delimiter lines, `boundaries` multipart declarations (which bound the nesting).
3. Decoded text is capped per part (`part_text`) and per message (`message_text`), HTML
   markup given to the HTML parser per part (`html_markup`: deep nesting costs lexbor
   ~0.1 s per MiB, a quarter of that for a quarter) and nodes walked in it (`html_nodes`:
   a Python step each; a long newsletter has a few thousand), and
   at most `encoded_words` RFC 2047 words are decoded per header (the rest is kept raw).
   At most `mentions` addresses and as many numbers are read out of the text by the
   precise parsers. The stdlib reads a Content-Type or Content-Disposition value by
   re-counting the quotes before every ';' (length x count of ';': 60,000 of them in a
   60 KB value cost 4-9 s); a value over `parameter_cost` is cut where it fits, and the
   parameters that change how the part reads (charset, boundary, name, filename) are
   taken from the rest and kept.
4. Finding the cut is itself linear: C-level searches over the bytes, at most a cap's
   worth of steps.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The caps on reading one message closely (see the module rules)."""

    header_bytes: int = 64 << 10
    body_bytes: int = 2 << 20
    body_lines: int = 32_768
    parts: int = 1_000
    boundaries: int = 16
    encoded_words: int = 1_000
    part_text: int = 1 << 20
    html_markup: int = 256 << 10
    html_nodes: int = 20_000
    message_text: int = 4 << 20
    mentions: int = 250
    parameter_cost: int = 10_000_000  # characters x ';' of one parameter header


LIMITS = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class Prefix:
    """The part of a message the MIME parser reads, and whether that is all of it."""

    data: bytes
    header_end: int  # offset just past the header block's blank line (or len(data))
    complete: bool  # the prefix is the whole message
    headers_complete: bool  # the prefix holds the whole header block


def header_block_end(raw: bytes, within: int | None = None) -> int | None:
    """The offset just past the blank line that ends the header block (looked for in the
    first `within` bytes, or all of them), or None if there is none."""
    # Two C-level finds, the second bounded by the first (a regex with no literal start
    # costs ~10 ns a byte: 0.1 s over 10 MB of headers).
    limit = len(raw) if within is None else min(within, len(raw))
    crlf = raw.find(b"\n\r\n", 0, limit)
    lf = raw.find(b"\n\n", 0, limit if crlf < 0 else crlf + 1)
    if lf >= 0:
        return lf + 2
    return None if crlf < 0 else crlf + 3


def analysed_prefix(raw: bytes, limits: Limits = LIMITS) -> Prefix:
    """The prefix of `raw` within every cap (rule 2), cut at a line end."""
    header_end = header_block_end(raw, limits.header_bytes + 4)
    if header_end is None:
        if len(raw) <= limits.header_bytes:
            return Prefix(data=raw, header_end=len(raw), complete=True, headers_complete=True)
        cut = raw.rfind(b"\n", 0, limits.header_bytes) + 1
        data = raw[:cut] + b"\r\n"  # the block ends here: what follows is not read closely
        return Prefix(data=data, header_end=len(data), complete=False, headers_complete=False)
    cut = min(len(raw), header_end + limits.body_bytes)
    cut = _nth(b"\n", raw, header_end, cut, limits.body_lines)
    cut = _nth(b"\n--", raw, header_end, cut, limits.parts)
    found = _nth_boundary(raw[header_end:cut].lower(), limits.boundaries + 1)
    if found is not None:
        cut = header_end + found
    if cut < len(raw):
        cut = raw.rfind(b"\n", header_end, cut) + 1 or header_end
        return Prefix(data=raw[:cut], header_end=header_end, complete=False, headers_complete=True)
    return Prefix(data=raw, header_end=header_end, complete=True, headers_complete=True)


def _nth_boundary(lowered: bytes, n: int) -> int | None:
    """Where the `n`th "boundary" parameter name starts in `lowered` (a case-blind regex
    costs 4 us per KiB; lowering and finding, 0.7)."""
    at = -1
    for _ in range(n):
        at = lowered.find(b"boundary", at + 1)
        if at == -1:
            return None
    return at


def _nth(separator: bytes, raw: bytes, start: int, end: int, n: int) -> int:
    """Where the `n`th `separator` in raw[start:end] starts, or `end` if there are fewer.

    A C-level count first; then one C-level split (a Python step per match would cost
    ~0.3 us each, 10 ms for 32,768 lines)."""
    if end - start < n * len(separator) or raw.count(separator, start, end) < n:
        return end  # (too short to hold n: most mail is, and needs no count)
    rest = raw[start:end].split(separator, n)[-1]
    return end - len(rest) - len(separator)
