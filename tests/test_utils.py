"""The utility functions (SQLAlchemy-Continuum's ``utils``), as users call them."""

from __future__ import annotations

import datetime
import types
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

import sqlalchemy_chronicle
from sqlalchemy_chronicle import ClassNotVersioned, Operation
from sqlalchemy_chronicle.utils import (
    changeset,
    count_versions,
    end_tx_column_name,
    get_versioning_manager,
    is_modified,
    is_modified_or_deleted,
    is_session_modified,
    is_versioned,
    parent_class,
    transaction_class,
    tx_column_name,
    vacuum,
    version_class,
    version_table,
    versioned_objects,
)

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def _define_side_models(base: Any) -> tuple[Any, Any]:
    """An unversioned model and a model with versioning turned off."""

    class Tag(base):
        __tablename__ = "tag"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Note(base):
        __tablename__ = "note"
        __versioned__: dict[str, Any] = {"versioning": False}
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str | None] = mapped_column(sa.String(50))

    return Tag, Note


def _saved_article(db: Any, Article: Any, **values: Any) -> tuple[Any, Any]:
    session = db.session()
    article = Article(**values)
    session.add(article)
    session.commit()
    return session, article


# -- where the names live -----------------------------------------------------------

TOP_LEVEL = [
    "changeset", "count_versions", "get_versioning_manager", "is_modified",
    "is_session_modified", "parent_class", "transaction_class", "tx_column_name", "vacuum",
    "version_class",
]
UTILS_ONLY = [
    "end_tx_column_name", "is_modified_or_deleted", "is_versioned", "versioned_objects",
    "version_table",
]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_continuum_top_level_names_are_the_utils_functions(name):
    assert callable(getattr(sqlalchemy_chronicle.utils, name))
    assert getattr(sqlalchemy_chronicle, name) is getattr(sqlalchemy_chronicle.utils, name)


@pytest.mark.parametrize("name", UTILS_ONLY)
def test_continuum_utils_names_exist(name):
    assert callable(getattr(sqlalchemy_chronicle.utils, name))


# -- classes ------------------------------------------------------------------------


def test_version_class_and_parent_class(db, base, article_models, manager):
    Tag, Note = _define_side_models(base)
    Article = article_models()
    ArticleVersion = version_class(Article)

    assert ArticleVersion.__name__ == "ArticleVersion"
    assert ArticleVersion.__table__.name == "article_version"
    assert parent_class(ArticleVersion) is Article
    # Versioning turned off for the class: the model itself.
    assert version_class(Note) is Note
    assert "note_version" not in base.metadata.tables

    with pytest.raises(ClassNotVersioned):
        version_class(Tag)
    with pytest.raises(ClassNotVersioned):
        version_class("Article")
    with pytest.raises(KeyError):
        parent_class(Article)
    with pytest.raises(ClassNotVersioned):
        parent_class(Tag)


def test_transaction_class(db, base, article_models, manager):
    Tag, _ = _define_side_models(base)
    Article = article_models()
    ArticleVersion = version_class(Article)
    Transaction = transaction_class(Article)

    assert Transaction.__name__ == "Transaction"
    assert Transaction.__table__.name == "transaction"
    assert transaction_class(ArticleVersion) is Transaction
    _, article = _saved_article(db, Article, name="a")
    assert type(article.versions[0].transaction) is Transaction
    with pytest.raises(ClassNotVersioned):
        transaction_class(Tag)


def test_get_versioning_manager(db, base, article_models, manager):
    Tag, _ = _define_side_models(base)
    Article = article_models()
    _, article = _saved_article(db, Article, name="a")

    assert get_versioning_manager(article) is manager
    assert get_versioning_manager(Article) is manager
    assert get_versioning_manager(orm.aliased(Article)) is manager
    assert get_versioning_manager(version_class(Article)) is manager
    assert get_versioning_manager(article.versions[0]) is manager
    with pytest.raises(ClassNotVersioned, match="Tag"):
        get_versioning_manager(Tag)
    with pytest.raises(ClassNotVersioned, match="Tag"):
        get_versioning_manager(Tag(name="x"))


def test_is_versioned(db, base, article_models):
    Tag, Note = _define_side_models(base)
    Article = article_models()
    assert is_versioned(Article) is True
    assert is_versioned(Article(name="a")) is True
    assert is_versioned(Note) is False
    assert is_versioned(Tag) is False
    assert is_versioned(Tag(name="t")) is False
    assert is_versioned(version_class(Article)) is False


# -- column names -------------------------------------------------------------------


@both_strategies
def test_default_column_names(db, article_models, strategy):
    Article = article_models()
    _, article = _saved_article(db, Article, name="a")
    version = article.versions[0]
    for target in (Article, article, version_class(Article), version):
        assert tx_column_name(target) == "transaction_id"
        assert end_tx_column_name(target) == "end_transaction_id"


@pytest.mark.versioning(options={
    "transaction_column_name": "tx_id",
    "end_transaction_column_name": "end_tx_id",
})
def test_custom_column_names_from_the_manager_options(db, article_models):
    Article = article_models()
    _, article = _saved_article(db, Article, name="a")
    version = article.versions[0]
    for target in (Article, article, version_class(Article), version):
        assert tx_column_name(target) == "tx_id"
        assert end_tx_column_name(target) == "end_tx_id"
    [row] = db.rows("article_version")
    assert row["tx_id"] == version.tx_id
    assert row["end_tx_id"] is None


def test_custom_column_names_per_class(db, article_models):
    Article = article_models({
        "transaction_column_name": "changed_in",
        "end_transaction_column_name": "superseded_in",
    })
    session, article = _saved_article(db, Article, name="a")
    article.name = "b"
    session.commit()
    assert tx_column_name(Article) == "changed_in"
    assert end_tx_column_name(version_class(Article)) == "superseded_in"
    rows = db.rows("article_version", order_by="changed_in")
    assert rows[0]["superseded_in"] == rows[1]["changed_in"]


# -- changeset(obj) -----------------------------------------------------------------


def test_changeset_of_a_pending_update_is_new_then_old(db, article_models):
    Article = article_models()
    session, article = _saved_article(db, Article, name="a", content="body")
    assert changeset(article) == {}

    article.name = "b"
    article.content = ""  # falsy new values are left out
    assert changeset(article) == {"name": ["b", "a"]}
    session.commit()
    assert changeset(article) == {}


def test_changeset_of_a_pending_insert(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="new", content=None)
    session.add(article)
    assert changeset(article) == {"name": ["new", None]}


def test_changeset_of_a_pending_delete(db, article_models):
    Article = article_models()
    session, article = _saved_article(db, Article, name="a", content=None)
    session.refresh(article)
    session.delete(article)
    assert changeset(article) == {"name": [None, "a"]}
    assert db.rows("article") != []


def test_changeset_of_a_pending_delete_right_after_commit(db, article_models):
    Article = article_models()
    session, article = _saved_article(db, Article, name="a", content="body")
    session.delete(article)  # its attributes are still expired by the commit
    assert changeset(article) == {"name": [None, "a"], "content": [None, "body"]}


# -- count_versions -----------------------------------------------------------------


def test_count_versions(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a")
    assert count_versions(article) == 0
    session.add(article)
    assert count_versions(article) == 0  # pending, nothing written
    session.commit()
    assert count_versions(article) == 1
    article.name = "b"
    session.commit()
    other = Article(name="other")
    session.add(other)
    session.commit()
    assert count_versions(article) == 2
    assert count_versions(other) == 1
    article.name = "pending"
    assert count_versions(article) == 2
    assert article in session.dirty  # counting did not flush
    session.commit()
    assert count_versions(article) == 3


@pytest.mark.versioning(options={"table_name": "%s_history"})
def test_count_versions_and_version_table_honour_the_table_name_option(db, article_models):
    Article = article_models()
    session, article = _saved_article(db, Article, name="a")
    article.name = "b"
    session.commit()
    assert count_versions(article) == 2
    assert len(db.rows("article_history")) == 2
    assert version_table(Article.__table__) is version_class(Article).__table__
    assert version_table(Article.__table__).name == "article_history"


def test_count_versions_and_version_table_honour_a_per_class_table_name(db, article_models):
    Article = article_models({"table_name": "audit_%s_log"})
    session, article = _saved_article(db, Article, name="a")
    session.delete(article)
    session.commit()
    assert version_table(Article.__table__).name == "audit_article_log"
    assert [r["operation_type"] for r in db.rows("audit_article_log")] == [
        Operation.INSERT, Operation.DELETE,
    ]
    assert "article_version" not in Article.metadata.tables


def test_version_table_default_name(db, article_models):
    Article = article_models()
    table = version_table(Article.__table__)
    assert table.name == "article_version"
    assert table is version_class(Article).__table__


# -- is_modified and friends --------------------------------------------------------


def test_is_modified_ignores_no_op_and_excluded_changes(db, base, article_models):
    Article = article_models({"exclude": ["content"]})
    session, article = _saved_article(db, Article, name="a", content="x")

    assert is_modified(article) is False
    assert is_modified_or_deleted(article) is False
    assert is_session_modified(session) is False

    article.name = "a"  # assigning the value it already has
    assert is_modified(article) is False
    assert is_session_modified(session) is False

    article.content = "changed"  # excluded from versioning
    assert is_modified(article) is False
    assert is_session_modified(session) is False

    article.name = "b"
    assert is_modified(article) is True
    assert is_modified_or_deleted(article) is True
    assert is_session_modified(session) is True


def test_a_change_undone_before_flush_is_no_modification(db, article_models):
    Article = article_models()
    session, article = _saved_article(db, Article, name="a")
    article.name = "b"
    article.name = "a"
    assert is_modified(article) is False
    assert is_session_modified(session) is False
    session.commit()
    assert len(db.rows("article_version")) == 1
    assert len(db.rows("transaction")) == 1


def test_is_modified_sees_a_many_to_one_change_before_flush(db, base):
    class Author(base):
        __tablename__ = "author"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Book(base):
        __tablename__ = "book"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("author.id"))
        author: Mapped[Author | None] = orm.relationship()

    db.create(base.metadata)
    session = db.session()
    book = Book(author=Author(name="one"))
    session.add(book)
    session.commit()
    assert is_modified(book) is False
    old_author_id = book.author_id

    book.author = Author(name="two")
    assert book.author_id == old_author_id  # the FK column is only set at flush
    assert is_modified(book) is True


def test_a_collection_change_modifies_the_session_but_versions_only_the_other_side(db, base):
    """As in SQLAlchemy-Continuum: ``article.tags.append(tag)`` makes the article and
    the session modified, and the flush writes an association version (many-to-many)
    or a version of the child (one-to-many) and a transaction row, but no version of
    the article."""
    article_tag = sa.Table(
        "article_tag", base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)

    class Comment(base):
        __tablename__ = "comment"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        article_id: Mapped[int | None] = mapped_column(sa.ForeignKey("article.id"))

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag)
        comments: Mapped[list[Comment]] = orm.relationship()

    db.create(base.metadata)
    session = db.session()
    article, tag, comment = Article(id=1, name="a"), Tag(id=1), Comment(id=1)
    session.add_all([article, tag, comment])
    session.commit()
    assert is_session_modified(session) is False

    article.tags.append(tag)
    assert is_modified(article) is True
    assert is_session_modified(session) is True
    session.commit()
    assert len(db.rows("transaction")) == 2
    assert [(r["article_id"], r["tag_id"]) for r in db.rows("article_tag_version")] == [(1, 1)]
    assert len(db.rows("article_version")) == 1  # no version of the article itself

    article.comments.append(comment)
    assert is_modified(article) is True
    assert is_session_modified(session) is True
    session.commit()
    assert len(db.rows("transaction")) == 3
    assert [r["article_id"] for r in db.rows("comment_version", "transaction_id")] == [None, 1]
    assert len(db.rows("article_version")) == 1
    assert is_session_modified(session) is False


def test_is_modified_or_deleted_and_session_for_new_and_deleted_objects(db, base, article_models):
    Tag, _ = _define_side_models(base)
    Article = article_models()
    session, article = _saved_article(db, Article, name="a")
    tag = Tag(name="t")
    session.add(tag)
    session.commit()

    tag.name = "changed"
    assert is_session_modified(session) is False  # only an unversioned object changed

    session.delete(article)
    assert is_modified(article) is False
    assert is_modified_or_deleted(article) is True
    assert is_session_modified(session) is True
    session.rollback()

    fresh = Article(name="new")
    session.add(fresh)
    assert is_modified_or_deleted(fresh) is True
    assert is_session_modified(session) is True


def test_versioned_objects(db, base, article_models):
    Tag, Note = _define_side_models(base)
    Article = article_models()
    session = db.session()
    article, tag, note = Article(name="a"), Tag(name="t"), Note(text="n")
    session.add_all([article, tag, note])

    found = versioned_objects(session)
    assert isinstance(found, types.GeneratorType)
    assert list(found) == [article]


# -- vacuum -------------------------------------------------------------------------


@both_strategies
def test_vacuum_removes_only_updates_identical_to_the_previous_one(db, base, strategy):
    class Item(base):
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        shop_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        sku: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    db.create(base.metadata)
    ItemVersion = version_class(Item)
    ins, upd, dele = Operation.INSERT, Operation.UPDATE, Operation.DELETE
    # Legacy history, written directly: (shop_id, sku, name, tx, end_tx, operation).
    legacy = [
        (1, "a", "x", 1, 3, ins),
        (1, "a", "x", 3, 4, upd),     # same as the one before: removed
        (1, "a", "y", 4, 5, upd),
        (1, "a", "y", 5, None, upd),  # same as the one before: removed
        # Same shop_id and same values as (1, "a")'s last version, but the first
        # version of its own entity (row older than versioning): kept.
        (1, "b", "y", 6, None, upd),
        (2, "a", "x", 2, 4, ins),
        (2, "a", "x", 4, 5, dele),    # a DELETE: kept
        (2, "a", "x", 5, None, ins),  # back to life with the same values: kept
    ]
    rows = []
    for shop_id, sku, name, tx, end_tx, op in legacy:
        row = {"shop_id": shop_id, "sku": sku, "name": name, "transaction_id": tx,
               "operation_type": int(op)}
        if strategy == "validity":
            row["end_transaction_id"] = end_tx
        rows.append(row)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(ItemVersion.__table__), rows)

    session = db.session()
    assert vacuum(session, Item) == 2
    assert len(db.rows("item_version")) == len(legacy)  # the caller commits
    session.commit()

    order = ["shop_id", "sku", "transaction_id"]
    kept = [(r["shop_id"], r["sku"], r["name"], r["transaction_id"])
            for r in db.rows("item_version", order_by=order)]
    assert kept == [
        (1, "a", "x", 1), (1, "a", "y", 4), (1, "b", "y", 6),
        (2, "a", "x", 2), (2, "a", "x", 4), (2, "a", "x", 5),
    ]
    if strategy == "validity":
        ends = [r["end_transaction_id"] for r in db.rows("item_version", order_by=order)]
        assert ends == [4, None, None, 4, 5, None]

    first = ItemVersion.version_at(session, {"shop_id": 1, "sku": "a"}, 1)
    assert first.next.transaction_id == 4
    assert first.next.previous is first
    assert first.next.next is None
    assert vacuum(session, Item) == 0


def test_vacuum_leaves_a_clean_history_alone(db, article_models):
    Article = article_models()
    session, article = _saved_article(db, Article, name="a")
    article.name = "b"
    session.commit()
    article.name = "a"
    session.commit()
    before = db.rows("article_version")
    assert vacuum(session, Article) == 0
    session.commit()
    assert db.rows("article_version") == before


# -- the unit of work ---------------------------------------------------------------


def test_unit_of_work_creates_the_transaction_before_any_flush(db, article_models, manager):
    Article = article_models()
    session = db.session()
    uow = manager.unit_of_work(session)
    assert manager.unit_of_work(session) is uow
    assert uow.current_transaction is None

    tx = uow.create_transaction(session)
    assert tx is not None and tx.id is not None
    assert isinstance(tx, transaction_class(Article))
    assert uow.current_transaction is tx
    assert uow.create_transaction(session) is tx
    tx.remote_addr = "10.0.0.1"

    article = Article(name="a")
    session.add(article)
    session.flush()
    other = Article(name="b")
    session.add(other)
    session.commit()

    assert [(r["id"], r["remote_addr"]) for r in db.rows("transaction")] == [(tx.id, "10.0.0.1")]
    rows = db.rows("article_version")
    assert [r["transaction_id"] for r in rows] == [tx.id, tx.id]
    assert article.versions[0].transaction is tx

    # The next transaction starts afresh.
    assert manager.unit_of_work(session) is not uow
    assert manager.unit_of_work(session).current_transaction is None
    article.name = "c"
    session.commit()
    txs = [r["id"] for r in db.rows("transaction")]
    assert len(txs) == 2
    assert article.versions[1].transaction_id == txs[1] != tx.id


def test_current_transaction_after_a_flush_is_its_row(db, article_models, manager):
    """Without a query, ``current_transaction`` after a flush carries the values the row
    was written with; one the session loaded already is returned itself."""
    Article = article_models()
    Transaction = transaction_class(Article)
    table = manager.transaction_table
    session = db.session()
    with sqlalchemy_chronicle.versioning_context(remote_addr="192.0.2.5"):
        session.add(Article(name="a"))
        session.flush()
    row = session.execute(sa.select(table)).one()
    tx = manager.unit_of_work(session).current_transaction
    assert (tx.id, tx.remote_addr) == (row.id, "192.0.2.5")
    # MariaDB's DATETIME keeps whole seconds; the object has the value as it was sent.
    assert abs(tx.issued_at - row.issued_at) < datetime.timedelta(seconds=1)
    session.commit()

    session.add(Article(name="b"))
    session.flush()
    loaded = session.scalars(sa.select(Transaction).order_by(Transaction.id.desc())).first()
    assert manager.unit_of_work(session).current_transaction is loaded
    session.commit()
    assert [r["id"] for r in db.rows("transaction")] == [tx.id, loaded.id]


def test_adapt_columns_points_an_expression_at_the_version_table(db, article_models):
    from sqlalchemy_chronicle.utils import adapt_columns

    Article = article_models()
    session = db.session()
    session.add_all([Article(name="kept"), Article(name="other")])
    session.commit()
    ArticleVersion = version_class(Article)
    criterion = adapt_columns(Article.__table__.c.name == "kept")
    found = session.scalars(sa.select(ArticleVersion).where(criterion)).all()
    assert [v.name for v in found] == ["kept"]
    assert criterion.left.table is ArticleVersion.__table__
