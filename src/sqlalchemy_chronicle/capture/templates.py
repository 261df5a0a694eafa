"""The write path's statements, built once per version table and reused.

Every flush that versions rows runs the same few statements with new keys and a new
transaction id. Building and coercing a statement costs more Python time than
SQLite spends running it, so :class:`WriteStatements` builds each shape once, with
bound parameters for everything that changes (the transaction id, the operation,
the values plugins give, and the keys: one expanding parameter, or one array per key
column on PostgreSQL), and keeps it on the table's
:class:`~sqlalchemy_chronicle.schema.tables.VersionTableSpec`. SQLAlchemy then finds
the compiled form in its cache without rebuilding anything. :meth:`WriteStatements.run`
runs one for any number of keys, in chunks of at most :data:`CHUNK_PARAMS` values.

On PostgreSQL some of them also exist combined, as one statement with data-modifying
``WITH`` parts (:meth:`WriteStatements.close_and_from_live`,
:meth:`WriteStatements.close_and_copy_last`), optionally writing the transaction row
first (an :data:`Opening`): fewer round trips, and deleted rows' last versions found
once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..config import Operation, Strategy
from .sql import (
    ARRAYS,
    IN,
    JSON,
    array_param,
    first_values,
    json_keys,
    key_transport,
    match_keys,
    through_primary_key,
    unindexed,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ..schema.tables import VersionTableSpec

__all__ = [
    "CHUNK_PARAMS",
    "KEYS",
    "OP",
    "TX",
    "TX_VALUE",
    "Opening",
    "WriteStatements",
    "chunks",
    "extra_param",
    "statements_for",
]

#: The most bound parameters one key list of a statement carries.
CHUNK_PARAMS = 2000

#: Parameter names; prefixed so that they cannot meet a column's name in a SET clause.
TX = "_chronicle_tx"
#: Prefix of the parameters carrying the values of a transaction row a statement writes.
TX_VALUE = "_chronicle_t_"
OP = "_chronicle_op"
KEYS = "_chronicle_keys"
FIRSTS = "_chronicle_firsts"

PK = tuple[Any, ...]

#: A transaction row for a combined statement to write first: the transaction table
#: and the names of the columns given.
Opening = tuple[sa.Table, tuple[str, ...]]


def chunks(keys: Sequence[PK], width: int) -> Iterator[Sequence[PK]]:
    """``keys`` in slices of at most :data:`CHUNK_PARAMS` values (``width`` per key)."""
    size = max(1, CHUNK_PARAMS // max(1, width))
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def extra_param(key: str) -> str:
    """The parameter name of the plugin-given value for version column ``key``."""
    return f"_chronicle_x_{key}"


def statements_for(spec: VersionTableSpec, dialect: sa.Dialect) -> WriteStatements:
    """The statements of ``spec``'s version table for ``dialect`` (built on first use)."""
    transport = key_transport(spec.version_pk, dialect)
    firsts = transport == IN and dialect.name == "sqlite" and len(spec.version_pk) > 1
    cache_key = f"write_statements:{transport}:{firsts}"
    statements: WriteStatements | None = spec.cache.get(cache_key)
    if statements is None:
        statements = spec.cache[cache_key] = WriteStatements(spec, transport, firsts)
    return statements


class WriteStatements:
    """The statements that write one version table, by shape.

    Statements that take plugin values (``version_row_values``) exist once per set
    of column keys; the values are parameters named by :func:`extra_param`.
    """

    def __init__(self, spec: VersionTableSpec, transport: str = IN, firsts: bool = False) -> None:
        self.spec = spec
        #: How the keys travel (:func:`~.sql.key_transport`). With arrays (PostgreSQL)
        #: or JSON (SQLite) the SQL stays the same whatever the number
        #: of keys, so it is parsed and planned once.
        self.transport = transport
        self.arrays = transport == ARRAYS
        #: Add ``first key column IN (...)`` to a row-value ``IN`` (SQLite searches the
        #: index only then).
        self._firsts = firsts
        self._width = len(spec.version_pk)
        version = spec.version
        vpk = spec.version_pk
        self._tx = sa.bindparam(TX, type_=spec.tx.type)
        #: Rows this transaction wrote for some keys (several flushes fold into one).
        self.replace: sa.Delete = sa.delete(version).where(spec.tx == self._tx, self._keys_in(vpk))
        #: Close the open previous versions of some keys.
        self.close: sa.Update | None = None
        if spec.end_tx is not None:
            self.close = self._close_statement(self._tx)
        self._from_live: dict[tuple[str, ...], sa.Insert] = {}
        self._copy_last: dict[tuple[str, ...], sa.Insert] = {}
        self._mark_deleted: dict[tuple[str, ...], sa.Update] = {}
        #: The combined statements, by (kind, plugin columns, transaction row columns).
        self._combined: dict[tuple[str, tuple[str, ...], Opening | None], sa.Select[Any]] = {}
        self._current: sa.Select[Any] | None = None

    def _close_statement(self, tx: sa.ColumnElement[Any]) -> sa.Update:
        spec = self.spec
        assert spec.end_tx is not None
        return (
            sa.update(spec.version)
            .where(self._keys_in(spec.version_pk), unindexed(spec.end_tx).is_(None), spec.tx < tx)
            .values({spec.end_tx: tx})
        )

    def run(
        self,
        connection: Connection,
        stmt: sa.Executable,
        keys: Sequence[PK],
        tx_id: int,
        extra: tuple[tuple[str, Any], ...] = (),
        **params: Any,
    ) -> int:
        """Run ``stmt`` for ``keys`` (in chunks of at most :data:`CHUNK_PARAMS` key
        values) with transaction ``tx_id`` and the plugin values ``extra``; the number
        of rows it matched."""
        count = 0
        for chunk_params in self._params(keys, tx_id, extra, params):
            count += max(connection.execute(stmt, chunk_params).rowcount, 0)
        return count

    def counts(
        self,
        connection: Connection,
        stmt: sa.Select[Any],
        keys: Sequence[PK],
        tx_id: int | None,
        extra: tuple[tuple[str, Any], ...] = (),
        opening: tuple[sa.Select[Any], dict[str, Any]] | None = None,
        **params: Any,
    ) -> tuple[int, tuple[int, ...]]:
        """Run ``stmt``, a statement returning one row of counts, like :meth:`run`; the
        transaction id and the column-wise sums of the counts over the chunks.

        With ``opening`` (a statement built with an :data:`Opening`, and the values of
        the transaction row), the transaction row is still to be written (``tx_id`` is
        None): the first chunk runs that statement, which writes the row and returns
        its id last, and the other chunks run ``stmt`` with that id.
        """
        first: sa.Select[Any] | None = None
        if opening is not None:
            first, values = opening
            params.update((TX_VALUE + name, value) for name, value in values.items())
        totals: list[int] = []
        for chunk_params in self._params(keys, tx_id, extra, params):
            if first is not None:
                *row, new_id = connection.execute(first, chunk_params).one()
                tx_id = chunk_params[TX] = int(new_id)
                first = None
            else:
                row = list(connection.execute(stmt, chunk_params).one())
            totals = [a + int(b) for a, b in zip(totals or [0] * len(row), row, strict=True)]
        assert tx_id is not None, "counts() wrote no transaction row: no keys"
        return tx_id, tuple(totals)

    def _params(
        self,
        keys: Sequence[PK],
        tx_id: int | None,
        extra: tuple[tuple[str, Any], ...],
        params: dict[str, Any],
    ) -> Iterator[dict[str, Any]]:
        """The parameters of each chunk of ``keys`` (one dict, updated in place)."""
        if tx_id is not None:
            params[TX] = tx_id
        params.update((extra_param(key), value) for key, value in extra)
        for chunk in chunks(keys, self._width):
            params.update(self.key_params(chunk))
            yield params

    def key_params(self, keys: Sequence[PK]) -> dict[str, Any]:
        """The parameters that carry ``keys`` into these statements."""
        if self.transport == JSON:
            return {KEYS: json_keys(keys)}
        if self._width == 1:
            return {KEYS: [key[0] for key in keys]}
        if self.arrays:
            return {f"{KEYS}_{i}": [key[i] for key in keys] for i in range(self._width)}
        if self._firsts:
            return {KEYS: list(keys), FIRSTS: first_values(keys)}
        return {KEYS: list(keys)}

    def keys_in(self, columns: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[bool]:
        """``columns`` among the keys given by :meth:`key_params` (for statements built
        elsewhere, e.g. :mod:`.bulk`'s)."""
        return self._keys_in(columns)

    def _keys_in(self, columns: Sequence[sa.ColumnElement[Any]]) -> sa.ColumnElement[bool]:
        """``columns`` among the keys given by :meth:`key_params`."""
        if self.arrays:
            names = [KEYS] if len(columns) == 1 else [f"{KEYS}_{i}" for i in range(len(columns))]
            params = [array_param(n, c) for n, c in zip(names, columns, strict=True)]
            return match_keys(columns, params, ARRAYS)
        if self.transport == JSON:
            return match_keys(columns, [sa.bindparam(KEYS)], JSON)
        firsts: Any = sa.bindparam(FIRSTS, expanding=True) if self._firsts else None
        return match_keys(columns, [sa.bindparam(KEYS, expanding=True)], IN, firsts)

    def _columns(
        self,
        sources: Sequence[sa.ColumnElement[Any]],
        op: Any,
        extras: tuple[str, ...],
        tx: sa.ColumnElement[Any] | None = None,
    ) -> tuple[list[sa.Column[Any]], list[Any]]:
        """Target columns and the expressions selected into them for one INSERT."""
        spec = self.spec
        target = [v for _, v in spec.columns] + [spec.tx, spec.op]
        exprs: list[Any] = [*sources, self._tx if tx is None else tx, op]
        positions = {column.key: i for i, column in enumerate(target)}
        for key in extras:
            column = spec.version.c[key]
            param = sa.bindparam(extra_param(key), type_=column.type)
            if key in positions:
                exprs[positions[key]] = param
            else:
                target.append(column)
                exprs.append(param)
        return target, exprs

    def from_live(self, extras: tuple[str, ...]) -> sa.Insert:
        """Copy live rows into versions stamped with ``TX`` and ``OP``."""
        stmt = self._from_live.get(extras)
        if stmt is None:
            stmt = self._from_live[extras] = self._from_live_statement(extras, self._tx)
        return stmt

    def _from_live_statement(self, extras: tuple[str, ...], tx: sa.ColumnElement[Any]) -> sa.Insert:
        spec = self.spec
        op = sa.bindparam(OP, type_=spec.op.type)
        target, exprs = self._columns([p for p, _ in spec.columns], op, extras, tx)
        select = sa.select(*exprs).where(self._keys_in([p for p, _ in spec.pk]))
        return sa.insert(spec.version).from_select(target, select)

    def copy_last(self, extras: tuple[str, ...]) -> sa.Insert:
        """Copy each key's last version, unless it is a DELETE, as a DELETE of ``TX``."""
        stmt = self._copy_last.get(extras)
        if stmt is None:
            spec = self.spec
            prev = spec.version.alias("chronicle_prev")
            delete = sa.literal(int(Operation.DELETE), spec.op.type)
            target, exprs = self._columns([prev.c[v.key] for _, v in spec.columns], delete, extras)
            prev_tx = prev.c[spec.tx.key]
            prev_key = [prev.c[c.key] for c in spec.version_pk]
            if spec.end_tx is not None:
                # The last version is the open one (it is closed only after this copy).
                latest = sa.and_(unindexed(prev.c[spec.end_tx.key]).is_(None), prev_tx != self._tx)
            else:
                assert spec.strategy is Strategy.SUBQUERY
                newest = spec.version.alias("chronicle_newest")
                latest = prev_tx == (
                    sa.select(sa.func.max(newest.c[spec.tx.key]))
                    .where(*[newest.c[c.key] == prev.c[c.key] for c in spec.version_pk])
                    .scalar_subquery()
                )
            select = sa.select(*exprs).where(
                self._keys_in(prev_key), latest, prev.c[spec.op.key] != int(Operation.DELETE)
            )
            stmt = (
                sa.insert(spec.version)
                .from_select(target, select)
                .execution_options(preserve_rowcount=True)
            )
            self._copy_last[extras] = stmt
        return stmt

    def copy_versions(
        self,
        extras: tuple[str, ...],
        where: Callable[[Sequence[sa.ColumnElement[Any]]], sa.ColumnElement[bool]],
    ) -> sa.Insert:
        """Copy the versions that ``where`` picks as DELETEs of ``TX``.

        ``where`` is given the columns of the whole version key, ``(key...,
        transaction_id)``, of the rows read. For MySQL/MariaDB, which read them through
        the primary key (``FORCE INDEX``): a locking read by whole keys locks those rows
        and no gap. Built for each use, unlike the cached statements.
        """
        spec = self.spec
        prev = spec.version.alias("chronicle_prev")
        delete = sa.literal(int(Operation.DELETE), spec.op.type)
        target, exprs = self._columns([prev.c[v.key] for _, v in spec.columns], delete, extras)
        columns = [prev.c[c.key] for c in spec.version_pk] + [prev.c[spec.tx.key]]
        select = through_primary_key(sa.select(*exprs).where(where(columns)), prev)
        return sa.insert(spec.version).from_select(target, select)

    def close_and_from_live(
        self, extras: tuple[str, ...], opening: Opening | None = None
    ) -> sa.Select[Any] | None:
        """:attr:`close` and :meth:`from_live` in one statement, for keys with no row
        of this transaction yet.

        PostgreSQL only (data-modifying ``WITH``), validity strategy only; None
        elsewhere. Returns one row: how many previous versions it closed (and, with
        an ``opening``, the id of the transaction row it wrote). The parts see the same
        snapshot, so the close cannot meet the rows the statement adds.
        """
        if not self.arrays or self.spec.end_tx is None:
            return None
        cache_key = ("add", extras, opening)
        stmt = self._combined.get(cache_key)
        if stmt is None:
            cte, tx = self._opening(opening)
            one: sa.Label[Any] = sa.literal_column("1").label("one")
            closed = self._close_statement(tx).returning(one).cte("chronicle_closed")
            added = self._from_live_statement(extras, tx).cte("chronicle_added")
            stmt = self._counting(cte, tx, sa.func.count()).select_from(closed).add_cte(added)
            self._combined[cache_key] = stmt
        return stmt

    def close_and_copy_last(
        self, extras: tuple[str, ...], opening: Opening | None = None
    ) -> sa.Select[Any] | None:
        """:meth:`copy_last` and :attr:`close` for deleted entities in one statement.

        PostgreSQL only (data-modifying ``WITH``), validity strategy only; None
        elsewhere. It closes each key's open version unless it is a DELETE, copies
        the closed rows as DELETEs of ``TX``, and returns one row: how many it
        copied, and how many of those had a smaller transaction id than ``TX`` (the
        others were written by a newer transaction in between: see
        ``Writer._overtaken``); with an ``opening``, the id of the transaction row
        it wrote. Finding the last versions once instead of twice, and one round trip
        instead of two.
        """
        spec = self.spec
        if not self.arrays or spec.end_tx is None:
            return None
        cache_key = ("copy", extras, opening)
        stmt = self._combined.get(cache_key)
        if stmt is None:
            cte, tx = self._opening(opening)
            version = spec.version
            delete = int(Operation.DELETE)
            closed = (
                sa.update(version)
                .where(
                    self._keys_in(spec.version_pk),
                    unindexed(spec.end_tx).is_(None),
                    spec.tx != tx,
                    spec.op != delete,
                )
                .values({spec.end_tx: tx})
                .returning(*[v for _, v in spec.columns], spec.tx.label("chronicle_prev_tx"))
                .cte("chronicle_closed")
            )
            op = sa.literal(delete, spec.op.type)
            sources = [closed.c[v.key] for _, v in spec.columns]
            target, exprs = self._columns(sources, op, extras, tx)
            copied = (
                sa.insert(version).from_select(target, sa.select(*exprs)).cte("chronicle_copied")
            )
            older = sa.case((closed.c.chronicle_prev_tx < tx, 1), else_=0)
            counted = self._counting(
                cte, tx, sa.func.count(), sa.func.coalesce(sa.func.sum(older), 0)
            )
            stmt = counted.select_from(closed).add_cte(copied)
            self._combined[cache_key] = stmt
        return stmt

    def _opening(self, opening: Opening | None) -> tuple[Any, sa.ColumnElement[Any]]:
        """The ``WITH`` part writing the transaction row, and the expression of its id
        (the ``TX`` parameter without an ``opening``)."""
        if opening is None:
            return None, self._tx
        table, names = opening
        values = {table.c[n]: sa.bindparam(TX_VALUE + n, type_=table.c[n].type) for n in names}
        cte = sa.insert(table).values(values).returning(table.c.id).cte("chronicle_tx")
        return cte, sa.select(cte.c.id).scalar_subquery()

    @staticmethod
    def _counting(cte: Any, tx: sa.ColumnElement[Any], *counts: Any) -> sa.Select[Any]:
        """``SELECT counts`` (and the new transaction id when ``cte`` writes the row)."""
        if cte is None:
            return sa.select(*counts)
        return sa.select(*counts, tx.label("chronicle_tx_id")).add_cte(cte)

    def current(self) -> sa.Select[Any]:
        """The key, transaction id and operation of the current versions of some keys:
        the open one of each (validity strategy), or all of them (subquery strategy:
        the caller keeps the newest)."""
        if self._current is None:
            spec = self.spec
            vpk = spec.version_pk
            stmt: sa.Select[Any] = sa.select(*vpk, spec.tx, spec.op).where(self._keys_in(vpk))
            if spec.end_tx is not None:
                stmt = stmt.where(unindexed(spec.end_tx).is_(None))
            self._current = stmt
        return self._current

    def mark_deleted(self, extras: tuple[str, ...]) -> sa.Update:
        """Turn the versions ``TX`` wrote for some keys into DELETEs."""
        stmt = self._mark_deleted.get(extras)
        if stmt is None:
            spec = self.spec
            values: dict[Any, Any] = {spec.op: int(Operation.DELETE)}
            for key in extras:
                column = spec.version.c[key]
                values[column] = sa.bindparam(extra_param(key), type_=column.type)
            stmt = (
                sa.update(spec.version)
                .where(spec.tx == self._tx, self._keys_in(spec.version_pk))
                .values(values)
            )
            self._mark_deleted[extras] = stmt
        return stmt
