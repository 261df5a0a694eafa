"""The transaction class as users read it: changed_entities, entity_names, look-ups."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ClassNotVersioned,
    NoChangesAttribute,
    Operation,
    TransactionBase,
    VersioningManager,
    make_versioned,
    remove_versioning,
    transaction_class,
    version_class,
    versioning_context,
)
from sqlalchemy_chronicle.plugins import TransactionChangesPlugin, TransactionMetaPlugin


def define_models(base: Any) -> tuple[Any, Any, Any]:
    class Article(base):
        __tablename__ = "article"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    class Note(base):
        __tablename__ = "note"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)

    return Article, Tag, Note


def selects(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def summary(changed: dict[type, list[Any]]) -> dict[str, list[tuple[int, int]]]:
    return {
        cls.__name__: [(v.id, v.operation_type) for v in versions]
        for cls, versions in changed.items()
    }


def write_history(db: Any, Article: Any, Tag: Any) -> tuple[orm.Session, list[int]]:
    session = db.session()
    article = Article(id=1, name="a")
    session.add_all([article, Article(id=2, name="b"), Tag(id=1, name="t")])
    session.commit()
    article.name = "a2"
    session.commit()
    return session, [r["id"] for r in db.rows("transaction")]


# -- without TransactionChangesPlugin ---------------------------------------------------


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_changed_entities_lists_every_version_class(db, base, strategy):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (first, second) = write_history(db, Article, Tag)
    Transaction = transaction_class(Article)

    tx = session.get(Transaction, first)
    assert summary(tx.changed_entities) == {
        "ArticleVersion": [(1, Operation.INSERT), (2, Operation.INSERT)],
        "TagVersion": [(1, Operation.INSERT)],
        "NoteVersion": [],
    }
    tx = session.get(Transaction, second)
    changed = tx.changed_entities
    assert summary(changed) == {
        "ArticleVersion": [(1, Operation.UPDATE)],
        "TagVersion": [],
        "NoteVersion": [],
    }
    [version] = changed[version_class(Article)]
    assert version.name == "a2" and version.transaction is tx


def test_changed_entities_costs_one_query_per_version_class(db, base):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (first, _) = write_history(db, Article, Tag)
    tx = session.get(transaction_class(Article), first)
    with db.count_statements() as statements:
        changed = tx.changed_entities
    assert len(changed) == 3
    assert len(selects(statements)) == 3


def test_entity_names_needs_the_changes_plugin(db, base):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (first, _) = write_history(db, Article, Tag)
    tx = session.get(transaction_class(Article), first)
    with pytest.raises(NoChangesAttribute) as err:
        _ = tx.entity_names
    assert "TransactionChangesPlugin" in str(err.value)
    assert isinstance(err.value, AttributeError)
    assert not hasattr(tx, "entity_names")


def test_a_transaction_outside_a_session_has_no_changed_entities(db, base):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (first, _) = write_history(db, Article, Tag)
    tx = session.get(transaction_class(Article), first)
    session.expunge(tx)
    assert tx.changed_entities == {}


# -- with TransactionChangesPlugin ------------------------------------------------------


@pytest.mark.versioning(plugins=[TransactionChangesPlugin()])
@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_changed_entities_keeps_only_the_changed_classes(db, base, strategy):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (first, second) = write_history(db, Article, Tag)
    Transaction = transaction_class(Article)

    tx = session.get(Transaction, first)
    assert sorted(tx.entity_names) == ["Article", "Tag"]
    assert summary(tx.changed_entities) == {
        "ArticleVersion": [(1, Operation.INSERT), (2, Operation.INSERT)],
        "TagVersion": [(1, Operation.INSERT)],
    }
    tx = session.get(Transaction, second)
    assert tx.entity_names == ["Article"]
    assert summary(tx.changed_entities) == {"ArticleVersion": [(1, Operation.UPDATE)]}


@pytest.mark.versioning(plugins=[TransactionChangesPlugin()])
def test_classes_not_changed_are_not_queried(db, base):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (_, second) = write_history(db, Article, Tag)
    tx = session.get(transaction_class(Article), second)
    with db.count_statements() as statements:
        changed = tx.changed_entities
    assert list(changed) == [version_class(Article)]
    # The changes rows, then the one class they name.
    assert len(selects(statements)) == 2
    assert not any("tag_version" in s or "note_version" in s for s in statements)


@pytest.mark.versioning(plugins=[TransactionChangesPlugin()])
def test_changed_entities_of_a_deleted_entity(db, base):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, _ = write_history(db, Article, Tag)
    session.delete(session.get(Article, 2))
    session.commit()
    tx = session.scalars(
        sa.select(transaction_class(Article)).order_by(sa.desc("id")).limit(1)
    ).one()
    assert summary(tx.changed_entities) == {"ArticleVersion": [(2, Operation.DELETE)]}


# -- the transaction class -------------------------------------------------------------


@pytest.mark.versioning(plugins=[TransactionChangesPlugin(), TransactionMetaPlugin()])
def test_transaction_class_of_parent_and_version_classes(db, base, manager):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    Transaction = transaction_class(Article)
    assert Transaction is manager.transaction_cls
    assert transaction_class(version_class(Article)) is Transaction
    assert transaction_class(Tag) is Transaction
    assert issubclass(Transaction, TransactionBase)
    assert issubclass(Transaction, base)
    for name in ("changes", "meta_relation"):
        assert name in sa.inspect(Transaction).relationships
    assert "meta" in sa.inspect(Transaction).all_orm_descriptors
    assert transaction_class(Transaction) is Transaction  # it has the manager, as in Continuum
    with pytest.raises(ClassNotVersioned):
        transaction_class(manager.plugins[0].model_class)  # TransactionChanges
    with pytest.raises(ClassNotVersioned):
        transaction_class("Article")


def test_transaction_repr(db, base):
    Article, Tag, _ = define_models(base)
    db.create(base.metadata)
    session, (first, _) = write_history(db, Article, Tag)
    tx = session.get(transaction_class(Article), first)
    assert repr(tx) == f"<Transaction id={first}, issued_at={tx.issued_at!r}>"


def test_ready_made_transaction_class_gets_the_plugin_models(engine):
    class Base(orm.DeclarativeBase):
        pass

    class AuditTx(Base, TransactionBase):
        __tablename__ = "audit_tx"
        id: Mapped[int] = mapped_column(primary_key=True)
        issued_at: Mapped[datetime.datetime | None]
        remote_addr: Mapped[str | None] = mapped_column(sa.String(50))

    changes, meta = TransactionChangesPlugin(), TransactionMetaPlugin()
    m = VersioningManager(transaction_cls=AuditTx, plugins=[changes, meta])
    AuditTx.__versioning_manager__ = m
    make_versioned(manager=m, user_cls=None)
    Article, _, _ = define_models(Base)
    try:
        orm.configure_mappers()
        assert changes.model_class.__table__.name == "audit_tx_changes"
        assert meta.model_class.__table__.name == "audit_tx_meta"
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with orm.Session(engine) as session:
            with versioning_context(reason="given"):
                session.add(Article(id=1, name="a"))
                session.commit()
            tx = session.scalars(sa.select(AuditTx)).one()
            assert dict(tx.meta) == {"reason": "given"}
            assert tx.entity_names == ["Article"]
            assert summary(tx.changed_entities) == {"ArticleVersion": [(1, Operation.INSERT)]}
    finally:
        remove_versioning(manager=m)
        Base.metadata.drop_all(engine)
        Base.registry.dispose()
        if engine.dialect.name == "sqlite":
            engine.dispose()
