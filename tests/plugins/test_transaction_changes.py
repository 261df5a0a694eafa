"""TransactionChangesPlugin: one transaction_changes row per class a transaction changed."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    VersioningManager,
    make_versioned,
    remove_versioning,
    transaction_class,
    version_class,
)
from sqlalchemy_chronicle.plugins import TransactionChangesPlugin

pytestmark = pytest.mark.versioning(plugins=[TransactionChangesPlugin()])


def define_models(base: Any, versioned: dict[str, Any] | None = None) -> tuple[Any, Any]:
    class Article(base):
        __tablename__ = "article"
        __versioned__ = versioned if versioned is not None else {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    return Article, Tag


def changes_rows(db: Any) -> list[tuple[int, str]]:
    return [
        (r["transaction_id"], r["entity_name"])
        for r in db.rows("transaction_changes", order_by=["transaction_id", "entity_name"])
    ]


def inserts_into(statements: list[str], table: str) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith(f"INSERT INTO {table.upper()}")]


# -- schema ----------------------------------------------------------------------------


def test_table_and_model(db, base, manager):
    user_dict: dict[str, Any] = {}
    Article, Tag = define_models(base, user_dict)
    db.create(base.metadata)
    plugin = manager.plugins[0]
    Changes = plugin.model_class
    assert Changes.__name__ == "TransactionChanges"
    assert Changes.__table__.name == "transaction_changes"

    inspector = sa.inspect(db.engine)
    columns = {c["name"]: c for c in inspector.get_columns("transaction_changes")}
    assert list(columns) == ["transaction_id", "entity_name"]
    assert isinstance(columns["transaction_id"]["type"], sa.BigInteger | sa.Integer)
    assert isinstance(columns["entity_name"]["type"], sa.String)
    assert columns["entity_name"]["type"].length == 255
    pk = inspector.get_pk_constraint("transaction_changes")["constrained_columns"]
    assert sorted(pk) == ["entity_name", "transaction_id"]
    assert inspector.get_foreign_keys("transaction_changes") == []

    Transaction = transaction_class(Article)
    assert "changes" in sa.inspect(Transaction).relationships
    assert sa.inspect(Changes).relationships["transaction"].mapper.class_ is Transaction
    # Continuum's marker on each versioned class, on a copy of the user's dict.
    assert Article.__versioned__["transaction_changes"] is Changes
    assert Tag.__versioned__["transaction_changes"] is Changes
    assert user_dict == {}
    assert manager.option(Article, "versioning") is True


def test_model_is_none_before_configuration():
    assert TransactionChangesPlugin().model_class is None


# -- writing ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_one_row_per_changed_class_per_transaction(db, base, strategy):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    article = Article(id=1, name="a")
    session.add_all([article, Article(id=2, name="b"), Tag(id=1, name="t")])
    session.commit()
    article.name = "a2"
    session.commit()
    session.delete(article)
    session.commit()
    session.add(Tag(id=2, name="u"))  # a transaction without Article
    session.commit()

    tx_ids = [r["id"] for r in db.rows("transaction")]
    assert len(tx_ids) == 4
    assert changes_rows(db) == [
        (tx_ids[0], "Article"),
        (tx_ids[0], "Tag"),
        (tx_ids[1], "Article"),
        (tx_ids[2], "Article"),
        (tx_ids[3], "Tag"),
    ]


def test_one_insert_per_flush_and_none_for_names_already_recorded(db, base):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    with db.count_statements() as statements:
        session.add_all([Article(id=i, name=str(i)) for i in range(1, 6)] + [Tag(id=1)])
        session.flush()
    assert len(inserts_into(statements, "transaction_changes")) == 1

    with db.count_statements() as statements:
        for article in session.scalars(sa.select(Article)):
            article.name = "again"
        session.flush()
    assert inserts_into(statements, "transaction_changes") == []

    with db.count_statements() as statements:
        session.add(Tag(id=2))
        session.flush()
    assert inserts_into(statements, "transaction_changes") == []
    session.commit()
    [tx_id] = [r["id"] for r in db.rows("transaction")]
    assert changes_rows(db) == [(tx_id, "Article"), (tx_id, "Tag")]


def test_flush_with_nothing_versioned_writes_no_row(db, base):
    Article, _ = define_models(base)
    db.create(base.metadata)
    session = db.session()
    article = Article(id=1, name="a")
    session.add(article)
    session.commit()
    article.name = "a"  # same value: no version, no transaction
    session.commit()
    assert len(changes_rows(db)) == 1
    assert len(db.rows("transaction")) == 1


def test_rolled_back_savepoint_drops_its_rows_and_the_names_it_recorded(db, base, manager):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Tag(id=1))
    session.flush()
    uow = manager.unit_of_work(session)
    tx_id = uow.transaction_id
    with session.begin_nested() as savepoint:
        session.add(Article(id=1, name="dropped"))
        session.flush()
        table = manager.plugins[0].model_class.__table__
        names = session.scalars(sa.select(table.c.entity_name).order_by("entity_name")).all()
        assert names == ["Article", "Tag"]
        savepoint.rollback()
    names = session.scalars(sa.select(table.c.entity_name)).all()
    assert names == ["Tag"]
    # The Article name is forgotten with the savepoint, so the next flush records it again.
    session.add(Article(id=2, name="kept"))
    session.commit()
    assert changes_rows(db) == [(tx_id, "Article"), (tx_id, "Tag")]


def test_savepoint_rollback_of_the_only_article_change(db, base):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Tag(id=1))
    with session.begin_nested() as savepoint:
        session.add(Article(id=1, name="dropped"))
        session.flush()
        savepoint.rollback()
    session.commit()
    [tx_id] = [r["id"] for r in db.rows("transaction")]
    assert changes_rows(db) == [(tx_id, "Tag")]


def test_savepoint_that_wrote_the_transaction_row(db, base):
    Article, _ = define_models(base)
    db.create(base.metadata)
    session = db.session()
    with session.begin_nested() as savepoint:
        session.add(Article(id=1, name="dropped"))
        session.flush()
        savepoint.rollback()
    session.add(Article(id=2, name="kept"))
    session.commit()
    [tx_id] = [r["id"] for r in db.rows("transaction")]
    assert changes_rows(db) == [(tx_id, "Article")]


def test_released_savepoint_keeps_its_rows(db, base):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Tag(id=1))
    with session.begin_nested():
        session.add(Article(id=1, name="kept"))
    session.add(Article(id=2, name="more"))
    with db.count_statements() as statements:
        session.commit()
    assert inserts_into(statements, "transaction_changes") == []
    [tx_id] = [r["id"] for r in db.rows("transaction")]
    assert changes_rows(db) == [(tx_id, "Article"), (tx_id, "Tag")]


def test_rollback_leaves_no_rows(db, base):
    Article, _ = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1, name="a"))
    session.flush()
    session.rollback()
    assert changes_rows(db) == []


# -- reading ---------------------------------------------------------------------------


def test_changes_and_entity_names(db, base):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add_all([Article(id=1, name="a"), Tag(id=1, name="t")])
    session.commit()
    Transaction = transaction_class(Article)
    tx = session.scalars(sa.select(Transaction)).one()
    assert sorted(c.entity_name for c in tx.changes) == ["Article", "Tag"]
    assert all(c.transaction is tx for c in tx.changes)
    assert sorted(tx.entity_names) == ["Article", "Tag"]
    assert repr(sorted(tx.changes, key=lambda c: c.entity_name)[0]) == (
        f"<TransactionChanges transaction_id={tx.id} entity_name='Article'>"
    )


def test_loaded_changes_follow_later_flushes(db, base, manager):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    tx = manager.unit_of_work(session).create_transaction(session)
    assert tx.changes == []
    session.add(Article(id=1, name="a"))
    session.flush()
    assert tx.entity_names == ["Article"]
    session.add(Tag(id=1))
    session.flush()
    assert sorted(tx.entity_names) == ["Article", "Tag"]
    session.commit()


def test_changes_can_be_queried_with_a_join(db, base, manager):
    Article, Tag = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1))
    session.commit()
    session.add(Tag(id=1))
    session.commit()
    Transaction = transaction_class(Article)
    Changes = manager.plugins[0].model_class
    stmt = (
        sa.select(Transaction.id)
        .join(Transaction.changes)
        .where(Changes.entity_name == "Tag")
    )
    assert session.scalars(stmt).all() == [db.rows("transaction")[1]["id"]]


def test_deleting_a_transaction_deletes_its_changes(db, base):
    Article, _ = define_models(base)
    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1))
    session.commit()
    Transaction = transaction_class(Article)
    tx = session.scalars(sa.select(Transaction)).one()
    assert tx.entity_names == ["Article"]
    session.execute(sa.delete(version_class(Article)))
    session.delete(tx)
    session.commit()
    assert changes_rows(db) == []


def test_inherited_classes_are_recorded_by_their_own_name(db, base):
    class Item(base):
        __tablename__ = "item"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}

    class Book(Item):
        __versioned__ = {}
        __mapper_args__ = {"polymorphic_identity": "book"}

    db.create(base.metadata)
    session = db.session()
    session.add(Book(id=1))
    session.commit()
    [tx_id] = [r["id"] for r in db.rows("transaction")]
    assert changes_rows(db) == [(tx_id, "Book")]


# -- a renamed transaction class -------------------------------------------------------


def test_renamed_transaction_class(engine):
    plugin = TransactionChangesPlugin()
    m = VersioningManager(transaction_class_name="AuditTransaction")
    make_versioned(manager=m, user_cls=None, plugins=[plugin])

    class Base(orm.DeclarativeBase):
        pass

    class Transaction(Base):  # the application's own model of that name
        __tablename__ = "payment"
        id: Mapped[int] = mapped_column(primary_key=True)

    Article, _ = define_models(Base)
    try:
        orm.configure_mappers()
        TxCls = transaction_class(Article)
        assert TxCls.__name__ == "AuditTransaction"
        assert plugin.model_class.__name__ == "AuditTransactionChanges"
        assert plugin.model_class.__table__.name == "transaction_changes"
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with orm.Session(engine) as session:
            session.add_all([Article(id=1), Transaction(id=1)])
            session.commit()
            tx = session.scalars(sa.select(TxCls)).one()
            assert tx.entity_names == ["Article"]
            assert list(tx.changed_entities) == [version_class(Article)]
    finally:
        remove_versioning(manager=m)
        Base.metadata.drop_all(engine)
        Base.registry.dispose()
        if engine.dialect.name == "sqlite":
            engine.dispose()
