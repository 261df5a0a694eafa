"""The version object API as a user sees it: ``article.versions``, navigation,
changesets, revert, the transaction link and the class-level look-ups."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    Operation,
    ReverterException,
    VersioningStateError,
    version_class,
)

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def _history(db: Any, Article: Any, names: list[str]) -> tuple[Any, Any]:
    """Insert an article named ``names[0]``, then rename it once per further name,
    one transaction each. Returns (session, article)."""
    session = db.session()
    article = Article(name=names[0], content="body")
    session.add(article)
    session.commit()
    for name in names[1:]:
        article.name = name
        session.commit()
    return session, article


def _versions_of(session: Any, Article: Any, article_id: int) -> list[Any]:
    ArticleVersion = version_class(Article)
    return list(
        session.scalars(
            sa.select(ArticleVersion)
            .where(ArticleVersion.id == article_id)
            .order_by(ArticleVersion.transaction_id)
        )
    )


# -- article.versions ---------------------------------------------------------------


@both_strategies
def test_versions_is_a_dynamic_query_ordered_by_transaction(db, article_models, strategy):
    Article = article_models()
    _, article = _history(db, Article, ["a", "b", "c"])

    versions = article.versions
    assert versions.count() == 3
    assert versions[0].name == "a"
    assert versions[2].name == "c"
    assert [v.name for v in versions.all()] == ["a", "b", "c"]
    assert [v.operation_type for v in versions] == [
        Operation.INSERT, Operation.UPDATE, Operation.UPDATE,
    ]
    assert all(isinstance(v, version_class(Article)) for v in versions)
    # A query, so it can be refined further.
    assert versions.filter_by(name="b").one().name == "b"


def test_versions_order_does_not_depend_on_row_storage_order(db, article_models):
    """Rows written out of order (e.g. imported history) still come back by transaction."""
    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="live"))
    session.commit()
    version_table = version_class(Article).__table__
    with db.engine.begin() as conn:
        conn.execute(sa.delete(version_table))
        conn.execute(
            sa.insert(version_table),
            [
                {"id": 1, "name": n, "transaction_id": tx, "operation_type": 1}
                for tx, n in [(30, "third"), (10, "first"), (20, "second")]
            ],
        )
    article = session.get(Article, 1)
    assert [v.name for v in article.versions] == ["first", "second", "third"]
    assert article.versions[0].transaction_id == 10


def test_versions_refuses_negative_indexes(db, article_models):
    Article = article_models()
    _, article = _history(db, Article, ["a", "b"])
    with pytest.raises(IndexError):
        article.versions[-1]


# -- index --------------------------------------------------------------------------


@both_strategies
def test_index_counts_within_the_entitys_own_history(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    first, second = Article(name="1a"), Article(name="2a")
    session.add(first)
    session.commit()
    session.add(second)
    session.commit()
    first.name = "1b"
    session.commit()
    second.name = "2b"
    session.commit()
    second.name = "2c"
    session.commit()
    first.name = "1c"
    session.commit()

    assert [(v.name, v.index) for v in first.versions] == [("1a", 0), ("1b", 1), ("1c", 2)]
    assert [(v.name, v.index) for v in second.versions] == [("2a", 0), ("2b", 1), ("2c", 2)]


# -- previous / next ----------------------------------------------------------------


@both_strategies
def test_previous_and_next_walk_one_entitys_history(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article, other = Article(name="a"), Article(name="x")
    session.add_all([article, other])
    session.commit()
    article.name = "b"
    other.name = "y"
    session.commit()
    article.name = "c"
    session.commit()

    v0, v1, v2 = article.versions.all()
    assert v0.previous is None
    assert v0.next is v1
    assert v1.previous is v0
    assert v1.next is v2
    assert v2.previous is v1
    assert v2.next is None
    assert [v.name for v in (v0.next.next, v2.previous.previous)] == ["c", "a"]


@both_strategies
def test_previous_and_next_over_a_deleted_entitys_history(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    article_id = article.id
    session.delete(article)
    session.commit()

    inserted, updated, deleted = _versions_of(session, Article, article_id)
    assert deleted.operation_type == Operation.DELETE
    assert deleted.name == "b"
    assert deleted.previous is updated
    assert deleted.next is None
    assert updated.next is deleted
    assert inserted.previous is None


def test_navigation_of_a_detached_version_raises_a_clear_error(db, article_models):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    version = article.versions[1]
    session.close()
    with pytest.raises(VersioningStateError, match="session"):
        _ = version.previous


# -- changeset ----------------------------------------------------------------------


@both_strategies
def test_changeset_of_each_kind_of_version(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="body")
    session.add(article)
    session.commit()
    article_id = article.id
    article.name = "b"
    session.commit()
    article.content = None
    session.commit()
    session.delete(article)
    session.commit()

    inserted, renamed, emptied, deleted = _versions_of(session, Article, article_id)
    assert inserted.changeset == {
        "id": [None, article_id], "name": [None, "a"], "content": [None, "body"],
    }
    assert renamed.changeset == {"name": ["a", "b"]}
    assert emptied.changeset == {"content": ["body", None]}
    assert deleted.changeset == {}


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
@pytest.mark.versioning(options={
    "transaction_column_name": "tx",
    "end_transaction_column_name": "end_tx",
    "operation_type_column_name": "op",
})
def test_changeset_never_shows_internal_columns(db, article_models, strategy):
    Article = article_models()
    _, article = _history(db, Article, ["a", "b"])
    first, second = article.versions.all()
    assert set(first.changeset) == {"id", "name", "content"}
    assert second.changeset == {"name": ["a", "b"]}
    assert first.tx < second.tx


# -- revert -------------------------------------------------------------------------


@both_strategies
def test_revert_restores_values_and_the_caller_commits(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="first body")
    session.add(article)
    session.commit()
    article.name = "b"
    article.content = "second body"
    session.commit()

    returned = article.versions[0].revert()
    assert returned is article
    assert (article.name, article.content) == ("a", "first body")
    # Nothing written yet: the caller decides.
    assert [(r["name"], r["content"]) for r in db.rows("article")] == [("b", "second body")]
    session.commit()

    assert [(r["name"], r["content"]) for r in db.rows("article")] == [("a", "first body")]
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["name"], r["operation_type"]) for r in rows] == [
        ("a", Operation.INSERT), ("b", Operation.UPDATE), ("a", Operation.UPDATE),
    ]
    assert article.versions[2].changeset == {
        "name": ["b", "a"], "content": ["second body", "first body"],
    }


@both_strategies
def test_revert_of_a_deleted_article_brings_it_back(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    article_id = article.id
    session.delete(article)
    session.commit()
    assert db.rows("article") == []

    first = _versions_of(session, Article, article_id)[0]
    assert first.version_parent is None
    revived = first.revert()
    assert isinstance(revived, Article)
    assert revived.id == article_id
    session.commit()

    assert [(r["id"], r["name"]) for r in db.rows("article")] == [(article_id, "a")]
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["id"], r["name"], r["operation_type"]) for r in rows] == [
        (article_id, "a", Operation.INSERT),
        (article_id, "b", Operation.UPDATE),
        (article_id, "b", Operation.DELETE),
        (article_id, "a", Operation.INSERT),
    ]
    if strategy == "validity":
        txs = [r["transaction_id"] for r in rows]
        assert [r["end_transaction_id"] for r in rows] == [txs[1], txs[2], txs[3], None]
    versions = _versions_of(session, Article, article_id)
    assert versions[2].next is versions[3]
    assert versions[3].previous is versions[2]


@both_strategies
def test_revert_revives_a_class_whose_init_requires_arguments(db, base, strategy):
    class Document(base):
        __tablename__ = "document"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(sa.String(50))

        def __init__(self, id: int, title: str) -> None:
            self.id = id
            self.title = title

    db.create(base.metadata)
    session = db.session()
    session.add(Document(7, "draft"))
    session.commit()
    session.delete(session.get(Document, 7))
    session.commit()

    DocumentVersion = version_class(Document)
    first = session.scalars(
        sa.select(DocumentVersion).order_by(DocumentVersion.transaction_id)
    ).first()
    revived = first.revert()
    session.commit()

    assert isinstance(revived, Document)
    assert db.rows("document") == [{"id": 7, "title": "draft"}]
    rows = db.rows("document_version", order_by="transaction_id")
    assert [r["operation_type"] for r in rows] == [
        Operation.INSERT, Operation.DELETE, Operation.INSERT,
    ]


@both_strategies
def test_revert_to_a_delete_version_deletes_the_live_object(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a"])
    article_id = article.id
    session.delete(article)
    session.commit()
    _versions_of(session, Article, article_id)[0].revert()
    session.commit()
    assert len(db.rows("article")) == 1

    delete_version = _versions_of(session, Article, article_id)[1]
    assert delete_version.operation_type == Operation.DELETE
    assert delete_version.version_parent is not None
    assert delete_version.revert() is None
    session.commit()

    assert db.rows("article") == []
    rows = db.rows("article_version", order_by="transaction_id")
    assert [r["operation_type"] for r in rows] == [
        Operation.INSERT, Operation.DELETE, Operation.INSERT, Operation.DELETE,
    ]


def test_revert_with_an_unknown_relation_changes_nothing(db, article_models):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    with pytest.raises(ReverterException, match="does not have relationship 'tags'"):
        article.versions[0].revert(relations=["tags"])
    assert article.name == "b"
    assert article not in session.dirty


# -- version_parent and transaction -------------------------------------------------


@both_strategies
def test_version_parent_is_the_live_object_until_deleted(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    article_id = article.id
    assert all(v.version_parent is article for v in article.versions)

    session.delete(article)
    session.commit()
    versions = _versions_of(session, Article, article_id)
    assert len(versions) == 3
    assert [v.version_parent for v in versions] == [None, None, None]


def test_transaction_relationship(db, article_models):
    Article = article_models()
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    _, article = _history(db, Article, ["a", "b"])
    after = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)

    first, second = article.versions.all()
    assert first.transaction.id == first.transaction_id
    assert second.transaction.id == second.transaction_id
    assert first.transaction is not second.transaction
    issued = first.transaction.issued_at
    assert isinstance(issued, datetime.datetime)
    assert issued.tzinfo is None
    # MySQL/MariaDB DATETIME keeps whole seconds; allow for that rounding only.
    slack = datetime.timedelta(seconds=1)
    assert before - slack <= issued <= after + slack
    assert issued <= second.transaction.issued_at + slack


def test_transaction_repr(db, article_models):
    Article = article_models()
    _, article = _history(db, Article, ["a"])
    tx = article.versions[0].transaction
    assert tx.id == 1
    assert repr(tx) == f"<Transaction id=1, issued_at={tx.issued_at!r}>"
    assert repr(tx).startswith("<Transaction id=1, issued_at=datetime.datetime(")


# -- version_at / all_versions ------------------------------------------------------


@both_strategies
def test_version_at(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b", "c"])
    other = Article(name="other")
    session.add(other)
    session.commit()
    ArticleVersion = version_class(Article)
    v0, v1, v2 = article.versions.all()

    assert ArticleVersion.version_at(session, {"id": article.id}, v0.transaction_id) is v0
    assert ArticleVersion.version_at(session, {"id": article.id}, v1.transaction_id) is v1
    assert ArticleVersion.version_at(session, {"id": article.id}, v2.transaction_id) is v2
    later = other.versions[0].transaction_id
    assert ArticleVersion.version_at(session, {"id": article.id}, later) is v2
    assert ArticleVersion.version_at(session, {"id": other.id}, v2.transaction_id) is None
    assert ArticleVersion.version_at(session, {"id": article.id}, v0.transaction_id - 1) is None


@both_strategies
def test_all_versions_pages_and_orders(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b", "c", "d"])
    session.add(Article(name="noise"))
    session.commit()
    ArticleVersion = version_class(Article)
    pk = {"id": article.id}

    assert [v.name for v in ArticleVersion.all_versions(session, pk)] == ["d", "c", "b", "a"]
    assert [v.name for v in ArticleVersion.all_versions(session, pk, desc=False)] == [
        "a", "b", "c", "d",
    ]
    assert [v.name for v in ArticleVersion.all_versions(session, pk, limit=2)] == ["d", "c"]
    assert [v.name for v in ArticleVersion.all_versions(session, pk, limit=2, offset=1)] == [
        "c", "b",
    ]
    assert [
        v.name for v in ArticleVersion.all_versions(session, pk, limit=3, offset=2, desc=False)
    ] == ["c", "d"]
    assert ArticleVersion.all_versions(session, {"id": -1}) == []


@both_strategies
def test_all_versions_linked_walk_issues_no_sql(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b", "c"])
    article_id = article.id
    session.close()
    session = db.session()
    ArticleVersion = version_class(Article)

    versions = ArticleVersion.all_versions(session, {"id": article_id}, link=True)
    with db.count_statements() as statements:
        newest = versions[0]
        assert newest.next is None
        walked = []
        version = newest
        while version is not None:
            walked.append(version.name)
            version = version.previous
        oldest = versions[-1]
        assert oldest.previous is None
        assert [oldest.next.name, oldest.next.next.name] == ["b", "c"]
    assert walked == ["c", "b", "a"]
    assert statements == []


@both_strategies
def test_all_versions_page_links_inside_and_queries_past_its_edges(db, article_models, strategy):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b", "c", "d"])
    article_id = article.id
    session.close()
    session = db.session()
    ArticleVersion = version_class(Article)

    page = ArticleVersion.all_versions(session, {"id": article_id}, limit=2, offset=1)
    assert [v.name for v in page] == ["c", "b"]
    with db.count_statements() as statements:
        assert page[1].next is page[0]
        assert page[0].previous is page[1]
    assert statements == []
    # Beyond the page the answer is still right (it is looked up).
    assert page[0].next.name == "d"
    assert page[1].previous.name == "a"


@both_strategies
def test_all_versions_oldest_first_links_only_the_ends_of_the_history(
    db, article_models, strategy
):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b", "c", "d"])
    article_id = article.id
    session.close()
    session = db.session()
    ArticleVersion = version_class(Article)

    whole = ArticleVersion.all_versions(session, {"id": article_id}, desc=False)
    with db.count_statements() as statements:
        assert whole[0].previous is None and whole[-1].next is None
    assert statements == []
    session.close()
    session = db.session()
    page = ArticleVersion.all_versions(session, {"id": article_id}, limit=2, offset=1, desc=False)
    assert [v.name for v in page] == ["b", "c"]
    assert page[0].previous.name == "a"
    assert page[1].next.name == "d"


def test_all_versions_without_link_still_navigates(db, article_models):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    ArticleVersion = version_class(Article)
    newest, oldest = ArticleVersion.all_versions(session, {"id": article.id}, link=False)
    assert newest.previous is oldest
    assert oldest.next is newest
    assert oldest.previous is None


def test_linked_next_sees_a_version_written_later(db, article_models):
    Article = article_models()
    session, article = _history(db, Article, ["a", "b"])
    ArticleVersion = version_class(Article)
    newest = ArticleVersion.all_versions(session, {"id": article.id})[0]
    assert newest.next is None
    article.name = "c"
    session.commit()
    assert newest.next is not None and newest.next.name == "c"


@both_strategies
def test_attribute_named_unlike_its_column(db, base, strategy):
    class Post(base):
        __tablename__ = "post"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column("headline", sa.String(50))

    db.create(base.metadata)
    session = db.session()
    post = Post(title="one")
    session.add(post)
    session.commit()
    post.title = "two"
    session.commit()

    first, second = post.versions.all()
    assert (first.title, second.title) == ("one", "two")
    assert second.changeset == {"title": ["one", "two"]}
    assert [r["headline"] for r in db.rows("post_version", order_by="transaction_id")] == [
        "one", "two",
    ]
    assert first.revert() is post
    session.commit()
    assert [r["headline"] for r in db.rows("post")] == ["one"]
