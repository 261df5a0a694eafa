"""A transaction overtaken on a row it changes later moves to a new id, with its rows."""

from __future__ import annotations

import pytest

from sqlalchemy_chronicle import versioning_context
from sqlalchemy_chronicle.plugins import TransactionChangesPlugin, TransactionMetaPlugin


@pytest.mark.dbs("postgresql", "mysql")
@pytest.mark.parametrize("strategy", ["validity", "subquery"])
@pytest.mark.versioning(plugins=[TransactionChangesPlugin(), TransactionMetaPlugin()])
def test_overtaken_transaction_moves_with_its_plugin_rows(db, article_models, strategy):
    Article = article_models()
    seed = db.session()
    # Row 2 sits between them: on MariaDB, A's closing of row 3's versions gap-locks
    # the place of row 1's next version otherwise (see the README's known limits).
    seed.add_all([Article(id=1, name="one"), Article(id=2, name="two"),
                  Article(id=3, name="three")])
    seed.commit()
    seed.close()

    a, b = db.session(), db.session()
    with versioning_context(reason="slow job"):
        a.get(Article, 3).name = "three by A"
        a.flush()  # A's transaction row and id are written here
        early_id = db.manager.unit_of_work(a).transaction_id
        b.get(Article, 1).name = "one by B"
        b.commit()  # B gets a larger id and commits first
        a.get(Article, 1).name = "one by A"
        a.commit()

    txs = [r["id"] for r in db.rows("transaction")]
    assert early_id not in txs
    seed_tx, b_tx, a_tx = txs
    assert a_tx > b_tx
    history = [
        (r["transaction_id"], r["name"])
        for r in db.rows("article_version", order_by=["id", "transaction_id"])
    ]
    assert history == [
        (seed_tx, "one"), (b_tx, "one by B"), (a_tx, "one by A"),
        (seed_tx, "two"), (seed_tx, "three"), (a_tx, "three by A"),
    ]
    if strategy == "validity":
        ends = [r["end_transaction_id"] for r in db.rows(
            "article_version", order_by=["id", "transaction_id"])]
        assert ends == [b_tx, a_tx, None, None, a_tx, None]
    meta = [(r["transaction_id"], r["key"], r["value"]) for r in db.rows("transaction_meta")]
    assert meta == [(b_tx, "reason", "slow job"), (a_tx, "reason", "slow job")]
    changes = {(r["transaction_id"], r["entity_name"]) for r in db.rows("transaction_changes")}
    assert changes == {(seed_tx, "Article"), (b_tx, "Article"), (a_tx, "Article")}


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_transaction_that_versions_another_row_in_a_later_flush_keeps_its_id(
    db, article_models, strategy
):
    """Older versions of a row are no sign of being overtaken: only a newer transaction's
    version of one of this write's rows moves the transaction to a new id."""
    Article = article_models()
    seed = db.session()
    seed.add_all([Article(id=1, name="one"), Article(id=2, name="two")])
    seed.commit()
    seed.close()
    session = db.session()
    session.get(Article, 1).name = "one again"
    session.flush()
    early_id = db.manager.unit_of_work(session).transaction_id
    session.get(Article, 2).name = "two again"
    session.commit()
    seed_tx, tx = (r["id"] for r in db.rows("transaction"))
    assert tx == early_id
    history = [(r["id"], r["transaction_id"], r["name"])
               for r in db.rows("article_version", order_by=["id", "transaction_id"])]
    assert history == [
        (1, seed_tx, "one"), (1, tx, "one again"), (2, seed_tx, "two"), (2, tx, "two again"),
    ]


@pytest.mark.dbs("postgresql", "mysql")
@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_transaction_overtaken_only_on_other_rows_keeps_its_id(db, article_models, strategy):
    """B versions a row A never touches between A's two flushes: A's history is still in
    order, so A keeps the id it took first (smaller than B's)."""
    Article = article_models()
    seed = db.session()
    # Rows between those written: no gap lock of one write covers another's (MariaDB).
    seed.add_all([Article(id=i, name=str(i)) for i in range(1, 6)])
    seed.commit()
    seed.close()
    a, b = db.session(), db.session()
    a.get(Article, 1).name = "1 by A"
    a.flush()
    early_id = db.manager.unit_of_work(a).transaction_id
    b.get(Article, 3).name = "3 by B"
    b.commit()
    a.get(Article, 5).name = "5 by A"
    a.commit()
    seed_tx, a_tx, b_tx = (r["id"] for r in db.rows("transaction"))
    assert a_tx == early_id < b_tx
    written = {(r["id"], r["transaction_id"])
               for r in db.rows("article_version") if r["transaction_id"] != seed_tx}
    assert written == {(1, a_tx), (3, b_tx), (5, a_tx)}
