"""Savepoints: what a rolled-back savepoint wrote leaves no trace in the history, what
a released one wrote stays, and a flush that fails inside a savepoint breaks nothing.

Each test ends by checking the whole history against the live table: one chain per
row, each version closed by the next one, exactly one open version for a live row
(none for a deleted one), and the last version equal to the live row.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, versioning_context

BOTH_STRATEGIES = pytest.mark.parametrize("strategy", ["validity", "subquery"])


@pytest.fixture
def article_models(base: Any, db: Any) -> Any:
    """Article with a unique ``code`` (unversioned), for flushes that fail."""

    def make() -> Any:
        class Article(base):  # type: ignore[misc, valid-type]
            __tablename__ = "article"
            __versioned__: dict[str, Any] = {"exclude": ["code"]}
            id: Mapped[int] = mapped_column(primary_key=True)
            name: Mapped[str | None] = mapped_column(sa.String(50))
            code: Mapped[str | None] = mapped_column(sa.String(20), unique=True)

        db.create(base.metadata)
        return Article

    return make


def _history(db: Any) -> dict[int, list[tuple[str | None, int, int | None, Operation]]]:
    """{id: [(name, transaction_id, end_transaction_id, operation), ...]} in order."""
    history: dict[int, list[tuple[str | None, int, int | None, Operation]]] = {}
    for r in db.rows("article_version", order_by=["id", "transaction_id"]):
        history.setdefault(r["id"], []).append((
            r["name"], r["transaction_id"], r.get("end_transaction_id"),
            Operation(r["operation_type"]),
        ))
    return history


def _check_history(db: Any, strategy: str) -> None:
    live = {r["id"]: r["name"] for r in db.rows("article")}
    history = _history(db)
    assert set(live) <= set(history)
    txs = {t["id"] for t in db.rows("transaction")}
    for key, versions in history.items():
        assert {v[1] for v in versions} <= txs, key
        assert len({v[1] for v in versions}) == len(versions), key
        if strategy == "validity":
            ends = [v[2] for v in versions]
            assert ends == [v[1] for v in versions[1:]] + [None], key
        last = versions[-1]
        if key in live:
            assert (last[0], last[3] != Operation.DELETE) == (live[key], True), key
        else:
            assert last[3] == Operation.DELETE, key


def _committed(db: Any, Article: Any, *names: str) -> tuple[Any, list[Any]]:
    session = db.session()
    articles = [Article(name=name) for name in names]
    session.add_all(articles)
    session.commit()
    return session, articles


@BOTH_STRATEGIES
@pytest.mark.parametrize("before", ["nothing", "other row flushed"])
def test_first_update_of_a_row_in_a_rolled_back_savepoint(db, article_models, strategy, before):
    Article = article_models()
    session, (a, b) = _committed(db, Article, "a1", "b1")
    if before != "nothing":
        b.name = "b2"
        session.flush()  # the transaction row exists before the savepoint
    with session.begin_nested() as savepoint:
        a.name = "dropped"
        session.flush()  # a's first version of this transaction, and the close of a1
        savepoint.rollback()
    a.name = "a2"
    session.commit()
    tx1, tx2 = sorted(t["id"] for t in db.rows("transaction"))
    assert [(v[0], v[1], v[3]) for v in _history(db)[a.id]] == [
        ("a1", tx1, Operation.INSERT), ("a2", tx2, Operation.UPDATE),
    ]
    _check_history(db, strategy)


@BOTH_STRATEGIES
def test_rolled_back_first_update_and_nothing_else(db, article_models, strategy):
    Article = article_models()
    session, (a,) = _committed(db, Article, "a1")
    with session.begin_nested() as savepoint:
        a.name = "dropped"
        session.flush()
        savepoint.rollback()
    session.commit()
    assert len(db.rows("transaction")) == 1
    assert [(v[0], v[2]) for v in _history(db)[a.id]] == [("a1", None)]
    _check_history(db, strategy)


@BOTH_STRATEGIES
@pytest.mark.parametrize("then", ["update", "delete", "nothing"])
def test_first_delete_of_a_row_in_a_rolled_back_savepoint(db, article_models, strategy, then):
    Article = article_models()
    session, (a, b) = _committed(db, Article, "a1", "b1")
    b.name = "b2"
    session.flush()
    with session.begin_nested() as savepoint:
        session.delete(a)
        session.flush()  # a's DELETE version, and the close of a1
        savepoint.rollback()
    assert a in session
    if then == "update":
        a.name = "a2"
    elif then == "delete":
        session.delete(a)
    session.commit()
    tx1, tx2 = sorted(t["id"] for t in db.rows("transaction"))
    expected = [("a1", tx1, Operation.INSERT)]
    if then == "update":
        expected.append(("a2", tx2, Operation.UPDATE))
    elif then == "delete":
        expected.append(("a1", tx2, Operation.DELETE))
    assert [(v[0], v[1], v[3]) for v in _history(db)[a.id]] == expected
    _check_history(db, strategy)


@BOTH_STRATEGIES
def test_update_then_rolled_back_savepoint_updating_the_row_again(db, article_models, strategy):
    """The row was versioned before the savepoint: the rolled-back savepoint changed
    that version; the version must be back as it was before."""
    Article = article_models()
    session, (a,) = _committed(db, Article, "a1")
    a.name = "a2"
    session.flush()
    with session.begin_nested() as savepoint:
        a.name = "dropped"
        session.flush()
        session.delete(a)
        session.flush()
        savepoint.rollback()
    session.commit()
    tx1, tx2 = sorted(t["id"] for t in db.rows("transaction"))
    assert [(v[0], v[1], v[3]) for v in _history(db)[a.id]] == [
        ("a1", tx1, Operation.INSERT), ("a2", tx2, Operation.UPDATE),
    ]
    _check_history(db, strategy)


@BOTH_STRATEGIES
def test_nested_savepoints(db, article_models, strategy):
    Article = article_models()
    session, (a, b, c) = _committed(db, Article, "a1", "b1", "c1")
    with session.begin_nested():  # released
        a.name = "a2"
        session.flush()
        with session.begin_nested() as inner:  # rolled back
            a.name = "a3"
            b.name = "b2"
            session.delete(c)
            session.flush()
            inner.rollback()
        with session.begin_nested():  # released
            b.name = "b3"
            session.flush()
    with session.begin_nested() as outer:  # rolled back, with a released one inside
        with session.begin_nested():
            c.name = "c2"
            session.flush()
        session.delete(a)
        session.flush()
        outer.rollback()
    session.commit()
    tx1, tx2 = sorted(t["id"] for t in db.rows("transaction"))
    history = _history(db)
    assert [(v[0], v[1]) for v in history[a.id]] == [("a1", tx1), ("a2", tx2)]
    assert [(v[0], v[1]) for v in history[b.id]] == [("b1", tx1), ("b3", tx2)]
    assert [(v[0], v[1]) for v in history[c.id]] == [("c1", tx1)]
    _check_history(db, strategy)


@BOTH_STRATEGIES
def test_a_savepoint_rolled_back_after_a_released_one_inside_it(db, article_models, strategy):
    Article = article_models()
    session, (a,) = _committed(db, Article, "a1")
    with session.begin_nested() as outer:
        with session.begin_nested():
            a.name = "a2"
            session.flush()  # the transaction row is written inside both savepoints
        outer.rollback()
    a.name = "a3"
    session.commit()
    tx1, tx2 = sorted(t["id"] for t in db.rows("transaction"))
    assert [(v[0], v[1]) for v in _history(db)[a.id]] == [("a1", tx1), ("a3", tx2)]
    _check_history(db, strategy)


@BOTH_STRATEGIES
@pytest.mark.parametrize("before", ["nothing", "other row flushed"])
def test_a_flush_that_fails_inside_a_savepoint(db, article_models, strategy, before):
    Article = article_models()
    session, (a, b) = _committed(db, Article, "a1", "b1")
    if before != "nothing":
        b.name = "b2"
        session.flush()
    a.code = "A"
    session.flush()
    with pytest.raises(sa.exc.IntegrityError), session.begin_nested():
        a.name = "dropped"  # the UPDATE runs before the failing INSERT
        session.add(Article(name="new", code="A"))
        session.flush()
    a.name = "a2"
    session.commit()
    txs = sorted(t["id"] for t in db.rows("transaction"))
    assert len(txs) == 2
    history = _history(db)
    assert [(v[0], v[1]) for v in history[a.id]] == [("a1", txs[0]), ("a2", txs[1])]
    b_names = ["b1", "b2"] if before != "nothing" else ["b1"]
    assert [v[0] for v in history[b.id]] == b_names
    assert [r["name"] for r in db.rows("article")] == ["a2", b_names[-1]]
    _check_history(db, strategy)


@BOTH_STRATEGIES
def test_a_flush_that_fails_after_the_versions_were_written(db, article_models, strategy):
    """The failure comes from the database after our statements ran (a second flush
    in the savepoint): the savepoint takes the versions of both flushes with it."""
    Article = article_models()
    session, (a, b) = _committed(db, Article, "a1", "b1")
    with pytest.raises(sa.exc.IntegrityError), session.begin_nested():
        a.name = "dropped"
        session.flush()
        b.code = "B"
        session.flush()
        session.add(Article(name="new", code="B"))
        session.flush()
    b.name = "b2"
    session.commit()
    tx1, tx2 = sorted(t["id"] for t in db.rows("transaction"))
    history = _history(db)
    assert [(v[0], v[1]) for v in history[a.id]] == [("a1", tx1)]
    assert [(v[0], v[1]) for v in history[b.id]] == [("b1", tx1), ("b2", tx2)]
    _check_history(db, strategy)


@BOTH_STRATEGIES
def test_a_row_inserted_before_a_rolled_back_savepoint_is_still_new(db, article_models, strategy):
    """Inserted by this transaction, then deleted and inserted again after a savepoint was
    rolled back: the row did not exist before the transaction, its version is an INSERT."""
    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="first"))
    session.flush()
    with session.begin_nested() as savepoint:
        session.add(Article(id=2, name="dropped"))
        session.flush()
        savepoint.rollback()
    session.delete(session.get(Article, 1))
    session.flush()
    session.add(Article(id=1, name="again"))
    session.commit()
    (tx,) = [t["id"] for t in db.rows("transaction")]
    assert _history(db) == {1: [("again", tx, None, Operation.INSERT)]}
    _check_history(db, strategy)


# -- the transaction object ------------------------------------------------------------


def test_transaction_object_survives_rolled_back_savepoints(db, article_models, manager):
    """A savepoint rolled back after the transaction row was written leaves it, and the
    object ``current_transaction`` gave, as they were."""
    Article = article_models()
    session = db.session()
    uow = manager.unit_of_work(session)
    with versioning_context(remote_addr="192.0.2.1"):
        session.add(Article(id=1, name="a"))
        session.flush()
    seen = []
    for i in (2, 3):  # first before the object was asked for, then after
        with session.begin_nested() as savepoint:
            session.add(Article(id=i, name="dropped"))
            session.flush()
            savepoint.rollback()
        seen.append(uow.current_transaction)
    tx = seen[0]
    assert tx.remote_addr == "192.0.2.1"
    assert seen[1] is tx and tx in session
    session.commit()
    assert [(r["id"], r["remote_addr"]) for r in db.rows("transaction")] == [
        (tx.id, "192.0.2.1")
    ]
    assert [(r["id"], r["transaction_id"]) for r in db.rows("article_version")] == [(1, tx.id)]


def test_transaction_row_written_in_a_rolled_back_savepoint_is_forgotten(
    db, article_models, manager
):
    """The transaction object of a row that a savepoint rollback took away leaves the
    session; the row written next gets an object of its own, with its own values."""
    Article = article_models()
    session = db.session()
    uow = manager.unit_of_work(session)
    with session.begin_nested() as savepoint:
        with versioning_context(remote_addr="192.0.2.1"):
            session.add(Article(id=1, name="dropped"))
            session.flush()
            dropped = uow.current_transaction
            assert dropped.remote_addr == "192.0.2.1"
        savepoint.rollback()
    assert uow.current_transaction is None and dropped not in session
    with versioning_context(remote_addr="192.0.2.2"):
        session.add(Article(id=2, name="kept"))
        session.flush()
    tx = uow.current_transaction
    assert tx is not dropped and tx.remote_addr == "192.0.2.2"
    session.commit()
    assert [(r["id"], r["remote_addr"]) for r in db.rows("transaction")] == [
        (tx.id, "192.0.2.2")
    ]
