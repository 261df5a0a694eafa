"""Concurrency: many sessions writing at once keep every history whole.

Each test checks what a user sees in the tables afterwards: for every entity, its
versions ordered by ``transaction_id`` tell its story in order (one ``INSERT`` opening
each life, ``end_transaction_id`` chaining each version to the next under the validity
strategy), the newest version equals the live row, and the ``transaction`` table holds
exactly one row per committed transaction that versioned something.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import exc as orm_exc

from sqlalchemy_chronicle import Operation

POOL = 20  # overlapping Article rows the writers fight over
THREADS = 8
SECONDS = 3.0  # how long the writers run (bounded by ITERATIONS too)
ITERATIONS = 400  # per writer
MAX_ATTEMPTS = 200  # retries of one unit of work before a writer gives up

BOTH_STRATEGIES = pytest.mark.parametrize("strategy", ["validity", "subquery"])


# -- helpers -------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    """Whether a user would roll back and run the unit of work again."""
    if isinstance(exc, orm_exc.StaleDataError):
        return True  # the row was deleted by another writer meanwhile
    if isinstance(exc, sa.exc.IntegrityError):
        # Two writers re-inserting the same deleted id; a clash in a version table
        # would be our bug, so it is not retried.
        statement = exc.statement or ""
        return statement.lstrip().upper().startswith("INSERT INTO ARTICLE ")
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        if getattr(orig, "sqlstate", None) in ("40001", "40P01", "55P03"):
            return True  # PostgreSQL: serialization failure, deadlock, lock not available
        args = getattr(orig, "args", ())
        return bool(args) and args[0] in (1205, 1213)  # MySQL: lock wait timeout, deadlock
    return False


@dataclass
class Stats:
    commits: int = 0
    retries: int = 0
    #: retries by the kind of error that caused them.
    kinds: dict[str, int] = field(default_factory=dict)
    errors: list[BaseException] = field(default_factory=list)
    #: transaction id -> {article id: (operation, name, content)} it committed.
    committed: dict[int, dict[int, tuple[Operation, Any, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _run_threads(targets: list[Callable[[], None]], stats: Stats) -> None:
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a writer hung"
    if stats.errors:
        raise stats.errors[0]


@pytest.fixture
def pool_engine(db: Any) -> Iterator[sa.Engine]:
    """An engine of its own on the test database, with a connection per writer."""
    if db.name == "sqlite":
        yield db.engine
        return
    engine = sa.create_engine(db.engine.url, pool_size=THREADS + 2, max_overflow=4)
    yield engine
    engine.dispose()


def _history_problems(db: Any, strategy: str, pool: int = POOL) -> list[str]:
    """Every way the version history disagrees with the live table (empty: all good)."""
    live = {r["id"]: r for r in db.rows("article")}
    versions: dict[int, list[dict[str, Any]]] = {}
    for row in db.rows("article_version", order_by=["id", "transaction_id"]):
        versions.setdefault(row["id"], []).append(row)
    problems: list[str] = []
    for entity in sorted(set(versions) | set(live) | set(range(1, pool + 1))):
        history = versions.get(entity, [])
        if not history:
            problems.append(f"article {entity}: no versions")
            continue
        ops = [Operation(v["operation_type"]) for v in history]
        txs = [v["transaction_id"] for v in history]
        story = ", ".join(f"{v['transaction_id']}:{op.name}:{v['name']}"
                          for v, op in zip(history, ops, strict=True))
        for i, op in enumerate(ops):
            opens_life = i == 0 or ops[i - 1] is Operation.DELETE
            if opens_life != (op is Operation.INSERT):
                problems.append(f"article {entity}: version {txs[i]} is {op.name} ({story})")
        if strategy == "validity":
            ends = [v["end_transaction_id"] for v in history]
            if ends != [*txs[1:], None]:
                problems.append(
                    f"article {entity}: broken chain, end_transaction_ids {ends} "
                    f"for transaction_ids {txs} ({story})"
                )
        newest = history[-1]
        row = live.get(entity)
        if row is None:
            if ops[-1] is not Operation.DELETE:
                problems.append(f"article {entity}: deleted but newest is {ops[-1].name}")
        elif ops[-1] is Operation.DELETE or (newest["name"], newest["content"]) != (
            row["name"], row["content"]
        ):
            problems.append(
                f"article {entity}: newest version {newest['transaction_id']} "
                f"{ops[-1].name} {newest['name']!r} != live {row['name']!r} ({story})"
            )
    tx_ids = {t["id"] for t in db.rows("transaction")}
    used = {v["transaction_id"] for vs in versions.values() for v in vs}
    if used - tx_ids:
        problems.append(f"versions of missing transactions {sorted(used - tx_ids)}")
    if tx_ids - used:
        problems.append(f"transactions without versions {sorted(tx_ids - used)}")
    return problems


def _versions_by_transaction(db: Any) -> dict[int, dict[int, tuple[Operation, Any, Any]]]:
    out: dict[int, dict[int, tuple[Operation, Any, Any]]] = {}
    for v in db.rows("article_version"):
        out.setdefault(v["transaction_id"], {})[v["id"]] = (
            Operation(v["operation_type"]), v["name"], v["content"],
        )
    return out


def _seed(db: Any, Article: Any, pool: int = POOL) -> int:
    session = db.session()
    session.add_all([Article(id=i, name=f"seed-{i}", content="seed") for i in range(1, pool + 1)])
    session.flush()
    tx_id = db.manager.unit_of_work(session).transaction_id
    session.commit()
    session.close()
    assert tx_id is not None
    return tx_id


# -- 1. many writers on overlapping rows ------------------------------------------------


def _writer(
    engine: sa.Engine, manager: Any, Article: Any, number: int, deadline: float, stats: Stats,
    barrier: threading.Barrier,
) -> None:
    rng = random.Random(number)
    try:
        barrier.wait()
        with orm.Session(engine) as session:
            for iteration in range(ITERATIONS):
                if time.monotonic() > deadline:
                    break
                ids = rng.sample(range(1, POOL + 1), rng.choice((2, 3)))
                plan = {i: rng.random() for i in ids}  # < 0.12: delete, else update/insert
                for attempt in range(MAX_ATTEMPTS):
                    try:
                        # Read everything first, then change: one flush per transaction.
                        loaded = {
                            i: session.get(Article, i, with_for_update=plan[i] < 0.12 or None)
                            for i in ids
                        }
                        wrote: dict[int, tuple[Operation, Any, Any]] = {}
                        for i, obj in loaded.items():
                            name = f"w{number}-{iteration}-{attempt}-{i}"
                            content = f"c{rng.random()}"
                            if obj is None:
                                if plan[i] < 0.6:
                                    session.add(Article(id=i, name=name, content=content))
                                    wrote[i] = (Operation.INSERT, name, content)
                            elif plan[i] < 0.12:
                                wrote[i] = (Operation.DELETE, obj.name, obj.content)
                                session.delete(obj)
                            else:
                                obj.name, obj.content = name, content
                                wrote[i] = (Operation.UPDATE, name, content)
                        session.flush()
                        tx_id = manager.unit_of_work(session).transaction_id
                        session.commit()
                    except Exception as exc:
                        session.rollback()
                        if not _retryable(exc):
                            raise
                        kind = type(getattr(exc, "orig", None) or exc).__name__
                        with stats.lock:
                            stats.retries += 1
                            stats.kinds[kind] = stats.kinds.get(kind, 0) + 1
                        continue
                    with stats.lock:
                        stats.commits += 1
                        if wrote:
                            assert tx_id is not None
                            stats.committed[tx_id] = wrote
                    break
                else:
                    raise AssertionError(f"writer {number} retried {MAX_ATTEMPTS} times")
    except BaseException as exc:
        with stats.lock:
            stats.errors.append(exc)


@BOTH_STRATEGIES
@pytest.mark.parametrize("isolation", ["default", "strict"])
def test_writers_on_overlapping_rows_keep_every_history_whole(
    db, article_models, pool_engine, strategy, isolation
):
    """8 writers (1 on SQLite) update, delete and re-insert random overlapping rows."""
    Article = article_models()
    seed_tx = _seed(db, Article)
    engine = pool_engine
    if isolation == "strict":
        if db.name == "sqlite":
            pytest.skip("SQLite has one isolation level")
        level = "REPEATABLE READ" if db.name == "postgresql" else "READ COMMITTED"
        engine = pool_engine.execution_options(isolation_level=level)
    writers = 1 if db.name == "sqlite" else THREADS
    stats = Stats()
    barrier = threading.Barrier(writers)
    deadline = time.monotonic() + SECONDS
    _run_threads(
        [
            lambda n=n: _writer(engine, db.manager, Article, n, deadline, stats, barrier)
            for n in range(writers)
        ],
        stats,
    )
    print(
        f"{db.name}/{strategy}/{isolation}: {stats.commits} commits, "
        f"{stats.retries} retries {stats.kinds}"
    )
    assert stats.commits > writers

    assert _history_problems(db, strategy) == []
    # No version lost or duplicated: the version rows of each transaction are exactly
    # what it committed, and no transaction row exists beyond those.
    expected = dict(stats.committed)
    expected[seed_tx] = {
        i: (Operation.INSERT, f"seed-{i}", "seed") for i in range(1, POOL + 1)
    }
    assert _versions_by_transaction(db) == expected
    assert {t["id"] for t in db.rows("transaction")} == set(expected)


# -- 2. writers on disjoint rows: no cross-talk -----------------------------------------


@pytest.mark.dbs("postgresql", "mysql")
@BOTH_STRATEGIES
def test_writers_on_disjoint_rows_keep_their_own_state(db, article_models, pool_engine, strategy):
    Article = article_models()
    manager = db.manager
    per_thread, rounds = 3, 15
    stats = Stats()
    barrier = threading.Barrier(THREADS)
    info_keys: dict[int, set[str]] = {}

    def writer(number: int) -> None:
        ids = [number * per_thread + k + 1 for k in range(per_thread)]
        try:
            barrier.wait()
            with orm.Session(pool_engine) as session:
                for r in range(rounds):
                    for attempt in range(MAX_ATTEMPTS):
                        try:
                            wrote: dict[int, tuple[Operation, Any, Any]] = {}
                            for i in ids:
                                name, content = f"t{number}-r{r}-a{attempt}", f"{i}"
                                if r == 0:
                                    session.add(Article(id=i, name=name, content=content))
                                    wrote[i] = (Operation.INSERT, name, content)
                                else:
                                    obj = session.get(Article, i)
                                    obj.name = name
                                    wrote[i] = (Operation.UPDATE, name, content)
                            session.flush()
                            uow = manager.unit_of_work(session)
                            tx = uow.current_transaction
                            # The unit of work and its transaction belong to this session.
                            assert sa.inspect(tx).session is session
                            assert [v for v in session.info.values() if v is uow] == [uow]
                            info_keys.setdefault(number, set()).update(map(str, session.info))
                            tx_id = tx.id
                            session.commit()
                        except Exception as exc:
                            session.rollback()
                            if not _retryable(exc):
                                raise
                            with stats.lock:
                                stats.retries += 1
                            continue
                        # Nothing of the finished transaction stays behind.
                        assert not [k for k in session.info if "chronicle" in str(k)]
                        with stats.lock:
                            stats.commits += 1
                            stats.committed[tx_id] = wrote
                        break
        except BaseException as exc:
            with stats.lock:
                stats.errors.append(exc)

    _run_threads([lambda n=n: writer(n) for n in range(THREADS)], stats)
    print(f"{db.name}/{strategy}: {stats.commits} commits, {stats.retries} retries")

    assert stats.commits == THREADS * rounds
    # One transaction row per committed transaction, each holding exactly its
    # session's versions: no row of one thread carries another thread's id.
    assert _versions_by_transaction(db) == stats.committed
    assert {t["id"] for t in db.rows("transaction")} == set(stats.committed)
    assert _history_problems(db, strategy, pool=THREADS * per_thread) == []
    # Every session only ever held its own (single) unit of work key.
    assert all(len(keys) == 1 for keys in info_keys.values())


# -- 3. two sessions on one row ----------------------------------------------------------


def _wait_until_blocked(engine: sa.Engine, done: threading.Thread | None = None) -> None:
    """Return once some connection of this database waits for a row lock (or, when
    ``done`` is given, once that thread has finished without ever waiting)."""
    if engine.dialect.name == "postgresql":
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    else:
        # The lock requests waiting on a table of this database. (Joining innodb_trx to
        # the process list by thread id is not reliable: MariaDB's cached innodb_trx can
        # show the thread ids of earlier connections.)
        query = sa.text(
            "SELECT count(*) FROM information_schema.innodb_lock_waits w "
            "JOIN information_schema.innodb_locks l ON l.lock_id = w.requested_lock_id "
            "WHERE l.lock_table LIKE CONCAT('`', database(), '`.%')"
        )
    with engine.connect() as conn:
        for _ in range(400):  # a bounded wait for the other thread to reach the lock
            if conn.execute(query).scalar() or (done is not None and not done.is_alive()):
                return
            if engine.dialect.name != "postgresql" and _innodb_status_shows_a_wait(conn):
                return
            conn.rollback()
            time.sleep(0.025)
    raise AssertionError("the second session never blocked on the row lock")


def _innodb_status_shows_a_wait(conn: sa.Connection) -> bool:
    """Whether ``SHOW ENGINE INNODB STATUS`` lists a lock wait on a table of this
    database (MariaDB's ``information_schema`` lock tables sometimes miss one: a
    transaction that wrote before it waited was seen missing from ``innodb_trx``)."""
    database = conn.scalar(sa.text("SELECT database()"))
    status = conn.exec_driver_sql("SHOW ENGINE INNODB STATUS").one()[-1]
    waits = status.split("TRX HAS BEEN WAITING")[1:]
    return any(f"of table `{database}`." in wait.split("------------------")[0] for wait in waits)


@pytest.mark.dbs("postgresql", "mysql")
@BOTH_STRATEGIES
def test_second_writer_of_a_row_waits_and_chains_after_the_first(
    db, article_models, pool_engine, strategy
):
    Article = article_models()
    _seed(db, Article, pool=1)
    a = orm.Session(pool_engine)
    b = orm.Session(pool_engine)
    b_article = b.get(Article, 1)  # B reads before A changes anything
    b.rollback()
    a.get(Article, 1).name = "by A"
    a.flush()  # A holds the row lock now
    stats = Stats()
    reached = threading.Event()

    def second() -> None:
        try:
            b_article.name = "by B"
            reached.set()
            b.commit()  # blocks on A's lock until A commits
        except BaseException as exc:
            stats.errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        assert reached.wait(30)
        _wait_until_blocked(pool_engine)
        a.commit()
    finally:
        thread.join(timeout=60)
        a.close()
    assert not thread.is_alive()
    b.close()
    if stats.errors:
        raise stats.errors[0]

    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["name"], Operation(r["operation_type"])) for r in rows] == [
        ("seed-1", Operation.INSERT), ("by A", Operation.UPDATE), ("by B", Operation.UPDATE),
    ]
    assert db.rows("article")[0]["name"] == "by B"
    assert _history_problems(db, strategy, pool=1) == []
    assert len(db.rows("transaction")) == 3


# -- transaction ids allocated out of commit order ---------------------------------------
# A took its id at an early flush; B, with a larger id, versions row 1 and commits; when A
# then changes row 1 the library moves A to a new id, so row 1's history stays in order.
# (SQLite has a single writer: B could not write while A's transaction is open.)


@pytest.mark.dbs("postgresql", "mysql")
@BOTH_STRATEGIES
def test_early_flush_then_update_of_a_row_committed_meanwhile(db, article_models, strategy):
    Article = article_models()
    _seed(db, Article, pool=3)
    a, b = db.session(), db.session()
    # Row 2, next to row 1: A's version writes lock no gap where B's version of row 1
    # goes (on MariaDB they lock by whole key; see the deadlock tests below).
    a.get(Article, 2).name = "2 by A"
    a.flush()  # A's transaction row (and id) is written here
    b.get(Article, 1).name = "1 by B"
    b.commit()  # B gets a larger id, and commits first
    a.get(Article, 1).name = "1 by A"
    a.commit()  # A overwrites B's change: the live row is A's

    assert db.rows("article")[0]["name"] == "1 by A"
    assert _history_problems(db, strategy, pool=3) == []


@BOTH_STRATEGIES
@pytest.mark.dbs("postgresql", "mysql")
def test_early_flush_then_delete_of_a_row_committed_meanwhile(db, article_models, strategy):
    Article = article_models()
    _seed(db, Article, pool=3)
    a, b = db.session(), db.session()
    a.get(Article, 3).name = "3 by A"
    a.flush()
    b.get(Article, 1).name = "1 by B"
    b.commit()
    a.delete(a.get(Article, 1))
    a.commit()

    assert [r["id"] for r in db.rows("article")] == [2, 3]
    assert _history_problems(db, strategy, pool=3) == []


# -- a delete that matched no row ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore:DELETE statement on table 'article' expected to delete")
@BOTH_STRATEGIES
def test_delete_of_a_row_deleted_meanwhile_writes_no_version(db, article_models, strategy):
    Article = article_models()
    _seed(db, Article, pool=1)
    a, b = db.session(), db.session()
    stale = a.get(Article, 1)
    b.delete(b.get(Article, 1))
    b.commit()
    a.delete(stale)
    a.commit()  # SQLAlchemy only warns: the row was already gone

    rows = db.rows("article_version", order_by="transaction_id")
    assert [Operation(r["operation_type"]) for r in rows] == [
        Operation.INSERT, Operation.DELETE,
    ]
    assert _history_problems(db, strategy, pool=1) == []


@pytest.mark.filterwarnings("ignore:DELETE statement on table 'article' expected to delete")
@BOTH_STRATEGIES
def test_delete_of_a_row_deleted_meanwhile_beside_another_versions_the_other(
    db, article_models, strategy
):
    """One flush deletes a row another session deleted first and a row still there: the
    second gets its DELETE version, under a transaction row that stays."""
    Article = article_models()
    _seed(db, Article, pool=2)
    a, b = db.session(), db.session()
    stale, live = a.get(Article, 1), a.get(Article, 2)
    b.delete(b.get(Article, 1))
    b.commit()
    a.delete(stale)
    a.delete(live)
    a.commit()

    txs = [r["id"] for r in db.rows("transaction")]
    deletes = [(r["id"], r["transaction_id"]) for r in db.rows("article_version")
               if r["operation_type"] == Operation.DELETE]
    assert sorted(deletes) == [(1, txs[1]), (2, txs[2])]
    assert _history_problems(db, strategy, pool=2) == []


# -- MariaDB: versioning must not make writers of different rows wait for each other ---


class Deadlock(Exception):
    """A session of the test was chosen as a deadlock victim."""


@pytest.mark.dbs("mysql")
def test_writers_of_different_rows_do_not_deadlock_on_the_version_table(
    db, article_models, pool_engine
):
    Article = article_models()
    _seed(db, Article, pool=2)
    a = orm.Session(pool_engine)
    b = orm.Session(pool_engine)
    b_article = b.get(Article, 1)
    a.get(Article, 2).name = "2 by A"
    a.flush()  # A versions row 2
    a_article = a.get(Article, 1)

    def b_work() -> None:
        b_article.name = "1 by B"
        b.commit()  # without versioning this never waits for A

    def a_work() -> None:
        # The closing UPDATE locks only the versions it closes (by their whole key), so
        # B commits without waiting for A; a prefix UPDATE's next-key locks on
        # article_version made B wait here and A then deadlock on B.
        a_article.name = "1 by A"
        a.commit()  # A waits for B's lock on row 1: a cycle, one of them is killed

    _a_after_b_waits(pool_engine, a, b, b_work, a_work)
    assert _history_problems(db, "validity", pool=2) == []


def _b_commits_while_a_waits_for_b(
    db: Any, pool_engine: sa.Engine, Article: Any, a: orm.Session, b_row: int, a_row: int
) -> None:
    """B updates ``b_row`` and commits in a thread, while A holds what its writes so far
    locked; then A updates ``a_row``, which B holds until it commits.

    Without versioning B never waits for A here. If a version statement of A locked a gap
    of the version table where B's version goes, B waits for A and A then waits for B: a
    deadlock (raised as :class:`Deadlock`); a lock wait timeout fails the test too.
    """
    b = orm.Session(pool_engine)
    b_article = b.get(Article, b_row)
    a_article = a.get(Article, a_row)

    def b_work() -> None:
        b_article.name = f"{b_row} by B"
        b.commit()

    def a_work() -> None:
        a_article.name = f"{a_row} by A"
        a.commit()

    _a_after_b_waits(pool_engine, a, b, b_work, a_work)


def _a_after_b_waits(
    pool_engine: sa.Engine,
    a: orm.Session,
    b: orm.Session,
    b_work: Callable[[], None],
    a_work: Callable[[], None],
) -> None:
    """Run ``b_work`` in a thread until it waits for a lock, then ``a_work``; raise
    :class:`Deadlock` if the database chose one of them as a deadlock victim, and
    fail on any other error of either."""
    errors: list[BaseException] = []

    def second() -> None:
        try:
            b_work()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    try:
        _wait_until_blocked(pool_engine, done=thread)
        a_work()
    except sa.exc.OperationalError as exc:
        errors.append(exc)
        a.rollback()
    finally:
        thread.join(timeout=60)
        a.close()
        b.close()
    assert not thread.is_alive()
    deadlocks = [
        e for e in errors
        if isinstance(e, sa.exc.DBAPIError) and e.orig is not None and e.orig.args[0] == 1213
    ]
    if deadlocks:
        raise Deadlock(str(deadlocks[0].orig))
    assert errors == []


@pytest.mark.dbs("mysql")
def test_a_row_changed_in_two_flushes_does_not_lock_other_writers_out(
    db, article_models, pool_engine
):
    # A's second flush replaces the version its first one wrote for row 3. Found through
    # the transaction_id index, that DELETE locked the gap after A's id there, where every
    # newer transaction's versions go.
    Article = article_models()
    _seed(db, Article, pool=3)
    a = orm.Session(pool_engine)
    a.get(Article, 3).name = "3 by A"
    a.flush()
    a.get(Article, 3).content = "again"
    a.flush()
    _b_commits_while_a_waits_for_b(db, pool_engine, Article, a, b_row=1, a_row=1)
    rows = db.rows("article_version", order_by=["id", "transaction_id"])
    assert [(r["id"], r["name"], r["content"]) for r in rows if r["id"] in (1, 3)] == [
        (1, "seed-1", "seed"), (1, "1 by B", "seed"), (1, "1 by A", "seed"),
        (3, "seed-3", "seed"), (3, "3 by A", "again"),
    ]
    assert _history_problems(db, "validity", pool=3) == []


@pytest.mark.dbs("mysql")
def test_a_row_updated_then_deleted_does_not_lock_other_writers_out(
    db, article_models, pool_engine
):
    # A's second flush turns its version of row 3 into a DELETE: the same gap, through the
    # same index, as the DELETE above.
    Article = article_models()
    _seed(db, Article, pool=3)
    a = orm.Session(pool_engine)
    a.get(Article, 3).name = "3 by A"
    a.flush()
    a.delete(a.get(Article, 3))
    a.flush()
    _b_commits_while_a_waits_for_b(db, pool_engine, Article, a, b_row=1, a_row=1)
    rows = db.rows("article_version", order_by=["id", "transaction_id"])
    assert [(r["id"], Operation(r["operation_type"])) for r in rows if r["id"] == 3] == [
        (3, Operation.INSERT), (3, Operation.DELETE),
    ]
    assert _history_problems(db, "validity", pool=3) == []


@pytest.mark.dbs("mysql")
def test_a_delete_does_not_lock_the_neighbouring_rows_versions(db, article_models, pool_engine):
    # The DELETE version of row 2 copies its last version. Read by a key prefix (a locking
    # read in an INSERT ... SELECT), that locked the gap before row 2's versions, where
    # row 1's next version goes.
    Article = article_models()
    _seed(db, Article, pool=3)
    a = orm.Session(pool_engine)
    a.delete(a.get(Article, 2))
    a.flush()
    _b_commits_while_a_waits_for_b(db, pool_engine, Article, a, b_row=1, a_row=1)
    assert [r["id"] for r in db.rows("article")] == [1, 3]
    assert _history_problems(db, "validity", pool=3) == []


@pytest.mark.dbs("mysql")
@pytest.mark.parametrize("commits_meanwhile", [1, 2])
@pytest.mark.parametrize("change", ["update", "delete"])
def test_closing_a_version_closed_after_the_snapshot_locks_no_gap(
    db, article_models, pool_engine, commits_meanwhile, change
):
    # A's snapshot sees row 2's first version open, but C closed it (and maybe the next)
    # after A's snapshot was taken. A follows the chain to the open version by whole keys;
    # the prefix UPDATE it ran instead locked the gap before row 2's versions, where
    # row 1's next version goes.
    Article = article_models()
    _seed(db, Article, pool=3)
    a = orm.Session(pool_engine)
    a.get(Article, 3)  # A's snapshot (MariaDB) is taken here
    for n in range(commits_meanwhile):
        with orm.Session(pool_engine) as c:
            c.get(Article, 2).name = f"2 by C{n}"
            c.commit()
    if change == "update":
        a.get(Article, 2).content = "content by A"
    else:
        a.delete(a.get(Article, 2))
    a.flush()
    _b_commits_while_a_waits_for_b(db, pool_engine, Article, a, b_row=1, a_row=1)
    rows = db.rows("article_version", order_by=["id", "transaction_id"])
    story = [(r["name"], Operation(r["operation_type"])) for r in rows if r["id"] == 2]
    last = f"2 by C{commits_meanwhile - 1}"
    if change == "update":
        assert story[-1] == (last, Operation.UPDATE)
        assert db.rows("article")[1]["content"] == "content by A"
    else:
        assert story[-1] == (last, Operation.DELETE)
    assert len(story) == commits_meanwhile + 2
    assert _history_problems(db, "validity", pool=3) == []


@pytest.mark.dbs("mysql")
def test_an_insert_does_not_lock_the_previous_rows_versions(db, article_models, pool_engine):
    Article = article_models()
    _seed(db, Article, pool=3)
    a = orm.Session(pool_engine)
    a.add(Article(id=4, name="4 by A"))
    a.flush()
    _b_commits_while_a_waits_for_b(db, pool_engine, Article, a, b_row=3, a_row=3)
    assert _history_problems(db, "validity", pool=4) == []


@pytest.mark.dbs("mysql")
@pytest.mark.parametrize("deleted", ["before A's snapshot", "after A's snapshot"])
def test_an_insert_again_closes_the_delete_it_follows_and_locks_no_gap(
    db, article_models, pool_engine, deleted
):
    # Row 4 was deleted; A inserts it again and must close its open DELETE version, also
    # when C deleted it after A's snapshot was taken (A's snapshot then shows row 4's
    # last version as an open UPDATE, or no version at all). Closing by a current read
    # of row 4's key prefix locked the gap where row 3's next version goes.
    Article = article_models()
    _seed(db, Article, pool=4)
    with orm.Session(pool_engine) as c:
        c.get(Article, 4).name = "4 by C"
        c.commit()

    def c_deletes_row_4() -> None:
        with orm.Session(pool_engine) as c:
            c.delete(c.get(Article, 4))
            c.commit()

    a = orm.Session(pool_engine)
    if deleted == "before A's snapshot":
        c_deletes_row_4()
        a.get(Article, 1)  # A's snapshot (MariaDB) is taken here
    else:
        a.get(Article, 1)
        c_deletes_row_4()
    a.add(Article(id=4, name="4 by A"))
    a.flush()
    _b_commits_while_a_waits_for_b(db, pool_engine, Article, a, b_row=3, a_row=3)
    rows = db.rows("article_version", order_by=["id", "transaction_id"])
    story = [
        (r["name"], Operation(r["operation_type"]), r["end_transaction_id"] is None)
        for r in rows if r["id"] == 4
    ]
    assert story == [
        ("seed-4", Operation.INSERT, False),
        ("4 by C", Operation.UPDATE, False),
        ("4 by C", Operation.DELETE, False),
        ("4 by A", Operation.INSERT, True),
    ]
    assert _history_problems(db, "validity", pool=4) == []


@pytest.mark.dbs("mysql")
@pytest.mark.parametrize("strategy", ["subquery"])  # it looks for newer writers every flush
def test_looking_for_newer_writers_does_not_wait_for_their_other_rows(
    db, article_models, pool_engine, strategy
):
    # A later flush of A asks whether a transaction with a larger id versioned its rows
    # meanwhile. As a locking read it went through the transaction_id index (the rows
    # newer than A are few, each entity's versions many) and waited for B's uncommitted
    # version of another row, while B waited for A's row 2: a deadlock (seen in the soak).
    Article = article_models()
    _seed(db, Article, pool=3)
    with orm.Session(pool_engine) as s:
        for n in range(30):
            for article in s.scalars(sa.select(Article)):
                article.content = f"edit {n}"
            s.commit()
    with pool_engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE TABLE article_version").all()
    a = orm.Session(pool_engine)
    a.get(Article, 2).name = "2 by A"
    a.flush()  # A's id is taken; A holds row 2
    b = orm.Session(pool_engine)

    def b_work() -> None:
        b.get(Article, 3).name = "3 by B"
        b.flush()  # a newer id; B's version of row 3 is not committed
        b.get(Article, 2).name = "2 by B"
        b.commit()  # waits for A

    def a_work() -> None:
        a.get(Article, 1).name = "1 by A"
        a.commit()

    _a_after_b_waits(pool_engine, a, b, b_work, a_work)
    names = {r["id"]: r["name"] for r in db.rows("article")}
    assert names == {1: "1 by A", 2: "2 by B", 3: "3 by B"}
    assert _history_problems(db, "subquery", pool=3) == []


# -- REPEATABLE READ snapshots do not leak stale values into versions ---------------------


@pytest.mark.dbs("postgresql", "mysql")
@BOTH_STRATEGIES
def test_delete_copies_the_latest_committed_version_despite_an_older_snapshot(
    db, article_models, strategy
):
    Article = article_models()
    _seed(db, Article, pool=3)
    a, b = db.session(), db.session()
    stale = a.get(Article, 3)  # A's snapshot (MariaDB) is taken here
    b.get(Article, 3).name = "3 by B"
    b.commit()
    a.delete(stale)
    a.commit()
    rows = db.rows("article_version", order_by="transaction_id")
    rows = [(r["name"], Operation(r["operation_type"])) for r in rows if r["id"] == 3]
    assert rows == [
        ("seed-3", Operation.INSERT), ("3 by B", Operation.UPDATE), ("3 by B", Operation.DELETE),
    ]
    assert _history_problems(db, strategy, pool=3) == []


@pytest.mark.dbs("postgresql", "mysql")
@BOTH_STRATEGIES
def test_update_after_an_older_snapshot_versions_the_live_row(db, article_models, strategy):
    Article = article_models()
    _seed(db, Article, pool=3)
    a, b = db.session(), db.session()
    stale = a.get(Article, 3)  # A's snapshot (MariaDB) is taken here
    b.get(Article, 3).name = "3 by B"
    b.commit()
    stale.content = "content by A"  # only this column is written by A's UPDATE
    a.commit()
    live = db.rows("article")[2]
    assert (live["name"], live["content"]) == ("3 by B", "content by A")
    assert _history_problems(db, strategy, pool=3) == []
