"""Small SQL constructs of the write path."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = [
    "ARRAYS",
    "IN",
    "JSON",
    "PRIMARY_KEY_HINT",
    "array_param",
    "first_values",
    "json_keys",
    "key_in",
    "key_transport",
    "match_keys",
    "ordered",
    "table_name",
    "through_primary_key",
    "unindexed",
]


def ordered(keys: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``keys`` sorted: in their own order when they compare (the order of the
    index), otherwise by their text. Writers that touch rows in one order cannot
    deadlock on each other's row locks."""
    keys = list(keys)
    try:
        keys.sort()
    except TypeError:
        keys.sort(key=repr)
    return keys


#: How a statement receives many keys: one array per key column (PostgreSQL), one
#: JSON document (SQLite), or an expanding ``IN`` list.
ARRAYS, JSON, IN = "arrays", "json", "in"


def _plain(type_: sa.types.TypeEngine[Any]) -> bool:
    """Integer and string columns, whose values survive an array or JSON unchanged."""
    if isinstance(type_, (sa.Enum, sa.types.TypeDecorator)):
        return False
    return isinstance(type_, (sa.Integer, sa.String))


def key_transport(columns: Sequence[ColumnElement[Any]], dialect: sa.Dialect | None) -> str:
    """How keys of ``columns`` travel on ``dialect``: :data:`ARRAYS`, :data:`JSON`
    or :data:`IN`.

    On PostgreSQL an ``IN`` list of hundreds of parameters costs more to parse and
    plan than one array per column, and its text changes with the number of keys.
    On SQLite a row-value ``IN (VALUES ...)`` is answered by scanning the whole table,
    and SQLAlchemy renders any expanding ``IN`` anew for every execution (a hundred
    keys cost about 40 µs more than one JSON parameter); keys passed as one JSON
    document to ``json_each`` are looked up through the index (SQLite 3.38 and newer,
    where the JSON functions are built in). Other types (enums, custom types) and
    other databases keep ``IN``.
    """
    if dialect is None or not all(_plain(column.type) for column in columns):
        return IN
    if dialect.name == "postgresql":
        return ARRAYS
    if dialect.name == "sqlite":
        version = dialect.server_version_info
        if version is not None and tuple(version) >= (3, 38):
            return JSON
    return IN


def array_param(name: str | None, column: ColumnElement[Any], value: Any = None) -> Any:
    """A parameter carrying the values of ``column`` for many keys as one array."""
    return sa.bindparam(name, value, type_=postgresql.ARRAY(column.type))


def first_values(keys: Iterable[Sequence[Any]]) -> list[Any]:
    """The distinct values of the first column of ``keys`` (see :func:`match_keys`)."""
    return list({key[0] for key in keys})


def json_keys(keys: Sequence[Sequence[Any]]) -> str:
    """``keys`` as the JSON document a :data:`JSON` parameter carries: an array of
    values for one-column keys, else an array of arrays."""
    if keys and len(keys[0]) == 1:
        return json.dumps([key[0] for key in keys])
    try:
        return json.dumps(keys)  # tuples are arrays to the encoder: no copy per key
    except TypeError:  # keys that are no tuples (rows)
        return json.dumps([list(key) for key in keys])


def match_keys(
    columns: Sequence[ColumnElement[Any]],
    params: Sequence[Any],
    transport: str,
    firsts: Any = None,
) -> ColumnElement[bool]:
    """``columns`` among the keys ``params`` carry: one array per column (from
    :func:`array_param`) for :data:`ARRAYS`, one JSON parameter (:func:`json_keys`)
    for :data:`JSON`, otherwise one expanding parameter; ``firsts``, an expanding
    parameter of the first column's values, lets SQLite search the index with a
    row-value ``IN``."""
    if transport == ARRAYS:
        if len(columns) == 1:
            return columns[0] == sa.any_(params[0])
        return tuple_(*columns).in_(sa.select(*[sa.func.unnest(p) for p in params]))
    (param,) = params
    if transport == JSON:
        pairs = sa.func.json_each(param).table_valued("value")
        if len(columns) == 1:
            return columns[0].in_(sa.select(pairs.c.value))
        parts = [
            sa.func.json_extract(pairs.c.value, sa.literal_column(f"'$[{i}]'"))
            for i in range(len(columns))
        ]
        return tuple_(*columns).in_(sa.select(*parts).select_from(pairs))
    if len(columns) == 1:
        return columns[0].in_(param)
    if firsts is not None:
        return sa.and_(columns[0].in_(firsts), tuple_(*columns).in_(param))
    return tuple_(*columns).in_(param)


def key_in(
    columns: Sequence[ColumnElement[Any]],
    keys: Sequence[tuple[Any, ...]],
    dialect: sa.Dialect | None = None,
) -> ColumnElement[bool]:
    """``columns IN keys``: a plain ``IN`` for one column, a tuple ``IN`` for several;
    arrays on PostgreSQL and JSON on SQLite (see :func:`key_transport`)."""
    transport = key_transport(columns, dialect)
    if transport == ARRAYS:
        params = [
            array_param(None, column, [key[i] for key in keys]) for i, column in enumerate(columns)
        ]
        return match_keys(columns, params, ARRAYS)
    if transport == JSON:
        return match_keys(columns, [sa.bindparam(None, json_keys(keys))], JSON)
    if len(columns) == 1:
        values = [k[0] for k in keys]
        return match_keys(columns, [sa.bindparam(None, values, expanding=True)], IN)
    firsts: Any = None
    if dialect is not None and dialect.name == "sqlite":
        firsts = sa.bindparam(None, first_values(keys), expanding=True)
    param: Any = sa.bindparam(None, list(keys), expanding=True)
    return match_keys(columns, [param], IN, firsts)


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


S = TypeVar("S", sa.Select[Any], sa.Update, sa.Delete)

#: MySQL/MariaDB: read a version table through its primary key. By the
#: ``transaction_id`` index their optimizer may prefer, a locking statement takes
#: next-key locks (gaps included) there, where other transactions insert versions.
PRIMARY_KEY_HINT = "FORCE INDEX (PRIMARY)"


def through_primary_key(stmt: S, table: sa.FromClause) -> S:
    """``stmt`` told to find the rows of ``table`` through its primary key on
    MySQL/MariaDB (other dialects ignore the hint)."""
    target: Any = table  # a Select and an UPDATE/DELETE type the hinted table apart
    for name in ("mysql", "mariadb"):
        stmt = stmt.with_hint(selectable=target, text=PRIMARY_KEY_HINT, dialect_name=name)
    return stmt


class table_name(ColumnElement[Any]):
    """The name of ``table`` as the dialect quotes it (schema included).

    MySQL/MariaDB take an index hint in a DELETE only in the multi-table form,
    ``DELETE t FROM t FORCE INDEX (PRIMARY) WHERE ...``: this renders the first ``t``,
    as a prefix of a :func:`sqlalchemy.delete`.
    """

    inherit_cache = True
    _traverse_internals = [("table", InternalTraversal.dp_clauseelement)]

    def __init__(self, table: sa.Table) -> None:
        self.table = table


@compiles(table_name)
def _table_name(element: table_name, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.preparer.format_table(element.table)
