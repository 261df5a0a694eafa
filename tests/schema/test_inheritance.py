"""Version classes of inheriting models follow the parent's inheritance."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, parent_class, version_class


@pytest.fixture
def models(base, db):
    class TextItem(base):
        __tablename__ = "text_item"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}

    class Article(TextItem):  # joined-table
        __tablename__ = "article"
        id: Mapped[int] = mapped_column(sa.ForeignKey(TextItem.id), primary_key=True)
        body: Mapped[str | None] = mapped_column(sa.String(50))
        __mapper_args__ = {"polymorphic_identity": "article"}

    class Post(TextItem):  # single-table
        title: Mapped[str | None] = mapped_column(sa.String(50))
        __mapper_args__ = {"polymorphic_identity": "post"}

    class Feature(Article):  # second level, joined
        __tablename__ = "feature"
        id: Mapped[int] = mapped_column(sa.ForeignKey(Article.id), primary_key=True)
        rank: Mapped[int | None]
        __mapper_args__ = {"polymorphic_identity": "feature"}

    db.create(base.metadata)
    return TextItem, Article, Post, Feature


def test_version_classes_mirror_the_hierarchy(models):
    TextItem, Article, Post, Feature = models
    TextItemVersion = version_class(TextItem)
    assert issubclass(version_class(Article), TextItemVersion)
    assert issubclass(version_class(Post), TextItemVersion)
    assert issubclass(version_class(Feature), version_class(Article))
    assert version_class(Post).__table__ is TextItemVersion.__table__
    assert version_class(Article).__table__.name == "article_version"
    assert parent_class(version_class(Feature)) is Feature


def test_querying_the_base_version_class_is_polymorphic(db, models):
    TextItem, Article, Post, Feature = models
    session = db.session()
    session.add_all([
        TextItem(id=1, name="i"), Article(id=2, name="a", body="b"),
        Post(id=3, name="p", title="t"), Feature(id=4, name="f", body="fb", rank=1),
    ])
    session.commit()
    TextItemVersion = version_class(TextItem)
    versions = session.scalars(sa.select(TextItemVersion).order_by(TextItemVersion.id)).all()
    assert [type(v).__name__ for v in versions] == [
        "TextItemVersion", "ArticleVersion", "PostVersion", "FeatureVersion",
    ]
    assert versions[3].rank == 1 and versions[3].body == "fb" and versions[3].name == "f"


def test_a_change_in_one_table_versions_every_table_of_the_entity(db, models):
    _TextItem, _Article, _Post, Feature = models
    session = db.session()
    feature = Feature(id=1, name="f", body="b", rank=1)
    session.add(feature)
    session.commit()
    feature.rank = 2
    session.commit()
    for table in ("text_item_version", "article_version", "feature_version"):
        rows = db.rows(table, order_by="transaction_id")
        assert [r["operation_type"] for r in rows] == [Operation.INSERT, Operation.UPDATE]
        assert rows[0]["end_transaction_id"] == rows[1]["transaction_id"]
    assert [v.rank for v in feature.versions] == [1, 2]
    assert feature.versions[1].changeset == {"rank": [1, 2]}


def test_single_table_subclass_versions_and_reverts(db, models):
    TextItem, _Article, Post, _Feature = models
    session = db.session()
    post = Post(id=1, name="p", title="t1")
    session.add(post)
    session.commit()
    post.title = "t2"
    session.commit()
    session.delete(post)
    session.commit()
    PostVersion = version_class(Post)
    history = PostVersion.all_versions(session, {"id": 1}, desc=False)
    assert [(v.title, v.operation_type) for v in history] == [("t1", 0), ("t2", 1), ("t2", 2)]
    restored = history[0].revert()
    session.commit()
    assert isinstance(restored, Post) and session.get(TextItem, 1).title == "t1"
    assert [r["operation_type"] for r in db.rows("text_item_version", "transaction_id")] == [
        0, 1, 2, 0,
    ]


def test_concrete_subclass_has_its_own_history(base, db):
    class Employee(base):
        __tablename__ = "employee"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Manager(Employee):
        __tablename__ = "manager"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        budget: Mapped[int | None]
        __mapper_args__ = {"concrete": True}

    db.create(base.metadata)
    session = db.session()
    boss = Manager(id=1, name="b", budget=10)
    session.add_all([boss, Employee(id=1, name="e")])
    session.commit()
    boss.budget = 20
    session.commit()
    assert [r["budget"] for r in db.rows("manager_version", "transaction_id")] == [10, 20]
    assert [r["name"] for r in db.rows("employee_version")] == ["e"]
    assert [v.budget for v in boss.versions] == [10, 20]


@pytest.fixture
def concrete_models(base, db):
    """Continuum's concrete-table test models: a discriminator on the base only."""

    class TextItem(base):
        __tablename__ = "text_item"
        __versioned__ = {}
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
        discriminator = sa.Column(sa.Unicode(100))
        __mapper_args__ = {"polymorphic_on": discriminator, "polymorphic_identity": "item"}

    class Article(TextItem):
        __tablename__ = "article"
        __mapper_args__ = {"polymorphic_identity": "article", "concrete": True}
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
        name = sa.Column(sa.Unicode(255))

    class BlogPost(TextItem):
        __tablename__ = "blog_post"
        __mapper_args__ = {"polymorphic_identity": "blog_post", "concrete": True}
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
        title = sa.Column(sa.Unicode(255))

    db.create(base.metadata)
    return TextItem, Article, BlogPost


def test_concrete_classes_each_get_a_version_class_and_table(manager, concrete_models):
    TextItem, Article, BlogPost = concrete_models
    TextItemVersion = version_class(TextItem)
    assert issubclass(version_class(Article), TextItemVersion)
    assert issubclass(version_class(BlogPost), TextItemVersion)
    assert len(manager.version_class_map) == 3
    assert [version_class(c).__table__.name for c in concrete_models] == [
        "text_item_version", "article_version", "blog_post_version",
    ]
    assert parent_class(version_class(BlogPost)) is BlogPost


def test_concrete_classes_version_navigate_and_revert(db, concrete_models):
    TextItem, Article, BlogPost = concrete_models
    session = db.session()
    article, post, item = Article(name="a1"), BlogPost(title="t1"), TextItem()
    session.add_all([article, post, item])
    session.commit()
    article.name = "a2"
    post.title = "t2"
    session.commit()
    session.delete(post)
    session.commit()
    tx1, tx2, tx3 = sorted(r["id"] for r in db.rows("transaction"))

    assert [(r["name"], r["transaction_id"], r["end_transaction_id"], r["operation_type"])
            for r in db.rows("article_version", "transaction_id")] == [
        ("a1", tx1, tx2, Operation.INSERT), ("a2", tx2, None, Operation.UPDATE),
    ]
    assert [(r["title"], r["transaction_id"], r["operation_type"])
            for r in db.rows("blog_post_version", "transaction_id")] == [
        ("t1", tx1, Operation.INSERT), ("t2", tx2, Operation.UPDATE),
        ("t2", tx3, Operation.DELETE),
    ]
    assert [(r["discriminator"], r["transaction_id"]) for r in db.rows("text_item_version")] == [
        ("item", tx1),
    ]

    first, second = article.versions.all()
    assert (type(first).__name__, first.name, second.name) == ("ArticleVersion", "a1", "a2")
    assert first.next is second and second.previous is first
    assert second.changeset == {"name": ["a1", "a2"]}
    assert first.version_parent is article
    assert first.transaction.id == tx1
    ArticleVersion, BlogPostVersion = version_class(Article), version_class(BlogPost)
    assert [v.name for v in session.scalars(ArticleVersion.as_of(tx1))] == ["a1"]
    assert [v.title for v in session.scalars(BlogPostVersion.as_of(tx2))] == ["t2"]
    assert session.scalars(BlogPostVersion.as_of(tx3)).all() == []

    first.revert()
    history = BlogPostVersion.all_versions(session, {"id": post.id}, desc=False)
    restored = history[1].revert()
    session.commit()
    assert session.get(Article, article.id).name == "a1"
    assert isinstance(restored, BlogPost) and session.get(BlogPost, post.id).title == "t2"
    assert [r["operation_type"] for r in db.rows("blog_post_version", "transaction_id")] == [
        Operation.INSERT, Operation.UPDATE, Operation.DELETE, Operation.INSERT,
    ]
    assert [v.name for v in article.versions] == ["a1", "a2", "a1"]


def test_as_of_follows_the_hierarchy(db, models):
    TextItem, Article, Post, Feature = models
    session = db.session()
    feature = Feature(id=1, name="f", body="b", rank=1)
    post = Post(id=2, name="p", title="t1")
    session.add_all([feature, post, Article(id=3, name="a", body="x")])
    session.commit()
    feature.rank = 2
    post.title = "t2"
    session.delete(session.get(Article, 3))
    session.commit()
    first, second = sorted({r["transaction_id"] for r in db.rows("text_item_version")})

    TextItemVersion = version_class(TextItem)

    def table(cls, at):
        return [
            (type(v).__name__, v.id)
            for v in session.scalars(cls.as_of(at).order_by(TextItemVersion.id))
        ]

    assert table(TextItemVersion, first) == [
        ("FeatureVersion", 1), ("PostVersion", 2), ("ArticleVersion", 3),
    ]
    assert table(TextItemVersion, second) == [("FeatureVersion", 1), ("PostVersion", 2)]
    assert [v.rank for v in session.scalars(version_class(Feature).as_of(first))] == [1]
    assert [v.rank for v in session.scalars(version_class(Feature).as_of(second))] == [2]
    assert [v.title for v in session.scalars(version_class(Post).as_of(first))] == ["t1"]
    assert [v.title for v in session.scalars(version_class(Post).as_of(second))] == ["t2"]
    assert table(version_class(Article), second) == [("FeatureVersion", 1)]


def test_equal_values_assigned_to_expired_subclass_attributes_write_nothing(db, models):
    _TextItem, _Article, Post, Feature = models
    session = db.session()
    post = Post(id=1, name="p", title="t")
    feature = Feature(id=2, name="f", body="b", rank=1)
    session.add_all([post, feature])
    session.commit()  # expires both: the old values must be loaded to compare
    post.name, post.title = "p", "t"
    feature.name, feature.body, feature.rank = "f", "b", 1
    session.commit()
    assert len(db.rows("transaction")) == 1
    assert len(db.rows("text_item_version")) == 2
    post.title = "t2"
    session.commit()
    assert [r["operation_type"] for r in db.rows("text_item_version", "transaction_id")] == [
        0, 0, 1,
    ]


def test_declared_attr_column_of_a_single_table_subclass_is_versioned(base, db):
    """A subclass's ``declared_attr`` column whose name differs from its attribute
    (``status`` stored in ``_status``) is an attribute of the version class."""

    class Item(base):
        __tablename__ = "item"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}

    class Page(Item):
        __mapper_args__ = {"polymorphic_identity": "page"}

        @sa.orm.declared_attr
        def status(cls):
            return sa.Column("_status", sa.String(20))

    db.create(base.metadata)
    PageVersion = version_class(Page)
    assert PageVersion.__table__ is version_class(Item).__table__
    assert PageVersion.__table__.c.status.name == "_status"
    session = db.session()
    page = Page(id=1, status="draft")
    session.add(page)
    session.commit()
    page.status = "published"
    session.commit()
    assert [r["_status"] for r in db.rows("item_version", "transaction_id")] == [
        "draft", "published",
    ]
    history = page.versions.all()
    assert [v.status for v in history] == ["draft", "published"]
    assert history[1].changeset == {"status": ["draft", "published"]}
    assert session.scalars(sa.select(PageVersion).where(PageVersion.status == "draft")).one()
    history[0].revert()
    session.commit()
    assert session.get(Page, 1).status == "draft"
