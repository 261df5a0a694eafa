"""Bad input to the public functions: our error, naming what was wrong, data untouched.

And the values of ``versioning_context()`` (user, address, metadata) reach SQL only as
bound parameters: hostile strings are stored as given.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

import sqlalchemy_chronicle as chronicle
from sqlalchemy_chronicle import ChronicleError, versioning_context
from sqlalchemy_chronicle.plugins import TransactionMetaPlugin


@pytest.fixture
def world(db, base, manager):
    """Article (versioned), Plain (not versioned), one saved article, and a session."""

    class Article(base):  # type: ignore[misc, valid-type]
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Plain(base):  # type: ignore[misc, valid-type]
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1, name="kept"))
    session.commit()
    return Article, Plain, session


def _untouched(db: Any) -> None:
    assert [(r["id"], r["name"]) for r in db.rows("article")] == [(1, "kept")]
    assert len(db.rows("article_version")) == 1
    assert len(db.rows("transaction")) == 1


class Nothing:
    """An object SQLAlchemy knows nothing about."""

    def __repr__(self) -> str:
        return "<Nothing>"


# Functions taking a mapped object, fed what is not one.
OBJECT_FUNCTIONS = ["changeset", "count_versions", "is_modified", "is_modified_or_deleted"]
NOT_OBJECTS = {
    "int": 5,
    "str": "Article",
    "None": None,
    "plain object": Nothing(),
    "a session": "SESSION",
    "a class": "CLASS",
}


def test_functions_of_an_object_refuse_what_is_not_one(db, world):
    Article, _, session = world
    for name in OBJECT_FUNCTIONS:
        for label, value in NOT_OBJECTS.items():
            value = {"SESSION": session, "CLASS": Article}.get(value, value)
            with pytest.raises(ChronicleError) as info:
                getattr(chronicle, name)(value)
            named = value.__name__ if isinstance(value, type) else type(value).__name__
            assert name in str(info.value), label
            assert named in str(info.value), label
    _untouched(db)


def test_functions_of_a_session_refuse_what_is_not_one(db, world):
    for name in ("is_session_modified", "versioned_objects"):
        for bad in (5, "session", None, Nothing()):
            with pytest.raises(ChronicleError, match=name) as info:
                getattr(chronicle, name)(bad)
            assert type(bad).__name__ in str(info.value)
    _untouched(db)


def test_version_table_refuses_what_is_not_a_table(db, world):
    Article, _, _ = world
    for bad in (5, "article", None, Nothing(), Article):
        with pytest.raises(ChronicleError, match="version_table") as info:
            chronicle.version_table(bad)
        assert (bad.__name__ if isinstance(bad, type) else type(bad).__name__) in str(info.value)


def test_vacuum_refuses_what_is_not_a_versioned_model(db, world):
    Article, Plain, session = world
    for bad, named in [
        (Article(id=9), "Article"),
        (chronicle.version_class(Article), "ArticleVersion"),
        (Plain, "Plain"),
        ("Article", "Article"),
    ]:
        with pytest.raises(ChronicleError, match=named):
            chronicle.vacuum(session, bad)
    with pytest.raises(ChronicleError, match=r"vacuum.*int"):
        chronicle.vacuum(5, Article)
    _untouched(db)


def test_unversioned_classes_are_named(db, world):
    _, Plain, _ = world
    for name in ("version_class", "transaction_class", "tx_column_name", "get_versioning_manager"):
        with pytest.raises(chronicle.ClassNotVersioned, match="Plain"):
            getattr(chronicle, name)(Plain)


def test_closed_session_and_detached_objects(db, world):
    Article, _, session = world
    article = session.get(Article, 1)
    version = article.versions[0]
    session.close()  # article and version are detached now
    assert chronicle.count_versions(article) == 0  # as SQLAlchemy-Continuum: no session
    assert chronicle.is_session_modified(session) is False
    with pytest.raises(ChronicleError, match="ArticleVersion"):
        version.revert()
    _untouched(db)


def test_reading_and_reverting_refuse_bad_arguments(db, world):
    Article, _, session = world
    ArticleVersion = chronicle.version_class(Article)
    version = session.get(Article, 1).versions[0]
    with pytest.raises(chronicle.ReverterException, match="list of relationship names"):
        version.revert(relations="name")
    with pytest.raises(chronicle.ReverterException, match="not int 5"):
        version.revert(relations=[5])
    from sqlalchemy_chronicle.reverter import Reverter

    with pytest.raises(chronicle.ReverterException, match="takes a version object, not Article"):
        Reverter(session.get(Article, 1))
    with pytest.raises(ChronicleError, match=r"ArticleVersion.version_at\(\) takes a Session"):
        ArticleVersion.version_at(5, 1, 1)
    with pytest.raises(ChronicleError, match="transaction id"):
        ArticleVersion.version_at(session, 1, "1")
    with pytest.raises(ChronicleError, match=r"all_versions\(\) takes a Session"):
        ArticleVersion.all_versions(None, 1)
    with pytest.raises(ChronicleError, match=r"primary key is \(id\)"):
        ArticleVersion.all_versions(session, (1, 2))
    # A key of the wrong type is named before the database sees it (PostgreSQL would
    # fail on it, SQLite and MariaDB would compare it loosely).
    for call in (
        lambda: ArticleVersion.version_at(session, "x", 1),
        lambda: ArticleVersion.all_versions(session, "1"),
        lambda: ArticleVersion.versions_at(session, [1, "x"], 1),
        lambda: ArticleVersion.version_at(session, {"id": 1.5}, 1),
    ):
        with pytest.raises(ChronicleError, match="primary key column 'id' holds int values"):
            call()
    with pytest.raises(ChronicleError, match=r"needs the keys 'id'; \{'nope': 1\}"):
        ArticleVersion.version_at(session, {"nope": 1}, 1)
    with pytest.raises(ChronicleError, match=r"all_versions\(\) takes limit .* not str 'x'"):
        ArticleVersion.all_versions(session, 1, limit="x")
    with pytest.raises(ChronicleError, match=r"all_versions\(\) takes offset .* not int -1"):
        ArticleVersion.all_versions(session, 1, offset=-1)
    with pytest.raises(ChronicleError, match=r"versions_at\(\) takes a Session first"):
        ArticleVersion.versions_at(5, [1], 1)
    with pytest.raises(ChronicleError, match=r"versions_at\(\) takes the transaction id"):
        ArticleVersion.versions_at(session, [1], "1")
    with pytest.raises(ChronicleError, match=r"revert_many\(\) takes versions .* not int 5"):
        ArticleVersion.revert_many(session, 5)
    with pytest.raises(ChronicleError, match=r"revert_many\(\) takes a Session first"):
        ArticleVersion.revert_many(None, [version])
    with pytest.raises(ChronicleError, match=r"vacuum\(\) takes yield_per .* str 'x'"):
        chronicle.vacuum(session, Article, yield_per="x")
    from sqlalchemy_chronicle.utils import version_obj

    with pytest.raises(ChronicleError, match=r"version_obj\(\) takes a Session, not int"):
        version_obj(5, session.get(Article, 1))
    with pytest.raises(ChronicleError, match="Article has no versioning option 'nope'"):
        chronicle.utils.option(Article, "nope")
    assert [v.name for v in ArticleVersion.all_versions(session, {"id": 1}, limit=1)] == ["kept"]
    from decimal import Decimal  # a whole number of another type is a key all the same

    assert ArticleVersion.version_at(session, Decimal(1), version.transaction_id) == version
    session.rollback()
    _untouched(db)


def test_manager_functions_refuse_bad_arguments(db, world, manager):
    with pytest.raises(ChronicleError, match=r"make_versioned.*not int 5"):
        chronicle.make_versioned(manager=5)
    with pytest.raises(ChronicleError, match=r"remove_versioning.*not str"):
        chronicle.remove_versioning(manager="m")
    with pytest.raises(ChronicleError, match=r"unit_of_work.*not int"):
        manager.unit_of_work(5)
    with pytest.raises(chronicle.ClassNotVersioned, match="int 5"):
        manager.versioned_model(5)
    _untouched(db)


HOSTILE = [
    "'; DROP TABLE article; --",
    'Robert"); DELETE FROM "transaction"; --',
    "%s %(user)s %% {0} ?",
    "back\\slash \\' \\\"",
    "unicode ✓ 日本 \u202e",
]


@pytest.mark.versioning(plugins=[TransactionMetaPlugin()])
@pytest.mark.parametrize("text", HOSTILE)
def test_context_values_reach_sql_only_as_parameters(db, base, manager, text):
    class Article(base):  # type: ignore[misc, valid-type]
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    db.create(base.metadata)
    address = text[:50]
    with (
        db.executions() as sent,
        versioning_context(remote_addr=address, note=text),
        db.session() as session,
    ):
        session.add(Article(id=1, name="x"))
        session.commit()
    # Stored exactly as given, and no statement carries it as SQL text.
    assert [r["remote_addr"] for r in db.rows("transaction")] == [address]
    meta = db.rows("transaction_meta")
    assert [(r["key"], r["value"]) for r in meta] == [("note", text)]
    assert not [s for s, _ in sent if text in s or address in s]
    assert [r["name"] for r in db.rows("article")] == ["x"]
    assert len(db.rows("article_version")) == 1


# -- versions of another manager ---------------------------------------------------------


@pytest.fixture
def other_world(db, world):
    """A second manager, installed on its own sessionmaker, versioning Other (its own
    base and transaction table), beside the first manager's Article."""
    from sqlalchemy import orm

    Article, _, session = world
    other_sessions = orm.sessionmaker(db.engine)
    other = chronicle.VersioningManager(
        transaction_table_name="other_transaction", transaction_class_name="OtherTransaction"
    )
    chronicle.make_versioned(manager=other, session=other_sessions, user_cls=None)

    class OtherBase(orm.DeclarativeBase):
        pass

    class Other(OtherBase):
        __tablename__ = "other"
        __versioned__: dict[str, Any] = {}
        __versioning_manager__ = other
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    try:
        db.create(OtherBase.metadata)
        with other_sessions() as writing:
            writing.add(Other(id=1, name="first"))
            writing.commit()
            writing.get(Other, 1).name = "second"
            writing.commit()
        yield Article, Other, other, other_sessions, session
    finally:
        db.close()  # the tables, before the classes go
        chronicle.remove_versioning(manager=other)
        OtherBase.registry.dispose()


def _other_untouched(db: Any) -> None:
    assert [(r["id"], r["name"]) for r in db.rows("other")] == [(1, "second")]
    assert [r["name"] for r in db.rows("other_version", order_by="transaction_id")] == [
        "first", "second"
    ]
    assert len(db.rows("other_transaction")) == 2


def test_a_manager_refuses_the_classes_of_another(db, other_world, manager):
    Article, Other, other, _, session = other_world
    OtherVersion = chronicle.version_class(Other)
    version = session.scalars(sa.select(OtherVersion)).first()
    assert other.versioned_model(Other).version_cls is OtherVersion  # its own manager
    calls = {
        "versioned_model": [lambda c: manager.versioned_model(c)],
        "option": [lambda c: manager.option(c, "strategy")],
        "is_excluded_property": [lambda c: manager.is_excluded_property(c, "name")],
        "is_excluded_column": [lambda c: manager.is_excluded_column(c, Other.__table__.c.name)],
    }
    for function, (call,) in calls.items():
        for given, named in ((Other, "Other"), (OtherVersion, "OtherVersion")):
            with pytest.raises(chronicle.ClassNotVersioned, match=rf"{function}\(\): {named} is "
                               r"versioned by another VersioningManager"):
                call(given)
    with pytest.raises(chronicle.ClassNotVersioned, match="OtherVersion"):
        manager.fetcher(version)
    # What the first manager versions is answered as before.
    assert manager.option(Article, "versioning") is True
    session.rollback()
    _untouched(db)
    _other_untouched(db)


def test_reverting_where_the_versions_manager_does_not_version_the_session(db, other_world):
    """A session of the first manager only: reverting the second manager's version
    there would write Other without a version, so it is refused before anything
    changes; in a session of its own manager it is reverted and versioned."""
    _, Other, _, other_sessions, session = other_world
    OtherVersion = chronicle.version_class(Other)
    first = session.scalars(sa.select(OtherVersion).order_by(OtherVersion.transaction_id)).first()
    with pytest.raises(chronicle.VersioningStateError, match=r"Cannot revert <OtherVersion id=1"):
        first.revert()
    with pytest.raises(chronicle.VersioningStateError, match=r"OtherVersion.revert_many\(\)"):
        OtherVersion.revert_many(session, [first])
    session.commit()
    _untouched(db)
    _other_untouched(db)
    with other_sessions() as own:
        first = own.scalars(sa.select(OtherVersion).order_by(OtherVersion.transaction_id)).first()
        first.revert()
        own.commit()
    assert [r["name"] for r in db.rows("other")] == ["first"]
    assert [r["name"] for r in db.rows("other_version", order_by="transaction_id")] == [
        "first", "second", "first"
    ]
    _untouched(db)


def test_module_functions_answer_from_the_objects_own_manager(db, other_world):
    """The module-level functions take the manager from what they are given: the
    second manager's objects get its answers, and the first manager's data is left
    alone."""
    _, Other, other, _, session = other_world
    OtherVersion = chronicle.version_class(Other)
    assert chronicle.get_versioning_manager(OtherVersion) is other
    assert chronicle.transaction_class(Other).__table__.name == "other_transaction"
    live = session.get(Other, 1)
    assert chronicle.count_versions(live) == 2
    assert [v.changeset for v in live.versions] == [
        {"id": [None, 1], "name": [None, "first"]}, {"name": ["first", "second"]}
    ]
    assert chronicle.vacuum(session, Other) == 0
    session.commit()
    _untouched(db)
    _other_untouched(db)


# -- the PostgreSQL trigger functions ----------------------------------------------------


@pytest.mark.dbs("postgresql")
def test_trigger_functions_name_a_missing_table(db, world):
    from sqlalchemy_chronicle.dialects.postgresql import create_trigger, sync_trigger

    with db.engine.begin() as conn:
        with pytest.raises(chronicle.TableNotVersioned, match="'nothere' has no version table "
                           "'nothere_version'"):
            sync_trigger(conn, "nothere_version")
        conn.execute(sa.text("CREATE TABLE lonely (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text("CREATE TABLE orphan_version (id INTEGER)"))
        try:
            with pytest.raises(chronicle.ConfigurationError, match="no table 'orphan' in"):
                sync_trigger(conn, "orphan_version")
            lonely = sa.Table("lonely", sa.MetaData(), sa.Column("id", sa.Integer))
            with pytest.raises(chronicle.TableNotVersioned, match="'lonely_version'"):
                create_trigger(conn, lonely)
        finally:
            conn.execute(sa.text("DROP TABLE lonely, orphan_version"))
    _untouched(db)
