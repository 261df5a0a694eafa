"""ActivityPlugin: activities as a user writes and reads them.

Each test writes through a session and reads back the ``activity`` and
``transaction`` rows, the stamped transaction ids and the objects and versions the
activity resolves to.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ConfigurationError,
    TransactionBase,
    VersioningManager,
    VersioningStateError,
    make_versioned,
    remove_versioning,
    version_class,
    versioning_context,
)
from sqlalchemy_chronicle.plugins import ActivityPlugin
from sqlalchemy_chronicle.plugins.activity import ActivityBase

# One plugin instance for the module: it is rebuilt for each test's manager and
# registry, as an application's plugin is after remove_versioning().
PLUGIN = ActivityPlugin()
pytestmark = pytest.mark.versioning(plugins=[PLUGIN])



def define_tag(base: Any) -> Any:
    """An unversioned model."""

    class Tag(base):  # type: ignore[misc, valid-type]
        __tablename__ = "tag"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    return Tag


def tx_ids(db: Any) -> list[int]:
    return [r["id"] for r in db.rows("transaction")]


def activity_rows(db: Any) -> list[dict[str, Any]]:
    return db.rows("activity")


def create_article(db: Any, Article: Any, name: str = "a") -> Any:
    session = db.session()
    article = Article(name=name)
    session.add(article)
    session.commit()
    return article


# -- the model ------------------------------------------------------------------------


def test_activity_model_and_table(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    assert Activity is PLUGIN.activity_cls
    assert Activity.__name__ == "Activity"
    assert issubclass(Activity, ActivityBase)
    assert Activity.__table__.metadata is Article.__table__.metadata

    inspector = sa.inspect(db.engine)
    columns = {c["name"]: c for c in inspector.get_columns("activity")}
    assert list(columns) == [
        "id", "verb", "transaction_id", "data",
        "object_type", "object_id", "object_tx_id",
        "target_type", "target_id", "target_tx_id",
    ]
    assert columns["transaction_id"]["nullable"] is False
    assert inspector.get_pk_constraint("activity")["constrained_columns"] == ["id"]
    assert any(i["column_names"] == ["transaction_id"] for i in inspector.get_indexes("activity"))
    # No foreign key to the transaction table (pruning transactions stays possible).
    assert inspector.get_foreign_keys("activity") == []
    if db.name != "sqlite":
        assert isinstance(columns["id"]["type"], sa.BigInteger)
        assert isinstance(columns["object_id"]["type"], sa.BigInteger)
    if db.name != "sqlite":
        # Ids come from the sequence SQLAlchemy-Continuum's table uses.
        assert "activity_id_seq" in inspector.get_sequence_names()


def test_ids_autoincrement_and_data_round_trips_as_json(db, article_models, manager):
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    session.add(Activity(verb="login", data={"ip": "10.0.0.1", "tries": [1, 2]}))
    session.commit()
    session.add(Activity(verb="logout"))
    session.commit()
    rows = activity_rows(db)
    assert [r["verb"] for r in rows] == ["login", "logout"]
    assert rows[1]["id"] > rows[0]["id"]
    assert rows[0]["data"] == {"ip": "10.0.0.1", "tries": [1, 2]}
    assert rows[1]["data"] is None


# -- stamping the transaction and the object's version -------------------------------


def test_activity_for_an_object_flushed_first(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    session = db.session()
    article = Article(name="Some article")
    session.add(article)
    session.flush()
    activity = Activity(verb="create", object=article)
    session.add(activity)
    session.commit()

    [tx_id] = tx_ids(db)
    [row] = activity_rows(db)
    assert row["verb"] == "create"
    assert row["transaction_id"] == tx_id
    assert (row["object_type"], row["object_id"], row["object_tx_id"]) == (
        "Article", article.id, tx_id,
    )
    assert (row["target_type"], row["target_id"], row["target_tx_id"]) == (None, None, None)
    version = activity.object_version
    assert isinstance(version, version_class(Article))
    assert (version.id, version.transaction_id, version.name) == (article.id, tx_id, "Some article")
    assert activity.object is article
    assert activity.target is None and activity.target_version is None


def test_new_object_and_its_activity_in_one_flush(db, article_models, manager):
    """Better than Continuum: no flush needed in between (one UPDATE fills the id)."""
    Article = article_models()
    Activity = manager.activity_cls
    session = db.session()
    first = Article(name="first")
    session.add(first)
    session.flush()
    article = Article(name="new")
    session.add_all([article, Activity(verb="create", object=article, target=first)])
    with db.count_statements() as statements:
        session.commit()
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE ACTIVITY")]
    assert len(updates) == 1

    [tx_id] = tx_ids(db)
    [row] = activity_rows(db)
    assert row["transaction_id"] == tx_id
    assert (row["object_type"], row["object_id"], row["object_tx_id"]) == (
        "Article", article.id, tx_id,
    )
    assert (row["target_type"], row["target_id"], row["target_tx_id"]) == (
        "Article", first.id, tx_id,
    )
    with db.session() as fresh:
        activity = fresh.scalars(sa.select(Activity)).one()
        assert activity.object_version.name == "new"
        assert activity.object.id == article.id


def test_activity_points_at_the_latest_version_of_an_untouched_object(
    db, article_models, manager
):
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article, "v1")
    session = orm.object_session(article)
    article.name = "v2"
    session.commit()
    first, second = tx_ids(db)

    with db.session() as other:
        other.add(Activity(verb="read", object=other.get(Article, article.id)))
        other.commit()
        activity = other.scalars(sa.select(Activity)).one()
        third = activity.transaction_id
        assert tx_ids(db) == [first, second, third]
        assert activity.object_tx_id == second
        assert activity.object_version.name == "v2"
        assert activity.object_version.transaction_id == second
    # The activity wrote no version.
    assert [v["transaction_id"] for v in db.rows("article_version")] == [first, second]



def without_id_fetch(statements: list[str]) -> list[str]:
    """``statements`` less the fetch of the activity id from its sequence.

    The activity table takes ids from ``activity_id_seq``, as SQLAlchemy-Continuum's does,
    so that its tables work unchanged. On MariaDB SQLAlchemy reads the next value in a
    statement of its own before the INSERT; that is the id, not a query for an object.
    """
    return [s for s in statements if not s.lower().startswith("select nextval(")]


def test_an_activity_alone_creates_the_transaction(db, article_models, manager):
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    activity = Activity(verb="login")
    session.add(activity)
    session.commit()
    [tx] = db.rows("transaction")
    assert activity.transaction_id == tx["id"]
    assert activity.transaction.id == tx["id"]
    assert tx["issued_at"] is not None
    assert db.rows("article_version") == []


def test_no_query_for_an_object_this_transaction_already_versioned(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article, "v1")
    session = orm.object_session(article)
    article.name = "v2"
    session.flush()
    session.add(Activity(verb="update", object=article))
    with db.count_statements() as statements:
        session.flush()
    statements = without_id_fetch(statements)
    assert len(statements) == 1
    assert statements[0].lstrip().upper().startswith("INSERT INTO ACTIVITY")
    session.commit()
    [row] = activity_rows(db)
    assert row["object_tx_id"] == row["transaction_id"] == tx_ids(db)[-1]


def test_no_query_for_an_object_changed_in_the_same_flush(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article, "v1")
    session = orm.object_session(article)
    article.name = "v2"
    session.add(Activity(verb="update", object=article))
    with db.count_statements() as statements:
        session.flush()
    # (On MySQL/MariaDB the writer's own look-up of the versions to close is one.)
    assert not [
        s for s in without_id_fetch(statements)
        if s.lstrip().upper().startswith("SELECT") and "article_version" not in s
    ]
    session.commit()
    [row] = activity_rows(db)
    assert row["object_tx_id"] == row["transaction_id"] == tx_ids(db)[-1]
    assert [v["name"] for v in db.rows("article_version", order_by="transaction_id")] == [
        "v1", "v2",
    ]


def test_versions_of_untouched_objects_are_read_in_one_query(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    session = db.session()
    articles = [Article(name=str(i)) for i in range(3)]
    session.add_all(articles)
    session.commit()
    articles[2].name = "changed"
    session.commit()
    first, second = tx_ids(db)

    with db.session() as other:
        loaded = other.scalars(sa.select(Article).order_by(Article.id)).all()
        other.add_all([Activity(verb="read", object=a, target=loaded[0]) for a in loaded])
        with db.count_statements() as statements:
            other.flush()
        reads = [s for s in statements if "article_version" in s]
        assert len(reads) == 1
        other.commit()
    rows = activity_rows(db)
    assert [r["object_tx_id"] for r in rows] == [first, first, second]
    assert [r["target_tx_id"] for r in rows] == [first, first, first]


def test_long_key_lists_are_split(db, article_models, manager, monkeypatch):
    from sqlalchemy_chronicle.plugins import activity as activity_module

    monkeypatch.setattr(activity_module, "CHUNK_PARAMS", 2)
    Article = article_models()
    Activity = manager.activity_cls
    session = db.session()
    articles = [Article(name=str(i)) for i in range(3)]
    session.add_all(articles)
    session.commit()
    [first] = tx_ids(db)
    with db.session() as other:
        loaded = other.scalars(sa.select(Article).order_by(Article.id)).all()
        other.add_all([Activity(verb="read", object=a) for a in loaded])
        with db.count_statements() as statements:
            other.commit()
        assert len([s for s in statements if "article_version" in s]) == 2
    assert [r["object_tx_id"] for r in activity_rows(db)] == [first] * 3


def test_a_delete_activity_shows_the_last_version_and_no_object(db, article_models, manager):
    """As in SQLAlchemy-Continuum: once deleted, ``object`` is None and
    ``object_version`` is the version the object had when it was deleted."""
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article)
    session = orm.object_session(article)
    article.name = "b"
    session.commit()
    article_id = article.id
    session.delete(article)
    activity = Activity(verb="delete", object=article)
    session.add(activity)
    session.commit()
    _, update_tx, delete_tx = tx_ids(db)
    assert activity.transaction_id == delete_tx
    assert activity.object_id == article_id
    assert activity.object_tx_id == update_tx
    assert activity.object is None  # the object given is deleted
    assert activity.object_version.name == "b"
    assert activity.object_version.operation_type == 1
    with db.session() as fresh:
        loaded = fresh.get(Activity, activity.id)
        assert loaded.object is None  # the row is gone
        assert (loaded.object_version.transaction_id, loaded.object_version.name) == (
            update_tx, "b",
        )


def test_an_object_deleted_after_its_activity_reads_as_none(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article)
    session = orm.object_session(article)
    activity = Activity(verb="create", object=article)
    session.add(activity)
    session.commit()
    assert activity.object is article
    session.delete(article)
    session.flush()
    assert activity.object is None
    session.rollback()
    assert activity.object is article


def test_activities_are_queried_by_object_and_target(db, base, manager):
    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    db.create(base.metadata)
    Activity = manager.activity_cls
    session = db.session()
    article, other = Article(name="a"), Article(name="other")
    session.add_all([article, other])
    session.flush()
    tag = Tag(id=article.id, name="t")  # the same id as the article, another class
    session.add(tag)
    session.flush()
    session.add_all([
        Activity(verb="create", object=article),
        Activity(verb="tag", object=tag, target=article),
        Activity(verb="create", object=other),
        Activity(verb="create", object=tag),
    ])
    session.commit()

    def verbs(*criteria: Any) -> list[tuple[str, int]]:
        stmt = sa.select(Activity).where(*criteria).order_by(Activity.id)
        return [(a.verb, a.id) for a in session.scalars(stmt)]

    assert verbs(sa.or_(Activity.object == article, Activity.target == article)) == [
        ("create", 1), ("tag", 2),
    ]
    assert session.query(Activity).filter(
        sa.or_(Activity.object == article, Activity.target == article)
    ).count() == 2
    assert verbs(Activity.object == tag) == [("tag", 2), ("create", 4)]
    assert verbs(Activity.target == None) == [("create", 1), ("create", 3), ("create", 4)]
    assert verbs(Activity.target != None) == [("tag", 2)]
    assert verbs(Activity.target != article) == [("create", 1), ("create", 3), ("create", 4)]
    assert verbs(Activity.object.is_type(Tag)) == [("tag", 2), ("create", 4)]
    with pytest.raises(VersioningStateError, match="Article has no primary key yet"):
        Activity.object == Article(name="new")  # noqa: B015
    with pytest.raises(TypeError, match="mapped objects only"):
        Activity.object == "Article"  # noqa: B015


# -- target and generic references ----------------------------------------------------


def test_target_fields_and_unversioned_objects(db, base, manager):
    Tag = define_tag(base)

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    db.create(base.metadata)
    Activity = manager.activity_cls
    session = db.session()
    tag = Tag(name="news")
    article = Article(name="a")
    session.add_all([tag, article])
    session.commit()
    session.add(Activity(verb="tag", object=tag, target=article))
    session.commit()

    [row] = activity_rows(db)
    tx = tx_ids(db)
    assert (row["object_type"], row["object_id"], row["object_tx_id"]) == ("Tag", tag.id, None)
    assert (row["target_type"], row["target_id"], row["target_tx_id"]) == (
        "Article", article.id, tx[0],
    )
    assert row["transaction_id"] == tx[1]
    with db.session() as fresh:
        activity = fresh.scalars(sa.select(Activity)).one()
        assert isinstance(activity.object, Tag) and activity.object.name == "news"
        assert activity.object_version is None
        assert isinstance(activity.target, Article) and activity.target.id == article.id
        assert activity.target_version.transaction_id == tx[0]
        assert repr(activity) == (
            f"<Activity id={activity.id} verb='tag' object=Tag#{tag.id} "
            f"target=Article#{article.id}>"
        )


def test_setting_a_reference_to_none_clears_it(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article)
    activity = Activity(verb="x", object=article, target=article)
    activity.target = None
    assert activity.target is None
    session = orm.object_session(article)
    session.add(activity)
    session.commit()
    [row] = activity_rows(db)
    assert row["object_id"] == article.id
    assert (row["target_type"], row["target_id"], row["target_tx_id"]) == (None, None, None)


def test_references_need_a_single_integer_key(db, base, article_models, manager):
    class Pair(base):
        __tablename__ = "pair"
        a: Mapped[int] = mapped_column(primary_key=True)
        b: Mapped[int] = mapped_column(primary_key=True)

    class Code(base):
        __tablename__ = "code"
        code: Mapped[str] = mapped_column(sa.String(10), primary_key=True)

    article_models()
    Activity = manager.activity_cls
    with pytest.raises(TypeError, match=r"one integer column; the key of Pair is \(a, b\)"):
        Activity(object=Pair(a=1, b=2))
    with pytest.raises(TypeError, match=r"the key of Code is \(code\)"):
        Activity(target=Code(code="x"))
    with pytest.raises(TypeError, match="mapped objects only, not to str"):
        Activity(object="Article")


def test_a_new_unversioned_object_must_be_flushed_first(db, base, article_models, manager):
    Tag = define_tag(base)
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    tag = Tag(name="x")
    session.add_all([tag, Activity(verb="create", object=tag)])
    with pytest.raises(VersioningStateError, match=r"Activity.object is a Tag without a primary"):
        session.flush()
    session.rollback()
    assert activity_rows(db) == [] and db.rows("tag") == []


def test_a_detached_activity_cannot_load_its_object(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    article = create_article(db, Article)
    session = orm.object_session(article)
    session.add(Activity(verb="x", object=article))
    session.commit()
    with db.session() as fresh:
        activity = fresh.scalars(sa.select(Activity)).one()
        fresh.expunge(activity)
    with pytest.raises(orm.exc.DetachedInstanceError, match="not in one"):
        activity.object  # noqa: B018


# -- the transaction and the actor ----------------------------------------------------


def test_transaction_activities_backref(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    session = db.session()
    article = Article(name="a")
    session.add(article)
    session.flush()
    one = Activity(verb="create", object=article)
    two = Activity(verb="share", object=article)
    session.add_all([one, two])
    session.commit()
    session.add(Activity(verb="later"))
    session.commit()

    with db.session() as fresh:
        Transaction = manager.transaction_cls
        first, second = fresh.scalars(sa.select(Transaction).order_by(Transaction.id)).all()
        assert [a.verb for a in first.activities] == ["create", "share"]
        assert [a.verb for a in second.activities] == ["later"]
        assert first.activities[0].transaction is first


def test_activities_of_the_open_transaction_stay_current(db, article_models, manager):
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    first = Activity(verb="first")
    session.add(first)
    session.flush()
    transaction = first.transaction
    assert transaction.activities == [first]
    second = Activity(verb="second")
    session.add(second)
    with db.count_statements() as statements:
        session.flush()
    # The loaded collection follows without a reload; only the INSERT ran.
    assert transaction.activities == [first, second]
    assert second.transaction is transaction
    assert len(without_id_fetch(statements)) == 1
    session.commit()


@pytest.mark.versioning(plugins=[PLUGIN], user_cls="User")
def test_actor_is_the_transaction_user(db, base, manager):
    class User(base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    db.create(base.metadata)
    Activity = manager.activity_cls
    session = db.session()
    session.add_all([User(id=1, name="alice"), User(id=2, name="bob")])
    session.commit()
    with versioning_context(user_id=2):
        session.add(Activity(verb="login"))
        session.commit()
    session.add(Activity(verb="anonymous"))
    session.commit()

    with db.session() as fresh:
        bob, nobody = fresh.scalars(sa.select(Activity).order_by(Activity.id)).all()
        assert bob.actor.name == "bob"
        assert nobody.actor is None
    assert [r["user_id"] for r in db.rows("transaction")] == [2, None]


def test_actor_is_none_without_a_user_class(db, article_models, manager):
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    activity = Activity(verb="login")
    session.add(activity)
    session.commit()
    assert activity.transaction is not None
    assert activity.actor is None


# -- savepoints and rollback ----------------------------------------------------------


def test_savepoint_rollback_drops_the_activity(db, article_models, manager):
    Article = article_models()
    Activity = manager.activity_cls
    session = db.session()
    kept = Activity(verb="kept")
    session.add(kept)
    session.flush()
    savepoint = session.begin_nested()
    article = Article(name="gone")
    session.add_all([article, Activity(verb="dropped", object=article)])
    session.flush()
    savepoint.rollback()
    session.add(Activity(verb="after"))
    session.commit()

    rows = activity_rows(db)
    [tx_id] = tx_ids(db)
    assert [(r["verb"], r["transaction_id"]) for r in rows] == [
        ("kept", tx_id), ("after", tx_id),
    ]
    assert db.rows("article_version") == []


def test_savepoint_rollback_of_the_only_activity_leaves_no_transaction(
    db, article_models, manager
):
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    with session.begin_nested():
        session.add(Activity(verb="dropped"))
        session.flush()
        session.get_nested_transaction().rollback()  # type: ignore[union-attr]
    session.commit()
    assert activity_rows(db) == []
    assert tx_ids(db) == []
    # A later activity opens a new transaction of its own.
    session.add(Activity(verb="next"))
    session.commit()
    [tx_id] = tx_ids(db)
    assert [r["transaction_id"] for r in activity_rows(db)] == [tx_id]


def test_rollback_drops_activity_and_transaction(db, article_models, manager):
    article_models()
    Activity = manager.activity_cls
    session = db.session()
    session.add(Activity(verb="dropped"))
    session.flush()
    session.rollback()
    assert activity_rows(db) == [] and tx_ids(db) == []


# -- building -------------------------------------------------------------------------


def test_a_class_named_activity_already_mapped_is_an_error(base, manager):
    class Activity(base):
        __tablename__ = "my_activity"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(ConfigurationError, match=r"ActivityPlugin\(class_name=\.\.\."):
        orm.configure_mappers()


@pytest.mark.versioning(plugins=[ActivityPlugin(class_name="AuditEvent", table_name="audit")])
def test_class_and_table_names_can_be_changed(db, article_models, manager):
    article_models()
    AuditEvent = manager.activity_cls
    assert AuditEvent.__name__ == "AuditEvent"
    session = db.session()
    session.add(AuditEvent(verb="x"))
    session.commit()
    assert [r["verb"] for r in db.rows("audit")] == ["x"]


def test_with_a_transaction_class_given_by_the_application(engine):
    class Base(orm.DeclarativeBase):
        pass

    class Transaction(Base, TransactionBase):
        __tablename__ = "transaction"
        id: Mapped[int] = mapped_column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True
        )
        issued_at: Mapped[datetime.datetime | None]
        remote_addr: Mapped[str | None] = mapped_column(sa.String(50))

    plugin = ActivityPlugin()
    Session = orm.sessionmaker(engine)
    manager = VersioningManager(transaction_cls=Transaction, plugins=[plugin])
    Transaction.__versioning_manager__ = manager
    make_versioned(manager=manager, session=Session, user_cls=None)
    try:

        class Article(Base):
            __tablename__ = "article"
            __versioned__: dict[str, Any] = {}
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
            name: Mapped[str] = mapped_column(sa.String(50))

        orm.configure_mappers()
        Activity = plugin.activity_cls
        assert Activity is manager.activity_cls
        assert Activity.__table__.metadata is Base.metadata
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with Session() as session:
            article = Article(name="a")
            session.add_all([article, Activity(verb="create", object=article)])
            session.commit()
            activity = session.scalars(sa.select(Activity)).one()
            assert isinstance(activity.transaction, Transaction)
            assert activity.transaction.activities == [activity]
            assert activity.object_version.name == "a"
    finally:
        remove_versioning(manager=manager)
        Base.metadata.drop_all(engine)
        Base.registry.dispose()


def test_a_collection_change_alone_keeps_the_objects_last_version(db, base, manager):
    """``article.tags.append(tag)`` writes no version of the article: an activity on
    the article in that flush points at its last version, which exists."""
    article_tag = sa.Table(
        "article_tag", base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag)

    db.create(base.metadata)
    Activity = manager.activity_cls
    session = db.session()
    article, tag = Article(id=1, name="a"), Tag(id=1)
    session.add_all([article, tag])
    session.commit()
    article.tags.append(tag)
    activity = Activity(verb="tag", object=article)
    session.add(activity)
    session.commit()
    first, second = tx_ids(db)
    assert (activity.transaction_id, activity.object_tx_id) == (second, first)
    assert activity.object_version.name == "a"
