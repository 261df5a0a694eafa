"""TransactionMetaPlugin: key/value metadata per transaction (``Transaction.meta``)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ConfigurationError,
    VersioningManager,
    make_versioned,
    remove_versioning,
    transaction_class,
    versioning_context,
)
from sqlalchemy_chronicle.plugins import TransactionChangesPlugin, TransactionMetaPlugin

pytestmark = pytest.mark.versioning(plugins=[TransactionMetaPlugin()])


def define_article(base: Any) -> Any:
    class Article(base):
        __tablename__ = "article"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    return Article


def define_user(base: Any) -> Any:
    class User(base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)

    return User


def meta_rows(db: Any) -> list[tuple[int, str, str | None]]:
    return [
        (r["transaction_id"], r["key"], r["value"])
        for r in db.rows("transaction_meta", order_by=["transaction_id", "key"])
    ]


def inserts_into(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith(f"INSERT INTO {table.upper()}")]


# -- schema ----------------------------------------------------------------------------


def test_table_and_model(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    plugin = manager.plugins[0]
    Meta = plugin.model_class
    assert Meta.__name__ == "TransactionMeta"
    assert manager.transaction_meta_cls is Meta

    inspector = sa.inspect(db.engine)
    columns = {c["name"]: c for c in inspector.get_columns("transaction_meta")}
    assert list(columns) == ["transaction_id", "key", "value"]
    assert isinstance(columns["transaction_id"]["type"], sa.BigInteger | sa.Integer)
    assert columns["key"]["type"].length == 255
    assert isinstance(columns["value"]["type"], sa.Text)
    assert columns["value"]["nullable"] is True
    pk = inspector.get_pk_constraint("transaction_meta")["constrained_columns"]
    assert sorted(pk) == ["key", "transaction_id"]
    assert inspector.get_foreign_keys("transaction_meta") == []

    Transaction = transaction_class(Article)
    assert "meta_relation" in sa.inspect(Transaction).relationships
    assert "meta" in sa.inspect(Transaction).all_orm_descriptors


def test_model_is_none_before_configuration():
    assert TransactionMetaPlugin().model_class is None


# -- SQLAlchemy-Continuum's way: the transaction object ---------------------------------


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_meta_set_on_the_created_transaction(db, base, manager, strategy):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    uow = manager.unit_of_work(session)
    tx = uow.create_transaction(session)
    tx.meta = {"ticket": "T-42", "origin": "api"}
    session.add(Article(id=1, name="a"))
    session.commit()

    [tx_row] = db.rows("transaction")
    assert meta_rows(db) == [(tx_row["id"], "origin", "api"), (tx_row["id"], "ticket", "T-42")]
    [version] = db.rows("article_version")
    assert version["transaction_id"] == tx_row["id"]

    session.close()
    session = db.session()
    Transaction = transaction_class(Article)
    tx = session.get(Transaction, tx_row["id"])
    assert dict(tx.meta) == {"ticket": "T-42", "origin": "api"}
    assert tx.meta["ticket"] == "T-42"
    assert tx.meta_relation["ticket"].value == "T-42"
    assert tx.meta_relation["ticket"].transaction is tx
    assert repr(tx.meta_relation["origin"]) == (
        f"<TransactionMeta transaction_id={tx.id} key='origin' value='api'>"
    )


def test_meta_can_be_edited_later(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    tx = manager.unit_of_work(session).create_transaction(session)
    tx.meta = {"a": "1", "b": "2"}
    session.add(Article(id=1))
    session.commit()
    tx_id = tx.id

    tx.meta["a"] = "one"
    del tx.meta["b"]
    tx.meta["c"] = "3"
    session.commit()
    assert meta_rows(db) == [(tx_id, "a", "one"), (tx_id, "c", "3")]

    tx.meta = {"z": "26"}  # replacing the dict deletes the old keys
    session.commit()
    assert meta_rows(db) == [(tx_id, "z", "26")]


def test_meta_without_versioned_changes_keeps_the_transaction(db, base, manager):
    define_article(base)
    db.create(base.metadata)
    session = db.session()
    tx = manager.unit_of_work(session).create_transaction(session)
    tx.meta = {"note": "nothing else"}
    session.commit()
    assert meta_rows(db) == [(db.rows("transaction")[0]["id"], "note", "nothing else")]


# -- versioning_context ----------------------------------------------------------------


@pytest.mark.versioning(user_cls="User", plugins=[TransactionMetaPlugin()])
@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_context_meta_is_stored_with_one_insert(db, base, strategy):
    User = define_user(base)
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    session.add(User(id=5))
    session.commit()
    with versioning_context(user_id=5, reason="import", batch=7), db.count_statements() as sql:
        session.add_all([Article(id=1), Article(id=2)])
        session.flush()
        session.add(Article(id=3))
        session.commit()
    assert len(inserts_into(sql, "transaction_meta")) == 1
    [tx] = db.rows("transaction")
    assert tx["user_id"] == 5
    assert meta_rows(db) == [(tx["id"], "batch", "7"), (tx["id"], "reason", "import")]

    session.close()
    session = db.session()
    stored = session.get(transaction_class(Article), tx["id"])
    assert dict(stored.meta) == {"reason": "import", "batch": "7"}
    assert stored.user.id == 5


def test_context_meta_none_is_null(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(reason=None):
        session.add(Article(id=1))
        session.commit()
    assert meta_rows(db) == [(db.rows("transaction")[0]["id"], "reason", None)]


def test_context_without_meta_writes_no_meta(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(remote_addr="10.0.0.1"), db.count_statements() as sql:
        session.add(Article(id=1))
        session.commit()
    assert inserts_into(sql, "transaction_meta") == []
    assert meta_rows(db) == []
    assert db.rows("transaction")[0]["remote_addr"] == "10.0.0.1"


def test_context_meta_and_transaction_meta_together(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(reason="import"):
        tx = manager.unit_of_work(session).create_transaction(session)
    tx.meta["ticket"] = "T-1"
    session.add(Article(id=1))
    session.commit()
    assert meta_rows(db) == [(tx.id, "reason", "import"), (tx.id, "ticket", "T-1")]


def test_each_transaction_gets_the_meta_of_its_context(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(reason="first"):
        session.add(Article(id=1))
        session.commit()
    session.add(Article(id=2))
    session.commit()
    with versioning_context(reason="third"):
        session.add(Article(id=3))
        session.commit()
    first, _, third = (r["id"] for r in db.rows("transaction"))
    assert meta_rows(db) == [(first, "reason", "first"), (third, "reason", "third")]


def test_rolled_back_savepoint_drops_the_meta_it_wrote(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(reason="import"):
        with session.begin_nested() as savepoint:
            session.add(Article(id=1, name="dropped"))
            session.flush()
            savepoint.rollback()
        session.add(Article(id=2, name="kept"))
        session.commit()
    [tx] = db.rows("transaction")
    assert meta_rows(db) == [(tx["id"], "reason", "import")]
    assert [r["transaction_id"] for r in db.rows("article_version")] == [tx["id"]]


def test_rolled_back_savepoint_keeps_meta_written_before_it(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(reason="import"):
        session.add(Article(id=1))
        session.flush()
        with session.begin_nested() as savepoint:
            session.add(Article(id=2))
            session.flush()
            savepoint.rollback()
        session.commit()
    [tx] = db.rows("transaction")
    assert meta_rows(db) == [(tx["id"], "reason", "import")]


def test_rollback_drops_meta(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    with versioning_context(reason="import"):
        session.add(Article(id=1))
        session.flush()
    tx = manager.unit_of_work(session).create_transaction(session)
    tx.meta["more"] = "x"
    session.flush()
    session.rollback()
    assert meta_rows(db) == []
    assert db.rows("transaction") == []


@pytest.mark.versioning(plugins=[])
def test_context_meta_without_the_plugin_is_an_error(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1))
    with versioning_context(reason="import"), pytest.raises(ConfigurationError) as err:
        session.commit()
    assert "TransactionMetaPlugin" in str(err.value)
    assert "reason" in str(err.value)
    session.rollback()
    assert db.rows("article") == []
    assert db.rows("transaction") == []
    assert "meta" not in vars(transaction_class(Article))


# -- with the changes plugin and a renamed transaction class ---------------------------


def test_renamed_transaction_class_with_both_plugins(engine):
    changes, meta = TransactionChangesPlugin(), TransactionMetaPlugin()
    m = VersioningManager(transaction_class_name="AuditTransaction")
    make_versioned(manager=m, user_cls=None, plugins=[changes, meta])

    class Base(orm.DeclarativeBase):
        pass

    class Transaction(Base):  # the application's own model of that name
        __tablename__ = "payment"
        id: Mapped[int] = mapped_column(primary_key=True)

    Article = define_article(Base)
    try:
        orm.configure_mappers()
        TxCls = transaction_class(Article)
        assert TxCls.__name__ == "AuditTransaction"
        assert meta.model_class.__name__ == "AuditTransactionMeta"
        assert m.transaction_meta_cls is meta.model_class
        assert meta.model_class.__table__.name == "transaction_meta"
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with orm.Session(engine) as session:
            with versioning_context(reason="renamed"):
                session.add_all([Article(id=1), Transaction(id=1)])
                session.commit()
            tx = session.scalars(sa.select(TxCls)).one()
            assert dict(tx.meta) == {"reason": "renamed"}
            assert tx.entity_names == ["Article"]
            assert session.scalars(sa.select(Transaction.id)).all() == [1]
    finally:
        remove_versioning(manager=m)
        Base.metadata.drop_all(engine)
        Base.registry.dispose()
        if engine.dialect.name == "sqlite":
            engine.dispose()


def test_a_flush_that_versions_nothing_after_all_leaves_no_meta_behind(db, base):
    """A delete of a row another session deleted and committed meanwhile needs no
    version: the transaction row written for it is dropped, and its metadata with it."""
    Article = define_article(base)
    db.create(base.metadata)
    setup = db.session()
    setup.add(Article(id=1, name="a"))
    setup.commit()
    setup.close()
    late = db.session()
    stale = late.get(Article, 1)  # a plain read: no lock held against the other session
    other = db.session()
    other.delete(other.get(Article, 1))
    other.commit()
    other.close()
    with versioning_context(reason="cleanup"):
        late.delete(stale)
        with pytest.warns(sa.exc.SAWarning, match="0 were matched"):
            late.commit()
    late.close()
    txs = [r["id"] for r in db.rows("transaction")]
    assert len(txs) == 2  # the insert's and the other session's delete
    assert meta_rows(db) == []
    # and the next transaction with metadata writes it (on SQLite it may reuse the id)
    session = db.session()
    with versioning_context(reason="again"):
        session.add(Article(id=2, name="b"))
        session.commit()
    newest = max(r["id"] for r in db.rows("transaction"))
    assert meta_rows(db) == [(newest, "reason", "again")]
