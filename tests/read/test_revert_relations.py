"""version.revert(relations=[...]) restores related objects as they were."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, ReverterException, version_class

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


@pytest.fixture
def models(base, db):
    article_tag = sa.Table(
        "article_tag",
        base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Category(base):
        __tablename__ = "category"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    class Article(base):
        __tablename__ = "article"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag)
        comments: Mapped[list[Comment]] = orm.relationship(back_populates="article")

    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))
        category_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Category.id))
        category: Mapped[Category | None] = orm.relationship()

    class Comment(base):
        __tablename__ = "comment"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(sa.String(50))
        article_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Article.id))
        article: Mapped[Article | None] = orm.relationship(back_populates="comments")

        def __init__(self, text: str) -> None:  # a constructor revert cannot call
            self.text = text

    globals().update(Tag=Tag, Comment=Comment)  # for the string annotations above
    db.create(base.metadata)
    return Article, Tag, Category, Comment


def _first_version(session, cls, pk):
    version_cls = version_class(cls)
    return session.scalars(
        sa.select(version_cls)
        .where(version_cls.id == pk)
        .order_by(version_cls.transaction_id)
    ).first()


@both_strategies
def test_many_to_many_children_come_back_as_they_were(db, models, strategy):
    Article, Tag, _Category, _Comment = models
    session = db.session()
    article = Article(id=1, name="a1", tags=[Tag(id=1, name="t1"), Tag(id=2, name="t2")])
    session.add(article)
    session.commit()
    tag1, tag2 = session.get(Tag, 1), session.get(Tag, 2)
    tag1.name = "t1 renamed"
    article.tags.remove(tag2)
    article.tags.append(Tag(id=3, name="t3"))
    article.name = "a2"
    session.commit()

    restored = _first_version(session, Article, 1).revert(relations=["tags"])
    session.commit()

    assert restored is article
    assert article.name == "a1"
    assert sorted((t.id, t.name) for t in article.tags) == [(1, "t1"), (2, "t2")]
    assert session.get(Tag, 3) is not None  # unlinked, not deleted


@both_strategies
def test_a_deleted_article_lives_again_with_its_deleted_tags(db, models, strategy):
    Article, Tag, Category, _Comment = models
    session = db.session()
    session.add(Article(id=1, name="a1", tags=[Tag(id=1, name="t1", category=Category(
        id=1, name="c1"))]))
    session.commit()
    session.delete(session.get(Article, 1))
    session.delete(session.get(Tag, 1))
    session.commit()
    assert session.get(Article, 1) is None

    restored = _first_version(session, Article, 1).revert(relations=["tags.category"])
    session.commit()

    session.expire_all()
    article = session.get(Article, 1)
    assert restored is article and article.name == "a1"
    assert [(t.id, t.name, t.category.name) for t in article.tags] == [(1, "t1", "c1")]
    ops = [r["operation_type"] for r in db.rows("article_version", "transaction_id")]
    assert ops == [Operation.INSERT, Operation.DELETE, Operation.INSERT]
    assoc = db.rows("article_tag_version", "transaction_id")
    assert [r["operation_type"] for r in assoc] == [0, 2, 0]


def test_one_to_many_children_that_did_not_exist_are_deleted(db, models):
    Article, _Tag, _Category, Comment = models
    session = db.session()
    article = Article(id=1, name="a1")
    first = Comment("first")
    first.id = 1
    article.comments.append(first)
    session.add(article)
    session.commit()
    later = Comment("later")
    later.id = 2
    article.comments.append(later)
    session.delete(first)
    session.commit()

    _first_version(session, Article, 1).revert(relations=["comments"])
    session.commit()

    assert [c.text for c in article.comments] == ["first"]
    assert session.get(Comment, 2) is None
    table = db.manager.tables[Comment]
    comment_ops = [
        (r["id"], r["operation_type"])
        for r in db.rows(table, order_by=[table.c.transaction_id, table.c.id])
    ]
    # created; deleted while "later" was added; back again while "later" goes
    assert comment_ops == [(1, 0), (1, 2), (2, 0), (1, 0), (2, 2)]


def test_unknown_nested_relation_is_refused_before_any_change(db, models):
    Article, Tag, _Category, _Comment = models
    session = db.session()
    article = Article(id=1, name="a1", tags=[Tag(id=1, name="t1")])
    session.add(article)
    session.commit()
    article.name = "a2"
    session.commit()
    with pytest.raises(ReverterException, match="Class 'Tag' does not have relationship 'owner'"):
        _first_version(session, Article, 1).revert(relations=["tags.owner"])
    assert article.name == "a2" and not session.dirty


def test_revert_does_not_commit(db, models):
    Article, Tag, _Category, _Comment = models
    session = db.session()
    article = Article(id=1, name="a1", tags=[Tag(id=1, name="t1")])
    session.add(article)
    session.commit()
    article.tags = []
    session.commit()
    _first_version(session, Article, 1).revert(relations=["tags"])
    session.rollback()
    assert session.get(Article, 1).tags == []
