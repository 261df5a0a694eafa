"""AsyncSession on every async driver: writes, bulk statements, concurrent tasks, and
history read without lazy-load errors (loader options, async forms of the look-ups)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, versioning_context

INSERT, UPDATE, DELETE = Operation.INSERT, Operation.UPDATE, Operation.DELETE

#: The async drivers of each database (all of them are in the test extra).
DRIVERS = {
    "sqlite": ["sqlite+aiosqlite"],
    "postgresql": ["postgresql+psycopg_async", "postgresql+asyncpg"],
    "mysql": ["mysql+aiomysql"],
}


def _urls(db: Any) -> list[sa.URL]:
    return [db.engine.url.set(drivername=driver) for driver in DRIVERS[db.name]]


@pytest.fixture
def async_base(manager: Any) -> Iterator[type[orm.DeclarativeBase]]:
    """A declarative base with ``AsyncAttrs`` (for ``obj.awaitable_attrs``)."""

    class AsyncBase(AsyncAttrs, orm.DeclarativeBase):
        pass

    yield AsyncBase
    AsyncBase.registry.dispose()


def _article(base: Any, db: Any, versions_lazy: str = "dynamic") -> Any:
    class Article(base):  # type: ignore[misc, valid-type]
        __tablename__ = "article"
        __versioned__ = {"versions_lazy": versions_lazy}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))

    db.create(base.metadata)
    return Article


def _history(db: Any, ids: set[int]) -> list[tuple[Any, ...]]:
    """(id, name, transaction, end transaction, operation) of the versions of ``ids``."""
    rows = db.rows("article_version", order_by=["transaction_id", "id"])
    return [
        (r["id"], r["name"], r["transaction_id"], r["end_transaction_id"], r["operation_type"])
        for r in rows
        if r["id"] in ids
    ]


async def _write_in_every_way(url: sa.URL, Article: Any, a: int, b: int, c: int) -> None:
    engine = create_async_engine(url)
    try:
        async with AsyncSession(engine) as session:
            session.add_all([Article(id=a, name="a"), Article(id=b, name="b")])
            await session.commit()
            first = await session.get(Article, a)
            first.name = "a2"
            await session.delete(await session.get(Article, b))
            await session.flush()
            await session.execute(sa.update(Article).where(Article.id == a).values(name="a3"))
            await session.execute(sa.insert(Article), [{"id": c, "name": "c"}])
            await session.commit()
    finally:
        await engine.dispose()


def test_flushes_and_bulk_statements_on_every_async_driver(db, async_base):
    Article = _article(async_base, db)
    for n, url in enumerate(_urls(db)):
        a, b, c = 10 * n + 1, 10 * n + 2, 10 * n + 3
        asyncio.run(_write_in_every_way(url, Article, a, b, c))
        rows = _history(db, {a, b, c})
        tx1, tx2 = rows[0][2], rows[-1][2]
        assert tx1 < tx2, url.drivername
        assert rows == [
            (a, "a", tx1, tx2, INSERT), (b, "b", tx1, tx2, INSERT),
            (a, "a3", tx2, None, UPDATE), (b, "b", tx2, None, DELETE), (c, "c", tx2, None, INSERT),
        ], url.drivername


class _Gate:
    """Lets its ``parties`` tasks on once all of them reached it (asyncio.Barrier is 3.11+)."""

    def __init__(self, parties: int) -> None:
        self.waiting = parties
        self.open = asyncio.Event()

    async def wait(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.open.set()
        await self.open.wait()


async def _writer(
    engine: Any, Article: Any, article_id: int, started: _Gate | None
) -> None:
    """Add one article and edit it, in two transactions, under a context of its own."""
    async with versioning_context(remote_addr=f"10.0.0.{article_id}"), AsyncSession(
        engine
    ) as session:
        session.add(Article(id=article_id, name="new"))
        await session.flush()
        if started is not None:
            await started.wait()  # every task is inside its transaction now
        await asyncio.sleep(0)
        await session.commit()
        article = await session.get(Article, article_id)
        article.name = f"edited by {article_id}"
        await asyncio.sleep(0)
        await session.commit()


async def _write_at_once(url: sa.URL, Article: Any, ids: list[int], barrier: bool) -> None:
    engine = create_async_engine(url)
    try:
        started = _Gate(len(ids)) if barrier else None
        await asyncio.gather(*(_writer(engine, Article, i, started) for i in ids))
    finally:
        await engine.dispose()


def test_concurrent_tasks_write_at_once_each_in_its_own_context(db, async_base):
    Article = _article(async_base, db)
    tasks = 4
    for n, url in enumerate(_urls(db)):
        ids = [100 * (n + 1) + i for i in range(tasks)]
        # Only PostgreSQL lets all of them hold their first transaction open together:
        # SQLite has one writer at a time, and MariaDB's INSERT ... SELECT of the
        # versions waits for the gap locks of the others' new rows (REPEATABLE READ), so
        # a task waiting for the others at the gate would never be joined. There the
        # tasks still run at once, each waiting in the database for the one before.
        asyncio.run(_write_at_once(url, Article, ids, barrier=db.name == "postgresql"))
        transactions = {r["id"]: r["remote_addr"] for r in db.rows("transaction")}
        rows = _history(db, set(ids))
        assert len(rows) == 2 * tasks, url.drivername
        for article_id in ids:
            mine = [r for r in rows if r[0] == article_id]
            assert [(r[1], r[4]) for r in mine] == [
                ("new", INSERT), (f"edited by {article_id}", UPDATE)
            ]
            assert mine[0][3] == mine[1][2] and mine[1][3] is None  # chained, last one open
            # each version's transaction carries the context of the task that wrote it
            assert {transactions[r[2]] for r in mine} == {f"10.0.0.{article_id}"}
        assert len({r[2] for r in rows}) == 2 * tasks  # one transaction per commit


@pytest.mark.parametrize("versions_lazy", ["select", "selectin", "write_only"])
def test_history_is_read_without_lazy_load_errors(db, async_base, versions_lazy):
    Article = _article(async_base, db, versions_lazy)
    ArticleVersion = Article.versions.property.mapper.class_
    url = _urls(db)[-1]

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                article = Article(id=1, name="v1")
                session.add(article)
                await session.commit()
                for name in ("v2", "v3"):
                    article.name = name
                    await session.commit()
                session.expire_all()
                article = await session.get(Article, 1)
                if versions_lazy == "write_only":
                    versions = list(await session.scalars(article.versions.select()))
                else:
                    versions = await article.awaitable_attrs.versions
                    loaded = await session.scalars(
                        sa.select(Article).options(orm.selectinload(Article.versions))
                    )
                    assert [v.name for v in loaded.one().versions] == ["v1", "v2", "v3"]
                assert [v.name for v in versions] == ["v1", "v2", "v3"]
                tx1, tx2, _ = (v.transaction_id for v in versions)

                at = await ArticleVersion.version_at_async(session, 1, tx2)
                assert at.name == "v2"
                newest_first = await ArticleVersion.all_versions_async(session, {"id": 1})
                assert [v.name for v in newest_first] == ["v3", "v2", "v1"]
                assert newest_first[0].previous is newest_first[1]  # linked: no query
                assert (await at.awaitable_attrs.previous).name == "v1"

                first = await ArticleVersion.version_at_async(session, (1,), tx1)
                await first.revert_async()
                await session.commit()
                await session.refresh(article)
                assert article.name == "v1"
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert [(r[1], r[4]) for r in _history(db, {1})] == [
        ("v1", INSERT), ("v2", UPDATE), ("v3", UPDATE), ("v1", UPDATE)
    ]


def test_many_histories_are_read_and_reverted_in_async_code(db, async_base):
    Article = _article(async_base, db)
    ArticleVersion = Article.versions.property.mapper.class_
    url = _urls(db)[-1]

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                session.add_all([Article(id=1, name="a1"), Article(id=2, name="b1")])
                await session.commit()
                tx1 = (await session.scalars(sa.select(ArticleVersion.transaction_id))).first()
                for article in await session.scalars(sa.select(Article)):
                    article.name = article.name[0] + "2"
                await session.commit()
                at = await ArticleVersion.versions_at_async(session, [1, (2,)], tx1)
                assert {key: v.name for key, v in at.items()} == {(1,): "a1", (2,): "b1"}
                await ArticleVersion.revert_many_async(session, at.values())
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert [(r["id"], r["name"]) for r in db.rows("article")] == [(1, "a1"), (2, "b1")]
    assert [(r[1], r[4]) for r in _history(db, {1})] == [
        ("a1", INSERT), ("a2", UPDATE), ("a1", UPDATE)
    ]


def test_versions_lazy_option_is_validated(db, async_base):
    from sqlalchemy_chronicle.exc import ConfigurationError

    class Bad(async_base):  # type: ignore[misc, valid-type]
        __tablename__ = "bad"
        __versioned__ = {"versions_lazy": "joined"}
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(ConfigurationError, match=r"'versions_lazy' of Bad.__versioned__"):
        orm.configure_mappers()
