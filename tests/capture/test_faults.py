"""Faults: whatever breaks a transaction, its data and its versions go together.

The connection dies during a flush and during the commit (killed from a second
connection), a statement times out, a constraint fails halfway through a flush, the
process is killed between flush and commit. Afterwards there is no partial history
(the data and its versions, or neither), and the next transaction, on a fresh
connection, versions normally.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, orm

SERVERS = pytest.mark.dbs("postgresql", "mysql")


def _state(db: Any) -> tuple[list[Any], list[Any], int]:
    live = [(r["id"], r["name"]) for r in db.rows("article")]
    versions = [
        (r["id"], r["name"], r["transaction_id"], r["end_transaction_id"])
        for r in db.rows("article_version")
    ]
    return live, versions, len(db.rows("transaction"))


def _seeded(db: Any, Article: Any) -> tuple[list[Any], list[Any], int]:
    session = db.session()
    session.add(Article(id=1, name="one"))
    session.commit()
    session.close()
    return _state(db)


def _versions_normally_afterwards(db: Any, Article: Any, before: Any) -> None:
    """A fresh session updates row 1 and inserts row 3: two versions, one transaction,
    chained to what was there."""
    db.engine.dispose()  # fresh connections
    session = orm.Session(db.engine)
    session.get(Article, 1).name = "after"
    session.add(Article(id=3, name="three"))
    session.commit()
    session.close()
    live, versions, transactions = _state(db)
    assert live == [(1, "after"), (3, "three")]
    assert transactions == before[2] + 1
    tx = max(v[2] for v in versions)
    assert [v for v in versions if v[2] == tx] == [(1, "after", tx, None), (3, "three", tx, None)]
    first = before[1][-1]
    assert (1, "one", first[2], tx) in versions  # the previous version was closed


def _kill(db: Any, victim_id: int) -> None:
    with db.engine.connect() as other:
        if db.name == "postgresql":
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": victim_id})
        else:
            other.execute(sa.text(f"KILL {int(victim_id)}"))


def _backend_id(connection: sa.Connection) -> int:
    if connection.dialect.name == "postgresql":
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
    return int(connection.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one())


@SERVERS
@pytest.mark.parametrize("when", ["flush", "commit"])
def test_connection_killed_during_flush_or_commit_leaves_no_partial_history(
    db, article_models, when
):
    Article = article_models()
    before = _seeded(db, Article)
    engine = sa.create_engine(db.engine.url)
    session = orm.Session(engine)
    session.get(Article, 1).name = "lost"
    session.add(Article(id=2, name="lost"))
    victim = _backend_id(session.connection())

    def kill_before_version_insert(conn, cursor, statement, params, context, executemany):
        if "article_version" in statement and statement.lstrip().upper().startswith(
            ("INSERT", "WITH")
        ):
            event.remove(engine, "before_cursor_execute", kill_before_version_insert)
            _kill(db, victim)

    fired: list[bool] = []

    def kill_before_commit(conn):
        if not fired:
            fired.append(True)
            _kill(db, victim)

    if when == "flush":
        event.listen(engine, "before_cursor_execute", kill_before_version_insert)
    else:
        session.flush()  # data and versions written; the connection dies at COMMIT
        event.listen(engine, "commit", kill_before_commit)
    with pytest.raises(sa.exc.DBAPIError):
        session.commit()
    session.close()
    engine.dispose()

    assert _state(db) == before
    _versions_normally_afterwards(db, Article, before)


@SERVERS
def test_statement_timeout_in_the_version_write_leaves_no_partial_history(db, article_models):
    Article = article_models()
    before = _seeded(db, Article)
    blocker = db.engine.connect()
    session = orm.Session(db.engine)
    try:
        # Another transaction holds the version row the close must update.
        blocker.execute(
            sa.text("UPDATE article_version SET name = name WHERE id = 1")
        )
        connection = session.connection()
        if db.name == "postgresql":
            connection.execute(sa.text("SET LOCAL statement_timeout = '300ms'"))
        else:
            connection.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
        session.get(Article, 1).name = "lost"
        session.add(Article(id=2, name="lost"))
        with pytest.raises(sa.exc.OperationalError):
            session.flush()
        session.rollback()
        if db.name != "postgresql":
            session.connection().execute(sa.text("SET SESSION innodb_lock_wait_timeout = 50"))
        session.close()
    finally:
        blocker.rollback()
        blocker.close()
    assert _state(db) == before
    _versions_normally_afterwards(db, Article, before)


def test_constraint_failing_halfway_through_a_flush_leaves_no_partial_history(
    db, article_models
):
    Article = article_models()
    before = _seeded(db, Article)
    session = db.session()
    session.get(Article, 1).name = "lost"
    session.add(Article(id=2, name="lost"))
    session.flush()  # versions of this transaction exist now
    # The next flush inserts row 5, then a duplicate of row 1 (its object expunged, so
    # the session cannot see the clash) that the database refuses.
    session.expunge(session.get(Article, 1))
    session.add(Article(id=5, name="lost"))
    session.add(Article(id=1, name="duplicate"))
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()
    session.rollback()
    session.close()
    assert _state(db) == before
    _versions_normally_afterwards(db, Article, before)


def test_process_killed_between_flush_and_commit_leaves_no_partial_history(
    db, article_models, tmp_path
):
    Article = article_models()
    before = _seeded(db, Article)
    url = db.engine.url.render_as_string(hide_password=False)
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        import sqlalchemy as sa
        from sqlalchemy import orm
        from sqlalchemy_chronicle import make_versioned

        make_versioned(user_cls=None)

        class Base(orm.DeclarativeBase):
            pass

        class Article(Base):
            __tablename__ = "article"
            __versioned__ = {{}}
            id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
            name = sa.Column(sa.Unicode(255))
            content = sa.Column(sa.UnicodeText)

        orm.configure_mappers()
        engine = sa.create_engine({url!r})
        session = orm.Session(engine)
        session.get(Article, 1).name = "lost"
        session.add(Article(id=2, name="lost"))
        session.flush()
        n = session.execute(sa.text("SELECT count(*) FROM article_version")).scalar()
        print("flushed", n, flush=True)
        time.sleep(60)
    """))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.split()[:2] == ["flushed", "3"], line  # 1 seed + 2 of this transaction
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    if db.name == "mysql":
        # The server notices the dropped connection and rolls back; wait until it has.
        with db.engine.connect() as conn:
            for _ in range(100):
                if not conn.execute(sa.text(
                    "SELECT count(*) FROM information_schema.innodb_trx"
                    " WHERE trx_mysql_thread_id <> CONNECTION_ID()"
                    " AND trx_rows_modified > 0 AND trx_state = 'RUNNING'"
                )).scalar():
                    break
                conn.rollback()
                time.sleep(0.1)
    assert _state(db) == before
    _versions_normally_afterwards(db, Article, before)
