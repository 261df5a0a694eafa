"""Small SQL constructs of the write path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["array_param", "key_in", "keys_as_arrays", "match_keys", "unindexed"]


def keys_as_arrays(columns: Sequence[ColumnElement[Any]], dialect: sa.Dialect | None) -> bool:
    """Whether keys of ``columns`` travel as arrays (``= ANY``) on ``dialect``.

    On PostgreSQL an ``IN`` list of hundreds of parameters costs more to parse and
    plan than one array, and its text changes with the number of keys. Integer and
    string keys go as arrays there; other types (enums, custom types) keep ``IN``.
    """
    if dialect is None or dialect.name != "postgresql":
        return False
    for column in columns:
        type_ = column.type
        if isinstance(type_, (sa.Enum, sa.types.TypeDecorator)):
            return False
        if not isinstance(type_, (sa.Integer, sa.String)):
            return False
    return True


def array_param(name: str | None, column: ColumnElement[Any], value: Any = None) -> Any:
    """A parameter carrying the values of ``column`` for many keys as one array."""
    return sa.bindparam(name, value, type_=postgresql.ARRAY(column.type))


def match_keys(
    columns: Sequence[ColumnElement[Any]], params: Sequence[Any], arrays: bool
) -> ColumnElement[bool]:
    """``columns`` among the keys ``params`` carry: one array per column (from
    :func:`array_param`) when ``arrays``, otherwise one expanding parameter."""
    if arrays:
        if len(columns) == 1:
            return columns[0] == sa.any_(params[0])
        return tuple_(*columns).in_(sa.select(*[sa.func.unnest(p) for p in params]))
    (param,) = params
    if len(columns) == 1:
        return columns[0].in_(param)
    return tuple_(*columns).in_(param)


def key_in(
    columns: Sequence[ColumnElement[Any]],
    keys: Sequence[tuple[Any, ...]],
    dialect: sa.Dialect | None = None,
) -> ColumnElement[bool]:
    """``columns IN keys``: a plain ``IN`` for one column, a tuple ``IN`` for several;
    arrays on PostgreSQL (see :func:`keys_as_arrays`)."""
    if keys_as_arrays(columns, dialect):
        params = [
            array_param(None, column, [key[i] for key in keys]) for i, column in enumerate(columns)
        ]
        return match_keys(columns, params, arrays=True)
    values = [k[0] for k in keys] if len(columns) == 1 else list(keys)
    return match_keys(columns, [sa.bindparam(None, values, expanding=True)], arrays=False)


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
