"""Small SQL constructs of the write path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["key_in", "unindexed"]


def key_in(
    columns: Sequence[ColumnElement[Any]], keys: Sequence[tuple[Any, ...]]
) -> ColumnElement[bool]:
    """``columns IN keys``: a plain ``IN`` for one column, a tuple ``IN`` for several."""
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return tuple_(*columns).in_(list(keys))


class unindexed(ColumnElement[Any]):
    """``column``, written so that the database does not pick an index on it.

    ``version.end_transaction_id IS NULL`` matches one row per live entity; given
    that and ``id IN (...)``, planners may scan the ``end_transaction_id`` index
    (every open version) instead of looking up the keys, a cost that grows with the
    table. ``(column + 0)`` keeps them on the primary key.
    """

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(unindexed)
def _no_index(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "(" + compiler.process(element.column, **kw) + " + 0)"
