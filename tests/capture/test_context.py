"""versioning_context(): who made each change, recorded on the transaction rows.

Every test reads back the ``transaction`` table the way a user would, and checks the
``user_id`` and ``remote_addr`` each committed transaction got.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import VersioningStateError, versioning_context
from sqlalchemy_chronicle.capture.context import current_context
from sqlalchemy_chronicle.exc import ConfigurationError
from sqlalchemy_chronicle.plugins import TransactionMetaPlugin

WITH_USERS = pytest.mark.versioning(user_cls="User")


def define_user(base: Any) -> Any:
    class User(base):  # type: ignore[misc, valid-type]
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    return User


@pytest.fixture
def models(base: Any, db: Any, article_models: Callable[..., Any]) -> Any:
    """The Article model, with the tables created and users 1 (alice) and 2 (bob)."""
    User = define_user(base)
    Article = article_models()
    with db.session() as session:
        session.add_all([User(id=1, name="alice"), User(id=2, name="bob")])
        session.commit()
    return Article


def who(db: Any) -> list[tuple[Any, Any]]:
    """``(user_id, remote_addr)`` of every transaction row, in commit order."""
    return [(r["user_id"], r["remote_addr"]) for r in db.rows("transaction")]


def write(db: Any, Article: Any, name: str) -> None:
    with db.session() as session:
        session.add(Article(name=name))
        session.commit()


# -- the context manager -------------------------------------------------------------


@WITH_USERS
def test_every_transaction_inside_records_the_user_and_address(db, models):
    Article = models
    with versioning_context(user_id=1, remote_addr="192.0.2.10"), db.session() as session:
        article = Article(name="draft")
        session.add(article)
        session.commit()
        article.name = "final"
        session.commit()
    assert who(db) == [(1, "192.0.2.10"), (1, "192.0.2.10")]
    with db.session() as session:
        tx = session.scalars(sa.select(Article)).one().versions[1].transaction
        assert tx.user.name == "alice"
        assert tx.remote_addr == "192.0.2.10"


@WITH_USERS
def test_outside_any_context_nothing_is_recorded(db, models):
    Article = models
    with versioning_context(user_id=1, remote_addr="192.0.2.10"):
        write(db, Article, "inside")
    assert current_context() is None
    write(db, Article, "outside")
    assert who(db) == [(1, "192.0.2.10"), (None, None)]


@WITH_USERS
def test_nested_context_overrides_the_outer_one_key_by_key(db, models):
    Article = models
    with versioning_context(user_id=1, remote_addr="192.0.2.1"):
        with versioning_context(remote_addr="192.0.2.2"):
            write(db, Article, "inner address")
        with versioning_context(user_id=2):
            write(db, Article, "inner user")
        with versioning_context(user_id=None):
            write(db, Article, "no user")
        write(db, Article, "outer again")
    assert who(db) == [
        (1, "192.0.2.2"),
        (2, "192.0.2.1"),
        (None, "192.0.2.1"),
        (1, "192.0.2.1"),
    ]


@WITH_USERS
def test_the_context_at_the_first_versioned_flush_counts(db, models):
    """The transaction row is written once, by the first flush that versions a change."""
    Article = models
    with db.session() as session:
        with versioning_context(user_id=1):
            session.add(Article(name="flushed inside"))
            session.flush()
        with versioning_context(user_id=2):
            session.add(Article(name="same transaction"))
            session.commit()
    assert who(db) == [(1, None)]


# -- as a decorator ------------------------------------------------------------------


@WITH_USERS
def test_decorator_on_a_function(db, models):
    Article = models

    @versioning_context(user_id=2, remote_addr="198.51.100.7")
    def import_articles(names: list[str]) -> int:
        for name in names:
            write(db, Article, name)
        return len(names)

    assert import_articles(["a", "b"]) == 2
    assert import_articles.__name__ == "import_articles"
    write(db, Article, "not decorated")
    assert who(db) == [(2, "198.51.100.7"), (2, "198.51.100.7"), (None, None)]


@WITH_USERS
def test_decorator_on_a_coroutine_function(db, models):
    Article = models

    @versioning_context(user_id=1, remote_addr="198.51.100.8")
    async def save(name: str) -> str:
        await asyncio.sleep(0)
        write(db, Article, name)
        return name

    async def main() -> list[str]:
        saved = [await save("first")]
        write(db, Article, "between")
        saved.append(await save("second"))
        return saved

    assert asyncio.run(main()) == ["first", "second"]
    assert who(db) == [(1, "198.51.100.8"), (None, None), (1, "198.51.100.8")]


def test_one_context_open_in_two_tasks_that_leave_in_any_order():
    """A shared instance (a module-level context, a decorator) is safe in concurrent tasks."""
    shared = versioning_context(remote_addr="203.0.113.1")
    events = {name: (asyncio.Event(), asyncio.Event()) for name in ("a", "b")}
    seen: dict[str, Any] = {}

    async def task(name: str, user_id: int) -> None:
        entered, leave = events[name]
        async with shared, versioning_context(user_id=user_id):
            entered.set()
            await leave.wait()
            seen[name] = current_context()
        seen[name + " after"] = current_context()

    async def main() -> None:
        a = asyncio.create_task(task("a", 1))
        await events["a"][0].wait()
        b = asyncio.create_task(task("b", 2))
        await events["b"][0].wait()
        events["a"][1].set()  # the first to enter leaves first
        await a
        events["b"][1].set()
        await b

    asyncio.run(main())
    assert (seen["a"].user_id, seen["a"].remote_addr) == (1, "203.0.113.1")
    assert (seen["b"].user_id, seen["b"].remote_addr) == (2, "203.0.113.1")
    assert seen["a after"] is None
    assert seen["b after"] is None


def test_leaving_a_context_that_is_not_the_innermost_is_an_error():
    """Contexts left out of order (or one never entered) raise, and what is in force stays."""
    outer = versioning_context(user_id=1)
    inner = versioning_context(user_id=2)
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(VersioningStateError) as error:
        outer.__exit__(None, None, None)
    assert str(error.value) == (
        "versioning_context exited where it was not the innermost context; "
        "close nested versioning contexts in the reverse order of opening them."
    )
    assert current_context().user_id == 2
    inner.__exit__(None, None, None)
    assert current_context().user_id == 1
    outer.__exit__(None, None, None)
    assert current_context() is None
    with pytest.raises(VersioningStateError, match="not the innermost context"):
        versioning_context(user_id=3).__exit__(None, None, None)
    assert current_context() is None


# -- threads and tasks -----------------------------------------------------------------


@WITH_USERS
def test_threads_each_record_their_own_user(db, models):
    Article = models
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def worker(user_id: int, address: str) -> None:
        try:
            with versioning_context(user_id=user_id, remote_addr=address):
                barrier.wait()  # both threads are inside their context now
                for i in range(3):
                    write(db, Article, f"{user_id}-{i}")
                barrier.wait()  # and stay inside until both have written
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(1, "192.0.2.1")),
        threading.Thread(target=worker, args=(2, "192.0.2.2")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert not any(t.is_alive() for t in threads)

    assert written_by(db, Article) == {
        "1-0": (1, "192.0.2.1"), "1-1": (1, "192.0.2.1"), "1-2": (1, "192.0.2.1"),
        "2-0": (2, "192.0.2.2"), "2-1": (2, "192.0.2.2"), "2-2": (2, "192.0.2.2"),
    }


def written_by(db: Any, Article: Any) -> dict[str, tuple[Any, Any]]:
    """Article name -> ``(user_id, remote_addr)`` of the transaction that inserted it."""
    with db.session() as session:
        return {
            a.name: (a.versions[0].transaction.user_id, a.versions[0].transaction.remote_addr)
            for a in session.scalars(sa.select(Article))
        }


async def rendezvous(arrived: list[str], everyone: asyncio.Event, name: str) -> None:
    """Wait until both tasks got here: both are inside their context before either writes."""
    arrived.append(name)
    if len(arrived) == 2:
        everyone.set()
    await everyone.wait()


@WITH_USERS
@pytest.mark.dbs("sqlite", "postgresql")
def test_concurrent_tasks_with_async_sessions_each_record_their_own_user(db, models):
    Article = models
    drivers = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg_async"}
    url = db.engine.url.set(drivername=drivers[db.name])

    async def main() -> None:
        engine = create_async_engine(url)
        arrived: list[str] = []
        everyone = asyncio.Event()

        async def request(user_id: int, address: str) -> None:
            async with versioning_context(user_id=user_id, remote_addr=address):
                await rendezvous(arrived, everyone, address)
                async with AsyncSession(engine) as session:
                    for i in range(2):
                        session.add(Article(name=f"{user_id}-{i}"))
                        await session.commit()

        try:
            await asyncio.gather(request(1, "192.0.2.1"), request(2, "192.0.2.2"))
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert written_by(db, Article) == {
        "1-0": (1, "192.0.2.1"), "1-1": (1, "192.0.2.1"),
        "2-0": (2, "192.0.2.2"), "2-1": (2, "192.0.2.2"),
    }


@WITH_USERS
def test_concurrent_tasks_running_sessions_in_threads_record_their_own_user(db, models):
    """``asyncio.to_thread`` copies the task's context into the worker thread."""
    Article = models

    async def main() -> None:
        arrived: list[str] = []
        everyone = asyncio.Event()

        async def request(user_id: int, address: str) -> None:
            with versioning_context(user_id=user_id, remote_addr=address):
                await rendezvous(arrived, everyone, address)
                for i in range(2):
                    await asyncio.to_thread(write, db, Article, f"{user_id}-{i}")

        await asyncio.gather(request(1, "192.0.2.1"), request(2, "192.0.2.2"))

    asyncio.run(main())
    assert written_by(db, Article) == {
        "1-0": (1, "192.0.2.1"), "1-1": (1, "192.0.2.1"),
        "2-0": (2, "192.0.2.2"), "2-1": (2, "192.0.2.2"),
    }


# -- misconfiguration ----------------------------------------------------------------


@WITH_USERS
def test_metadata_without_a_plugin_to_store_it_is_an_error(db, models):
    Article = models
    with db.session() as session, versioning_context(user_id=1, reason="import", batch=7):
        session.add(Article(name="x"))
        with pytest.raises(ConfigurationError) as err:
            session.commit()
    assert "TransactionMetaPlugin" in str(err.value)
    assert "metadata (batch, reason)" in str(err.value)
    assert db.rows("article") == []
    assert db.rows("transaction") == []


def test_user_id_without_a_user_class_is_an_error(db, article_models):
    Article = article_models()
    with db.session() as session, versioning_context(user_id=1):
        session.add(Article(name="x"))
        with pytest.raises(ConfigurationError) as err:
            session.commit()
    assert "user_cls" in str(err.value)
    assert db.rows("article") == []


def test_remote_addr_alone_needs_no_user_class(db, article_models):
    Article = article_models()
    with versioning_context(remote_addr="2001:db8::1"):
        write(db, Article, "x")
    assert [r["remote_addr"] for r in db.rows("transaction")] == ["2001:db8::1"]
    assert "user_id" not in db.rows("transaction")[0]


@pytest.mark.versioning(user_cls="User", plugins=[TransactionMetaPlugin()])
def test_metadata_lands_in_transaction_meta(db, models):
    Article = models
    with versioning_context(user_id=1, reason="import", batch=7):
        write(db, Article, "imported")
        with versioning_context(reason="fix"):  # the inner value wins, key by key
            write(db, Article, "fixed")
    write(db, Article, "plain")
    first, second, _plain = (r["id"] for r in db.rows("transaction"))
    meta = db.rows("transaction_meta", order_by=["transaction_id", "key"])
    assert [(r["transaction_id"], r["key"], r["value"]) for r in meta] == [
        (first, "batch", "7"), (first, "reason", "import"),
        (second, "batch", "7"), (second, "reason", "fix"),
    ]  # and nothing for the third, written outside the context
    with db.session() as session:
        fixed = session.scalars(sa.select(Article).where(Article.name == "fixed")).one()
        assert fixed.versions[0].transaction.meta == {"batch": "7", "reason": "fix"}
        assert fixed.versions[0].transaction.user_id == 1
