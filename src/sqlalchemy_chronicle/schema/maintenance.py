"""Schema maintenance for existing version tables (use them in migrations).

These run SQL, unlike the builders beside them; they take the connection to use,
or the current Alembic migration's connection when none is given. Each is
set-based: a fixed number of statements (or of chunks), never one per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from ..config import Operation
from ..exc import ClassNotVersioned, ConfigurationError

__all__ = ["backfill", "update_end_tx_column", "update_property_mod_flags"]


def _connection(conn: Any) -> Any:
    if conn is not None:
        return conn
    try:
        from alembic import op
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "No connection given and Alembic is not installed: pass conn=, or run "
            "this inside an Alembic migration (pip install 'sqlalchemy-chronicle[alembic]')."
        ) from None
    return op.get_bind()


def _column(table: sa.Table, name: str, option: str) -> sa.Column[Any]:
    if name not in table.c:
        raise ConfigurationError(
            f"Version table {table.name!r} has no column {name!r} (option {option!r})."
        )
    return table.c[name]


def update_end_tx_column(
    table: sa.Table,
    end_tx_column_name: str = "end_transaction_id",
    tx_column_name: str = "transaction_id",
    conn: Any = None,
) -> None:
    """Fill ``end_transaction_id`` of every row of version table ``table``.

    Use it to move a version table from the ``subquery`` strategy to ``validity``
    once the column exists: each version ends where the next version of the same
    entity begins; the newest version of each entity stays open (NULL). Runs two
    set-based statements, whatever the number of rows.
    """
    conn = _connection(conn)
    tx = _column(table, tx_column_name, "transaction_column_name")
    end = _column(table, end_tx_column_name, "end_transaction_column_name")
    keys = _entity_key(table, tx, tx_column_name)
    conn.execute(sa.update(table).values({end: None}))
    older = table.alias("chronicle_older")
    newer = table.alias("chronicle_newer")
    following = (
        sa.select(
            *[older.c[c.key] for c in keys],
            older.c[tx.key].label("tx"),
            sa.func.min(newer.c[tx.key]).label("next_tx"),
        )
        .select_from(
            older.join(
                newer,
                sa.and_(
                    *[older.c[c.key] == newer.c[c.key] for c in keys],
                    newer.c[tx.key] > older.c[tx.key],
                ),
            )
        )
        .group_by(*[older.c[c.key] for c in keys], older.c[tx.key])
        .subquery("chronicle_following")
    )
    conn.execute(
        sa.update(table)
        .where(*[c == following.c[c.key] for c in keys], tx == following.c.tx)
        .values({end: following.c.next_tx})
    )


def update_property_mod_flags(
    table: sa.Table,
    tracked_columns: Iterable[str],
    mod_suffix: str = "_mod",
    end_tx_column_name: str = "end_transaction_id",
    tx_column_name: str = "transaction_id",
    conn: Any = None,
) -> None:
    """Compute the ``*_mod`` flags of every row of version table ``table``.

    Use it in the migration that adds :class:`~sqlalchemy_chronicle.plugins.
    PropertyModTrackerPlugin` columns to a table that already holds history. For each
    column name in ``tracked_columns``, the flag column ``<name><mod_suffix>`` of a
    version is set to true exactly when the version is the first of its entity or the
    column's value differs from the entity's previous version (NULL and a value
    differ; two NULLs do not), and to false otherwise, whatever it held before.

    The previous version is the one with the next lower transaction id, found with a
    window function, so the flags are right whether or not ``end_tx_column_name`` is
    filled in; that argument is accepted for compatibility and not needed. One
    ``UPDATE`` does all rows and all columns (SQLite 3.25+, PostgreSQL, MariaDB
    10.2+, MySQL 8).
    """
    names = list(tracked_columns)
    conn = _connection(conn)
    tx = _column(table, tx_column_name, "transaction_column_name")
    keys = _entity_key(table, tx, tx_column_name)
    pairs = []
    for name in names:
        value = _column(table, name, "tracked_columns")
        flag = _column(table, name + mod_suffix, "mod_suffix")
        pairs.append((value, flag))
    if not pairs:
        return

    def previous(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.lag(column).over(partition_by=keys, order_by=tx)

    history = sa.select(
        *[c.label(f"k{i}") for i, c in enumerate(keys)],
        tx.label("tx"),
        previous(tx).label("prev_tx"),
        *[previous(value).label(f"p{i}") for i, (value, _) in enumerate(pairs)],
    ).subquery("chronicle_history")
    first = history.c.prev_tx.is_(None)
    conn.execute(
        sa.update(table)
        .where(*[c == history.c[f"k{i}"] for i, c in enumerate(keys)], tx == history.c.tx)
        .values(
            {
                flag: sa.case(
                    (first, sa.true()),
                    else_=value.is_distinct_from(history.c[f"p{i}"]),
                )
                for i, (value, flag) in enumerate(pairs)
            }
        )
    )


def _entity_key(table: sa.Table, tx: sa.Column[Any], tx_column_name: str) -> list[sa.Column[Any]]:
    keys = [c for c in table.primary_key.columns if c is not tx]
    if not keys:
        raise ConfigurationError(
            f"Version table {table.name!r} has no primary key besides {tx_column_name!r}."
        )
    return keys


def _versioned_specs(model: type) -> tuple[Any, Any]:
    """The versioning manager of ``model`` and the version table specs of its tables."""
    sa.orm.configure_mappers()
    manager = getattr(model, "__versioning_manager__", None)
    if manager is None:
        raise ClassNotVersioned(
            f"{getattr(model, '__name__', model)!r} is not versioned: backfill() takes a "
            f"versioned model class."
        )
    return manager, manager.versioned_model(model).specs


def backfill(op: Any, model: type, *, chunk_size: int = 10_000) -> int:
    """Write an initial INSERT version for every row of ``model`` that has no version.

    For tables that held data before versioning was turned on: in the migration that
    creates the version tables (or any later one), ``backfill(op, Article)`` gives
    each existing row without any version one INSERT version, all in a single new
    transaction row (written as a flush writes it: the :func:`versioning_context` and
    plugins give its values), so that history, ``as_of()`` and revert see the rows. Rows that
    already have a version are left alone, so running it twice writes nothing the
    second time. Returns the number of versions written.

    ``op`` is Alembic's ``op`` (its connection is used) or a
    :class:`~sqlalchemy.engine.Connection`. The work is set-based: one
    ``INSERT INTO <version> SELECT ... FROM <table>`` per chunk of ``chunk_size``
    rows in primary key order, so memory stays flat whatever the table's size. Every
    table of the model is filled (for joined-table inheritance, the base table's
    rows too). The values are those of the table now; columns a plugin adds to the
    version table take their server defaults.

    .. versionadded:: 0.1
    """
    if chunk_size < 1:
        raise ConfigurationError(f"backfill(): chunk_size must be positive, not {chunk_size!r}.")
    conn = op.get_bind() if hasattr(op, "get_bind") else op
    manager, specs = _versioned_specs(model)
    tx_id: int | None = None
    written = 0
    for spec in specs:
        parent, version = spec.parent, spec.version
        keys = [p for p, _ in spec.pk]
        missing = ~sa.exists().where(*[v == p for p, v in spec.pk])
        pending = sa.select(sa.literal(1)).select_from(parent).where(missing).limit(1)
        if conn.execute(pending).first() is None:
            continue
        if tx_id is None:
            tx_id = _transaction_row(conn, manager)
        values = [p for p, _ in spec.columns]
        target = [v.name for _, v in spec.columns] + [spec.tx.name, spec.op.name]
        copy = sa.select(
            *values,
            sa.literal(tx_id, spec.tx.type),
            sa.literal(int(Operation.INSERT), spec.op.type),
        ).where(missing)
        for lower, upper in _key_ranges(conn, parent, keys, chunk_size):
            chunk = copy
            if lower is not None:
                chunk = chunk.where(_key(keys) > _bound(keys, lower))
            if upper is not None:
                chunk = chunk.where(_key(keys) <= _bound(keys, upper))
            insert = sa.insert(version).from_select(target, chunk)
            result = conn.execute(insert.execution_options(preserve_rowcount=True))
            written += result.rowcount
    return written


def _transaction_row(conn: Any, manager: Any) -> int:
    """Write one transaction row, as a flush would (context, plugins' values, and the
    id source of the table at hand), and return its id."""
    session = sa.orm.Session(bind=conn)
    try:
        uow = manager.unit_of_work(session)
        uow.create_transaction(session)
        return int(uow.transaction_id)
    finally:
        session.close()


def _key(keys: Sequence[sa.Column[Any]]) -> Any:
    return keys[0] if len(keys) == 1 else sa.tuple_(*keys)


def _bound(keys: Sequence[sa.Column[Any]], values: Sequence[Any]) -> Any:
    if len(keys) == 1:
        return values[0]
    return sa.tuple_(*[sa.literal(v, k.type) for k, v in zip(keys, values, strict=True)])


def _key_ranges(
    conn: Any, table: sa.Table, keys: Sequence[sa.Column[Any]], size: int
) -> Iterable[tuple[Sequence[Any] | None, Sequence[Any] | None]]:
    """(exclusive lower, inclusive upper) key bounds of successive chunks of ``size``
    rows, found by walking the primary key index; None means unbounded."""
    lower: Sequence[Any] | None = None
    while True:
        probe = sa.select(*keys).order_by(*keys).offset(size - 1).limit(1)
        if lower is not None:
            probe = probe.where(_key(keys) > _bound(keys, lower))
        row = conn.execute(probe).first()
        upper = tuple(row) if row is not None else None
        yield lower, upper
        if upper is None:
            return
        lower = upper
