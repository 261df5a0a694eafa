"""``VersionClass.as_of(at)``: the whole table as it was at a transaction, one query."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from sqlalchemy_chronicle import ConfigurationError, version_class

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def _three_transactions(db: Any, Article: Any) -> tuple[Any, tuple[int, int, int], list[int]]:
    """tx1: insert a, b. tx2: rename a, delete b, insert c. tx3: rename c."""
    session = db.session()
    a, b = Article(name="a1", content="x"), Article(name="b1", content="x")
    session.add_all([a, b])
    session.commit()
    a.name = "a2"
    session.delete(b)
    c = Article(name="c1", content="x")
    session.add(c)
    session.commit()
    c.name = "c2"
    session.commit()
    txs = sorted({row["transaction_id"] for row in db.rows("article_version")})
    assert len(txs) == 3
    return session, (a.id, b.id, c.id), txs


def _table(session: Any, ArticleVersion: Any, at: Any) -> list[tuple[int, str]]:
    return sorted((v.id, v.name) for v in session.scalars(ArticleVersion.as_of(at)))


@both_strategies
def test_as_of_gives_the_table_as_it_was_at_each_transaction(db, article_models, strategy):
    Article = article_models()
    ArticleVersion = version_class(Article)
    session, (a, b, c), (tx1, tx2, tx3) = _three_transactions(db, Article)

    assert _table(session, ArticleVersion, tx1 - 1) == []
    assert _table(session, ArticleVersion, tx1) == [(a, "a1"), (b, "b1")]
    # b was deleted in tx2: gone from the table as of tx2, no DELETE version shown
    assert _table(session, ArticleVersion, tx2) == [(a, "a2"), (c, "c1")]
    assert _table(session, ArticleVersion, tx3) == [(a, "a2"), (c, "c2")]
    assert _table(session, ArticleVersion, tx3 + 100) == [(a, "a2"), (c, "c2")]
    # the versions returned are the ones written at or before the transaction
    versions = session.scalars(ArticleVersion.as_of(tx2).order_by(ArticleVersion.id)).all()
    assert [v.transaction_id for v in versions] == [tx2, tx2]


@both_strategies
def test_as_of_is_one_select_that_takes_criteria_and_order(db, article_models, strategy):
    Article = article_models()
    ArticleVersion = version_class(Article)
    session, (a, _, c), (_, tx2, _) = _three_transactions(db, Article)

    stmt = (
        ArticleVersion.as_of(tx2)
        .where(ArticleVersion.content == "x")
        .order_by(ArticleVersion.id.desc())
    )
    with db.count_statements() as statements:
        found = [(v.id, v.name) for v in session.scalars(stmt)]
    assert found == [(c, "c1"), (a, "a2")]
    assert len(statements) == 1


def test_as_of_a_datetime_is_the_last_transaction_issued_by_then(db, article_models, manager):
    Article = article_models()
    ArticleVersion = version_class(Article)
    session, (a, b, c), txs = _three_transactions(db, Article)
    # Give the transactions issued_at an hour apart (MariaDB keeps whole seconds only).
    start = datetime.datetime(2026, 1, 1, 12, 0)
    transaction = manager.transaction_cls.__table__
    with db.engine.begin() as connection:
        for hours, tx in enumerate(txs):
            connection.execute(
                sa.update(transaction)
                .where(transaction.c.id == tx)
                .values(issued_at=start + datetime.timedelta(hours=hours))
            )
    session.rollback()  # end the session's snapshot (REPEATABLE READ on MariaDB)

    assert _table(session, ArticleVersion, start - datetime.timedelta(seconds=1)) == []
    assert _table(session, ArticleVersion, start) == [(a, "a1"), (b, "b1")]
    half_past_one = start + datetime.timedelta(hours=1, minutes=30)
    assert _table(session, ArticleVersion, half_past_one) == [(a, "a2"), (c, "c1")]
    assert _table(session, ArticleVersion, start + datetime.timedelta(days=1)) == [
        (a, "a2"), (c, "c2"),
    ]


@pytest.mark.parametrize("at", ["2026-01-01", 1.5, True, None])
def test_as_of_names_the_class_when_given_something_else(db, article_models, at):
    ArticleVersion = version_class(article_models())
    message = r"ArticleVersion\.as_of\(\) takes a transaction id"
    with pytest.raises(ConfigurationError, match=message):
        ArticleVersion.as_of(at)
