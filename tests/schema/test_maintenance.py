"""Schema maintenance helpers for existing version tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sqlalchemy_chronicle import ConfigurationError
from sqlalchemy_chronicle.schema import update_end_tx_column


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
