"""One measurement in a fresh process: ``python -m benchmarks.worker '<json>'``.

The JSON argument names the variant, the workload, the database URL and the sizes.
The worker defines the models of the variant, recreates the tables, runs the
workload's setup, times its run (counting the statements sent to the database with
a ``before_cursor_execute`` listener, and the growth of the process's peak resident
memory, ``ru_maxrss``), checks the result and prints one JSON line on stdout.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import traceback
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from benchmarks.models import build_models
from benchmarks.workloads import FLOOR, WORKLOADS, CheckFailed, Context, Sizes

# Every table any variant creates; dropped before each measurement.
TABLES = ("article_tag_version", "article_tag", "tag_version", "tag", "article_version",
          "article", "transaction_ledger", "transaction")


def max_rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def reset_database(engine: sa.Engine, metadata: sa.MetaData) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "DROP TABLE IF EXISTS " + ", ".join(f'"{t}"' for t in TABLES) + " CASCADE"
            )
            conn.exec_driver_sql("DROP SEQUENCE IF EXISTS transaction_id_seq")
            # The trigger functions of the native variant (dropping a table leaves them).
            for function in [f"{t}_audit()" for t in TABLES] + [
                "chronicle_transaction_id(text[])", "chronicle_transaction_restamp()"
            ]:
                conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}")
        elif conn.dialect.name in ("mysql", "mariadb"):
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            conn.exec_driver_sql(
                "DROP TABLE IF EXISTS " + ", ".join(f"`{t}`" for t in TABLES)
            )
            conn.exec_driver_sql("DROP SEQUENCE IF EXISTS transaction_id_seq")
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
    metadata.create_all(engine)


def measure(args: dict[str, Any]) -> dict[str, Any]:
    workload = WORKLOADS[args["workload"]]
    models = build_models(
        workload.models_for(args["variant"]),
        tags=workload.tags,
        chronicle_options=args.get("chronicle_options"),
    )
    models.variant = args["variant"]
    url = args["url"]
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if os.path.exists(path):
            os.remove(path)
    engine = sa.create_engine(url)
    sizes = Sizes(**args["sizes"])
    ctx = Context(models, engine, sizes)
    try:
        reset_database(engine, models.metadata)
        workload.setup(ctx)
        workload.warmup(ctx)
        if args["variant"] == FLOOR and models.library is not None:
            # The floor's setup is chronicle's (the same starting history); its timed
            # part writes the versions by hand: nothing of chronicle may run in it.
            models.library.remove_versioning()
        queries = 0
        counting = False

        @event.listens_for(engine, "before_cursor_execute")
        def count(*_: Any) -> None:
            nonlocal queries
            if counting:
                queries += 1

        # The setup's objects go to the permanent generation: a full collection over
        # them (35 ms here) lands in the timed part or not by the luck of allocation
        # counts, and decided ratios by itself. Collections of what the workload
        # allocates still count.
        gc.collect()
        gc.freeze()
        rss_before = max_rss_kib()
        counting = True
        start = time.perf_counter()
        workload.run(ctx)
        seconds = time.perf_counter() - start
        counting = False
        gc.unfreeze()
        rss_growth = max_rss_kib() - rss_before
        ctx.data["queries"] = queries  # some checks bound the number of queries
        workload.check(ctx)
        return {"ok": True, "seconds": seconds, "queries": queries, "rss_kib": rss_growth}
    finally:
        engine.dispose()
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if os.path.exists(path):
                os.remove(path)


def main() -> int:
    args = json.loads(sys.argv[1])
    try:
        result = measure(args)
    except CheckFailed as err:
        result = {"ok": False, "error": f"check failed: {err}"}
    except Exception as err:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
