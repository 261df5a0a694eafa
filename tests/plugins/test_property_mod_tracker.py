"""PropertyModTrackerPlugin: ``*_mod`` flags telling which columns each version changed."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import ConfigurationError, Operation, version_class
from sqlalchemy_chronicle.plugins import NullDeletePlugin, PropertyModTrackerPlugin

pytestmark = pytest.mark.versioning(plugins=[PropertyModTrackerPlugin()])

BOTH_STRATEGIES = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def flags(db, order_by=("id", "transaction_id")):
    """(id, name_mod, content_mod, operation) of each version row."""
    return [
        (r["id"], r["name_mod"], r["content_mod"], r["operation_type"])
        for r in db.rows("article_version", order_by=list(order_by))
    ]


# -- schema ------------------------------------------------------------------------------


def test_each_versioned_non_key_column_gets_a_boolean_flag(db, article_models):
    Article = article_models({"exclude": ["content"]})
    table = db.manager.tables[Article]
    assert [c.name for c in table.c if c.name.endswith("_mod")] == ["name_mod"]
    flag = table.c.name_mod
    assert isinstance(flag.type, sa.Boolean)
    assert flag.nullable is False
    # The database fills the flag in when a row is written without it.
    with db.engine.begin() as conn:
        conn.execute(table.insert().values(id=7, transaction_id=1, operation_type=0))
    assert db.rows(table)[0]["name_mod"] is False
    reflected = sa.Table("article_version", sa.MetaData(), autoload_with=db.engine)
    assert reflected.c.name_mod.nullable is False
    assert reflected.c.name_mod.server_default is not None


def test_flags_use_the_attribute_key_and_the_column_name(db, base):
    class Doc(base):
        __tablename__ = "doc"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str | None] = mapped_column("doc_title", sa.String(50))

    db.create(base.metadata)
    table = db.manager.tables[Doc]
    assert table.c.title_mod.name == "doc_title_mod"
    DocVersion = version_class(Doc)
    session = db.session()
    session.add(Doc(id=1, title="t"))
    session.commit()
    assert session.scalars(sa.select(DocVersion.title_mod)).all() == [True]


@pytest.mark.versioning(plugins=[PropertyModTrackerPlugin(column_suffix="_changed")])
def test_column_suffix_names_the_flags(db, article_models):
    Article = article_models()
    table = db.manager.tables[Article]
    assert {c.name for c in table.c} >= {"name_changed", "content_changed"}
    assert "name_mod" not in table.c
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    row = db.rows(table)[0]
    assert (row["name_changed"], row["content_changed"]) == (True, False)


def test_a_column_that_clashes_with_a_flag_is_a_configuration_error(manager, base):
    class Clash(base):
        __tablename__ = "clash"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str | None] = mapped_column(sa.String(20))
        name_mod: Mapped[str | None] = mapped_column(sa.String(20))

    with pytest.raises(ConfigurationError, match=r"Clash .*'name_mod'.*column_suffix"):
        sa.orm.configure_mappers()


def test_bad_column_suffix_is_refused():
    with pytest.raises(ConfigurationError, match="column_suffix"):
        PropertyModTrackerPlugin(column_suffix="")


# -- flags written -----------------------------------------------------------------------


@BOTH_STRATEGIES
def test_insert_update_delete_flags(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article = Article(name="a")  # content left unset
    session.add(article)
    session.commit()
    article.content = "body"
    session.commit()
    article.name = "a"  # the same value: no change
    article.content = "body2"
    session.commit()
    session.delete(article)
    session.commit()
    assert flags(db) == [
        (article.id, True, False, Operation.INSERT),
        (article.id, False, True, Operation.UPDATE),
        (article.id, False, True, Operation.UPDATE),
        (article.id, True, True, Operation.DELETE),
    ]


def test_setting_a_column_to_none_on_insert_flags_it(db, article_models):
    Article = article_models()
    session = db.session()
    session.add(Article(name="a", content=None))
    session.commit()
    assert flags(db)[0][1:3] == (True, True)


@BOTH_STRATEGIES
def test_several_flushes_or_their_flags_into_one_version(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    inserted, updated = Article(name="i"), Article(name="u")
    session.add(updated)
    session.commit()
    session.add(inserted)
    session.flush()
    inserted.content = "later"
    updated.name = "u2"
    session.flush()
    updated.content = "c2"
    session.flush()
    updated.content = "c3"
    session.commit()
    rows = {(r[0], r[3]): r[1:3] for r in flags(db)}
    assert rows == {
        (updated.id, Operation.INSERT): (True, False),
        (updated.id, Operation.UPDATE): (True, True),
        (inserted.id, Operation.INSERT): (True, True),
    }


def test_flags_do_not_leak_into_the_next_transaction(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    article.content = "d"
    session.commit()
    assert [r[1:3] for r in flags(db)] == [(True, True), (True, False), (False, True)]


def test_a_rolled_back_savepoint_forgets_its_flags(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.name = "b"
    session.flush()
    with session.begin_nested() as savepoint:
        article.content = "undone"
        session.flush()
        savepoint.rollback()
    article.name = "b2"  # rewrites this transaction's version row
    session.commit()
    assert [r[1:4] for r in flags(db)] == [
        (True, True, Operation.INSERT),
        (True, False, Operation.UPDATE),
    ]
    assert db.rows("article_version")[-1]["content"] == "c"


def test_a_released_savepoint_keeps_its_flags(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.name = "b"
    session.flush()
    with session.begin_nested():
        article.content = "kept"
        session.flush()
    article.name = "b2"
    session.commit()
    assert [r[1:4] for r in flags(db)][-1] == (True, True, Operation.UPDATE)


def test_insert_then_delete_in_one_transaction_flags_everything(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="short-lived")
    session.add(article)
    session.flush()
    session.delete(article)
    session.commit()
    assert flags(db) == [(article.id, True, True, Operation.DELETE)]


def test_delete_of_a_row_older_than_versioning_flags_everything(db, article_models):
    """A row with no version yet gets a DELETE version written from its values: with
    its flags, as any other."""
    Article = article_models()
    with db.engine.begin() as conn:  # a bare connection: not versioned
        conn.execute(sa.insert(Article.__table__).values(id=1, name="old", content="c"))
    session = db.session()
    session.delete(session.get(Article, 1))
    session.commit()
    assert flags(db) == [(1, True, True, Operation.DELETE)]
    assert [(r["name"], r["content"]) for r in db.rows("article_version")] == [("old", "c")]


def test_delete_and_reinsert_in_one_transaction_flags_everything(db, article_models):
    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="old", content="c"))
    session.commit()
    session.delete(session.get(Article, 1))
    session.flush()
    session.add(Article(id=1, name="new"))
    session.commit()
    assert flags(db) == [(1, True, True, Operation.INSERT), (1, True, True, Operation.UPDATE)]


# -- reading -----------------------------------------------------------------------------


def test_versions_can_be_queried_by_flag(db, article_models):
    Article = article_models()
    ArticleVersion = version_class(Article)
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.content = "c2"
    session.commit()
    article.name = "b"
    session.commit()
    renamed = session.scalars(
        sa.select(ArticleVersion)
        .where(ArticleVersion.name_mod)
        .order_by(ArticleVersion.transaction_id)
    ).all()
    assert [v.name for v in renamed] == ["a", "b"]
    untouched = session.scalars(
        sa.select(ArticleVersion).where(sa.not_(ArticleVersion.content_mod))
    ).all()
    assert [v.name for v in untouched] == ["b"]


def test_changeset_leaves_out_the_flags(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    first, second = article.versions.all()
    assert first.changeset == {
        "id": [None, article.id], "name": [None, "a"], "content": [None, "c"],
    }
    assert second.changeset == {"name": ["a", "b"]}
    assert (second.name_mod, second.content_mod) == (True, False)


# -- cost --------------------------------------------------------------------------------


@BOTH_STRATEGIES
def test_statements_per_flush_do_not_grow_with_rows(db, article_models, strategy):
    Article = article_models()
    session = db.session(expire_on_commit=False)  # so that edits load nothing
    counts = {}
    for n in (10, 100):
        articles = [Article(name=f"a{i}", content="c") for i in range(n)]
        session.add_all(articles)
        session.commit()
        for article in articles:
            article.name += "!"
        with db.count_statements() as statements:
            session.commit()
        counts[n] = [s for s in statements if "article_version" in s]
    # One INSERT ... SELECT for all rows, plus closing the previous versions (in the
    # same statement on PostgreSQL; after a SELECT of their whole keys on MySQL/MariaDB).
    closing = strategy == "validity" and db.engine.dialect.name != "postgresql"
    looking_up = closing and db.engine.dialect.name == "mysql"
    assert len(counts[10]) == len(counts[100]) == (1 + closing + looking_up)
    updates = [r for r in db.rows("article_version") if r["operation_type"] == Operation.UPDATE]
    assert len(updates) == 110
    assert {(r["name_mod"], r["content_mod"]) for r in updates} == {(True, False)}


def test_each_distinct_set_of_flags_is_one_insert(db, article_models):
    Article = article_models()
    session = db.session(expire_on_commit=False)
    articles = [Article(name=f"a{i}", content="c") for i in range(40)]
    session.add_all(articles)
    session.commit()
    for i, article in enumerate(articles):
        if i % 2:
            article.name += "!"
        else:
            article.content += "!"
    with db.count_statements() as statements:
        session.commit()
    inserts = [s for s in statements if "INSERT INTO article_version" in s]
    assert len(inserts) == 2
    updates = [r for r in db.rows("article_version") if r["operation_type"] == Operation.UPDATE]
    by_flags: dict[tuple[bool, bool], list[str]] = {}
    for r in updates:
        by_flags.setdefault((r["name_mod"], r["content_mod"]), []).append(r["name"])
    assert {k: len(v) for k, v in by_flags.items()} == {(True, False): 20, (False, True): 20}
    assert all(name.endswith("!") for name in by_flags[(True, False)])
    assert not any(name.endswith("!") for name in by_flags[(False, True)])


# -- with other features -----------------------------------------------------------------


@pytest.mark.versioning(plugins=[PropertyModTrackerPlugin(), NullDeletePlugin()])
def test_with_null_delete_the_delete_row_is_null_and_fully_flagged(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    session.delete(article)
    session.commit()
    last = db.rows("article_version", order_by="transaction_id")[-1]
    assert (last["name"], last["content"], last["name_mod"], last["content_mod"]) == (
        None, None, True, True,
    )


def test_joined_inheritance_flags_each_table(db, base):
    class Node(base):
        __tablename__ = "node"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(sa.String(20))
        label: Mapped[str | None] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "node"}

    class Leaf(Node):
        __tablename__ = "leaf"
        id: Mapped[int] = mapped_column(sa.ForeignKey("node.id"), primary_key=True)
        weight: Mapped[int | None] = mapped_column()
        __mapper_args__ = {"polymorphic_identity": "leaf"}

    db.create(base.metadata)
    session = db.session()
    leaf = Leaf(id=1, label="l")
    session.add(leaf)
    session.commit()
    leaf.weight = 5
    session.commit()
    nodes = db.rows("node_version", order_by="transaction_id")
    leaves = db.rows("leaf_version", order_by="transaction_id")
    assert [(r["kind_mod"], r["label_mod"]) for r in nodes] == [(True, True), (False, False)]
    assert [r["weight_mod"] for r in leaves] == [False, True]
    assert "id_mod" not in leaves[0]
