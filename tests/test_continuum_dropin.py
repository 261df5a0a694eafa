"""The drop-in surface for SQLAlchemy-Continuum code: module paths, the manager attributes
its set-up assigns, ``TransactionFactory``, loose option forms and the state views."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ConfigurationError,
    ImproperlyConfigured,
    Operation,
    version_class,
)
from sqlalchemy_chronicle.plugins import TransactionChangesPlugin

# -- module paths (spec B.1) -----------------------------------------------------------

FACADES = {
    "sqlalchemy_chronicle.transaction": ["TransactionFactory", "TransactionBase"],
    "sqlalchemy_chronicle.reverter": ["Reverter", "ReverterException"],
    "sqlalchemy_chronicle.operation": ["Operation", "Operations"],
    "sqlalchemy_chronicle.unit_of_work": ["UnitOfWork"],
    "sqlalchemy_chronicle.dialects.postgresql": ["sync_trigger", "create_trigger", "drop_trigger"],
    "sqlalchemy_chronicle.model_builder": ["ModelBuilder"],
    "sqlalchemy_chronicle.table_builder": ["TableBuilder", "ColumnReflector"],
    "sqlalchemy_chronicle.relationship_builder": ["RelationshipBuilder"],
    "sqlalchemy_chronicle.fetcher": ["SubqueryFetcher", "ValidityFetcher"],
    "sqlalchemy_chronicle.exc": ["VersioningError", "ClassNotVersioned", "ImproperlyConfigured"],
    "sqlalchemy_chronicle.schema": ["update_end_tx_column", "update_property_mod_flags"],
}


@pytest.mark.parametrize("module", sorted(FACADES))
def test_continuum_module_paths_export_their_names(module):
    mod = importlib.import_module(module)
    assert (mod.__doc__ or "").strip()
    for name in FACADES[module]:
        assert name in mod.__all__, name
        assert (inspect.getdoc(getattr(mod, name)) or "").strip(), name


def test_facades_are_the_librarys_own_objects():
    from sqlalchemy_chronicle import TransactionFactory, UnitOfWork, exc
    from sqlalchemy_chronicle.operation import Operation as FacadeOperation
    from sqlalchemy_chronicle.reverter import ReverterException
    from sqlalchemy_chronicle.transaction import TransactionFactory as FacadeFactory
    from sqlalchemy_chronicle.unit_of_work import UnitOfWork as FacadeUnitOfWork

    assert FacadeFactory is TransactionFactory
    assert FacadeOperation is Operation
    assert FacadeUnitOfWork is UnitOfWork
    assert ReverterException is exc.ReverterException


# -- models ------------------------------------------------------------------------------


def define_article(base: Any, versioned: dict[str, Any] | None = None) -> Any:
    class Article(base):
        __tablename__ = "article"
        __versioned__ = {} if versioned is None else versioned
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))
        content: Mapped[str | None] = mapped_column(sa.UnicodeText)

    return Article


# -- manager attributes assigned between make_versioned() and configure (spec B.3) -------


def test_continuum_setup_sequence_assigns_manager_attributes(db, base, manager):
    from sqlalchemy_chronicle.transaction import TransactionFactory

    # What Continuum's docs and its test suite do after make_versioned().
    manager.plugins = [TransactionChangesPlugin()]
    manager.transaction_cls = TransactionFactory(remote_addr=False)
    manager.user_cls = None
    manager.options = {"strategy": "subquery", "create_composite_index": False}
    Article = define_article(base)
    db.create(base.metadata)

    Transaction = manager.transaction_cls
    assert sa.inspect(Transaction).local_table.name == "transaction"
    assert "remote_addr" not in Transaction.__table__.c
    assert "end_transaction_id" not in version_class(Article).__table__.c
    session = db.session()
    article = Article(name="a")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    assert [v.name for v in article.versions] == ["a", "b"]
    assert [r["entity_name"] for r in db.rows("transaction_changes")] == ["Article", "Article"]


def test_assigning_a_bad_transaction_cls_is_refused(manager):
    with pytest.raises(ConfigurationError, match="transaction_cls"):
        manager.transaction_cls = "Transaction"


def test_assigning_options_validates_them(manager):
    with pytest.raises(ConfigurationError, match="strategy"):
        manager.options = {"strategy": "sometimes"}
    manager.options = {"strategy": "subquery"}
    assert manager.options["versioning"] is True  # the other defaults stay


def test_transaction_factory_called_builds_the_transaction_class(db, base, manager):
    from sqlalchemy_chronicle.transaction import TransactionFactory

    Article = define_article(base)
    manager.declarative_base = base
    Transaction = TransactionFactory(remote_addr=False)(manager)
    assert manager.transaction_cls is Transaction
    assert Transaction.__name__ == "Transaction"
    assert "remote_addr" not in Transaction.__table__.c
    db.create(base.metadata)  # configure uses the class built already
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    assert session.scalars(sa.select(Transaction)).one().id == 1


@pytest.mark.versioning(user_cls="User")
def test_transaction_factory_with_a_missing_user_class_raises(base, manager):
    from sqlalchemy_chronicle.transaction import TransactionFactory

    define_article(base)
    manager.declarative_base = base
    with pytest.raises(ImproperlyConfigured, match="User"):
        TransactionFactory()(manager)
    assert manager.transaction_cls is None


def test_transaction_factory_needs_a_declarative_base(manager):
    from sqlalchemy_chronicle.transaction import TransactionFactory

    with pytest.raises(ImproperlyConfigured, match="declarative_base"):
        TransactionFactory()(manager)


def test_transaction_factory_assigned_to_a_manager_outlives_reset(base, manager):
    from sqlalchemy_chronicle.transaction import TransactionFactory

    manager.transaction_cls = TransactionFactory(remote_addr=False)
    define_article(base)
    orm.configure_mappers()
    assert "remote_addr" not in manager.transaction_cls.__table__.c
    manager.reset()
    assert manager.transaction_cls is None

    class OtherBase(orm.DeclarativeBase):
        pass

    try:
        define_article(OtherBase)
        orm.configure_mappers()
        assert manager.transaction_cls.metadata is OtherBase.metadata
        assert "remote_addr" not in manager.transaction_cls.__table__.c
    finally:
        OtherBase.registry.dispose()


# -- loose option forms -------------------------------------------------------------------


def test_exclude_given_as_one_name(db, base):
    Article = define_article(base, {"exclude": "content"})
    db.create(base.metadata)
    assert "content" not in version_class(Article).__table__.c
    session = db.session()
    article = Article(name="a", content="x")
    session.add(article)
    session.commit()
    article.content = "y"  # only the excluded column: no new version
    session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["a"]


# -- read-only views of the live state -----------------------------------------------------


def test_units_of_work_and_session_connection_map_follow_open_transactions(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    assert dict(manager.units_of_work) == {}
    assert dict(manager.session_connection_map) == {}

    session = db.session()
    session.add(Article(name="a"))
    session.flush()
    uow = manager.unit_of_work(session)
    connection = session.connection()
    assert dict(manager.units_of_work) == {connection: uow}
    assert dict(manager.session_connection_map) == {session: connection}
    assert dict(uow.operations) == {
        (version_class(Article).__table__, (1,)): Operation.INSERT
    }
    with pytest.raises(TypeError):
        manager.units_of_work[connection] = uow  # type: ignore[index]
    session.commit()
    assert dict(manager.units_of_work) == {}
    assert dict(manager.session_connection_map) == {}

    other = db.session()
    other.add(Article(name="b"))
    other.flush()
    assert len(manager.units_of_work) == 1
    other.rollback()
    assert dict(manager.units_of_work) == {}


def test_reading_histories_opens_no_unit_of_work(db, base, manager):
    """Continuum's own suite asserts no unit of work is left open after a session that
    only read ``versions`` (their test_sessions); a read must not create capture state."""
    Article = define_article(base)
    db.create(base.metadata)
    writer = db.session()
    article = Article(name="a")
    writer.add(article)
    writer.commit()
    assert [v.name for v in article.versions] == ["a"]  # lazy load: a new transaction
    assert writer.in_transaction()
    assert dict(manager.units_of_work) == {}
    reader = db.session()
    again = reader.get(Article, article.id)
    assert len(again.versions.all()) == 1
    assert manager.find_unit_of_work(reader) is None
    assert dict(manager.units_of_work) == {}
    # a flush afterwards still sees the history as it then is
    again.name = "b"
    reader.flush()
    assert [v.name for v in again.versions] == ["a", "b"]
    assert len(manager.units_of_work) == 1
    reader.rollback()
    writer.close()


def test_unit_of_work_of_a_scoped_session_is_the_proxied_sessions(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    scoped = orm.scoped_session(orm.sessionmaker(db.engine))
    try:
        scoped.add(Article(name="a"))
        scoped.flush()
        assert manager.unit_of_work(scoped) is manager.unit_of_work(scoped())
        assert manager.find_unit_of_work(scoped) is manager.unit_of_work(scoped())
        assert list(manager.session_connection_map) == [scoped()]
        scoped.commit()
        assert dict(manager.units_of_work) == {}
    finally:
        scoped.remove()


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_fetcher_navigates_like_the_version(db, base, manager, strategy):
    from sqlalchemy_chronicle.fetcher import SubqueryFetcher, ValidityFetcher

    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    article = Article(name="a")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    first, second = article.versions.all()
    fetcher = manager.fetcher(first)
    assert isinstance(fetcher, SubqueryFetcher if strategy == "subquery" else ValidityFetcher)
    assert fetcher.next(first) is second
    assert fetcher.previous(second) is first
    assert fetcher.previous(first) is None
    assert fetcher.index(second) == 1


def test_sa_ext_declarative_is_reachable_as_with_continuum():
    # Continuum's models use sa.ext.declarative.declared_attr, which resolves only once
    # someone imported sqlalchemy.ext.declarative: Continuum does, so must we.
    code = (
        "import sqlalchemy as sa, sqlalchemy_chronicle; "
        "print(sa.ext.declarative.declared_attr.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "declared_attr"


def test_plugin_collection_broadcasts_any_method_a_plugin_defines():
    from sqlalchemy_chronicle import PluginCollection

    class Custom:
        def __init__(self, value: int) -> None:
            self.value = value

        def some_action(self) -> int:
            return self.value

    plugins = PluginCollection([Custom(1), Custom(2)])
    assert plugins.plugins == list(plugins)
    assert plugins.some_action() == [1, 2]
    with pytest.raises(AttributeError):
        plugins.not_defined_anywhere  # noqa: B018


def test_unit_of_work_asked_outside_a_transaction_is_not_an_open_one(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    uow = manager.unit_of_work(session)
    session.rollback()  # no transaction: nothing to end
    assert dict(manager.units_of_work) == {}
    session.add(Article(name="a"))
    session.flush()
    assert list(manager.units_of_work.values()) == [uow]  # the next transaction uses it
    session.commit()
    assert dict(manager.units_of_work) == {}
