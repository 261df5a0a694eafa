"""Reads of what is committed now, beside a transaction (capture/committed.py).

MySQL/MariaDB capture asks them for the open versions its REPEATABLE READ snapshot may
not show; they run on a second connection that locks nothing and waits for nothing.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from sqlalchemy_chronicle import version_class
from sqlalchemy_chronicle._compat import engine_on_pool


def test_engine_on_pool_runs_on_the_pool_it_is_given(tmp_path: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/x.db")
    pool = engine.pool.recreate()
    other = engine_on_pool(engine, pool)
    assert other.dialect is engine.dialect and other.url == engine.url
    with other.connect() as conn:
        assert conn.scalar(sa.text("select 41 + 1")) == 42
        assert pool.checkedout() == 1 and engine.pool.checkedout() == 0
    engine.dispose()
    pool.dispose()


@pytest.mark.dbs("mysql")
def test_committed_reads_see_past_the_snapshot_and_lock_nothing(db, article_models) -> None:
    Article = article_models()
    a = db.session()
    a.add(Article(id=1, name="first"))
    a.commit()
    assert a.get(Article, 1) is not None  # A's snapshot (MariaDB) is taken here
    with db.session() as c:
        c.add(Article(id=2, name="by C"))
        c.commit()
    table = Article.__table__
    conn = a.connection()
    # A's snapshot does not show C's row; the committed read does.
    assert conn.scalars(sa.select(table.c.id).order_by(table.c.id)).all() == [1]
    reads = db.manager.committed_reads
    assert [tuple(r) for r in reads.rows(conn, sa.select(table.c.id).order_by(table.c.id))] == [
        (1,), (2,)
    ]
    # A locks row 2 and everything after it; the committed read does not wait for A.
    conn.execute(sa.select(table).where(table.c.id >= 2).with_for_update()).all()
    rows = reads.rows(conn, sa.select(table.c.name).where(table.c.id == 2))
    assert [r.name for r in rows] == ["by C"]
    # Nor does it see what A has not committed.
    a.add(Article(id=3, name="by A"))
    a.flush()
    assert reads.rows(conn, sa.select(table.c.id).where(table.c.id == 3)) == []
    a.rollback()


def _server_connections(db: Any) -> int:
    """Connections the server has open to the test's database, from a new one."""
    with db.engine.connect() as conn:
        return int(conn.scalar(sa.text(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = DATABASE()"
        ))) - 1


@pytest.mark.dbs("mysql")
def test_the_second_connections_close_with_the_engine_or_the_manager(db, article_models):
    Article = article_models()
    db.engine.dispose()
    assert _server_connections(db) == 0
    engine = sa.create_engine(db.engine.url)
    for id_ in (1, 2):
        with orm.Session(engine) as session:
            session.add(Article(id=id_, name="x"))  # looks for a previous version
            session.commit()
        # the session's connection and the second one, both idle in their pools
        assert _server_connections(db) == 2
        engine.dispose()
        assert _server_connections(db) == 0
    with orm.Session(engine) as session:
        session.add(Article(id=3, name="y"))
        session.commit()
    db.manager.uninstall()
    assert _server_connections(db) == 1  # the engine's own
    engine.dispose()
    assert _server_connections(db) == 0
    assert [r["id"] for r in db.rows("article_version")] == [1, 2, 3]


@pytest.mark.dbs("mysql")
def test_the_second_connections_of_an_async_engine_close_with_it(db, article_models):
    """aiomysql's connections close inside the event loop: ``await engine.dispose()``
    closes the second pool's too (none is left for the garbage collector)."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    Article = article_models()
    db.engine.dispose()

    async def main() -> int:
        engine = create_async_engine(db.engine.url.set(drivername="mysql+aiomysql"))
        async with AsyncSession(engine) as session:
            session.add(Article(id=1, name="x"))
            await session.commit()
        during = _server_connections(db)
        await engine.dispose()
        return during

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        assert asyncio.run(main()) == 2
        gc.collect()
    assert _server_connections(db) == 0
    assert [r["id"] for r in db.rows("article_version")] == [1]


def test_a_row_inserted_again_inside_one_outer_transaction_keeps_one_open_version(
    db, article_models
) -> None:
    """The test-suite pattern of SQLAlchemy's docs: a Session joined to an outer
    transaction that is never committed, each ``commit()`` a savepoint. The versions of
    the earlier commits are this database transaction's own, invisible to a second
    connection: the INSERT after the DELETE must still close the DELETE version."""
    Article = article_models()
    with db.engine.connect() as conn:
        outer = conn.begin()
        session = orm.Session(bind=conn, join_transaction_mode="create_savepoint")
        session.add(Article(id=1, name="first"))
        session.commit()
        session.delete(session.get(Article, 1))
        session.commit()
        session.add(Article(id=1, name="again"))
        session.commit()
        table = version_class(Article).__table__
        rows = conn.execute(
            sa.select(table.c.name, table.c.operation_type, table.c.end_transaction_id)
            .order_by(table.c.transaction_id)
        ).all()
        session.close()
        outer.rollback()
    assert [(r.name, r.operation_type, r.end_transaction_id is None) for r in rows] == [
        ("first", 0, False),
        ("first", 2, False),
        ("again", 0, True),
    ]
