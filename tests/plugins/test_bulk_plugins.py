"""Plugins with bulk and ORM-enabled statements: the version rows they write must be
those an equivalent flush writes (capture/bulk.py)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from sqlalchemy_chronicle import Operation, verify, versioning_context
from sqlalchemy_chronicle.plugins import (
    ActivityPlugin,
    NullDeletePlugin,
    PropertyModTrackerPlugin,
    TamperEvidencePlugin,
    TransactionChangesPlugin,
    TransactionMetaPlugin,
)

INSERT, UPDATE, DELETE = Operation.INSERT, Operation.UPDATE, Operation.DELETE

pytestmark = pytest.mark.versioning(plugins=[PropertyModTrackerPlugin()])

BOTH_STRATEGIES = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def _flags(db: Any, tx: int | None = None) -> list[tuple[Any, ...]]:
    """(id, name_mod, content_mod, operation) of the versions (of transaction ``tx``)."""
    rows = db.rows("article_version", order_by=["transaction_id", "id"])
    return [
        (r["id"], r["name_mod"], r["content_mod"], r["operation_type"])
        for r in rows
        if tx is None or r["transaction_id"] == tx
    ]


def _last_tx(db: Any) -> int:
    return max(r["id"] for r in db.rows("transaction"))



# -- INSERT: the columns given ------------------------------------------------------------


def test_insert_values_flags_the_columns_given(db, article_models):
    Article = article_models()
    session = db.session()
    session.execute(sa.insert(Article).values([{"id": 1, "name": "a"}, {"id": 2, "name": None}]))
    session.commit()
    assert _flags(db) == [(1, True, False, INSERT), (2, True, False, INSERT)]


def test_insert_values_flags_columns_given_as_sql_expressions(db, article_models):
    """A column given an SQL expression (a function, another column) is given too."""
    Article = article_models()
    session = db.session()
    session.execute(sa.insert(Article).values(id=1, name=sa.func.upper("a")))
    session.execute(sa.insert(Article).values(id=2, content=sa.literal("c") + "d", name=None))
    session.execute(sa.insert(Article).values([
        {"id": 3, "name": sa.func.lower("B"), "content": None},
        {"id": 4, "name": "n", "content": sa.func.upper("x")},
    ]))
    session.commit()
    assert [(r["id"], r["name"], r["content"]) for r in db.rows("article", order_by=["id"])] == [
        (1, "A", None), (2, None, "cd"), (3, "b", None), (4, "n", "X"),
    ]
    assert _flags(db) == [
        (1, True, False, INSERT), (2, True, True, INSERT),
        (3, True, True, INSERT), (4, True, True, INSERT),
    ]


def test_insert_executemany_flags_the_columns_each_row_gives(db, article_models):
    Article = article_models()
    session = db.session()
    session.execute(
        sa.insert(Article),
        [{"id": 1, "name": "a"}, {"id": 2, "content": "c"}, {"id": 3, "name": "n", "content": "c"}],
    )
    session.commit()
    assert _flags(db) == [
        (1, True, False, INSERT), (2, False, True, INSERT), (3, True, True, INSERT),
    ]


def test_insert_without_keys_and_returning(db, article_models):
    Article = article_models()
    session = db.session()
    session.execute(sa.insert(Article), [{"content": "x"}, {"content": "y"}])
    if db.name != "mysql":
        ids = session.scalars(
            sa.insert(Article).returning(Article.id), [{"id": 10, "name": "r"}]
        ).all()
        assert ids == [10]
    session.commit()
    flags = _flags(db)
    assert [f[1:] for f in flags[:2]] == [(False, True, INSERT)] * 2
    if db.name != "mysql":
        assert flags[2] == (10, True, False, INSERT)


# -- UPDATE: the columns whose values changed -------------------------------------------


@pytest.mark.parametrize("sync", [False, "evaluate", "fetch", "auto"])
def test_update_by_criteria_flags_the_changed_columns(db, seeded, sync):
    Article, session = seeded
    session.execute(
        sa.update(Article).where(Article.id <= 2).values(name="x", content="c"),
        execution_options={"synchronize_session": sync},
    )
    session.commit()
    # content was given its own value: not a change, as in a flush.
    assert _flags(db, _last_tx(db)) == [(1, True, False, UPDATE), (2, True, False, UPDATE)]


@BOTH_STRATEGIES
def test_update_by_primary_key_flags_each_rows_changes(db, seeded, strategy):
    Article, session = seeded
    session.execute(
        sa.update(Article),
        [{"id": 1, "name": "x"}, {"id": 2, "content": "d"}, {"id": 3, "name": "a3"}],
    )
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, True, False, UPDATE), (2, False, True, UPDATE)]


def test_query_update_and_delete(db, seeded):
    Article, session = seeded
    assert session.query(Article).filter(Article.id == 1).update({"content": "q"}) == 1
    assert session.query(Article).filter(Article.id == 2).delete() == 1
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, False, True, UPDATE), (2, True, True, DELETE)]


def test_update_folds_with_the_flush_of_the_same_transaction(db, seeded):
    Article, session = seeded
    session.get(Article, 1).name = "flushed"
    session.flush()
    session.execute(sa.update(Article).where(Article.id == 1).values(content="bulk"))
    session.add(Article(id=7, name="n"))
    session.flush()
    session.execute(sa.update(Article).where(Article.id == 7).values(content="later"))
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, True, True, UPDATE), (7, True, True, INSERT)]


# -- DELETE: every column, as a flush ----------------------------------------------------


@BOTH_STRATEGIES
def test_delete_flags_every_column(db, seeded, strategy):
    Article, session = seeded
    session.execute(sa.delete(Article).where(Article.id.in_([1, 3])))
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, True, True, DELETE), (3, True, True, DELETE)]


# -- upserts and legacy bulk saves -------------------------------------------------------


def _upsert(db: Any, Article: Any, rows: list[dict[str, Any]]) -> Any:
    if db.name == "mysql":
        stmt = mysql.insert(Article).values(rows)
        return stmt.on_duplicate_key_update(name=stmt.inserted.name)
    dialect = postgresql if db.name == "postgresql" else sqlite
    stmt = dialect.insert(Article).values(rows)
    return stmt.on_conflict_do_update(index_elements=["id"], set_={"name": stmt.excluded.name})


def test_upsert_flags_inserted_and_updated_rows(db, seeded):
    Article, session = seeded
    rows = [{"id": 1, "name": "u1"}, {"id": 2, "name": "a2"}, {"id": 8, "name": "u8"}]
    session.execute(_upsert(db, Article, rows))
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, True, False, UPDATE), (8, True, False, INSERT)]


def test_bulk_mappings_and_save_objects(db, seeded):
    Article, session = seeded
    session.bulk_insert_mappings(Article, [{"id": 10, "content": "k"}, {"name": "auto"}])
    session.bulk_update_mappings(Article, [{"id": 1, "content": "m"}, {"id": 2, "name": "a2"}])
    loaded = session.get(Article, 3)
    loaded.name = "saved"
    session.bulk_save_objects([loaded, Article(id=12, name="new", content="o")])
    session.commit()
    rows = db.rows("article_version", order_by=["id"])
    assert {
        (r["id"] if r["name"] != "auto" else "auto", r["name_mod"], r["content_mod"],
         r["operation_type"])
        for r in rows
        if r["transaction_id"] == _last_tx(db)
    } == {
        (1, False, True, UPDATE), (3, True, False, UPDATE),
        ("auto", True, False, INSERT), (10, False, True, INSERT), (12, True, True, INSERT),
    }


def test_a_rolled_back_savepoint_forgets_the_flags_of_its_bulk_statements(db, seeded):
    Article, session = seeded
    article = session.get(Article, 1)
    article.name = "b"
    session.flush()
    with session.begin_nested() as savepoint:
        session.execute(sa.update(Article).where(Article.id == 1).values(content="undone"))
        savepoint.rollback()
    session.refresh(article)
    article.name = "b2"
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, True, False, UPDATE)]
    assert db.rows("article_version")[-1]["content"] == "c"


def test_a_flush_after_a_bulk_statement_keeps_its_flags(db, seeded):
    Article, session = seeded
    session.execute(sa.update(Article).where(Article.id == 1).values(content="bulk"))
    session.get(Article, 1).name = "flushed"
    session.commit()
    assert _flags(db, _last_tx(db)) == [(1, True, True, UPDATE)]


# -- the other plugins -------------------------------------------------------------------


def _bulk_history(session: Any, Article: Any) -> None:
    """An UPDATE ... WHERE, an INSERT, a bulk UPDATE by key and a DELETE, one
    transaction each, on the articles of ``seeded``."""
    session.execute(sa.update(Article).where(Article.id <= 2).values(name="x"))
    session.commit()
    session.execute(sa.insert(Article), [{"id": 10, "name": "i"}, {"id": 11, "name": "j"}])
    session.commit()
    session.execute(sa.update(Article), [{"id": 10, "content": "k"}])
    session.commit()
    session.execute(sa.delete(Article).where(Article.id == 3))
    session.commit()


@pytest.mark.versioning(plugins=[TransactionChangesPlugin()])
def test_transaction_changes_records_the_class_of_bulk_statements(db, seeded):
    Article, session = seeded
    _bulk_history(session, Article)
    session.execute(sa.update(Article).where(Article.id == 1).values(name="x"))  # no change
    session.commit()
    txs = [r["id"] for r in db.rows("transaction")]
    assert len(txs) == 5
    assert [(r["transaction_id"], r["entity_name"]) for r in db.rows("transaction_changes")] == [
        (tx, "Article") for tx in txs
    ]


@pytest.mark.versioning(plugins=[TransactionMetaPlugin()])
def test_transaction_meta_of_bulk_statements(db, seeded):
    Article, session = seeded
    with versioning_context(reason="bulk"):
        session.execute(sa.update(Article).where(Article.id <= 2).values(name="x"))
        session.commit()
        session.execute(sa.update(Article).where(Article.id <= 2).values(name="x"))  # no change
        session.execute(sa.delete(Article).where(Article.id == 4))
        session.commit()
    txs = [r["id"] for r in db.rows("transaction")]
    assert len(txs) == 3
    meta = [(r["transaction_id"], r["key"], r["value"]) for r in db.rows("transaction_meta")]
    assert meta == [(txs[1], "reason", "bulk"), (txs[2], "reason", "bulk")]


@pytest.mark.versioning(plugins=[TransactionMetaPlugin()])
def test_a_bulk_update_that_changes_nothing_leaves_no_meta_behind(db, seeded):
    Article, session = seeded
    with versioning_context(reason="nothing"):
        session.execute(sa.update(Article).where(Article.id <= 2).values(content="c"))
        session.commit()
    assert len(db.rows("transaction")) == 1
    assert db.rows("transaction_meta") == []


ACTIVITY = ActivityPlugin()


@pytest.mark.versioning(plugins=[ACTIVITY])
def test_an_activity_points_at_the_version_a_bulk_statement_wrote(db, seeded, manager):
    Article, session = seeded
    session.execute(sa.update(Article).where(Article.id == 1).values(name="bulk"))
    activity = manager.activity_cls(verb="edit", object=session.get(Article, 1))
    session.add(activity)
    session.commit()
    tx = max(r["id"] for r in db.rows("transaction"))
    [row] = db.rows("activity")
    assert (row["transaction_id"], row["object_id"], row["object_tx_id"]) == (tx, 1, tx)
    assert activity.object_version.name == "bulk"


@pytest.mark.versioning(plugins=[TamperEvidencePlugin(), PropertyModTrackerPlugin()])
def test_bulk_statements_are_chained_into_the_ledger(db, seeded, base):
    Article, session = seeded
    _bulk_history(session, Article)
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    ledger = db.rows("transaction_ledger")
    assert len([r for r in ledger if r["transaction_id"]]) == len(db.rows("transaction")) == 5


@pytest.mark.versioning(plugins=[NullDeletePlugin(), PropertyModTrackerPlugin()])
def test_null_delete_empties_the_delete_versions_of_bulk_deletes(db, seeded):
    Article, session = seeded
    session.execute(sa.delete(Article).where(Article.id <= 2))
    session.query(Article).filter(Article.id == 3).delete()
    session.execute(sa.update(Article).where(Article.id == 4).values(name="kept"))
    session.commit()
    tx = _last_tx(db)
    rows = [r for r in db.rows("article_version") if r["transaction_id"] == tx]
    assert [
        (r["id"], r["name"], r["content"], r["name_mod"], r["content_mod"], r["operation_type"])
        for r in rows
    ] == [
        (1, None, None, True, True, DELETE), (2, None, None, True, True, DELETE),
        (3, None, None, True, True, DELETE), (4, "kept", "c", True, False, UPDATE),
    ]
