"""Setting versioning up: make_versioned, managers, models, users, plugins, public names."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

import sqlalchemy_chronicle
from sqlalchemy_chronicle import (
    ChronicleError,
    ConfigurationError,
    ImproperlyConfigured,
    Operation,
    Plugin,
    PluginCollection,
    VersioningManager,
    make_versioned,
    remove_versioning,
    transaction_class,
    version_class,
    versioning_manager,
)


def define_article(base: Any) -> Any:
    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    return Article


def history(session: orm.Session, Article: Any) -> Any:
    article = Article(name="a")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    return article


# -- model styles ----------------------------------------------------------------------


def test_declarative_2_0_model_end_to_end(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    session = db.session()
    article = history(session, Article)
    session.delete(article)
    session.commit()

    ArticleVersion = version_class(Article)
    assert ArticleVersion.__name__ == "ArticleVersion"
    assert issubclass(ArticleVersion, base)
    assert isinstance(ArticleVersion, type) and ArticleVersion.__module__ == Article.__module__
    versions = session.scalars(
        sa.select(ArticleVersion).order_by(ArticleVersion.transaction_id)
    ).all()
    assert [(v.name, v.operation_type) for v in versions] == [
        ("a", Operation.INSERT), ("b", Operation.UPDATE), ("b", Operation.DELETE),
    ]
    assert versions[1].previous is versions[0]
    assert versions[0].version_parent is None
    assert [t.id for t in session.scalars(sa.select(transaction_class(Article)))] == [
        v.transaction_id for v in versions
    ]


@pytest.fixture
def classic_base(manager: VersioningManager) -> Iterator[Any]:
    ClassicBase = orm.declarative_base()
    yield ClassicBase
    ClassicBase.registry.dispose()


def test_classic_declarative_base_model_end_to_end(db, classic_base):
    class Article(classic_base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
        name = sa.Column(sa.Unicode(255))

    db.create(classic_base.metadata)
    assert "article_version" in classic_base.metadata.tables
    session = db.session()
    article = history(session, Article)
    assert [v.name for v in article.versions] == ["a", "b"]
    assert article.versions[1].previous.name == "a"
    assert issubclass(version_class(Article), classic_base)
    assert issubclass(transaction_class(Article), classic_base)
    assert [r["name"] for r in db.rows("article_version", order_by="transaction_id")] == [
        "a", "b",
    ]


def test_imperatively_mapped_model_end_to_end(db, base):
    table = sa.Table(
        "note", base.metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.String(50)),
    )

    class Note:
        __versioned__: dict[str, Any] = {}

        def __init__(self, **kw: Any) -> None:
            for key, value in kw.items():
                setattr(self, key, value)

    base.registry.map_imperatively(Note, table)
    db.create(base.metadata)
    session = db.session()
    note = Note(id=1, body="x")
    session.add(note)
    session.commit()
    assert [(r["id"], r["body"]) for r in db.rows("note_version")] == [(1, "x")]
    assert [v.body for v in note.versions] == ["x"]


def test_a_versioned_class_whose_mappings_were_disposed_is_forgotten():
    """A versioned class mapped and thrown away (its registry disposed) before the mappers
    were configured has nothing to version: the next configuration builds the others and
    does not trip over it."""
    manager = VersioningManager()
    make_versioned(manager=manager, user_cls=None)
    try:
        registry = orm.registry()
        table = sa.Table("note", registry.metadata, sa.Column("id", sa.Integer, primary_key=True))

        class Note:
            __versioned__: dict[str, Any] = {}

        registry.map_imperatively(Note, table)
        registry.dispose()

        class Base(orm.DeclarativeBase):
            pass

        class Article(Base):
            __tablename__ = "article"
            __versioned__: dict[str, Any] = {}
            id: Mapped[int] = mapped_column(primary_key=True)

        orm.configure_mappers()
        assert list(manager.version_class_map) == [Article]
        assert Note not in manager.pending_classes
    finally:
        remove_versioning(manager=manager)


# -- make_versioned / remove_versioning ------------------------------------------------


def test_signatures_match_continuum():
    params = inspect.signature(make_versioned).parameters
    assert list(params) == ["mapper", "session", "manager", "plugins", "options", "user_cls"]
    assert params["manager"].default is versioning_manager
    assert params["user_cls"].default == "User"
    assert params["session"].default is orm.Session
    assert list(inspect.signature(remove_versioning).parameters) == [
        "mapper", "session", "manager",
    ]
    assert list(inspect.signature(VersioningManager).parameters)[:6] == [
        "unit_of_work_cls", "transaction_cls", "user_cls", "options", "plugins", "builder",
    ]
    assert isinstance(versioning_manager, VersioningManager)


def test_remove_versioning_stops_capture(db, base, manager):
    Article = define_article(base)
    db.create(base.metadata)
    manager.options["create_composite_index"] = False
    session = db.session()
    article = Article(name="a")
    session.add(article)
    session.commit()
    assert len(db.rows("article_version")) == 1

    remove_versioning(manager=manager)
    article.name = "b"
    session.add(Article(name="c"))
    session.commit()
    session.delete(article)
    session.commit()
    assert [r["name"] for r in db.rows("article")] == ["c"]
    assert [r["name"] for r in db.rows("article_version")] == ["a"]
    assert len(db.rows("transaction")) == 1
    # The manager forgot its classes but keeps its options.
    assert manager.version_class_map == {}
    assert manager.options["create_composite_index"] is False


@pytest.mark.parametrize("lazy", ["dynamic", "selectin"])
def test_remove_versioning_takes_away_what_versioning_added(db, base, manager, lazy):
    """The ``versions`` relationship, the history batches' listeners (a loaded object
    no longer joins a batch) and the old values kept on assignment all go; queries
    compiled before (eager-loading the versions) still run."""
    manager.options["versions_lazy"] = lazy

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    class Special(Article):  # single-table subclass: inherits ``versions``
        extra: Mapped[str | None] = mapped_column(sa.Unicode(20))

    db.create(base.metadata)
    session = db.session()
    session.add_all([Article(name="a"), Special(name="s", extra="x")])
    session.commit()
    session.close()
    loaded = session.scalars(sa.select(Article).order_by(Article.id)).all()
    assert [len(a.versions.all() if lazy == "dynamic" else a.versions) for a in loaded] == [1, 1]
    assert Article.name.impl.active_history is True
    session.close()

    remove_versioning(manager=manager)
    for cls in (Article, Special):
        assert "versions" not in sa.inspect(cls).attrs
        assert not hasattr(cls, "versions")
        assert cls.name.impl.active_history is False
    loaded = session.scalars(sa.select(Article).order_by(Article.id)).all()
    assert [a.name for a in loaded] == ["a", "s"]
    assert all("_chronicle_history_batch" not in vars(a) for a in loaded)
    loaded[0].name = "b"
    session.commit()
    assert [r["name"] for r in db.rows("article", order_by=["id"])] == ["b", "s"]
    assert [r["name"] for r in db.rows("article_version", order_by=["id"])] == ["a", "s"]


def test_default_manager_make_and_remove_versioning(engine):
    """The module-level manager, as Continuum users set it up."""
    make_versioned(user_cls=None)
    try:

        class Base(orm.DeclarativeBase):
            pass

        Article = define_article(Base)
        orm.configure_mappers()
        assert Article.__versioning_manager__ is versioning_manager
        assert versioning_manager.version_class_map[Article] is version_class(Article)
        Base.metadata.create_all(engine)
        try:
            with orm.Session(engine) as session:
                history(session, Article)
            with engine.connect() as conn:
                count = conn.scalar(sa.select(sa.func.count()).select_from(
                    Base.metadata.tables["article_version"]
                ))
            assert count == 2
        finally:
            Base.metadata.drop_all(engine)
            Base.registry.dispose()
    finally:
        remove_versioning()
    assert versioning_manager.version_class_map == {}
    assert versioning_manager.pending_classes == []


VersionedSession = orm.sessionmaker()


@pytest.mark.versioning(session=VersionedSession)
def test_make_versioned_on_one_sessionmaker(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    with VersionedSession(bind=db.engine) as session:
        session.add(Article(id=1, name="versioned"))
        session.commit()
    plain = db.session()
    plain.add(Article(id=2, name="plain"))
    plain.commit()
    other = orm.sessionmaker(bind=db.engine)()
    db.sessions.append(other)
    other.add(Article(id=3, name="other maker"))
    other.commit()

    assert [r["name"] for r in db.rows("article")] == ["versioned", "plain", "other maker"]
    assert [(r["id"], r["name"]) for r in db.rows("article_version")] == [(1, "versioned")]
    assert len(db.rows("transaction")) == 1


def test_two_managers_each_version_their_own_sessions(engine):
    first, second = orm.sessionmaker(bind=engine), orm.sessionmaker(bind=engine)
    m1 = VersioningManager(transaction_table_name="transaction_one")
    make_versioned(manager=m1, session=first, user_cls=None)

    class Base1(orm.DeclarativeBase):
        pass

    A1 = define_article(Base1)
    m2 = VersioningManager(transaction_table_name="transaction_two")
    make_versioned(manager=m2, session=second, user_cls=None)

    class Base2(orm.DeclarativeBase):
        pass

    class Page(Base2):
        # Both managers watch every mapper; the class names the one that owns it.
        __versioning_manager__ = m2
        __tablename__ = "page"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)

    try:
        orm.configure_mappers()
        assert A1.__versioning_manager__ is m1 and Page.__versioning_manager__ is m2
        Base1.metadata.create_all(engine)
        Base2.metadata.create_all(engine)
        with first() as s1, second() as s2:
            s1.add(A1(name="a"))
            s1.commit()
            s2.add(Page(id=1))
            s2.commit()
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM article_version")) == 1
            assert conn.scalar(sa.text("SELECT count(*) FROM page_version")) == 1
            assert conn.scalar(sa.text("SELECT count(*) FROM transaction_one")) == 1
            assert conn.scalar(sa.text("SELECT count(*) FROM transaction_two")) == 1
    finally:
        remove_versioning(manager=m1)
        remove_versioning(manager=m2)
        Base1.metadata.drop_all(engine)
        Base2.metadata.drop_all(engine)
        Base1.registry.dispose()
        Base2.registry.dispose()


# -- the user class --------------------------------------------------------------------


@pytest.mark.versioning(user_cls="User")
def test_default_user_cls_without_user_class_fails_at_configure(base, manager):
    define_article(base)
    with pytest.raises(ImproperlyConfigured) as err:
        orm.configure_mappers()
    assert "'User'" in str(err.value)
    assert "user_cls" in str(err.value)
    assert isinstance(err.value, ConfigurationError) and isinstance(err.value, ChronicleError)


class CurrentUser(Plugin):
    """Stamps each transaction with the id of the current user."""

    def __init__(self) -> None:
        self.user_id: int | None = None

    def transaction_args(self, uow: Any, session: orm.Session) -> dict[str, Any]:
        return {"user_id": self.user_id}


def define_user(base: Any) -> Any:
    class User(base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    return User


def check_user_link(db: Any, manager: VersioningManager, User: Any, Article: Any) -> None:
    inspector = sa.inspect(db.engine)
    columns = [c["name"] for c in inspector.get_columns("transaction")]
    assert columns == ["id", "issued_at", "remote_addr", "user_id"]
    fks = inspector.get_foreign_keys("transaction")
    assert [(fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
            for fk in fks] == [(["user_id"], "users", ["id"])]
    assert any(ix["column_names"] == ["user_id"] for ix in inspector.get_indexes("transaction"))

    Transaction = transaction_class(Article)
    assert "user" in sa.inspect(Transaction).relationships
    session = db.session()
    alice = User(id=7, name="alice")
    session.add(alice)
    session.commit()
    assert db.rows("transaction") == []  # users are not versioned

    manager.plugins[0].user_id = alice.id
    article = Article(name="a")
    session.add(article)
    session.commit()
    manager.plugins[0].user_id = None
    article.name = "b"
    session.commit()

    assert [r["user_id"] for r in db.rows("transaction")] == [7, None]
    first, second = article.versions.all()
    assert first.transaction.user is alice
    assert second.transaction.user is None
    tx = session.get(Transaction, first.transaction_id)
    assert tx.user is alice
    assert repr(tx).startswith(f"<Transaction id={tx.id}, issued_at=")
    assert "user=" in repr(tx)


@pytest.mark.versioning(user_cls="User", plugins=[CurrentUser()])
def test_user_cls_by_name(db, base, manager):
    User = define_user(base)
    Article = define_article(base)
    db.create(base.metadata)
    check_user_link(db, manager, User, Article)


@pytest.mark.versioning(plugins=[CurrentUser()])
def test_user_cls_as_class(db, base, manager):
    User = define_user(base)
    manager.user_cls = User
    Article = define_article(base)
    db.create(base.metadata)
    check_user_link(db, manager, User, Article)


# -- the transaction class name --------------------------------------------------------


def test_existing_transaction_class_is_reported(base, manager):
    class Transaction(base):
        __tablename__ = "payment"
        id: Mapped[int] = mapped_column(primary_key=True)

    define_article(base)
    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    message = str(err.value)
    assert "'Transaction'" in message and "transaction_class_name" in message


def test_transaction_class_name_avoids_the_clash(engine):
    m = VersioningManager(transaction_class_name="VersioningTransaction")
    make_versioned(manager=m, user_cls=None)

    class Base(orm.DeclarativeBase):
        pass

    class Transaction(Base):
        __tablename__ = "payment"
        id: Mapped[int] = mapped_column(primary_key=True)
        amount: Mapped[int]

    Article = define_article(Base)
    try:
        orm.configure_mappers()
        TxCls = transaction_class(Article)
        assert TxCls.__name__ == "VersioningTransaction"
        assert TxCls.__table__.name == "transaction"
        assert TxCls is not Transaction
        Base.metadata.create_all(engine)
        with orm.Session(engine) as session:
            session.add_all([Article(name="a"), Transaction(id=1, amount=5)])
            session.commit()
            [version] = session.scalars(sa.select(version_class(Article))).all()
            assert isinstance(version.transaction, TxCls)
            assert session.scalars(sa.select(TxCls)).one().id == version.transaction_id
            assert session.scalars(sa.select(Transaction)).one().amount == 5
    finally:
        remove_versioning(manager=m)
        Base.metadata.drop_all(engine)
        Base.registry.dispose()


# -- plugins ---------------------------------------------------------------------------


class Recorder(Plugin):
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Recorder({self.name!r})"


class Misspelt(Plugin):
    def after_flsh(self, uow: Any, session: Any) -> None:
        pass


def test_misspelt_hook_is_refused_everywhere(manager):
    with pytest.raises(ConfigurationError) as err:
        PluginCollection([Misspelt()])
    assert "after_flsh" in str(err.value) and "Misspelt" in str(err.value)
    plugins = PluginCollection([Recorder("a")])
    with pytest.raises(ConfigurationError, match="after_flsh"):
        plugins.append(Misspelt())
    with pytest.raises(ConfigurationError, match="after_flsh"):
        plugins[0] = Misspelt()
    with pytest.raises(ConfigurationError, match="after_flsh"):
        plugins.insert(0, Misspelt())
    assert [p.name for p in plugins] == ["a"]
    with pytest.raises(ConfigurationError, match="after_flsh"):
        manager.plugins = [Misspelt()]
    with pytest.raises(ConfigurationError, match="after_flsh"):
        make_versioned(manager=VersioningManager(), plugins=[Misspelt()], user_cls=None)
    with pytest.raises(ConfigurationError, match="after_flsh"):
        VersioningManager(plugins=[Misspelt()])


class MisspeltRowValues(Plugin):
    def version_row_value(self, uow: Any, table: Any, operation: int, obj: Any) -> Any:
        return {"note": "never written"}


class WithHelpers(Plugin):
    def version_row_values(self, uow: Any, table: Any, operation: int, obj: Any) -> Any:
        return self.values_for(obj)

    def values_for(self, obj: Any) -> dict[str, Any]:
        return {}


def test_misspelt_hook_without_prefix_is_refused_naming_the_plugin(manager):
    with pytest.raises(ConfigurationError) as err:
        manager.plugins = [MisspeltRowValues()]
    message = str(err.value)
    assert "MisspeltRowValues" in message and "version_row_value()" in message
    assert "Did you mean version_row_values()?" in message
    # Helper methods that resemble no hook stay allowed.
    manager.plugins = [WithHelpers()]
    assert len(manager.plugins) == 1


def test_plugin_class_instead_of_instance_is_refused():
    with pytest.raises(ConfigurationError, match=r"Recorder\(\)|instance"):
        PluginCollection([Recorder])


def test_plugin_collection_is_a_mutable_list():
    a, b, c = Recorder("a"), Recorder("b"), Recorder("c")
    plugins = PluginCollection([a])
    plugins.append(b)
    assert len(plugins) == 2
    assert list(plugins) == [a, b]
    assert plugins[0] is a and plugins[-1] is b
    plugins[1] = c
    assert [p.name for p in plugins] == ["a", "c"]
    del plugins[0]
    assert list(plugins) == [c]
    plugins.extend([a, b])
    assert [p.name for p in plugins] == ["c", "a", "b"]
    assert [p.name for p in plugins[1:]] == ["a", "b"]
    assert a in plugins
    plugins.remove(a)
    assert [p.name for p in plugins] == ["c", "b"]
    assert len(PluginCollection()) == 0


def test_plugin_collection_broadcasts_hooks():
    class Args(Plugin):
        def __init__(self, value: int) -> None:
            self.value = value

        def transaction_args(self, uow: Any, session: Any) -> dict[str, Any]:
            return {"value": self.value}

    plugins = PluginCollection([Args(1), Recorder("no override"), Args(2)])
    assert plugins.transaction_args(None, None) == [{"value": 1}, {}, {"value": 2}]
    with pytest.raises(AttributeError):
        plugins.not_a_hook  # noqa: B018


def test_manager_plugins_setter_wraps_in_collection(manager):
    a = Recorder("a")
    manager.plugins = [a]
    assert isinstance(manager.plugins, PluginCollection)
    assert list(manager.plugins) == [a]
    make_versioned(manager=manager, plugins=[Recorder("b")], user_cls=None)
    assert [p.name for p in manager.plugins] == ["b"]


# -- public names ----------------------------------------------------------------------


def test_public_names_import_and_are_documented():
    assert (sqlalchemy_chronicle.__doc__ or "").strip()
    names = sqlalchemy_chronicle.__all__
    assert len(names) == len(set(names))
    namespace: dict[str, Any] = {}
    exec("from sqlalchemy_chronicle import *", namespace)
    for name in names:
        assert name in namespace, name
        if name == "__version__":
            assert isinstance(namespace[name], str) and namespace[name]
            continue
        obj = namespace[name]
        assert (inspect.getdoc(obj) or "").strip(), f"{name} has no docstring"
    assert namespace["versioning_manager"] is versioning_manager


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("sqlalchemy_chronicle", "make_versioned"),
        ("sqlalchemy_chronicle", "remove_versioning"),
        ("sqlalchemy_chronicle", "versioning_manager"),
        ("sqlalchemy_chronicle", "VersioningManager"),
        ("sqlalchemy_chronicle", "ClassNotVersioned"),
        ("sqlalchemy_chronicle", "ImproperlyConfigured"),
        ("sqlalchemy_chronicle", "Operation"),
        ("sqlalchemy_chronicle", "UnitOfWork"),
        ("sqlalchemy_chronicle", "__version__"),
        ("sqlalchemy_chronicle", "TransactionFactory"),
        ("sqlalchemy_chronicle.utils", "version_class"),
        ("sqlalchemy_chronicle.utils", "parent_class"),
        ("sqlalchemy_chronicle.utils", "transaction_class"),
        ("sqlalchemy_chronicle.utils", "count_versions"),
        ("sqlalchemy_chronicle.utils", "end_tx_column_name"),
        ("sqlalchemy_chronicle.utils", "is_internal_column"),
        ("sqlalchemy_chronicle.utils", "version_obj"),
        ("sqlalchemy_chronicle.utils", "versioned_column_properties"),
        ("sqlalchemy_chronicle.utils", "option"),
        ("sqlalchemy_chronicle.utils", "adapt_columns"),
        ("sqlalchemy_chronicle.exc", "VersioningError"),
        ("sqlalchemy_chronicle.manager", "VersioningManager"),
    ],
)
def test_continuum_import_paths(module, name):
    assert hasattr(importlib.import_module(module), name)


def test_error_tree():
    from sqlalchemy_chronicle import exc

    assert exc.VersioningError is exc.ChronicleError
    assert issubclass(exc.ImproperlyConfigured, exc.ConfigurationError)
    assert issubclass(exc.ConfigurationError, sa.exc.ArgumentError)
    assert issubclass(exc.ClassNotVersioned, TypeError)
    assert issubclass(exc.NotSupportedError, NotImplementedError)
    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.ChronicleError), name
