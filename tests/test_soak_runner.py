"""The soak runner (``python -m benchmarks.soak``, ``make soak``): a short run, and its
broken-chain check finding a broken chain."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from sqlalchemy_chronicle import VersioningManager, make_versioned, remove_versioning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.once
@pytest.mark.dbs("postgresql", "mysql")
def test_a_short_soak_counts_and_finds_no_broken_chain(db_name, engine):
    url = engine.url.render_as_string(hide_password=False)
    variable = "CHRONICLE_PG_URL" if db_name == "postgresql" else "CHRONICLE_MYSQL_URL"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--db", db_name, "--threads", "2",
         "--tasks", "2", "--seconds", "2", "--hot", "2"],
        cwd=ROOT, env={**os.environ, variable: url}, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.splitlines()[0]
    assert line.startswith(f"{db_name}: 2 threads + ")
    assert " 0 broken chains, 0 writer errors" in line
    transactions = int(line.split(" transactions")[0].rsplit(" ", 1)[1])
    assert transactions > 0


def test_the_chain_check_reports_a_broken_chain(tmp_path):
    sys.path.insert(0, ROOT)
    try:
        from benchmarks.soak import broken_chains, models
    finally:
        sys.path.remove(ROOT)
    manager = VersioningManager()
    make_versioned(manager=manager, user_cls=None)
    try:
        _, metadata = models(manager)
        engine = sa.create_engine(f"sqlite:///{tmp_path}/soak.db")
        metadata.create_all(engine)
        version = metadata.tables["soak_article_version"]
        transaction = metadata.tables["transaction"]
        with engine.begin() as conn:
            conn.execute(sa.insert(metadata.tables["soak_article"]),
                         [{"id": 1, "name": "b", "views": 0}])
            conn.execute(sa.insert(transaction), [{"id": 1}, {"id": 2}])
            conn.execute(sa.insert(version), [
                {"id": 1, "name": "a", "views": 0, "transaction_id": 1,
                 "end_transaction_id": None, "operation_type": 0},
                {"id": 1, "name": "b", "views": 0, "transaction_id": 2,
                 "end_transaction_id": None, "operation_type": 1},
            ])
            problems = broken_chains(conn, metadata)
        assert problems == ["1: version 1 ends at None, next is 2"]
        engine.dispose()
    finally:
        remove_versioning(manager=manager)


@pytest.mark.dbs("mysql")
def test_a_deadlock_is_counted_with_the_tables_it_locked(engine):
    """Two connections lock two rows of one table in opposite orders: the soak's
    counts name the table of the deadlock the server reports."""
    import threading

    sys.path.insert(0, ROOT)
    try:
        from benchmarks.soak import Counts
    finally:
        sys.path.remove(ROOT)
    metadata = sa.MetaData()
    table = sa.Table("soak_locks", metadata, sa.Column("id", sa.Integer, primary_key=True))
    metadata.drop_all(engine)
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(table), [{"id": 1}, {"id": 2}])
        counts = Counts(engine=engine)
        both_locked, failures = threading.Barrier(2, timeout=10), []

        def lock(first: int, second: int, delay: float) -> None:
            with engine.connect() as conn:
                try:
                    lock_row = sa.select(table).with_for_update()
                    conn.execute(lock_row.where(table.c.id == first)).all()
                    both_locked.wait()
                    threading.Event().wait(delay)
                    conn.execute(lock_row.where(table.c.id == second)).all()
                    conn.rollback()
                except sa.exc.DBAPIError as exc:
                    conn.rollback()
                    failures.append(exc)

        threads = [threading.Thread(target=lock, args=(1, 2, 0.0)),
                   threading.Thread(target=lock, args=(2, 1, 0.3))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(failures) == 1
        assert counts.failed(failures[0]) is True
        assert (counts.deadlocks, counts.retries, counts.errors) == (1, 1, [])
        assert counts.deadlock_tables == {"soak_locks": 1}
    finally:
        metadata.drop_all(engine)
