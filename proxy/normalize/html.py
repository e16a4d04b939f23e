"""HTML to the text a reader sees, with the standard library's HTML parser.

Rules this module keeps:
1. A real parser (html.parser), not regexes: entities are decoded, comments, scripts and
   styles are skipped, tags never leak into the text.
2. Block elements and <br> become line breaks so words from two cells never run together
   into one (which could hide, or invent, a name).
3. Alt and title text is kept: a mention in an image's alt text is still a mention.
4. Never raises: broken markup yields whatever text the parser recovered.
"""

from __future__ import annotations

from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "head", "template", "noscript"})
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul",
    }
)  # fmt: skip
_VISIBLE_ATTRIBUTES = ("alt", "title")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skipping += 1
            return
        if tag in _BLOCK:
            self.chunks.append("\n")
        for name, value in attrs:
            if name in _VISIBLE_ATTRIBUTES and value:
                self.chunks.append(f" {value} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _SKIP:
            self._skipping -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document or fragment."""
    collector = _TextCollector()
    try:
        collector.feed(markup)
        collector.close()
    except (AssertionError, ValueError, IndexError):  # html.parser's failure modes on junk
        collector.chunks.append(markup)
    return "".join(collector.chunks)
