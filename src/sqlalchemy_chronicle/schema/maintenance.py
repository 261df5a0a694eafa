"""Schema maintenance for existing version tables (use them in migrations).

These run SQL, unlike the builders beside them; they take the connection to use,
or the current Alembic migration's connection when none is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from ..config import Operation
from ..exc import ConfigurationError

__all__ = ["update_end_tx_column", "update_property_mod_flags"]


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
    keys = [c for c in table.primary_key.columns if c is not tx]
    if not keys:
        raise ConfigurationError(
            f"Version table {table.name!r} has no primary key besides {tx_column_name!r}."
        )
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
    *,
    operation_type_column_name: str = "operation_type",
) -> None:
    """Compute the ``*_mod`` flags of every row of version table ``table``.

    Use it in the migration that adds :class:`~sqlalchemy_chronicle.plugins.
    PropertyModTrackerPlugin` columns to a table that already holds history. For each
    column name in ``tracked_columns``, the flag column ``<name><mod_suffix>`` of a
    version is set to true when the version is the first of its entity, when the
    column's value differs from the entity's previous version (NULL and a value
    differ; two NULLs do not), or when the version is a DELETE (as the plugin writes
    them; only if the table has ``operation_type_column_name``).

    The previous version is the one with the next lower transaction id, found with a
    window function, so the flags are right whether or not ``end_tx_column_name`` is
    filled in; that argument is accepted for compatibility and not needed. One
    ``UPDATE`` does all rows and all columns (SQLite 3.25+, PostgreSQL, MariaDB
    10.2+, MySQL 8).
    """
    names = list(tracked_columns)
    conn = _connection(conn)
    tx = _column(table, tx_column_name, "transaction_column_name")
    keys = [c for c in table.primary_key.columns if c is not tx]
    if not keys:
        raise ConfigurationError(
            f"Version table {table.name!r} has no primary key besides {tx_column_name!r}."
        )
    pairs = []
    for name in names:
        value = _column(table, name, "tracked_columns")
        flag = _column(table, name + mod_suffix, "mod_suffix")
        pairs.append((value, flag))
    if not pairs:
        return
    op = table.c.get(operation_type_column_name)

    def previous(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.lag(column).over(partition_by=keys, order_by=tx)

    history = sa.select(
        *[c.label(f"k{i}") for i, c in enumerate(keys)],
        tx.label("tx"),
        previous(tx).label("prev_tx"),
        *[previous(value).label(f"p{i}") for i, (value, _) in enumerate(pairs)],
    ).subquery("chronicle_history")
    first: sa.ColumnElement[bool] = history.c.prev_tx.is_(None)
    if op is not None:
        first = sa.or_(first, op == int(Operation.DELETE))
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
