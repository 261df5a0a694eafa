"""Schema maintenance helpers for existing version tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ClassNotVersioned,
    ConfigurationError,
    Operation,
    versioning_context,
)
from sqlalchemy_chronicle.schema import (
    backfill,
    update_end_tx_column,
    update_property_mod_flags,
)


@pytest.mark.versioning(options={"strategy": "subquery"})
def test_update_end_tx_column_converts_subquery_history_to_validity(db, article_models):
    Article = article_models()
    session = db.session()
    first, second = Article(name="a1"), Article(name="b1")
    session.add_all([first, second])
    session.commit()
    first.name = "a2"
    session.commit()
    first.name = "a3"
    second.name = "b2"
    session.commit()

    # The table as it would be after a migration adding the column.
    version = db.manager.tables[Article]
    assert "end_transaction_id" not in version.c
    metadata = sa.MetaData()
    converted = sa.Table(
        "article_version", metadata,
        *[sa.Column(c.name, c.type, primary_key=c.primary_key) for c in version.c],
        sa.Column("end_transaction_id", sa.BigInteger),
    )
    with db.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE article_version ADD end_transaction_id BIGINT"))
        conn.execute(converted.update().values(end_transaction_id=999))  # stale values
        update_end_tx_column(converted, conn=conn)
        rows = conn.execute(
            sa.select(converted.c.id, converted.c.transaction_id, converted.c.end_transaction_id)
            .order_by(converted.c.id, converted.c.transaction_id)
        ).all()
    tx1, tx2, tx3 = sorted({r.transaction_id for r in rows})
    assert [tuple(r) for r in rows] == [
        (first.id, tx1, tx2), (first.id, tx2, tx3), (first.id, tx3, None),
        (second.id, tx1, tx3), (second.id, tx3, None),
    ]


def test_update_end_tx_column_names_a_missing_column(engine):
    table = sa.Table(
        "thing_version", sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("transaction_id", sa.BigInteger, primary_key=True),
    )
    with engine.connect() as conn, pytest.raises(ConfigurationError, match="end_transaction_id"):
        update_end_tx_column(table, conn=conn)


# -- update_property_mod_flags: Continuum's semantics ---------------------------------


def test_mod_flags_are_cleared_on_a_version_that_changed_nothing(db, article_models):
    """A flag is true exactly for a first version or a changed value: a DELETE that
    repeats the last values, like any unchanged version, gets its stale flags cleared."""
    Article = article_models()
    session = db.session()
    article = Article(name="a1", content="c")
    session.add(article)
    session.commit()
    article.name = "a2"
    session.commit()
    session.delete(article)
    session.commit()
    with db.engine.begin() as conn:
        for name in ("name", "content"):
            conn.execute(sa.text(
                f"ALTER TABLE article_version ADD {name}_mod BOOLEAN NOT NULL DEFAULT true"
            ))
        table = sa.Table("article_version", sa.MetaData(), autoload_with=conn)
        update_property_mod_flags(table, ["name", "content"], conn=conn)
        rows = conn.execute(
            sa.select(table.c.operation_type, table.c.name_mod, table.c.content_mod)
            .order_by(table.c.transaction_id)
        )
        assert [(op, bool(n), bool(c)) for op, n, c in rows] == [
            (Operation.INSERT, True, True),
            (Operation.UPDATE, True, False),
            (Operation.DELETE, False, False),
        ]


# -- backfill ----------------------------------------------------------------------


def _existing_rows(db, table, rows):
    """Rows written before versioning was turned on (Core, so nothing is versioned)."""
    with db.engine.begin() as conn:
        conn.execute(table.insert(), rows)


def test_backfill_gives_each_unversioned_row_one_insert_version(db, article_models):
    Article = article_models()
    session = db.session()
    versioned = Article(id=100, name="already", content="v")
    session.add(versioned)
    session.commit()
    _existing_rows(db, Article.__table__, [
        {"id": i, "name": f"n{i}", "content": None if i % 2 else "c"} for i in range(1, 11)
    ])
    with (
        db.count_statements() as statements,
        versioning_context(remote_addr="10.0.0.1"),
        db.engine.begin() as conn,
    ):
        assert backfill(conn, Article, chunk_size=4) == 10
    inserts = [s for s in statements if s.lstrip().startswith("INSERT INTO article_version")]
    assert len(inserts) == 3  # chunks of 4, 4 and 2 rows: one statement each
    tx_rows = db.rows("transaction")
    assert len(tx_rows) == 2  # the write above, and one for the whole backfill
    backfill_tx = max(r["id"] for r in tx_rows)
    assert tx_rows[-1]["remote_addr"] == "10.0.0.1"  # the context, as a flush records it
    rows = db.rows("article_version")
    assert [(r["id"], r["name"], r["content"]) for r in rows[:10]] == [
        (i, f"n{i}", None if i % 2 else "c") for i in range(1, 11)
    ]
    assert {(r["transaction_id"], r["operation_type"], r["end_transaction_id"])
            for r in rows[:10]} == {(backfill_tx, Operation.INSERT, None)}
    assert rows[10]["id"] == 100 and rows[10]["transaction_id"] != backfill_tx

    # What a user sees: each old row has a history of one version, and edits continue it.
    old = session.get(Article, 3)
    assert [(v.name, v.transaction_id) for v in old.versions] == [("n3", backfill_tx)]
    old.name = "edited"
    session.commit()
    assert [v.name for v in old.versions] == ["n3", "edited"]
    assert old.versions[0].end_transaction_id == old.versions[1].transaction_id

    with db.engine.begin() as conn:  # nothing left to do: no version, no transaction row
        assert backfill(conn, Article) == 0
    assert len(db.rows("transaction")) == 3


def test_backfill_walks_a_composite_key(db, base):
    class Line(base):
        __tablename__ = "line"
        __versioned__ = {}
        order_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        position: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        text: Mapped[str | None] = mapped_column(sa.String(20))

    db.create(base.metadata)
    _existing_rows(db, Line.__table__, [
        {"order_id": o, "position": p, "text": f"{o}.{p}"} for o in (1, 2, 3) for p in (1, 2, 3)
    ])
    with db.engine.begin() as conn:
        assert backfill(conn, Line, chunk_size=2) == 9
    rows = db.rows("line_version")
    assert [(r["order_id"], r["position"], r["text"]) for r in rows] == [
        (o, p, f"{o}.{p}") for o in (1, 2, 3) for p in (1, 2, 3)
    ]


def test_backfill_refuses_a_model_that_is_not_versioned(db, base):
    class Plain(base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    db.create(base.metadata)
    with db.engine.begin() as conn, pytest.raises(ClassNotVersioned, match="Plain"):
        backfill(conn, Plain)
    with db.engine.begin() as conn, pytest.raises(ConfigurationError, match="chunk_size"):
        backfill(conn, Plain, chunk_size=0)
