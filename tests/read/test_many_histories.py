"""Histories of many objects in a constant number of queries (read/batch.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, version_class

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def _seed(db: Any, Article: Any, n: int = 12, edits: int = 2) -> list[int]:
    """``n`` articles, each with ``1 + edits`` versions (one transaction per round)."""
    session = db.session()
    articles = [Article(name=f"a{i}.0", content="c") for i in range(n)]
    session.add_all(articles)
    session.commit()
    for round_ in range(1, edits + 1):
        for i, article in enumerate(articles):
            article.name = f"a{i}.{round_}"
        session.commit()
    ids = [a.id for a in articles]
    session.close()
    return ids


def _names(versions: Any) -> list[str]:
    return [v.name for v in versions]


@both_strategies
def test_the_naive_loop_loads_every_history_in_one_query(db, article_models, strategy):
    Article = article_models()
    ids = _seed(db, Article)
    session = db.session()
    articles = session.scalars(sa.select(Article).order_by(Article.id)).all()
    with db.count_statements() as stmts:
        histories = {a.id: _names(a.versions.all()) for a in articles}
        again = {a.id: _names(a.versions) for a in articles}  # iterating: the same answer
    assert len(stmts) == 1
    expected = {key: [f"a{i}.{r}" for r in range(3)] for i, key in enumerate(ids)}
    assert histories == again == expected
    # the very answer of the query it replaces
    fresh = db.session()
    for key in ids:
        assert _names(fresh.get(Article, key).versions.all()) == expected[key]


def test_queries_derived_from_versions_run_as_written(db, article_models):
    Article = article_models()
    ids = _seed(db, Article)
    session = db.session()
    articles = session.scalars(sa.select(Article).order_by(Article.id)).all()
    ArticleVersion = version_class(Article)
    first = articles[0]
    assert first.versions.count() == 3
    assert first.versions[0].name == "a0.0"
    assert _names(first.versions.filter(ArticleVersion.name != "a0.1")) == ["a0.0", "a0.2"]
    assert _names(first.versions.order_by(None).order_by(ArticleVersion.transaction_id.desc())
                  .limit(1)) == ["a0.2"]
    assert len(ids) == 12


def test_a_flush_or_commit_since_the_batch_is_seen(db, article_models):
    Article = article_models()
    _seed(db, Article, n=3, edits=0)
    session = db.session(expire_on_commit=False)
    first, second, third = session.scalars(sa.select(Article).order_by(Article.id)).all()
    assert _names(first.versions.all()) == ["a0.0"]  # loads the batch
    second.name = "flushed"
    session.flush()
    assert _names(second.versions.all()) == ["a1.0", "flushed"]
    session.commit()
    third.name = "committed"
    session.commit()
    assert _names(third.versions.all()) == ["a2.0", "committed"]
    # autoflush: a pending change is flushed (and versioned) before the history is read
    first.name = "pending"
    assert _names(first.versions.all()) == ["a0.0", "pending"]
    session.rollback()


def test_objects_of_different_queries_batch_separately(db, article_models):
    Article = article_models()
    ids = _seed(db, Article, n=4, edits=1)
    session = db.session()
    left = session.scalars(sa.select(Article).where(Article.id.in_(ids[:2]))).all()
    right = session.scalars(sa.select(Article).where(Article.id.in_(ids[2:]))).all()
    with db.count_statements() as stmts:
        for article in left + right:
            assert _names(article.versions.all())[-1].endswith(".1")
    assert len(stmts) == 2


@both_strategies
def test_versions_at_many_keys_in_one_query(db, article_models, strategy):
    Article = article_models()
    ids = _seed(db, Article, n=6, edits=2)
    session = db.session()
    gone = session.get(Article, ids[0])
    session.delete(gone)
    session.commit()
    ArticleVersion = version_class(Article)
    txs = sorted({v.transaction_id for v in session.scalars(sa.select(ArticleVersion))})
    keys = [*ids, 999]  # 999 never existed
    for tx in (txs[0], txs[1], txs[-1]):
        with db.count_statements() as stmts:
            found = ArticleVersion.versions_at(session, keys, tx)
        assert len(stmts) == 1
        one_by_one = {
            (key,): v for key in keys if (v := ArticleVersion.version_at(session, key, tx))
        }
        assert found == one_by_one
    last = ArticleVersion.versions_at(session, [{"id": ids[0]}, (ids[1],)], txs[-1])
    assert last[(ids[0],)].operation_type == Operation.DELETE
    assert last[(ids[1],)].name == "a1.2"


def test_versions_at_takes_the_newest_where_a_broken_chain_leaves_two_open(db, article_models):
    # A chain broken outside chronicle (a version left open by a writer that did not
    # version, as `chronicle verify` reports): two versions of one key are valid at the
    # last transaction by their bounds. The batch answers as version_at does, the newest.
    Article = article_models({"strategy": "validity"})
    ids = _seed(db, Article, n=2, edits=2)
    ArticleVersion = version_class(Article)
    session = db.session()
    session.execute(
        sa.update(ArticleVersion.__table__)
        .where(ArticleVersion.__table__.c.id == ids[0])
        .values(end_transaction_id=None)
    )
    session.commit()
    last = max(session.scalars(sa.select(ArticleVersion.transaction_id)))
    found = ArticleVersion.versions_at(session, ids, last)
    assert found[(ids[0],)].name == "a0.2"
    assert found[(ids[0],)] is ArticleVersion.version_at(session, ids[0], last)
    assert found[(ids[1],)].name == "a1.2"


def test_selectinload_of_versions_with_a_list_loader(db, article_models):
    Article = article_models({"versions_lazy": "selectin"})
    ids = _seed(db, Article, n=8, edits=1)
    session = db.session()
    with db.count_statements() as stmts:
        stmt = sa.select(Article).options(orm.selectinload(Article.versions))
        loaded = session.scalars(stmt).all()
        histories = {a.id: _names(a.versions) for a in loaded}
    assert len(stmts) == 2
    assert histories == {key: [f"a{i}.0", f"a{i}.1"] for i, key in enumerate(ids)}


def test_revert_many_in_one_statement_per_kind_of_change(db, article_models):
    Article = article_models()
    ids = _seed(db, Article, n=6, edits=2)
    session = db.session()
    session.delete(session.get(Article, ids[1]))  # deleted since: reverting re-inserts it
    session.commit()
    ArticleVersion = version_class(Article)
    history = {key: ArticleVersion.all_versions(session, key, desc=False) for key in ids}
    kept = session.get(Article, ids[2])  # in the session: expired by the revert
    firsts = [history[key][0] for key in ids[:5]]
    deleted = [history[ids[1]][-1]]  # its DELETE version: nothing live to delete
    with db.count_statements() as stmts:
        ArticleVersion.revert_many(session, firsts)
    writes = [s for s in stmts if not s.lstrip().upper().startswith("SELECT")]
    # one UPDATE of the 4 live rows and one INSERT of the deleted one, plus their
    # versions, whatever the number of objects
    assert sum(bool(re.match(r"\s*UPDATE article[ ,]", s)) for s in writes) == 1
    assert sum(bool(re.match(r"\s*INSERT INTO article ", s)) for s in writes) == 1
    assert kept.name == "a2.0"
    session.commit()
    live = {r["id"]: r["name"] for r in db.rows("article")}
    assert live == {key: f"a{i}.{0 if i < 5 else 2}" for i, key in enumerate(ids)}
    last = {r["id"]: (r["name"], r["operation_type"]) for r in db.rows("article_version")
            if r["end_transaction_id"] is None}
    assert last[ids[0]] == ("a0.0", Operation.UPDATE)
    assert last[ids[1]] == ("a1.0", Operation.INSERT)  # brought back
    assert last[ids[5]] == ("a5.2", Operation.UPDATE)  # not reverted
    # reverting to a DELETE version deletes the live row again
    ArticleVersion.revert_many(session, deleted)
    session.commit()
    assert ids[1] not in {r["id"] for r in db.rows("article")}
    assert [r["operation_type"] for r in db.rows("article_version")
            if r["id"] == ids[1] and r["end_transaction_id"] is None] == [Operation.DELETE]


def test_revert_many_refuses_two_versions_of_one_entity(db, article_models):
    from sqlalchemy_chronicle.exc import ReverterException

    Article = article_models()
    ids = _seed(db, Article, n=1, edits=1)
    session = db.session()
    ArticleVersion = version_class(Article)
    both = ArticleVersion.all_versions(session, ids[0])
    with pytest.raises(ReverterException, match="two versions of the entity"):
        ArticleVersion.revert_many(session, both)
    assert [r["name"] for r in db.rows("article")] == ["a0.1"]


def test_objects_a_query_loads_again_join_its_batch(db, article_models):
    Article = article_models()
    _seed(db, Article, n=5, edits=1)
    session = db.session()
    held = session.scalars(sa.select(Article)).all()  # in the identity map...
    session.commit()  # ...and expired
    session.get(Article, held[0].id).name  # noqa: B018 - refreshed on its own first
    again = session.scalars(sa.select(Article).order_by(Article.id)).all()
    assert again == sorted(held, key=lambda a: a.id)  # the very objects held
    with db.count_statements() as stmts:
        assert [len(a.versions.all()) for a in again] == [2] * 5
    assert len(stmts) == 1


def test_objects_of_subclasses_batch_with_their_base(db, base):
    class Employee(base):
        __tablename__ = "employee"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(20))
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "employee"}

    class Engineer(Employee):
        __mapper_args__ = {"polymorphic_identity": "engineer"}

    db.create(base.metadata)
    session = db.session()
    session.add_all([Employee(id=1, name="e"), Engineer(id=2, name="g"), Engineer(id=3, name="h")])
    session.commit()
    session.get(Engineer, 2).name = "g2"
    session.commit()
    session.close()
    loaded = session.scalars(sa.select(Employee).order_by(Employee.id)).all()
    with db.count_statements() as stmts:
        names = [_names(e.versions.all()) for e in loaded]
    assert names == [["e"], ["g", "g2"], ["h"]]
    assert len(stmts) == 1


@pytest.mark.dbs("sqlite", "postgresql")  # MariaDB's snapshot hides the other commit anyway
def test_an_expired_object_reads_its_history_again(db, article_models):
    """Expiring an object (``session.expire()``, of any of its attributes too,
    ``expire_all()``, ``refresh()``) asks for what is in the database now: its history
    too, not the batch read before; the other members of the batch still answer from
    it."""
    Article = article_models()
    ids = _seed(db, Article, n=3, edits=0)
    session = db.session()
    first, second, third = session.scalars(sa.select(Article).order_by(Article.id)).all()
    assert _names(first.versions.all()) == ["a0.0"]  # loads the batch
    with db.session() as other:  # another transaction commits a version of each
        for article in other.scalars(sa.select(Article)):
            article.name += "!"
        other.commit()
    session.expire(first, ["content"])  # one attribute is enough
    assert _names(first.versions.all()) == ["a0.0", "a0.0!"]
    with db.count_statements() as stmts:
        assert _names(second.versions.all()) == ["a1.0"]  # still the batch
    assert stmts == []
    session.refresh(second)
    assert _names(second.versions.all()) == ["a1.0", "a1.0!"]
    session.expire_all()
    assert _names(third.versions.all()) == ["a2.0", "a2.0!"]
    assert ids == [first.id, second.id, third.id]
