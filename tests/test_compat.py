"""The private-API shims of _compat.py still read what SQLAlchemy stores."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from sqlalchemy_chronicle._compat import (
    dml_values,
    from_select_names,
    is_upsert,
    session_connections,
)

TABLE = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(10)))


def test_dml_values_reads_single_and_multi_row_values():
    assert dml_values(sa.insert(TABLE).values(id=3, name="x")) == [{"id": 3, "name": "x"}]
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert dml_values(sa.insert(TABLE).values(rows)) == rows
    assert dml_values(sa.insert(TABLE)) == []
    # an SQL expression is given as itself: the column is given, its value unknown here
    expression = sa.func.abs(-1)
    (row,) = dml_values(sa.insert(TABLE).values(id=expression, name="x"))
    assert row.keys() == {"id", "name"} and row["id"] is expression and row["name"] == "x"
    (row,) = dml_values(sa.insert(TABLE).values([{"id": expression, "name": "x"}]))
    assert row.keys() == {"id", "name"} and row["id"] is expression


def test_from_select_names_reads_the_names_given_to_from_select():
    source = sa.select(sa.literal("x"), sa.literal(1))
    assert from_select_names(sa.insert(TABLE).from_select(["name", "id"], source)) == [
        "name", "id"
    ]
    assert from_select_names(sa.insert(TABLE).from_select([TABLE.c.id], sa.select(1))) == ["id"]
    assert from_select_names(sa.insert(TABLE).values(id=1)) is None


def test_is_upsert_knows_each_dialects_conflict_clause():
    assert not is_upsert(sa.insert(TABLE))
    assert is_upsert(postgresql.insert(TABLE).on_conflict_do_nothing())
    assert is_upsert(sqlite.insert(TABLE).on_conflict_do_update(set_={"name": "x"}))
    assert is_upsert(mysql.insert(TABLE).on_duplicate_key_update(name="x"))


def test_session_connections_lists_the_connections_of_the_transaction():
    from sqlalchemy import orm

    engine = sa.create_engine("sqlite://")
    session = orm.Session(engine)
    assert session_connections(session) == []
    connection = session.connection()
    nested = session.begin_nested()
    assert session_connections(session) == [connection]
    nested.rollback()
    session.close()
    assert session_connections(session) == []
    engine.dispose()
