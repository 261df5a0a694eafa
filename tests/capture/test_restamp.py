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
