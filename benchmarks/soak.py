"""Soak: many writers for a while on PostgreSQL and MariaDB; every history must stay whole.

``python -m benchmarks.soak [--db postgresql,mysql] [--threads 8] [--tasks 8]
[--seconds 60] [--hot 5]`` (``make soak`` runs it, with the long replay proof). Threads
(sync ``Session``) and asyncio tasks (``AsyncSession``: psycopg's async driver, and
aiomysql on MariaDB when installed) run a mixed workload: updates of a few hot rows
that every writer touches, inserts, updates and deletes of their own rows, several
flushes per transaction, some savepoints and rollbacks. A deadlock, serialization
failure or lock wait timeout is retried. At the end it prints, per database:
transactions committed, versions, retries, deadlocks, and broken chains (a chain is
broken when a version's ``end_transaction_id`` is not the next version's
``transaction_id``, an entity has two open versions, a live row's open version differs
from it, or a version's transaction row is missing); the exit code is 1 if any chain
is broken or a writer failed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from sqlalchemy_chronicle import VersioningManager, make_versioned, remove_versioning

URLS = {
    "postgresql": os.environ.get(
        "CHRONICLE_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("CHRONICLE_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
ASYNC_DRIVERS = {
    "postgresql+psycopg": "postgresql+psycopg_async",
    "mysql+pymysql": "mysql+aiomysql",
}


@dataclass
class Counts:
    lock: threading.Lock = field(default_factory=threading.Lock)
    commits: int = 0
    rollbacks: int = 0
    retries: int = 0
    deadlocks: int = 0
    errors: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    #: MySQL/MariaDB: the tables each deadlock locked rows of (from the server's report).
    deadlock_tables: dict[str, int] = field(default_factory=dict)
    #: Where to read the server's report of its latest deadlock (MySQL/MariaDB).
    engine: sa.Engine | None = None

    def failed(self, exc: BaseException) -> bool:
        """Count a retry (True) or record a writer error (False)."""
        kind = _kind(exc)
        if kind is None:
            self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return False
        self.add(retries=1, deadlocks=int(kind == "deadlock"))
        reason = str(getattr(exc, "orig", exc))[:120]
        tables = self._latest_deadlock() if kind == "deadlock" else None
        with self.lock:
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
            if tables is not None:
                self.deadlock_tables[tables] = self.deadlock_tables.get(tables, 0) + 1
        return True

    def _latest_deadlock(self) -> str | None:
        """The tables of the latest deadlock MySQL/MariaDB detected: a deadlock in the
        live table only is the workload's own, one in a version or the transaction
        table is versioning's."""
        if self.engine is None or self.engine.dialect.name not in ("mysql", "mariadb"):
            return None
        with self.engine.connect() as conn:
            status = conn.exec_driver_sql("SHOW ENGINE INNODB STATUS").one()[-1]
        section = status.partition("LATEST DETECTED DEADLOCK")[2].partition("\nTRANSACTIONS\n")[0]
        names = sorted(set(re.findall(r"of table `[^`]*`\.`([^`]*)`", section)))
        return ", ".join(names) or "?"

    def add(self, **kw: int) -> None:
        with self.lock:
            for name, value in kw.items():
                setattr(self, name, getattr(self, name) + value)


def _kind(exc: BaseException) -> str | None:
    """'deadlock', 'retry' (serialization failure, lock timeout) or None."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and args[0] in (1213, 1205):  # MySQL/MariaDB: deadlock, lock wait timeout
        return "deadlock" if args[0] == 1213 else "retry"
    code = getattr(orig, "sqlstate", None)
    if code == "40P01":
        return "deadlock"
    if code in ("40001", "55P03"):  # serialization failure, lock not available
        return "retry"
    return None


def models(manager: VersioningManager) -> tuple[type[Any], sa.MetaData]:
    class Base(orm.DeclarativeBase):
        pass

    class Article(Base):
        __tablename__ = "soak_article"
        __versioned__: dict[str, Any] = {}
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True, autoincrement=False)
        name: orm.Mapped[str] = orm.mapped_column(sa.String(40))
        views: orm.Mapped[int] = orm.mapped_column(default=0)

    orm.configure_mappers()
    return Article, Base.metadata


class Workload:
    """What one writer does in one transaction (shared by threads and tasks)."""

    def __init__(self, Article: Any, hot: int, writer: int) -> None:
        self.Article = Article
        self.hot = hot
        self.own = (writer + 1) * 1_000_000
        self.next_id = itertools.count(self.own + 1)
        self.mine: list[int] = []
        self.rng = random.Random(writer)

    def steps(self) -> list[tuple[str, int]]:
        """The writes of one transaction, with a flush between some of them."""
        rng = self.rng
        steps: list[tuple[str, int]] = []
        for _ in range(rng.randint(1, 4)):
            roll = rng.random()
            if roll < 0.35:
                steps.append(("hot", rng.randint(1, self.hot)))
            elif roll < 0.6 or not self.mine:
                steps.append(("insert", next(self.next_id)))
            elif roll < 0.85:
                steps.append(("update", rng.choice(self.mine)))
            else:
                steps.append(("delete", rng.choice(self.mine)))
            if rng.random() < 0.4:
                steps.append(("flush", 0))
        # The hot rows in one order, so that the workload's own rows rarely deadlock
        # (MariaDB's gap locks on the live table still can: the deadlock's tables tell).
        hot = iter(sorted(key for kind, key in steps if kind == "hot"))
        steps = [(kind, next(hot) if kind == "hot" else key) for kind, key in steps]
        if rng.random() < 0.1:
            steps.append(("savepoint", 0))
        if rng.random() < 0.05:
            steps.append(("rollback", 0))
        return steps

    def committed(self, steps: list[tuple[str, int]]) -> None:
        if any(s == "rollback" for s, _ in steps):
            return
        for kind, key in steps:
            if kind == "insert":
                self.mine.append(key)
            elif kind == "delete" and key in self.mine:
                self.mine.remove(key)


def run_sync(session: orm.Session, w: Workload, steps: list[tuple[str, int]]) -> bool:
    """One transaction; True if it committed."""
    Article = w.Article
    deleted: set[int] = set()
    for kind, key in steps:
        if kind == "hot":
            row = session.get(Article, key, with_for_update=True)
            assert row is not None
            row.views += 1
            row.name = f"hot {row.views}"
        elif kind == "insert":
            session.add(Article(id=key, name="new"))
        elif kind == "update" and key not in deleted:
            row = session.get(Article, key)
            if row is not None:
                row.views += 1
        elif kind == "delete" and key not in deleted:
            row = session.get(Article, key)
            if row is not None:
                session.delete(row)
                deleted.add(key)
        elif kind == "flush":
            session.flush()
        elif kind == "savepoint":
            with session.begin_nested() as savepoint:
                session.add(Article(id=next(w.next_id), name="rolled back"))
                session.flush()
                savepoint.rollback()
        elif kind == "rollback":
            session.rollback()
            return False
    session.commit()
    return True


def thread_writer(engine: sa.Engine, w: Workload, until: float, counts: Counts) -> None:
    while time.monotonic() < until:
        steps = w.steps()
        with orm.Session(engine) as session:
            try:
                if run_sync(session, w, steps):
                    counts.add(commits=1)
                    w.committed(steps)
                else:
                    counts.add(rollbacks=1)
            except Exception as exc:
                session.rollback()
                if not counts.failed(exc):
                    return


async def task_writer(engine: Any, w: Workload, until: float, counts: Counts) -> None:
    while time.monotonic() < until:
        steps = w.steps()
        async with AsyncSession(engine) as session:
            try:
                done = await session.run_sync(run_sync, w, steps)
                if done:
                    counts.add(commits=1)
                    w.committed(steps)
                else:
                    counts.add(rollbacks=1)
            except Exception as exc:
                await session.rollback()
                if not counts.failed(exc):
                    return


def broken_chains(connection: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """Every broken chain of ``soak_article_version``, as text."""
    live = metadata.tables["soak_article"]
    version = metadata.tables["soak_article_version"]
    transaction = metadata.tables["transaction"]
    tx_ids = set(connection.scalars(sa.select(transaction.c.id)))
    rows = connection.execute(sa.select(version).order_by(version.c.id, version.c.transaction_id))
    problems = []
    by_key: dict[int, list[Any]] = {}
    for row in rows:
        by_key.setdefault(row.id, []).append(row)
        if row.transaction_id not in tx_ids:
            problems.append(f"{row.id}: no transaction row {row.transaction_id}")
    live_rows = {r.id: r for r in connection.execute(sa.select(live))}
    for key, chain in by_key.items():
        for older, newer in itertools.pairwise(chain):
            if older.end_transaction_id != newer.transaction_id:
                problems.append(f"{key}: version {older.transaction_id} ends at "
                                f"{older.end_transaction_id}, next is {newer.transaction_id}")
        last = chain[-1]
        if last.end_transaction_id is not None:
            problems.append(f"{key}: its last version is closed")
        current = live_rows.get(key)
        if current is not None and (last.operation_type == 2 or
                                    (last.name, last.views) != (current.name, current.views)):
            problems.append(f"{key}: the open version differs from the live row")
        if current is None and last.operation_type != 2:
            problems.append(f"{key}: deleted, but its last version is not a DELETE")
    for key in live_rows.keys() - by_key.keys():
        problems.append(f"{key}: a live row without versions")
    return problems


def soak(db: str, threads: int, tasks: int, seconds: float, hot: int) -> bool:
    url = URLS[db]
    manager = VersioningManager()
    make_versioned(manager=manager, user_cls=None)
    try:
        Article, metadata = models(manager)
        engine = sa.create_engine(url, pool_size=threads + 2)
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with orm.Session(engine) as session:
            session.add_all([Article(id=i, name="hot", views=0) for i in range(1, hot + 1)])
            session.commit()
        counts = Counts(engine=engine)
        until = time.monotonic() + seconds
        workers = [threading.Thread(target=thread_writer,
                                    args=(engine, Workload(Article, hot, n), until, counts))
                   for n in range(threads)]
        for t in workers:
            t.start()
        async_note = ""
        driver = url.split("://", 1)[0]
        async_url = ASYNC_DRIVERS.get(driver)
        if tasks and async_url:
            try:
                aengine = create_async_engine(async_url + "://" + url.split("://", 1)[1],
                                              pool_size=tasks + 2)
            except ImportError as exc:
                async_note = f" (no asyncio tasks: {exc})"
            else:
                async def run_tasks() -> None:
                    await asyncio.gather(*[
                        task_writer(aengine, Workload(Article, hot, threads + n), until, counts)
                        for n in range(tasks)
                    ])
                    await aengine.dispose()

                asyncio.run(run_tasks())
        elif tasks:
            async_note = f" (no asyncio tasks: no async driver for {driver})"
        for t in workers:
            t.join()
        with engine.connect() as connection:
            problems = broken_chains(connection, metadata)
            version = metadata.tables["soak_article_version"]
            versions = connection.scalar(sa.select(sa.func.count()).select_from(version))
        used_tasks = 0 if async_note else tasks
        print(f"{db}: {threads} threads + {used_tasks} asyncio tasks{async_note}, {seconds:g} s, "
              f"{hot} hot rows: {counts.commits} transactions, {versions} versions, "
              f"{counts.rollbacks} rollbacks, {counts.retries} retries, "
              f"{counts.deadlocks} deadlocks, {len(problems)} broken chains, "
              f"{len(counts.errors)} writer errors")
        for reason, n in sorted(counts.reasons.items(), key=lambda item: -item[1])[:5]:
            print(f"  retried {n}x: {reason}")
        for tables, n in sorted(counts.deadlock_tables.items(), key=lambda item: -item[1]):
            print(f"  {n} deadlock(s) on rows of: {tables}")
        for line in problems[:20] + counts.errors[:5]:
            print("  " + line)
        metadata.drop_all(engine)
        engine.dispose()
        return not problems and not counts.errors
    finally:
        remove_versioning(manager=manager)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--db", default="postgresql,mysql")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--hot", type=int, default=5, help="rows every writer updates")
    opts = parser.parse_args(argv)
    ok = True
    for db in [d.strip() for d in opts.db.split(",") if d.strip()]:
        ok = soak(db, opts.threads, opts.tasks, opts.seconds, opts.hot) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
