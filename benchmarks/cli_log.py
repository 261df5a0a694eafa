"""``chronicle log`` on a large version table: ``python -m benchmarks.cli_log``.

Builds (once; ``--keep`` leaves it for the next run) a history on PostgreSQL with
chronicle's own tables and indexes (``benchmarks/models.py``, the ``chronicle``
variant): ``--rows`` version rows (default 10,000,000) in ``article_version``, ten per
transaction, ``--rows / 10`` entities with ten versions each, written set-based with
``INSERT ... SELECT generate_series``. Then it times, interleaved over ``--repeat``
rounds (median, min-max):

* ``sql``: one hand-written query: the newest 50 transactions that changed
  ``article_version``, with their change counts (the baseline of the ratios);
* ``browser``: :meth:`HistoryBrowser.transactions` ``(limit=50)`` in a process that
  already reflected the tables (what the web browser pays per page);
* ``browser --table`` / ``--id``: the same filtered by table, and by one entity
  whose versions are spread over the whole history;
* ``browser --before``: a page from the middle of the history (keyset pagination:
  as fast as the first page), without and with ``--table``;
* ``browser, cold``: a new engine, its first connection, the reflection of the tables
  and the page: the command's database work;
* ``command``: the whole ``chronicle log URL --limit 50 --json`` command, interpreter
  start, imports and reflection included, against ``chronicle --help`` (the same
  interpreter start and imports, no database) as its own baseline.

Every result is checked (50 transactions, newest first, ten changes each) so a broken
reader cannot look fast. Not a test: pytest does not collect it.

    python -m benchmarks.cli_log [--pg-url URL] [--rows N] [--repeat N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

PER_TX = 10
PAGE = 50
CHRONICLE = Path(sys.executable).with_name("chronicle")

SQL = sa.text(
    'SELECT t.id, t.issued_at, t.remote_addr, count(*) FROM "transaction" t'
    " JOIN article_version v ON v.transaction_id = t.id"
    ' WHERE t.id IN (SELECT id FROM "transaction" ORDER BY id DESC LIMIT :n)'
    " GROUP BY t.id, t.issued_at, t.remote_addr ORDER BY t.id DESC"
)


def build(engine: sa.Engine, rows: int) -> None:
    """The tables of the chronicle variant, filled set-based with ``rows`` versions."""
    from benchmarks.models import build_models

    models = build_models("chronicle")
    entities = rows // PER_TX
    txs = rows // PER_TX
    with engine.begin() as conn:
        conn.exec_driver_sql(
            'DROP TABLE IF EXISTS article_version, article, "transaction" CASCADE'
        )
        conn.exec_driver_sql("DROP SEQUENCE IF EXISTS transaction_id_seq")
    models.metadata.create_all(engine)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(
            'INSERT INTO "transaction" (id, issued_at, remote_addr)'
            " SELECT g, timestamp '2026-01-01' + g * interval '1 second', '10.0.0.1'"
            " FROM generate_series(1, :txs) g"
        ), {"txs": txs})
        # Row n: entity n % E + 1, transaction n / 10 + 1; an entity's versions are E/10
        # transactions apart, the first an INSERT, each closed by the next.
        conn.execute(sa.text(
            "INSERT INTO article_version (id, name, author, content, views,"
            " transaction_id, end_transaction_id, operation_type)"
            " SELECT n % :e + 1, 'Article ' || (n % :e) || ' v' || (n / :e),"
            " 'Author ' || (n % 97), 'Body of the article, version ' || (n / :e), n,"
            " n / 10 + 1,"
            " CASE WHEN n + :e < :rows THEN (n + :e) / 10 + 1 END,"
            " CASE WHEN n < :e THEN 0 ELSE 1 END"
            " FROM generate_series(0, :rows - 1) n"
        ), {"e": entities, "rows": rows})
        conn.execute(sa.text(
            "INSERT INTO article (id, name, author, content, views)"
            " SELECT id, name, author, content, views FROM article_version"
            " WHERE end_transaction_id IS NULL"
        ))
        conn.exec_driver_sql("SELECT setval('transaction_id_seq', (SELECT max(id) FROM"
                             ' "transaction"))')
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    print(f"built {rows:,} version rows, {txs:,} transactions in "
          f"{time.perf_counter() - start:.0f} s", file=sys.stderr)


def present(engine: sa.Engine, rows: int) -> bool:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("article_version"):
            return False
        count = conn.execute(sa.text(
            "SELECT max(transaction_id) FROM article_version"
        )).scalar()
        return bool(count == rows // PER_TX)


def check(ids: list[int], counts: list[int], newest: int, before: int | None = None) -> None:
    top = newest if before is None else before - 1
    expected = list(range(top, top - PAGE, -1))
    if ids != expected or counts != [PER_TX] * PAGE:
        raise SystemExit(f"FAILED: transactions {ids[:3]}... counts {counts[:3]}...")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_log")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("CHRONICLE_BENCH_PG_URL")
        or os.environ.get("CHRONICLE_PG_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test_f",
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true",
                        help="leave the tables for the next run (else dropped at the end)")
    args = parser.parse_args(argv)
    engine = sa.create_engine(args.pg_url)
    if not present(engine, args.rows):
        build(engine, args.rows)
    newest = args.rows // PER_TX
    entity = args.rows // PER_TX // 2  # versions spread over the whole history

    from sqlalchemy_chronicle.browse import HistoryBrowser

    browser = HistoryBrowser(engine)

    def sql() -> None:
        with engine.connect() as conn:
            rows = conn.execute(SQL, {"n": PAGE}).all()
        check([r[0] for r in rows], [r[3] for r in rows], newest)

    def page() -> None:
        found = browser.transactions(limit=PAGE)
        check([t.id for t in found.items], [t.change_count for t in found.items], newest)

    def by_table() -> None:
        found = browser.transactions(table="article", limit=PAGE)
        check([t.id for t in found.items], [t.change_count for t in found.items], newest)

    middle = newest // 2  # a page deep in the history: keyset, not OFFSET

    def deep_page() -> None:
        found = browser.transactions(limit=PAGE, before=middle)
        check([t.id for t in found.items], [t.change_count for t in found.items], newest,
              before=middle)

    def deep_by_table() -> None:
        found = browser.transactions(table="article", limit=PAGE, before=middle)
        check([t.id for t in found.items], [t.change_count for t in found.items], newest,
              before=middle)

    def by_entity() -> None:
        found = browser.transactions(table="article", entity_id=entity, limit=PAGE)
        if len(found.items) != PER_TX:  # each entity has ten versions
            raise SystemExit(f"FAILED: {len(found.items)} transactions for entity {entity}")

    url = engine.url.render_as_string(hide_password=False)

    def cold() -> None:
        fresh = sa.create_engine(url)
        try:
            found = HistoryBrowser(fresh).transactions(limit=PAGE)
        finally:
            fresh.dispose()
        check([t.id for t in found.items], [t.change_count for t in found.items], newest)

    def command() -> None:
        out = subprocess.run(
            [str(CHRONICLE), "log", url, "--limit", str(PAGE), "--json"],
            capture_output=True, text=True, check=True,
        ).stdout.splitlines()
        found = [json.loads(line) for line in out]
        check([t["id"] for t in found], [t["change_count"] for t in found], newest)

    def startup() -> None:
        subprocess.run([str(CHRONICLE), "--help"], capture_output=True, check=True)

    measures: dict[str, Callable[[], None]] = {
        "sql": sql, "browser": page, "browser --table": by_table,
        "browser --before": deep_page, "browser --table --before": deep_by_table,
        "browser --table --id": by_entity, "browser, cold": cold,
        "command": command, "chronicle --help": startup,
    }
    for fn in measures.values():  # warm-up (caches, statement compilation)
        fn()
    times: dict[str, list[float]] = {name: [] for name in measures}
    for round_ in range(args.repeat):
        names = list(measures)
        names = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in names:
            start = time.perf_counter()
            measures[name]()
            times[name].append(time.perf_counter() - start)
    engine.dispose()

    def fmt(values: list[float]) -> str:
        return (f"{statistics.median(values) * 1000:8.1f} ms"
                f"  ({min(values) * 1000:.1f}-{max(values) * 1000:.1f})")

    base = statistics.median(times["sql"])
    startup_median = statistics.median(times["chronicle --help"])
    print(f"chronicle log, newest {PAGE} of {args.rows:,} version rows "
          f"({newest:,} transactions), PostgreSQL, {args.repeat} rounds")
    for name, values in times.items():
        if name in ("command", "chronicle --help"):
            ratio = f"{statistics.median(values) / startup_median:5.2f}x --help"
        else:
            ratio = f"{statistics.median(values) / base:5.2f}x sql"
        print(f"  {name:<26}{fmt(values)}  {ratio}")
    if not args.keep:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                'DROP TABLE IF EXISTS article_version, article, "transaction" CASCADE'
            )
            conn.exec_driver_sql("DROP SEQUENCE IF EXISTS transaction_id_seq")
        engine.dispose()
    results: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"rows": args.rows, "medians_s": results}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
