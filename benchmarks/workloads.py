"""The workloads: what is timed, and how each result is checked.

A workload prepares the database (untimed), runs the timed part, then checks the
result, so that a broken variant cannot look fast: the version rows (their number,
operation types and values) for a versioned variant, the live rows for all.

Each workload names the variants it measures. The first is the baseline the
ratios are taken against: ``plain`` is plain SQLAlchemy without versioning, or, for
the reads, one hand-written SQL query doing the same work on the same tables.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import orm

from benchmarks.models import Models

INSERT, UPDATE, DELETE = 0, 1, 2
COMMIT_EVERY = 100
VERSIONS = 10  # versions per object in the read and revert workloads

# Hand-written SQL of the read workloads (the baseline the ORM reads are compared with).
HISTORY_SQL = sa.text(
    "SELECT id, name, author, content, views, transaction_id, end_transaction_id,"
    " operation_type FROM article_version WHERE id IN :ids ORDER BY id, transaction_id"
).bindparams(sa.bindparam("ids", expanding=True))
AS_OF_SQL = sa.text(
    "SELECT id, name, author, content, views, transaction_id, end_transaction_id,"
    " operation_type FROM article_version WHERE id IN :ids AND transaction_id <= :tx"
    " AND (end_transaction_id IS NULL OR end_transaction_id > :tx) ORDER BY id"
).bindparams(sa.bindparam("ids", expanding=True))


class CheckFailed(Exception):
    """The workload's result is wrong: the measurement does not count."""


def ensure(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class Sizes:
    rows: int = 2000  # insert / update / no-op update / delete
    bulk: int = 50_000  # one transaction of inserts
    objects: int = 500  # objects of the read and revert workloads

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rows=400, bulk=5000, objects=100)


@dataclass
class Context:
    models: Models
    engine: sa.Engine
    sizes: Sizes
    Session: orm.sessionmaker[orm.Session] = field(init=False)
    #: What setup() prepared for run() and check().
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.Session = orm.sessionmaker(self.engine)


def values(i: int, version: int = 0) -> dict[str, Any]:
    """The column values of article number ``i`` at its ``version``."""
    return {
        "name": f"Article {i} v{version}",
        "author": f"Author {i % 97}",
        "content": f"Body of article {i}, version {version}. " + "Lorem ipsum dolor sit amet. " * 6,
        "views": i * 10 + version,
    }


def chunks(items: Sequence[Any], size: int = COMMIT_EVERY) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# -- shared preparation and checks -----------------------------------------------------

def insert_articles(ctx: Context, count: int) -> list[int]:
    """Insert ``count`` articles in one transaction (versioned if the variant is); their ids."""
    article = ctx.models.Article
    with ctx.Session() as session:
        objs = [article(**values(i)) for i in range(count)]
        session.add_all(objs)
        session.commit()
        return [o.id for o in objs]


def live_rows(conn: sa.Connection) -> dict[int, tuple[Any, ...]]:
    rows = conn.execute(sa.text("SELECT id, name, author, content, views FROM article"))
    return {r[0]: tuple(r[1:]) for r in rows}


def version_rows(conn: sa.Connection) -> list[Any]:
    return list(conn.execute(sa.text(
        "SELECT id, name, author, content, views, transaction_id, end_transaction_id,"
        " operation_type FROM article_version ORDER BY id, transaction_id"
    )))


def transaction_count(conn: sa.Connection) -> int:
    return int(conn.execute(sa.text('SELECT count(*) FROM "transaction"')).scalar_one())


def check_history(
    ctx: Context, ops: dict[int, int], transactions: int
) -> tuple[dict[int, tuple[Any, ...]], list[Any]]:
    """Check the version tables against the live table; return (live, versions).

    ``ops`` is the expected number of version rows per operation type. Every entity
    has at most one open version (validity strategy); the open version of a live row
    holds its values; every closed version is closed by the next one.
    """
    with ctx.engine.connect() as conn:
        live = live_rows(conn)
        if not ctx.models.versioned:
            return live, []
        versions = version_rows(conn)
        ensure(transaction_count(conn) == transactions,
               f"{transaction_count(conn)} transaction rows, expected {transactions}")
    found: dict[int, int] = defaultdict(int)
    for v in versions:
        found[v.operation_type] += 1
    ensure(dict(found) == {k: n for k, n in ops.items() if n},
           f"version rows by operation {dict(found)}, expected {ops}")
    by_id: dict[int, list[Any]] = defaultdict(list)
    for v in versions:
        by_id[v.id].append(v)
    for key, history in by_id.items():
        for older, newer in itertools.pairwise(history):
            ensure(older.end_transaction_id == newer.transaction_id,
                   f"version of id {key} at {older.transaction_id} is not closed by the next")
        last = history[-1]
        ensure(last.end_transaction_id is None, f"last version of id {key} is closed")
        if last.operation_type == DELETE:
            ensure(key not in live, f"id {key} is live but its last version is a DELETE")
            if len(history) > 1:
                ensure(tuple(last[1:5]) == tuple(history[-2][1:5]),
                       f"DELETE version of id {key} does not hold the last values")
        else:
            ensure(live.get(key) == tuple(last[1:5]), f"last version of id {key} != live row")
    ensure(set(live) <= set(by_id), "a live row has no version")
    return live, versions


# -- workloads -------------------------------------------------------------------------

class Workload:
    name: ClassVar[str]
    title: ClassVar[str]
    variants: ClassVar[tuple[str, ...]] = ("plain", "chronicle", "continuum")
    #: Why the workload is skipped (a feature that does not exist yet), or None.
    skip: ClassVar[str | None] = None
    #: Target: at most this ratio of the chronicle median to the baseline's.
    target: ClassVar[float | None] = None
    #: Peak-memory target (ratio of max RSS growth), for workloads that measure it.
    memory_target: ClassVar[float | None] = None
    #: Reads: the chronicle variant must run as many queries as the baseline.
    constant_queries: ClassVar[bool] = False

    def models_for(self, variant: str) -> str:
        """Which models the process defines for ``variant``."""
        return variant

    def setup(self, ctx: Context) -> None:
        """Prepare the database (not timed)."""

    def warmup(self, ctx: Context) -> None:
        """Untimed, after setup: bring the statement caches to a steady state."""

    def run(self, ctx: Context) -> None:
        raise NotImplementedError

    def check(self, ctx: Context) -> None:
        raise NotImplementedError


class Insert(Workload):
    name = "insert"
    title = "insert N rows, commit every 100"
    target = 1.5

    def run(self, ctx: Context) -> None:
        article = ctx.models.Article
        n = ctx.sizes.rows
        with ctx.Session() as session:
            for batch in chunks(range(n)):
                session.add_all([article(**values(i)) for i in batch])
                session.commit()

    def check(self, ctx: Context) -> None:
        n = ctx.sizes.rows
        live, _ = check_history(ctx, {INSERT: n}, math.ceil(n / COMMIT_EVERY))
        ensure(len(live) == n, f"{len(live)} live rows, expected {n}")
        ensure(sorted(v[0] for v in live.values()) == sorted(values(i)["name"] for i in range(n)),
               "live names differ")


class _OnInserted(Workload):
    """Workloads that start from N versioned rows, inserted in one transaction."""

    def setup(self, ctx: Context) -> None:
        ctx.data["ids"] = sorted(insert_articles(ctx, ctx.sizes.rows))


class Update(_OnInserted):
    name = "update"
    title = "update 2 columns of N rows, commit every 100"
    target = 1.5

    def run(self, ctx: Context) -> None:
        article = ctx.models.Article
        with ctx.Session() as session:
            for batch in chunks(ctx.data["ids"]):
                for obj in session.scalars(sa.select(article).where(article.id.in_(batch))):
                    obj.name = obj.name + " (edited)"
                    obj.views = obj.views + 1
                session.commit()

    def check(self, ctx: Context) -> None:
        n = ctx.sizes.rows
        live, _ = check_history(ctx, {INSERT: n, UPDATE: n}, 1 + math.ceil(n / COMMIT_EVERY))
        ensure(len(live) == n and all(v[0].endswith(" (edited)") for v in live.values()),
               "live rows were not all updated")


class NoOpUpdate(_OnInserted):
    name = "noop_update"
    title = "no-op update (assign equal values) of N rows, commit every 100"
    target = 1.2

    def run(self, ctx: Context) -> None:
        article = ctx.models.Article
        with ctx.Session() as session:
            for batch in chunks(ctx.data["ids"]):
                for obj in session.scalars(sa.select(article).where(article.id.in_(batch))):
                    obj.name = (obj.name + "!")[:-1]  # an equal value, but a new object
                    obj.views = int(str(obj.views))
                session.commit()

    def check(self, ctx: Context) -> None:
        n = ctx.sizes.rows
        live, _ = check_history(ctx, {INSERT: n}, 1)
        ensure(sorted(v[0] for v in live.values()) == sorted(values(i)["name"] for i in range(n)),
               "live rows changed")


class Delete(_OnInserted):
    name = "delete"
    title = "delete N rows, commit every 100"
    target = 1.5

    def run(self, ctx: Context) -> None:
        article = ctx.models.Article
        with ctx.Session() as session:
            for batch in chunks(ctx.data["ids"]):
                for obj in session.scalars(sa.select(article).where(article.id.in_(batch))):
                    session.delete(obj)
                session.commit()

    def check(self, ctx: Context) -> None:
        n = ctx.sizes.rows
        live, _ = check_history(ctx, {INSERT: n, DELETE: n}, 1 + math.ceil(n / COMMIT_EVERY))
        ensure(not live, f"{len(live)} rows left")


class BulkInsert(Workload):
    name = "bulk_insert"
    title = "one transaction inserting 50,000 rows"
    target = 1.6
    memory_target = 1.3

    def run(self, ctx: Context) -> None:
        article = ctx.models.Article
        with ctx.Session() as session:
            session.add_all([article(**values(i)) for i in range(ctx.sizes.bulk)])
            session.commit()

    def check(self, ctx: Context) -> None:
        n = ctx.sizes.bulk
        live, _ = check_history(ctx, {INSERT: n}, 1)
        ensure(len(live) == n, f"{len(live)} live rows, expected {n}")


class _WithHistory(Workload):
    """Workloads that start from ``objects`` articles with 10 versions each.

    The plain variant of a read defines the chronicle models, so that its
    hand-written SQL reads the very same tables and rows.
    """

    def models_for(self, variant: str) -> str:
        return "chronicle" if variant == "plain" else variant

    def setup(self, ctx: Context) -> None:
        article = ctx.models.Article
        ids = sorted(insert_articles(ctx, ctx.sizes.objects))
        index = {key: i for i, key in enumerate(ids)}  # insert_articles used values(i)
        with ctx.Session() as session:
            for version in range(1, VERSIONS):
                for obj in session.scalars(sa.select(article).where(article.id.in_(ids))):
                    for key, value in values(index[obj.id], version).items():
                        setattr(obj, key, value)
                session.commit()
        with ctx.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("ANALYZE")
            txs = []
            if ctx.models.versioned:
                rows = conn.execute(sa.text('SELECT id FROM "transaction" ORDER BY id'))
                txs = [r[0] for r in rows]
        ctx.data.update(ids=ids, index=index, transactions=txs)

    def warmup(self, ctx: Context) -> None:
        if self.name != "revert":  # reads only: running them twice changes nothing
            self.run(ctx)
            ctx.data.pop("result", None)

    def _histories_ok(self, ctx: Context, rows: list[Any], label: str) -> None:
        by_id: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_id[row.id].append(row)
        ensure(len(by_id) == len(ctx.data["ids"]), f"{label}: {len(by_id)} histories")
        index = ctx.data["index"]
        for key, history in by_id.items():
            ensure([h.name for h in history] == [values(index[key], v)["name"]
                                                 for v in range(VERSIONS)],
                   f"{label}: wrong history for id {key}")
            ensure([h.operation_type for h in history] == [INSERT] + [UPDATE] * (VERSIONS - 1),
                   f"{label}: wrong operation types for id {key}")


class History(_WithHistory):
    name = "history"
    title = "full history of 500 objects x 10 versions, one query"
    target = 3.0
    constant_queries = True

    def run(self, ctx: Context) -> None:
        ids = ctx.data["ids"]
        with ctx.Session() as session:
            if ctx.models.variant == "plain":
                ctx.data["result"] = session.execute(HISTORY_SQL, {"ids": ids}).all()
            else:
                version = ctx.models.ArticleVersion
                stmt = (
                    sa.select(version)
                    .where(version.id.in_(ids))
                    .order_by(version.id, version.transaction_id)
                )
                ctx.data["result"] = session.scalars(stmt).all()

    def check(self, ctx: Context) -> None:
        self._histories_ok(ctx, ctx.data["result"], self.name)


class HistoryPerObject(_WithHistory):
    name = "history_api"
    title = "full history of 500 objects through `article.versions`"
    target = 3.0
    constant_queries = True

    def run(self, ctx: Context) -> None:
        ids = ctx.data["ids"]
        with ctx.Session() as session:
            if ctx.models.variant == "plain":
                ctx.data["result"] = session.execute(HISTORY_SQL, {"ids": ids}).all()
                return
            article = ctx.models.Article
            result = []
            for obj in session.scalars(sa.select(article).where(article.id.in_(ids))):
                result.extend(obj.versions.all())
            ctx.data["result"] = result

    def check(self, ctx: Context) -> None:
        self._histories_ok(ctx, ctx.data["result"], self.name)


class _AsOf(_WithHistory):
    def target_tx(self, ctx: Context) -> int:
        return int(ctx.data["transactions"][4])  # the 5th version: values(i, 4)

    def check(self, ctx: Context) -> None:
        rows = ctx.data["result"]
        ids, index = ctx.data["ids"], ctx.data["index"]
        ensure(sorted(r.id for r in rows) == ids, f"{self.name}: {len(rows)} versions")
        for r in rows:
            ensure(r.name == values(index[r.id], 4)["name"], f"{self.name}: wrong version {r.id}")


class AsOf(_AsOf):
    name = "as_of"
    title = "version of 500 objects valid at a transaction, one query"
    target = 3.0
    constant_queries = True

    def run(self, ctx: Context) -> None:
        ids, tx = ctx.data["ids"], self.target_tx(ctx)
        with ctx.Session() as session:
            if ctx.models.variant == "plain":
                ctx.data["result"] = session.execute(AS_OF_SQL, {"ids": ids, "tx": tx}).all()
                return
            version = ctx.models.ArticleVersion
            stmt = sa.select(version).where(
                version.id.in_(ids),
                version.transaction_id <= tx,
                sa.or_(version.end_transaction_id.is_(None), version.end_transaction_id > tx),
            ).order_by(version.id)
            ctx.data["result"] = session.scalars(stmt).all()


class AsOfPerObject(_AsOf):
    name = "as_of_api"
    title = "version of 500 objects valid at a transaction through `version_at()`"
    variants = ("plain", "chronicle")  # Continuum has no such call
    target = 3.0
    constant_queries = True

    def run(self, ctx: Context) -> None:
        ids, tx = ctx.data["ids"], self.target_tx(ctx)
        with ctx.Session() as session:
            if ctx.models.variant == "plain":
                ctx.data["result"] = session.execute(AS_OF_SQL, {"ids": ids, "tx": tx}).all()
                return
            version = ctx.models.ArticleVersion
            ctx.data["result"] = [version.version_at(session, key, tx) for key in ids]


class Revert(_WithHistory):
    name = "revert"
    title = "revert 500 objects to their first version, one commit"

    def models_for(self, variant: str) -> str:
        return variant  # plain: assign the first values with plain SQLAlchemy

    def run(self, ctx: Context) -> None:
        article = ctx.models.Article
        ids, index = ctx.data["ids"], ctx.data["index"]
        with ctx.Session() as session:
            objs = session.scalars(sa.select(article).where(article.id.in_(ids))).all()
            if ctx.models.variant == "plain":
                for obj in objs:
                    for key, value in values(index[obj.id], 0).items():
                        setattr(obj, key, value)
            else:
                version = ctx.models.ArticleVersion
                stmt = sa.select(version).where(
                    version.id.in_(ids), version.operation_type == INSERT
                )
                for first in session.scalars(stmt):
                    first.revert()
            session.commit()

    def check(self, ctx: Context) -> None:
        n = ctx.sizes.objects
        live, _ = check_history(ctx, {INSERT: n, UPDATE: n * VERSIONS}, VERSIONS + 1)
        index = ctx.data["index"]
        ensure(all(row == tuple(values(index[key], 0).values()) for key, row in live.items()),
               "live rows are not back at their first version")


class _NotYet(Workload):
    def run(self, ctx: Context) -> None:  # pragma: no cover - never run
        raise RuntimeError(f"{self.name} is skipped: {self.skip}")

    check = run


class TagsTemporal(_NotYet):
    # TODO(temporal relationships): articles with tags (many-to-many through a versioned
    # association table); time reading 500 articles' tags as of a transaction. Write it
    # when temporal relationships land; until then it is skipped, not faked.
    name = "tags_temporal"
    title = "TODO: articles with tags through temporal relationships"
    skip = "temporal relationships are not implemented yet"


class BulkUpdateStatement(_NotYet):
    # TODO(ORM bulk statements): `session.execute(update(Article).where(...).values(...))`
    # with versions captured by capture/statements (do_orm_execute).
    name = "bulk_update_stmt"
    title = "TODO: ORM bulk update() statement"
    skip = "capture of ORM bulk update()/delete() statements is not implemented yet"


class NativeCapture(_NotYet):
    # TODO(native capture): the insert/update/delete workloads with the PostgreSQL
    # trigger backend (native_versioning=True) as a fourth variant.
    name = "native_capture"
    title = "TODO: PostgreSQL trigger capture"
    skip = "the native (trigger) capture backend is not implemented yet"


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Insert(), Update(), NoOpUpdate(), Delete(), BulkInsert(), History(), HistoryPerObject(),
        AsOf(), AsOfPerObject(), Revert(), TagsTemporal(), BulkUpdateStatement(), NativeCapture(),
    )
}
