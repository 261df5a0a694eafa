"""Reading the pages as a user would: their visible text, table cells and links."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

_BLOCKS = {
    "p", "div", "h1", "h2", "li", "dt", "dd", "tr", "br", "section", "header", "footer",
    "nav", "form", "label", "option", "table", "thead", "tbody",
}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[tuple[str, str]] = []
        self._table: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._link: tuple[str, list[str]] | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("head", "script", "style"):
            self._skip += 1
        if tag == "table":
            name = a.get("class", "").split()[-1] if a.get("class") else ""
            self._table.append(name)
            self.tables.setdefault(name, [])
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a":
            self._link = (a.get("href", ""), [])
        if tag in _BLOCKS:
            self.text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.text.append("\n")
        if tag in ("head", "script", "style"):
            self._skip -= 1
        if tag == "table" and self._table:
            self._table.pop()
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table[-1]].append(self._row)
            self._row = None
        elif tag == "a" and self._link is not None:
            self.links.append((" ".join("".join(self._link[1]).split()), self._link[0]))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(re.sub(r"\s+", " ", data))
        if self._cell is not None:
            self._cell.append(data)
        if self._link is not None:
            self._link[1].append(data)


class Page:
    """A parsed HTML page."""

    def __init__(self, html: str) -> None:
        parser = _Page()
        parser.feed(html)
        parser.close()
        self.html = html
        raw = "".join(parser.text)
        self.text = "\n".join(" ".join(line.split()) for line in raw.splitlines() if line.strip())
        self.tables = parser.tables
        self.links = parser.links

    def rows(self, table: str) -> list[list[str]]:
        """The cell texts of each row of the table with class ``table`` (header too)."""
        return self.tables[table]

    def link(self, text: str) -> str:
        """The href of the (first) link whose text is ``text``."""
        for label, href in self.links:
            if label == text:
                return href
        raise AssertionError(f"no link {text!r} among {[t for t, _ in self.links]}")

    def has(self, *parts: Any) -> bool:
        return all(str(p) in self.text for p in parts)


def title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    assert match
    return match.group(1)
