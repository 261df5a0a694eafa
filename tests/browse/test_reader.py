"""The reflected history reader (``sqlalchemy_chronicle.browse``) on a history that
chronicle's ORM capture wrote, read back by reflection and from the models.

History (``tx[0]`` .. ``tx[3]`` below):

====  ======  =============================================================
tx    user    changes
====  ======  =============================================================
1     alice   Article 1 (First, one), Article 2 (Second, two), Tag 1 (a)
2     bob     Article 1 renamed "First, edited"
3     alice   Article 2 deleted
4     (none)  Article 1 content "one, edited"; Tag 1 renamed "b"
====  ======  =============================================================
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ChronicleError,
    DatabaseUnavailable,
    HistoryNotFound,
    TableNotVersioned,
    TransactionNotFound,
    versioning_context,
)
from sqlalchemy_chronicle.browse import HistoryBrowser

pytestmark = pytest.mark.versioning(user_cls="User")


@dataclass
class History:
    engine: sa.Engine
    base: Any
    tx: list[int]


@pytest.fixture
def history(base: Any, db: Any) -> History:
    class User(base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(sa.String(50))

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(100))
        # The attribute key differs from the column name: only the models know it.
        content: Mapped[str | None] = mapped_column("body", sa.Text)

    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    db.create(base.metadata)
    with db.session() as session:
        session.add_all([User(id=1, name="alice"), User(id=2, name="bob")])
        session.commit()
    with versioning_context(user_id=1, remote_addr="10.0.0.1"), db.session() as session:
        session.add_all([
            Article(id=1, name="First", content="one"),
            Article(id=2, name="Second", content="two"),
            Tag(id=1, name="a"),
        ])
        session.commit()
    with versioning_context(user_id=2), db.session() as session:
        session.get_one(Article, 1).name = "First, edited"
        session.commit()
    with versioning_context(user_id=1), db.session() as session:
        session.delete(session.get_one(Article, 2))
        session.commit()
    with db.session() as session:
        session.get_one(Article, 1).content = "one, edited"
        session.get_one(Tag, 1).name = "b"
        session.commit()
    with db.engine.connect() as conn:
        ids = list(conn.scalars(sa.text('SELECT id FROM "transaction" ORDER BY id')
                                if db.name != "mysql"
                                else sa.text("SELECT id FROM `transaction` ORDER BY id")))
    assert len(ids) == 4
    return History(db.engine, base, ids)


def ids(page: Any) -> list[int]:
    return [t.id for t in page.items]


def test_versioned_tables_and_transactions(history: History) -> None:
    browser = HistoryBrowser(history.engine)
    t1, t2, t3, t4 = history.tx
    assert browser.versioned_tables() == ["article", "tag"]
    page = browser.transactions()
    assert ids(page) == [t4, t3, t2, t1]
    assert page.next_before is None
    first = page.items[-1]
    assert (first.user, first.user_id, first.remote_addr) == ("alice", 1, "10.0.0.1")
    assert (first.tables, first.change_count) == (("article", "tag"), 3)
    assert first.issued_at is not None and first.issued_at.tzinfo is datetime.timezone.utc
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs(now - first.issued_at) < datetime.timedelta(minutes=5)
    assert (page.items[0].user, page.items[0].tables) == (None, ("article", "tag"))
    assert page.items[2].user == "bob"


def test_keyset_pages(history: History) -> None:
    browser = HistoryBrowser(history.engine)
    t1, t2, t3, t4 = history.tx
    first = browser.transactions(limit=3)
    assert ids(first) == [t4, t3, t2] and first.next_before == t2
    second = browser.transactions(limit=3, before=first.next_before)
    assert ids(second) == [t1] and second.next_before is None
    exact = browser.transactions(limit=2, before=t3)
    assert ids(exact) == [t2, t1] and exact.next_before is None


def test_filters(history: History) -> None:
    browser = HistoryBrowser(history.engine)
    t1, t2, t3, t4 = history.tx
    assert ids(browser.transactions(table="tag")) == [t4, t1]
    assert ids(browser.transactions(table="article", entity_id=2)) == [t3, t1]
    assert ids(browser.transactions(table="article", entity_id="1", limit=2)) == [t4, t2]
    assert ids(browser.transactions(user="alice")) == [t3, t1]
    assert ids(browser.transactions(user="1")) == [t3, t1]
    assert ids(browser.transactions(user="bob", table="article")) == [t2]
    assert ids(browser.transactions(user="nobody")) == []
    stamps = {t.id: t.issued_at for t in browser.transactions().items}
    assert stamps[t2] is not None
    assert set(ids(browser.transactions(since=stamps[t2]))) >= {t4, t3, t2}
    assert t2 not in ids(browser.transactions(until=stamps[t2]))
    assert ids(browser.transactions(until=stamps[t1])) == []


def test_transaction_detail(history: History) -> None:
    browser = HistoryBrowser(history.engine)
    t1, t2, t3, t4 = history.tx
    detail = browser.transaction(t2)
    assert detail.id == t2 and detail.summary.user == "bob"
    [change] = detail.changes
    assert (change.table, change.key, change.operation) == ("article", {"id": 1}, "update")
    assert change.changed == ("name",)
    assert change.previous == {"id": 1, "name": "First", "body": "one"}
    assert change.values == {"id": 1, "name": "First, edited", "body": "one"}
    first = browser.transaction(t1)
    assert [(c.table, c.key["id"], c.operation) for c in first.changes] == [
        ("article", 1, "insert"), ("article", 2, "insert"), ("tag", 1, "insert"),
    ]
    assert first.changes[0].previous is None
    assert first.changes[0].changed == ("name", "body")
    [deleted] = browser.transaction(t3).changes
    assert (deleted.operation, deleted.key, deleted.changed) == ("delete", {"id": 2}, ())
    last = browser.transaction(t4)
    assert [(c.table, c.changed) for c in last.changes] == [
        ("article", ("body",)), ("tag", ("name",)),
    ]


def test_entity_history_and_diff(history: History) -> None:
    browser = HistoryBrowser(history.engine)
    t1, t2, t3, t4 = history.tx
    versions = browser.entity_history("article", 1)
    assert [(v.transaction_id, v.operation, v.changed) for v in versions] == [
        (t1, "insert", ("name", "body")), (t2, "update", ("name",)), (t4, "update", ("body",)),
    ]
    assert versions[1].previous == versions[0].values

    last = browser.diff("article", 1)
    assert (last.from_tx, last.to_tx, last.changed) == (t2, t4, ("body",))
    body = next(f for f in last.fields if f.name == "body")
    assert (body.old, body.new, body.changed) == ("one", "one, edited", True)

    whole = browser.diff("article", "1", from_tx=t1)
    assert (whole.from_tx, whole.to_tx, whole.changed) == (t1, t4, ("name", "body"))
    # A transaction that did not touch the row shows the row's state then.
    assert browser.diff("article", 1, from_tx=t1, to_tx=t3).changed == ("name",)
    before = browser.diff("article", 1, to_tx=t1)
    assert (before.from_tx, before.from_operation, before.to_operation) == (None, None, "insert")
    assert [(f.name, f.old, f.new) for f in before.fields] == [
        ("id", None, 1), ("name", None, "First"), ("body", None, "one"),
    ]

    gone = browser.diff("article", {"id": 2})
    assert (gone.from_tx, gone.to_tx, gone.to_operation) == (t1, t3, "delete")
    assert [(f.name, f.old, f.new) for f in gone.fields] == [
        ("id", 2, None), ("name", "Second", None), ("body", "two", None),
    ]


def test_from_models_uses_attribute_keys(history: History) -> None:
    browser = HistoryBrowser.from_models(history.base, history.engine)
    t1, t2, _t3, t4 = history.tx
    assert browser.versioned_tables() == ["article", "tag"]
    assert ids(browser.transactions(table="article", entity_id=1)) == [t4, t2, t1]
    [change] = browser.transaction(t2).changes
    assert change.values == {"id": 1, "name": "First, edited", "content": "one"}
    assert browser.diff("article", 1).changed == ("content",)
    assert browser.transactions().items[-1].user == "alice"


def test_errors_name_what_is_missing(history: History) -> None:
    browser = HistoryBrowser(history.engine)
    with pytest.raises(TableNotVersioned, match=r"'users' is not versioned.*article, tag"):
        browser.transactions(table="users")
    with pytest.raises(TableNotVersioned, match="'nope'"):
        browser.entity_history("nope", 1)
    with pytest.raises(TransactionNotFound, match="no transaction 987654"):
        browser.transaction(987654)
    with pytest.raises(HistoryNotFound, match="article id=42 has no version"):
        browser.diff("article", 42)
    with pytest.raises(ChronicleError, match=r"'x' is not a valid value for article\.id"):
        browser.entity_history("article", "x")
    with pytest.raises(ChronicleError, match="entity_id needs the table"):
        browser.transactions(entity_id=1)
    assert isinstance(TableNotVersioned("x"), LookupError)


def test_database_without_history(engine: sa.Engine, db_name: str) -> None:
    if db_name == "sqlite":
        with pytest.raises(HistoryNotFound, match="has no transaction table 'transaction'"):
            HistoryBrowser(engine)
    with pytest.raises(HistoryNotFound, match="no transaction table 'audit_tx'"):
        HistoryBrowser(engine, transaction_table="audit_tx")


def test_unreachable_database(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path}/missing/dir/x.db"
    with pytest.raises(DatabaseUnavailable, match="Cannot connect to the database sqlite:///"):
        HistoryBrowser(sa.create_engine(url))
    bad = sa.create_engine("postgresql+psycopg://someone:secret@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnavailable, match=r"someone:\*\*\*@127\.0\.0\.1:1/nothing"):
        HistoryBrowser(bad)
    assert isinstance(DatabaseUnavailable("x"), ConnectionError)


@pytest.mark.parametrize("strategy", ["subquery"])
def test_subquery_strategy_tables(history: History) -> None:
    """Version tables without ``end_transaction_id`` read the same."""
    with history.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("article_version")}
    assert "end_transaction_id" not in columns
    browser = HistoryBrowser(history.engine)
    t1, t2, _t3, t4 = history.tx
    assert ids(browser.transactions(table="article", entity_id=1)) == [t4, t2, t1]
    assert [c.changed for c in browser.transaction(t4).changes] == [("body",), ("name",)]
    assert browser.diff("article", 1, from_tx=t1).changed == ("name", "body")
