"""Line-by-line diff of two long texts, for the side-by-side diff of the entity page.

Pure functions over :mod:`difflib`; the templates render the rows (and escape them).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["LineRow", "Segment", "is_long_text", "line_diff"]

#: Texts longer than this (or with several lines) are diffed line by line.
LONG_TEXT = 80

#: Words, runs of blanks and single punctuation marks: what changes inside a line.
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class Segment:
    """A piece of one line; ``changed`` pieces are highlighted."""

    text: str
    changed: bool


@dataclass(frozen=True)
class LineRow:
    """One row of a side-by-side line diff.

    ``old_no``/``new_no`` are 1-based line numbers, None where that side has no line.
    """

    kind: Literal["equal", "replace", "delete", "insert"]
    old_no: int | None
    old: tuple[Segment, ...]
    new_no: int | None
    new: tuple[Segment, ...]


def is_long_text(old: Any, new: Any) -> bool:
    """Whether the two values are texts better shown as a line diff."""
    texts = [v for v in (old, new) if isinstance(v, str)]
    if not texts or any(v is not None and not isinstance(v, str) for v in (old, new)):
        return False
    return any("\n" in t or len(t) > LONG_TEXT for t in texts)


def _whole(line: str, changed: bool) -> tuple[Segment, ...]:
    return (Segment(line, changed),)


def _inline(old: str, new: str) -> tuple[tuple[Segment, ...], tuple[Segment, ...]]:
    """Both lines cut into segments, the words that differ marked as changed."""
    a, b = _TOKENS.findall(old), _TOKENS.findall(new)
    left: list[Segment] = []
    right: list[Segment] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if i2 > i1:
            left.append(Segment("".join(a[i1:i2]), tag != "equal"))
        if j2 > j1:
            right.append(Segment("".join(b[j1:j2]), tag != "equal"))
    return tuple(left), tuple(right)


def line_diff(old: str | None, new: str | None) -> list[LineRow]:
    """The rows of a side-by-side diff of ``old`` and ``new`` (None counts as no text)."""
    a = (old or "").splitlines()
    b = (new or "").splitlines()
    rows: list[LineRow] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(
                LineRow("equal", i + 1, _whole(a[i], False), j + 1, _whole(b[j], False))
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
            continue
        # Pair the lines of a replaced block one to one (highlighting words), then show
        # what is left over on one side only.
        pairs = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        for k in range(pairs):
            left, right = _inline(a[i1 + k], b[j1 + k])
            rows.append(LineRow("replace", i1 + k + 1, left, j1 + k + 1, right))
        rows.extend(
            LineRow("delete", i + 1, _whole(a[i], True), None, ())
            for i in range(i1 + pairs, i2)
        )
        rows.extend(
            LineRow("insert", None, (), j + 1, _whole(b[j], True))
            for j in range(j1 + pairs, j2)
        )
    return rows
