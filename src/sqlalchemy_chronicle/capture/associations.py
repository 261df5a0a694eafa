"""Capture of writes to many-to-many association (``secondary``) tables.

The ORM writes association rows with plain Core INSERT and DELETE statements, as
an application may too; both are captured at the statement level, on the
connection of a versioned session transaction:

* a DELETE is versioned *before* it runs: the rows it is about to delete are
  copied into the version table as DELETE versions, exactly as they are, with the
  statement's own WHERE clause;
* an INSERT is versioned *after* it runs, from the rows it inserted; for an
  ``INSERT ... FROM SELECT`` those are the rows its SELECT returns, read just
  *before* it runs (:func:`read_insert_source`): the SELECT may read the
  association table itself, which the INSERT then changes.

Each captured statement costs a constant number of extra statements (the ORM's
executemany of N key pairs is turned into one ``IN`` list).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

from .._compat import from_select_names
from ..config import Operation
from ..exc import NotSupportedError
from .sql import key_in, ordered
from .templates import chunks, statements_for
from .writer import Writer

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, CursorResult

    from ..schema.tables import VersionTableSpec
    from .unit_of_work import UnitOfWork

__all__ = ["read_insert_source", "version_association_delete", "version_association_insert"]

_MULTI_VALUE_KEY = re.compile(r"^(?P<key>.+)_m(?P<row>\d+)$")


def _equality_bindings(
    where: sa.ColumnElement[Any] | None, table: sa.Table
) -> dict[str, sa.Column[Any]] | None:
    """``{bind name: column}`` when ``where`` is ``col = :bind AND ...`` on ``table``."""
    if where is None:
        return None
    clauses = list(where.clauses) if isinstance(where, BooleanClauseList) else [where]
    if isinstance(where, BooleanClauseList) and where.operator is not operators.and_:
        return None
    bindings: dict[str, sa.Column[Any]] = {}
    for clause in clauses:
        if not isinstance(clause, BinaryExpression) or clause.operator is not operators.eq:
            return None
        left, right = clause.left, clause.right
        if isinstance(left, BindParameter):
            left, right = right, left
        if not (isinstance(left, sa.Column) and left.table is table):
            return None
        if not isinstance(right, BindParameter) or right.value is not None:
            return None
        bindings[right.key] = left
    return bindings


def _filter(
    stmt: sa.Delete, table: sa.Table, params: Sequence[Mapping[str, Any]], dialect: sa.Dialect
) -> tuple[sa.ColumnElement[bool], list[Mapping[str, Any]]]:
    """A WHERE clause selecting the rows ``stmt`` deletes, and the params to run it with.

    The ORM deletes association rows with ``col = :col AND ...`` executed for many
    parameter sets; that becomes one ``(cols) IN (...)`` run once (see
    :func:`~.sql.key_in`). Anything else keeps the statement's own clause and
    parameters.
    """
    where = stmt.whereclause
    bindings = _equality_bindings(where, table)
    if bindings and params and all(set(p) >= set(bindings) for p in params):
        names = list(bindings)
        columns = [bindings[n] for n in names]
        rows = ordered({tuple([p[n] for n in names]) for p in params})
        return key_in(columns, rows, dialect), [{}]
    return (where if where is not None else sa.true()), list(params) or [{}]


def version_association_delete(
    uow: UnitOfWork,
    connection: Connection,
    spec: VersionTableSpec,
    stmt: sa.Delete,
    params: Sequence[Mapping[str, Any]],
) -> None:
    """Version the rows ``stmt`` is about to delete from association table ``spec.parent``.

    The rows are read first, with the statement's own WHERE clause and parameters, so
    their DELETE versions hold exactly what is deleted.
    """
    table, version = spec.parent, spec.version
    dialect = connection.dialect
    where, run_params = _filter(stmt, table, params, dialect)
    select = sa.select(*[p for p, _ in spec.columns]).where(where)
    doomed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for param_set in run_params:
        for row in connection.execute(select, param_set).mappings():
            values = {v.key: row[p.key] for p, v in spec.columns}
            doomed[tuple(values[v.key] for _, v in spec.pk)] = values
    if not doomed:
        return
    writer = Writer(uow, connection=connection)
    tx_id = writer.tx_id()
    keys = ordered(doomed)
    vkey = list(spec.version_pk)
    if spec.end_tx is not None:
        writer.close(spec, keys)
    if version in uow.association_touched:
        # Rows this transaction versioned already (inserted earlier) become DELETEs.
        mine = sa.select(*vkey).where(spec.tx == tx_id, key_in(vkey, keys, dialect))
        seen = {tuple(r) for r in connection.execute(mine)}
        writer.mark_deleted(spec, ordered(seen))
        keys = [k for k in keys if k not in seen]
    writer.insert_rows(spec, [doomed[k] for k in keys], Operation.DELETE)
    uow.association_touched.add(version)


def _inserted_rows(
    stmt: sa.Insert, table: sa.Table, result: CursorResult[Any], params: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The column values of the rows ``stmt`` inserted, as far as they are known."""
    names = set(table.c.keys())
    compiled = list(result.context.compiled_parameters)
    rows: list[Mapping[str, Any]] = []
    for bound in compiled:
        if names.issuperset(bound):  # one row, by column (the ORM's executemany)
            rows.append(bound)  # read only, never changed (but see the end)
            continue
        multi: dict[int, dict[str, Any]] = {}
        for name, value in bound.items():
            if name in names:
                continue
            match = _MULTI_VALUE_KEY.match(name)
            if match and match["key"] in names:
                multi.setdefault(int(match["row"]), {})[match["key"]] = value
        if multi:
            rows.extend(multi[i] for i in sorted(multi))
        else:
            rows.append({k: v for k, v in bound.items() if k in names})
    if len(rows) == 1 and result.inserted_primary_key is not None:
        row = rows[0] = dict(rows[0])
        for column, value in zip(
            table.primary_key.columns, result.inserted_primary_key, strict=False
        ):
            if value is not None:
                row.setdefault(column.key, value)
    return rows


def read_insert_source(
    connection: Connection, stmt: sa.Insert, params: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]] | None:
    """The rows an ``INSERT ... FROM SELECT`` is about to add, as ``{column key:
    value}``, read by running its SELECT (None for another INSERT).

    Run before the INSERT: what the SELECT returns then is what the INSERT adds.
    """
    names = from_select_names(stmt)
    if names is None:
        return None
    rows: list[dict[str, Any]] = []
    for param_set in params or [{}]:
        result = connection.execute(stmt.select, param_set)  # type: ignore[arg-type]
        rows.extend(dict(zip(names, row, strict=True)) for row in result)
    return rows


def _given(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> set[tuple[Any, ...]] | None:
    """The distinct values of the columns ``names`` in ``rows``, as tuples; None when a
    row lacks one of them (or there are no rows)."""
    if not rows:
        return None
    get = operator.itemgetter(*names)
    try:
        if len(names) == 1:
            return {(value,) for value in map(get, rows)}
        return set(map(get, rows))
    except KeyError:
        return None


def version_association_insert(
    uow: UnitOfWork,
    connection: Connection,
    spec: VersionTableSpec,
    stmt: sa.Insert,
    params: Sequence[Mapping[str, Any]],
    result: CursorResult[Any],
    source: list[dict[str, Any]] | None = None,
) -> None:
    """Version the rows ``stmt`` inserted into association table ``spec.parent``.

    The rows are found again by their key, or, when the database generated a
    surrogate key, by the link (foreign key) columns given. A row that already had a
    current version (a pair inserted again on a table that allows duplicates) gets
    none; one deleted earlier in this transaction becomes an UPDATE. ``source``: the
    rows of an ``INSERT ... FROM SELECT``, read before it ran
    (:func:`read_insert_source`); a SELECT whose rows change from one run to the next
    (a volatile function, LIMIT without ORDER BY) is versioned with those it returned
    then.
    """
    table, version = spec.parent, spec.version
    dialect = connection.dialect
    rows: Sequence[Mapping[str, Any]]
    if source is None:
        rows = _inserted_rows(stmt, table, result, params)
    else:
        rows = source
        if not rows:
            return
    key_names = [p.key for p, _ in spec.pk]
    match_names = key_names
    found = _given(rows, key_names)
    if found is None:
        match_names = sorted({c.key for c in table.columns if c.foreign_keys})
        found = _given(rows, match_names) if match_names else None
    if found is None:
        raise NotSupportedError(
            f"Cannot version this INSERT into association table {table.name!r}: the rows "
            f"it adds cannot be told apart (no values for {', '.join(key_names)}); insert "
            f"the rows with their key values, or through the relationship."
        )
    values = ordered(found)
    if match_names == key_names:
        keys = values
    else:
        # The database chose the keys: find the rows again by the links given.
        match_columns = [table.c[n] for n in match_names]
        select = sa.select(*[p for p, _ in spec.pk])
        found_keys: set[tuple[Any, ...]] = set()
        for chunk in chunks(values, len(match_columns)):
            found_keys.update(
                tuple(row)
                for row in connection.execute(select.where(key_in(match_columns, chunk, dialect)))
            )
        keys = ordered(found_keys)
    if not keys:
        return
    writer = Writer(uow, connection=connection)
    tx_id = writer.tx_id()
    vkey = list(spec.version_pk)
    width = len(vkey)
    # The current version of each key: the open one (validity), or the newest.
    current: dict[tuple[Any, ...], tuple[int, int]] = {}
    statements = statements_for(spec, dialect)
    newest = statements.current()
    for chunk in chunks(keys, width):
        for row in connection.execute(newest, statements.key_params(chunk)):
            key = tuple(row[:width])
            tx, op = row[width], row[width + 1]
            if key not in current or tx > current[key][0]:
                current[key] = (tx, op)
    if current:
        again = [k for k in keys if k in current and current[k][0] == tx_id]
        again = [k for k in again if current[k][1] == Operation.DELETE]
        fresh = [
            k
            for k in keys
            if k not in current or (current[k][0] != tx_id and current[k][1] == Operation.DELETE)
        ]
    else:
        again, fresh = [], keys
    if not fresh and not again:
        return
    reopened = [k for k in fresh if k in current]  # only these have a version to close
    if spec.end_tx is not None and reopened:
        writer.close(spec, reopened)
    # Deleted earlier in this transaction and inserted again: an UPDATE.
    writer.replace(spec, again)
    if table.primary_key.columns:
        # Each key names one live row: copy the rows as they are now, server-side.
        writer.from_live(spec, fresh, Operation.INSERT)
        writer.from_live(spec, again, Operation.UPDATE)
    else:
        # No primary key: every column is part of the key, and rows may repeat.
        names = [v.key for v in vkey]
        for op, group in ((Operation.INSERT, fresh), (Operation.UPDATE, again)):
            writer.insert_rows(spec, [dict(zip(names, k, strict=True)) for k in group], op)
    uow.association_touched.add(version)
