"""NullDeletePlugin: DELETE versions hold NULL instead of the last values."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, version_class
from sqlalchemy_chronicle.plugins import NullDeletePlugin

pytestmark = pytest.mark.versioning(plugins=[NullDeletePlugin()])

BOTH_STRATEGIES = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def versions(db):
    return [
        (r["id"], r["name"], r["content"], r["operation_type"])
        for r in db.rows("article_version", order_by=["id", "transaction_id"])
    ]


@BOTH_STRATEGIES
def test_delete_version_holds_nulls_but_keeps_the_key(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    session.delete(article)
    session.commit()
    assert versions(db) == [
        (article.id, "a", "c", Operation.INSERT),
        (article.id, "b", "c", Operation.UPDATE),
        (article.id, None, None, Operation.DELETE),
    ]
    rows = db.rows("article_version", order_by="transaction_id")
    if strategy == "validity":
        txs = [r["transaction_id"] for r in rows]
        assert [r["end_transaction_id"] for r in rows] == [txs[1], txs[2], None]


@BOTH_STRATEGIES
def test_changeset_of_the_delete_version_shows_the_values_going(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content=None)
    session.add(article)
    session.commit()
    article_id = article.id
    session.delete(article)
    session.commit()
    ArticleVersion = version_class(Article)
    deleted = session.scalars(
        sa.select(ArticleVersion).where(ArticleVersion.operation_type == Operation.DELETE)
    ).one()
    # The key is not nulled, and a value that was None already does not change.
    assert deleted.changeset == {"name": ["a", None]}
    assert deleted.id == article_id
    assert deleted.previous.name == "a"


def test_other_operations_are_unchanged(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article.content = None
    session.commit()
    assert versions(db) == [
        (article.id, "a", "c", Operation.INSERT),
        (article.id, "a", None, Operation.UPDATE),
    ]


def test_insert_then_delete_in_one_transaction(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="short-lived", content="c")
    session.add(article)
    session.flush()
    article_id = article.id
    session.delete(article)
    session.commit()
    assert versions(db) == [(article_id, None, None, Operation.DELETE)]


def test_update_then_delete_in_one_transaction(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a", content="c")
    session.add(article)
    session.commit()
    article_id = article.id
    article.name = "b"
    session.flush()
    session.delete(article)
    session.commit()
    assert versions(db) == [
        (article_id, "a", "c", Operation.INSERT),
        (article_id, None, None, Operation.DELETE),
    ]


def test_deleting_many_rows_writes_one_statement(db, article_models):
    Article = article_models()
    session = db.session()
    session.add_all([Article(name=f"a{i}", content="c") for i in range(50)])
    session.commit()
    for article in session.scalars(sa.select(Article)).all():
        session.delete(article)
    with db.count_statements() as statements:
        session.commit()
    inserts = [s for s in statements if "INSERT INTO article_version" in s]
    assert len(inserts) == 1
    deleted = [r for r in versions(db) if r[3] == Operation.DELETE]
    assert len(deleted) == 50
    assert {r[1:3] for r in deleted} == {(None, None)}


def test_excluded_columns_joined_tables_and_the_discriminator(db, base):
    class Node(base):
        __tablename__ = "node"
        __versioned__ = {"exclude": ["note"]}
        id: Mapped[int] = mapped_column(primary_key=True)
        kind: Mapped[str] = mapped_column(sa.String(20))
        label: Mapped[str | None] = mapped_column(sa.String(20))
        note: Mapped[str | None] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "node"}

    class Leaf(Node):
        __tablename__ = "leaf"
        id: Mapped[int] = mapped_column(sa.ForeignKey("node.id"), primary_key=True)
        weight: Mapped[int | None] = mapped_column()
        __mapper_args__ = {"polymorphic_identity": "leaf"}

    db.create(base.metadata)
    session = db.session()
    leaf = Leaf(id=1, label="l", note="n", weight=3)
    session.add(leaf)
    session.commit()
    session.delete(leaf)
    session.commit()
    nodes = db.rows("node_version", order_by="transaction_id")
    leaves = db.rows("leaf_version", order_by="transaction_id")
    assert [(r["id"], r["kind"], r["label"]) for r in nodes] == [
        (1, "leaf", "l"), (1, "leaf", None),
    ]
    assert [(r["id"], r["weight"]) for r in leaves] == [(1, 3), (1, None)]
    assert "note" not in nodes[0]
    LeafVersion = version_class(Leaf)
    deleted = session.scalars(
        sa.select(LeafVersion).where(LeafVersion.operation_type == Operation.DELETE)
    ).one()
    # The discriminator stays, so the DELETE version still loads as a LeafVersion.
    assert type(deleted) is LeafVersion
    assert deleted.changeset == {"label": ["l", None], "weight": [3, None]}


def test_revert_to_the_version_before_the_delete_restores_the_values(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(id=1, name="a", content="c")
    session.add(article)
    session.commit()
    session.delete(article)
    session.commit()
    ArticleVersion = version_class(Article)
    first = session.scalars(
        sa.select(ArticleVersion).where(ArticleVersion.operation_type == Operation.INSERT)
    ).one()
    first.revert()
    session.commit()
    restored = session.get(Article, 1)
    assert (restored.name, restored.content) == ("a", "c")
    assert versions(db)[-1] == (1, "a", "c", Operation.INSERT)
