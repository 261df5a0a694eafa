"""Schema maintenance for existing version tables (use them in migrations).

These run SQL, unlike the builders beside them; they take the connection to use,
or the current Alembic migration's connection when none is given.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..exc import ConfigurationError

__all__ = ["update_end_tx_column"]


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
