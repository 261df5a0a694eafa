"""Rendering the pages with Jinja2 (imported only when the first page is rendered).

Autoescaping is on for every template, so every value read from the database is
escaped; the helpers below return plain text and never markup.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from importlib import resources
from typing import Any

import jinja2

from ._textdiff import is_long_text, line_diff
from ._urls import Request, entity_url

__all__ = ["Renderer", "show_value"]

#: Values longer than this are cut in lists (the entity page shows them whole).
CUT = 120


def show_value(value: Any, cut: int | None = None) -> str:
    """A value as text for the page (escaped by the template, not here)."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        text = f"{len(data)} bytes: {data[:32].hex(' ')}" + (" ..." if len(data) > 32 else "")
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    elif isinstance(value, dt.date | dt.time | decimal.Decimal | uuid.UUID):
        text = str(value)
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    else:
        text = str(value)
    if cut is not None and len(text) > cut:
        text = text[: cut - 1].rstrip() + "…"
    return text


def show_time(value: dt.datetime | None) -> str:
    """A transaction time in UTC, to the second."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def show_key(key: Any) -> str:
    """An entity key for the page: its value, or ``name=value, ...`` for a composite key."""
    if not isinstance(key, dict):
        return show_value(key)
    if len(key) == 1:
        return show_value(next(iter(key.values())))
    return ", ".join(f"{name}={show_value(value)}" for name, value in key.items())


class Renderer:
    """The Jinja2 environment of the history browser, and its stylesheet."""

    def __init__(self, title: str) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("sqlalchemy_chronicle.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            site_title=title,
            show_value=show_value,
            show_time=show_time,
            show_key=show_key,
            entity_url=entity_url,
            is_long_text=is_long_text,
            line_diff=line_diff,
            CUT=CUT,
        )
        self._css: bytes | None = None

    def render(self, template: str, *, request: Request, **context: Any) -> str:
        return self.env.get_template(template).render(request=request, **context)

    def stylesheet(self) -> bytes:
        if self._css is None:
            path = resources.files("sqlalchemy_chronicle.web").joinpath("static/style.css")
            self._css = path.read_bytes()
        return self._css
