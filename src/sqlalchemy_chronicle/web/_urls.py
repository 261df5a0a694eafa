"""URLs of the history browser's pages: the request a page handler gets, and the links
between pages. Shared by the router (:mod:`._pages`) and the templates (:mod:`._render`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode


@dataclass
class Request:
    """What a page handler gets: the path below the mount point and the query."""

    path: str
    root: str
    query: dict[str, list[str]] = field(default_factory=dict)

    def arg(self, name: str) -> str | None:
        """The first non-blank value of the query parameter ``name``, stripped."""
        for value in self.query.get(name, []):
            if value.strip():
                return value.strip()
        return None

    def url(self, path: str, params: Mapping[str, Any] | Sequence[tuple[str, Any]] = ()) -> str:
        """The URL of ``path`` (below the mount point) with the non-empty ``params``."""
        items = params.items() if isinstance(params, Mapping) else params
        pairs = [(k, str(v)) for k, v in items if v is not None and v != ""]
        return self.root + path + ("?" + urlencode(pairs) if pairs else "")


def entity_url(request: Request, table: str, key: Mapping[str, Any] | Sequence[Any],
               **params: Any) -> str:
    """The URL of the entity page of ``key`` (a dict of key columns, or their values)."""
    values = list(key.values()) if isinstance(key, Mapping) else list(key)
    pairs: list[tuple[str, Any]] = [("key", v) for v in values]
    pairs += [(k, v) for k, v in params.items()]
    return request.url("/entity/" + quote(table, safe=""), pairs)
