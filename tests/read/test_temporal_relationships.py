"""Relationships of version classes show the related rows as they were at the version's
transaction (Continuum's temporal relationship reflection, B.8).

Under the validity strategy they are real view-only relationships, so they can be
eager-loaded.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import version_class


def _define(base):
    """The models of this module: versioned Category, Article, Tag, Comment, Detail;
    User and Label are not versioned."""
    article_tag = sa.Table(
        "article_tag",
        base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )
    article_label = sa.Table(
        "article_label",
        base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("label_id", sa.ForeignKey("label.id"), primary_key=True),
    )

    class User(base):
        __tablename__ = "app_user"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Label(base):
        __tablename__ = "label"
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Category(base):
        __tablename__ = "category"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        articles: Mapped[list[Article]] = orm.relationship(
            back_populates="category", order_by="Article.name"
        )

    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        articles: Mapped[list[Article]] = orm.relationship(
            secondary=article_tag, back_populates="tags", order_by="Article.id"
        )

    class Article(base):
        __tablename__ = "article"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        category_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Category.id))
        author_id: Mapped[int | None] = mapped_column(sa.ForeignKey(User.id))
        parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("article.id"))

        category: Mapped[Category | None] = orm.relationship(back_populates="articles")
        author: Mapped[User | None] = orm.relationship()
        tags: Mapped[list[Tag]] = orm.relationship(
            secondary=article_tag, back_populates="articles", order_by=Tag.name
        )
        labels: Mapped[list[Label]] = orm.relationship(secondary=article_label, order_by=Label.id)
        parent: Mapped[Article | None] = orm.relationship(
            remote_side=[id], back_populates="children"
        )
        children: Mapped[list[Article]] = orm.relationship(
            back_populates="parent", order_by="Article.id"
        )
        detail: Mapped[Detail | None] = orm.relationship(back_populates="article")
        comments: Mapped[list[Comment]] = orm.relationship(
            back_populates="article", order_by="Comment.id"
        )
        published_comments: Mapped[list[Comment]] = orm.relationship(
            primaryjoin="and_(Comment.article_id == Article.id, Comment.published == True)",
            order_by="Comment.id",
            viewonly=True,
        )
        comment_query = orm.relationship(
            "Comment", lazy="dynamic", order_by="Comment.id", viewonly=True
        )

    class Comment(base):
        __tablename__ = "comment"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        article_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Article.id))
        body: Mapped[str | None] = mapped_column(sa.String(50))
        published: Mapped[bool] = mapped_column(default=False)
        article: Mapped[Article | None] = orm.relationship(back_populates="comments")

    class Detail(base):
        __tablename__ = "detail"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        article_id: Mapped[int | None] = mapped_column(sa.ForeignKey(Article.id), unique=True)
        text: Mapped[str | None] = mapped_column(sa.String(50))
        article: Mapped[Article | None] = orm.relationship(back_populates="detail")

    return SimpleNamespace(
        User=User, Label=Label, Category=Category, Tag=Tag, Article=Article,
        Comment=Comment, Detail=Detail,
    )


@pytest.fixture(params=["validity", "subquery"])
def strategy(request):
    """Every test here runs under both strategies."""
    return request.param


@pytest.fixture
def m(base, db):
    models = _define(base)
    db.create(base.metadata)
    for name in ("Category", "Tag", "Article", "Comment", "Detail"):
        setattr(models, name + "Version", version_class(getattr(models, name)))
    return models


def _txs(db):
    return [r["id"] for r in db.rows("transaction")]


def _versions(session, version_cls, **pk):
    stmt = sa.select(version_cls).order_by(version_cls.transaction_id)
    for key, value in pk.items():
        stmt = stmt.where(getattr(version_cls, key) == value)
    return list(session.scalars(stmt))


def _named(objects):
    return [(o.name, o.transaction_id) for o in objects]


# -- what the version classes have -----------------------------------------------------


def test_version_classes_get_view_only_relationships(m):
    relationships = sa.inspect(m.ArticleVersion).relationships
    for key in (
        "category", "author", "tags", "labels", "parent", "children", "detail",
        "comments", "published_comments", "comment_query",
    ):
        assert key in relationships, key
        assert relationships[key].viewonly
    assert relationships["category"].mapper.class_ is m.CategoryVersion
    assert relationships["tags"].mapper.class_ is m.TagVersion
    assert relationships["author"].mapper.class_ is m.User
    assert relationships["labels"].mapper.class_ is m.Label
    assert not relationships["detail"].uselist
    assert sa.inspect(m.CategoryVersion).relationships["articles"].mapper.class_ is (
        m.ArticleVersion
    )
    assert sa.inspect(m.TagVersion).relationships["articles"].mapper.class_ is m.ArticleVersion


# -- many-to-one -----------------------------------------------------------------------


def test_many_to_one_shows_the_category_as_it_was(db, m):
    session = db.session()
    sport = m.Category(id=1, name="sport")
    article = m.Article(id=1, name="a1", category=sport)
    session.add(article)
    session.commit()  # tx1
    sport.name = "news"
    session.commit()  # tx2
    article.name = "a2"
    session.commit()  # tx3
    article.category = m.Category(id=2, name="art")
    article.name = "a3"
    session.commit()  # tx4
    session.delete(sport)
    session.commit()  # tx5
    tx1, tx2, _tx3, tx4, _tx5 = _txs(db)
    session.expunge_all()
    v1, v3, v4 = _versions(session, m.ArticleVersion, id=1)
    assert (v1.category.name, v1.category.transaction_id) == ("sport", tx1)
    assert (v3.category.name, v3.category.transaction_id) == ("news", tx2)
    assert (v4.category.name, v4.category.transaction_id) == ("art", tx4)


def test_many_to_one_still_shows_a_category_deleted_later(db, m):
    session = db.session()
    sport = m.Category(id=1, name="sport")
    article = m.Article(id=1, name="a1", category=sport)
    session.add(article)
    session.commit()  # tx1
    article.category = None
    article.name = "a2"
    session.flush()
    session.delete(sport)
    session.commit()  # tx2
    tx1, _tx2 = _txs(db)
    session.expunge_all()
    v1, v2 = _versions(session, m.ArticleVersion, id=1)
    assert (v1.category.name, v1.category.transaction_id) == ("sport", tx1)
    assert v2.category is None


def test_many_to_one_to_a_class_that_is_not_versioned_is_live(db, m):
    session = db.session()
    user = m.User(id=1, name="ann")
    article = m.Article(id=1, name="a1", author=user)
    session.add(article)
    session.commit()
    user.name = "anne"
    session.commit()
    session.expunge_all()
    [v1] = _versions(session, m.ArticleVersion, id=1)
    assert isinstance(v1.author, m.User)
    assert v1.author.name == "anne"
    assert v1.author is session.get(m.User, 1)


# -- one-to-many -----------------------------------------------------------------------


def test_one_to_many_shows_the_articles_as_they_were(db, m):
    session = db.session()
    sport = m.Category(id=1, name="sport")
    a1 = m.Article(id=1, name="a1", category=sport)
    a2 = m.Article(id=2, name="a2", category=sport)
    session.add_all([a1, a2])
    session.commit()  # tx1
    a1.name = "a1b"
    sport.name = "sport2"
    session.commit()  # tx2
    session.delete(a2)
    sport.name = "sport3"
    session.commit()  # tx3
    session.add(m.Article(id=3, name="a0", category=sport))
    sport.name = "sport4"
    session.commit()  # tx4
    tx1, tx2, _tx3, tx4 = _txs(db)
    session.expunge_all()
    c1, c2, c3, c4 = _versions(session, m.CategoryVersion, id=1)
    assert _named(c1.articles) == [("a1", tx1), ("a2", tx1)]
    assert _named(c2.articles) == [("a1b", tx2), ("a2", tx1)]
    assert _named(c3.articles) == [("a1b", tx2)]  # a2 deleted at tx3
    assert _named(c4.articles) == [("a0", tx4), ("a1b", tx2)]  # ordered by name


def test_one_to_many_follows_a_child_moving_away(db, m):
    session = db.session()
    sport, art = m.Category(id=1, name="sport"), m.Category(id=2, name="art")
    article = m.Article(id=1, name="a", category=sport)
    session.add_all([article, art])
    session.commit()  # tx1
    article.category = art
    session.commit()  # tx2
    sport.name = "sport2"
    art.name = "art2"
    session.commit()  # tx3
    session.expunge_all()
    s1, s3 = _versions(session, m.CategoryVersion, id=1)
    a1, a3 = _versions(session, m.CategoryVersion, id=2)
    assert [a.name for a in s1.articles] == ["a"]
    assert s3.articles == []
    assert a1.articles == []
    assert [a.name for a in a3.articles] == ["a"]


def test_one_to_one_uselist_false(db, m):
    session = db.session()
    article = m.Article(id=1, name="a1")
    session.add(article)
    session.commit()  # tx1: no detail yet
    article.detail = m.Detail(id=1, text="first")
    article.name = "a2"
    session.commit()  # tx2
    article.detail.text = "second"
    article.name = "a3"
    session.commit()  # tx3
    session.delete(article.detail)
    article.name = "a4"
    session.commit()  # tx4
    _tx1, tx2, tx3, _tx4 = _txs(db)
    session.expunge_all()
    v1, v2, v3, v4 = _versions(session, m.ArticleVersion, id=1)
    assert v1.detail is None
    assert (v2.detail.text, v2.detail.transaction_id) == ("first", tx2)
    assert (v3.detail.text, v3.detail.transaction_id) == ("second", tx3)
    assert v4.detail is None
    [d2, d3, _] = _versions(session, m.DetailVersion, id=1)
    assert d2.article is v2 and d3.article is v3


# -- many-to-many ----------------------------------------------------------------------


def test_many_to_many_shows_the_tags_as_they_were(db, m):
    session = db.session()
    t1, t2, t3 = m.Tag(id=1, name="t1"), m.Tag(id=2, name="t2"), m.Tag(id=3, name="t3")
    article = m.Article(id=1, name="a1", tags=[t1, t2])
    session.add_all([article, t3])
    session.commit()  # tx1
    t1.name = "t1b"
    article.name = "a2"
    session.commit()  # tx2
    article.tags.remove(t2)
    article.name = "a3"
    session.commit()  # tx3
    session.delete(t1)
    article.tags.append(t3)
    article.name = "a4"
    session.commit()  # tx4
    tx1, tx2, _tx3, _tx4 = _txs(db)
    session.expunge_all()
    v1, v2, v3, v4 = _versions(session, m.ArticleVersion, id=1)
    assert _named(v1.tags) == [("t1", tx1), ("t2", tx1)]
    assert _named(v2.tags) == [("t1b", tx2), ("t2", tx1)]
    assert _named(v3.tags) == [("t1b", tx2)]  # t2 removed at tx3
    assert _named(v4.tags) == [("t3", tx1)]  # t1 deleted at tx4
    # the other side
    t1_v1, t1_v2, _ = _versions(session, m.TagVersion, id=1)
    assert _named(t1_v1.articles) == [("a1", tx1)]
    assert _named(t1_v2.articles) == [("a2", tx2)]
    [t2_v1] = _versions(session, m.TagVersion, id=2)
    assert _named(t2_v1.articles) == [("a1", tx1)]


def test_many_to_many_order_by_is_carried_over(db, m):
    session = db.session()
    tags = [m.Tag(id=1, name="c"), m.Tag(id=2, name="a"), m.Tag(id=3, name="b")]
    session.add(m.Article(id=1, name="a1", tags=tags))
    session.commit()
    session.expunge_all()
    [v1] = _versions(session, m.ArticleVersion, id=1)
    assert [t.name for t in v1.tags] == ["a", "b", "c"]


def test_many_to_many_to_a_class_that_is_not_versioned(db, m):
    session = db.session()
    red, blue = m.Label(id=1, name="red"), m.Label(id=2, name="blue")
    article = m.Article(id=1, name="a1", labels=[red, blue])
    session.add(article)
    session.commit()  # tx1
    article.labels.remove(red)
    blue.name = "navy"
    article.name = "a2"
    session.commit()  # tx2
    session.expunge_all()
    v1, v2 = _versions(session, m.ArticleVersion, id=1)
    # membership as it was, the labels themselves as they are now
    assert [(type(x), x.name) for x in v1.labels] == [(m.Label, "red"), (m.Label, "navy")]
    assert [x.name for x in v2.labels] == ["navy"]
    assert v1.labels[1] is session.get(m.Label, 2)


# -- self-referential ------------------------------------------------------------------


def test_self_referential_parent_and_children(db, m):
    session = db.session()
    root = m.Article(id=1, name="root")
    session.add(root)
    session.commit()  # tx1
    kid = m.Article(id=2, name="kid", parent=root)
    session.add(kid)
    session.commit()  # tx2
    root.name = "root2"
    session.commit()  # tx3
    kid.parent = None
    kid.name = "orphan"
    session.commit()  # tx4
    tx1, tx2, _tx3, _tx4 = _txs(db)
    session.expunge_all()
    r1, r3 = _versions(session, m.ArticleVersion, id=1)
    k2, k4 = _versions(session, m.ArticleVersion, id=2)
    assert r1.children == []
    assert _named(r3.children) == [("kid", tx2)]
    assert (k2.parent.name, k2.parent.transaction_id) == ("root", tx1)
    assert k4.parent is None
    assert r1.parent is None


# -- custom primaryjoin and lazy='dynamic' ---------------------------------------------


def test_custom_primaryjoin_is_reflected(db, m):
    session = db.session()
    article = m.Article(id=1, name="a1")
    c1 = m.Comment(id=1, body="one", published=True, article=article)
    c2 = m.Comment(id=2, body="two", published=False, article=article)
    session.add_all([c1, c2])
    session.commit()  # tx1
    c1.published = False
    c2.published = True
    article.name = "a2"
    session.commit()  # tx2
    session.expunge_all()
    v1, v2 = _versions(session, m.ArticleVersion, id=1)
    assert [c.body for c in v1.published_comments] == ["one"]
    assert [c.body for c in v2.published_comments] == ["two"]
    assert [c.body for c in v1.comments] == ["one", "two"]


def test_dynamic_relationship_is_a_query(db, m):
    session = db.session()
    article = m.Article(id=1, name="a1")
    article.comments = [m.Comment(id=i, body=f"c{i}") for i in (1, 2, 3)]
    session.add(article)
    session.commit()  # tx1
    session.delete(article.comments[0])
    article.name = "a2"
    session.commit()  # tx2
    session.expunge_all()
    v1, v2 = _versions(session, m.ArticleVersion, id=1)
    assert [c.body for c in v1.comment_query.all()] == ["c1", "c2", "c3"]
    assert v1.comment_query.count() == 3
    assert [c.body for c in v2.comment_query] == ["c2", "c3"]
    assert v2.comment_query.count() == 2
    assert v2.comment_query.filter_by(body="c3").one().id == 3


# -- eager loading ---------------------------------------------------------------------


def _populate(session, m, n_articles):
    categories = [m.Category(id=i, name=f"c{i}") for i in range(1, 4)]
    tags = [m.Tag(id=i, name=f"t{i}") for i in range(1, 6)]
    articles = [
        m.Article(
            id=i,
            name=f"a{i}",
            category=categories[i % 3],
            tags=[tags[i % 5], tags[(i + 1) % 5], tags[(i + 3) % 5]],
        )
        for i in range(1, n_articles + 1)
    ]
    session.add_all(articles)
    session.commit()
    for article in articles:
        article.name += "b"
        article.tags.pop()
    categories[0].name = "c-renamed"
    session.commit()
    session.expunge_all()


def _snapshot(versions):
    return [
        (
            v.id,
            v.transaction_id,
            v.category.name,
            v.category.transaction_id,
            [(t.id, t.name, t.transaction_id) for t in v.tags],
        )
        for v in versions
    ]


@pytest.mark.parametrize("n_articles", [30, 300])
def test_selectinload_costs_a_constant_number_of_queries(db, m, n_articles):
    session = db.session()
    _populate(session, m, n_articles)
    AV = m.ArticleVersion
    stmt = sa.select(AV).order_by(AV.id, AV.transaction_id)
    with db.count_statements() as statements:
        versions = session.scalars(
            stmt.options(orm.selectinload(AV.tags), orm.selectinload(AV.category))
        ).all()
        snapshot = _snapshot(versions)
    assert len(versions) == 2 * n_articles
    # one query for the versions, then one per relationship per 500 versions (the
    # batch size of SQLAlchemy's selectinload)
    batches = -(-len(versions) // 500)
    assert len(statements) == 1 + 2 * batches, statements
    assert sorted({len(tags) for *_, tags in snapshot}) == [2, 3]
    session.expunge_all()
    lazy = session.scalars(stmt).all()
    assert _snapshot(lazy) == snapshot


def test_joinedload_gives_the_same_objects_as_lazy_loading(db, m):
    session = db.session()
    _populate(session, m, 20)
    AV = m.ArticleVersion
    stmt = sa.select(AV).order_by(AV.id, AV.transaction_id)
    lazy = _snapshot(session.scalars(stmt).all())
    session.expunge_all()
    with db.count_statements() as statements:
        joined = session.scalars(
            stmt.options(orm.joinedload(AV.tags), orm.joinedload(AV.category))
        ).unique().all()
        eager = _snapshot(joined)
    assert len(statements) == 1
    assert eager == lazy
    assert len(lazy) == 40
    # the renamed category shows its old name in the first versions, the new in the second
    firsts = [v for v in lazy if v[0] % 3 == 0]
    assert {v[2] for v in firsts} == {"c1", "c-renamed"}


# -- both strategies give the same answers ---------------------------------------------


def test_relationships_give_the_same_answers_under_both_strategies(db, m, strategy):
    session = db.session()
    sport = m.Category(id=1, name="sport")
    t1, t2 = m.Tag(id=1, name="t1"), m.Tag(id=2, name="t2")
    article = m.Article(id=1, name="a1", category=sport, tags=[t1, t2])
    article.comments = [m.Comment(id=1, body="c1")]
    session.add(article)
    session.commit()  # tx1
    sport.name = "news"
    t1.name = "t1b"
    article.tags.remove(t2)
    article.name = "a2"
    session.commit()  # tx2
    tx1, tx2 = _txs(db)
    session.expunge_all()
    v1, v2 = _versions(session, m.ArticleVersion, id=1)
    assert (v1.category.name, v1.category.transaction_id) == ("sport", tx1)
    assert (v2.category.name, v2.category.transaction_id) == ("news", tx2)
    assert _named(v1.tags) == [("t1", tx1), ("t2", tx1)]
    assert _named(v2.tags) == [("t1b", tx2)]
    assert v2.comment_query.count() == 1
    c1, c2 = _versions(session, m.CategoryVersion, id=1)
    assert _named(c1.articles) == [("a1", tx1)]
    assert _named(c2.articles) == [("a2", tx2)]


# -- self-referential many-to-many and inheritance ---------------------------------


def test_self_referential_many_to_many(base, db):
    link = sa.Table(
        "node_link",
        base.metadata,
        sa.Column("left_id", sa.ForeignKey("node.id"), primary_key=True),
        sa.Column("right_id", sa.ForeignKey("node.id"), primary_key=True),
    )

    class Node(base):
        __tablename__ = "node"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        links: Mapped[list[Node]] = orm.relationship(
            secondary=link,
            primaryjoin=lambda: Node.id == link.c.left_id,
            secondaryjoin=lambda: Node.id == link.c.right_id,
            order_by=lambda: Node.id,
        )

    db.create(base.metadata)
    NodeVersion = version_class(Node)
    session = db.session()
    a, b, c = Node(id=1, name="a"), Node(id=2, name="b"), Node(id=3, name="c")
    a.links = [b, c]
    session.add(a)
    session.commit()  # tx1
    a.links.remove(c)
    b.name = "b2"
    a.name = "a2"
    session.commit()  # tx2
    tx1, tx2 = _txs(db)
    session.expunge_all()
    a1, a2 = _versions(session, NodeVersion, id=1)
    assert _named(a1.links) == [("b", tx1), ("c", tx1)]
    assert _named(a2.links) == [("b2", tx2)]
    [b1, _] = _versions(session, NodeVersion, id=2)
    assert b1.links == []


def test_relationship_to_a_joined_inheritance_subclass(base, db):
    class Item(base):
        __tablename__ = "item"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}

    class Book(Item):
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(sa.ForeignKey(Item.id), primary_key=True)
        isbn: Mapped[str | None] = mapped_column(sa.String(20))
        shelf_id: Mapped[int | None] = mapped_column(sa.ForeignKey("shelf.id"))
        shelf: Mapped[Shelf | None] = orm.relationship(back_populates="books")
        __mapper_args__ = {"polymorphic_identity": "book"}

    class Shelf(base):
        __tablename__ = "shelf"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        books: Mapped[list[Book]] = orm.relationship(back_populates="shelf", order_by=Book.id)

    db.create(base.metadata)
    ShelfVersion, BookVersion = version_class(Shelf), version_class(Book)
    session = db.session()
    shelf = Shelf(id=1, name="s")
    book = Book(id=1, name="b", isbn="1", shelf=shelf)
    session.add(book)
    session.commit()  # tx1
    book.name = "b2"  # a change in the base table only
    session.commit()  # tx2
    book.isbn = "2"  # a change in the subclass table only
    shelf.name = "s3"
    session.commit()  # tx3
    tx1, _tx2, tx3 = _txs(db)
    session.expunge_all()
    s1, s3 = _versions(session, ShelfVersion, id=1)
    assert [(b.name, b.isbn, b.transaction_id) for b in s1.books] == [("b", "1", tx1)]
    assert [(b.name, b.isbn, b.transaction_id) for b in s3.books] == [("b2", "2", tx3)]
    b1, b2, b3 = _versions(session, BookVersion, id=1)
    assert [v.shelf.name for v in (b1, b2, b3)] == ["s", "s", "s3"]
