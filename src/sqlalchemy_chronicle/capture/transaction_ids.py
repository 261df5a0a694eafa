"""Where the id of a new transaction row comes from, in the database at hand.

The transaction table's ``id`` takes its values from a sequence named in each INSERT
(see :func:`~sqlalchemy_chronicle.schema.tables.build_transaction_table`), as
SQLAlchemy-Continuum's does. On PostgreSQL every layout has that sequence (Continuum's, a
BIGSERIAL of an earlier version, a fresh ``create_all``). On MariaDB a table created by an
earlier version of this library, or by a migration that Alembic rendered (it does not
render sequences), has ``AUTO_INCREMENT`` and no sequence: there the INSERT passes
``id=None`` instead, which MariaDB fills from ``AUTO_INCREMENT`` (and SQLAlchemy reads
back as ``lastrowid``). Which of the two a table is, is looked up once per engine and
table, and remembered in the ``info`` of the table's own ``MetaData`` (which goes away with
the configuration), not in a module-level dictionary.
"""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

__all__ = ["insert_transaction_row", "transaction_row_params"]

#: Key in ``MetaData.info`` of ``{engine: whether the id column fills itself
#: (AUTO_INCREMENT)}``, per transaction table of that metadata.
_INFO_KEY = "sqlalchemy_chronicle.transaction_id_fills_itself"

_Known = dict[sa.Table, "weakref.WeakKeyDictionary[Engine, bool]"]


def insert_transaction_row(
    connection: Connection, table: sa.Table, values: dict[str, Any]
) -> int:
    """INSERT one transaction row with column ``values`` and return its id.

    Where SQLAlchemy would fetch the next value of the sequence in a statement of its
    own before the INSERT (MariaDB, which reads generated ids back as ``lastrowid``), the
    INSERT names the sequence itself and returns the id: one round trip, not two.
    """
    params = transaction_row_params(connection, table, values)
    column = table.c.get("id")
    dialect = connection.dialect
    if (
        column is not None
        and column.key not in params
        and _may_lack_sequence(dialect, column)
        and dialect.insert_returning
    ):
        assert isinstance(column.default, sa.Sequence)
        statement = (
            sa.insert(table).values({column.key: column.default.next_value()}).returning(column)
        )
        return int(connection.execute(statement, params).scalar_one())
    result = connection.execute(sa.insert(table), params)
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def transaction_row_params(
    connection: Connection, table: sa.Table, values: dict[str, Any]
) -> dict[str, Any]:
    """The parameters of the INSERT of a transaction row with column ``values``."""
    column = table.c.get("id")
    if column is None or not _may_lack_sequence(connection.dialect, column):
        return values
    known: _Known = table.metadata.info.setdefault(_INFO_KEY, {})
    by_engine = known.setdefault(table, weakref.WeakKeyDictionary())
    fills_itself = by_engine.get(connection.engine)
    if fills_itself is None:
        reflected = sa.inspect(connection).get_columns(table.name, schema=table.schema)
        fills_itself = any(c["name"] == column.name and c.get("autoincrement") for c in reflected)
        by_engine[connection.engine] = fills_itself
    return {**values, column.key: None} if fills_itself else values


def _may_lack_sequence(dialect: sa.Dialect, column: sa.Column[Any]) -> bool:
    """Whether the INSERT names ``column``'s sequence although the table may have been
    created without it: on databases where sequences are an alternative to an
    autoincrementing column (MariaDB), not where the serial column's own sequence has
    the same name (PostgreSQL, ``sequences_optional``)."""
    return (
        isinstance(column.default, sa.Sequence)
        and dialect.supports_sequences
        and not dialect.sequences_optional
    )
