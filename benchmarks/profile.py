"""Profile the timed part of one workload: ``python -m benchmarks.profile WORKLOAD``.

It prepares the database as the worker does (setup and warm-up are not profiled),
then runs the workload once under pyinstrument (or cProfile with ``--cprofile``)
and prints the profile, the number of statements and, with ``--sql``, the time
the database spent per kind of statement and in ``COMMIT``. The result is checked
afterwards, as in a measurement. Beware: this reuses the benchmark's database
(``--url``), so do not run it while ``python -m benchmarks`` runs on the same one.

::

    python -m benchmarks.profile update --variant chronicle --url sqlite:////tmp/p.db --sql
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import json
import os
import pstats
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from benchmarks.models import build_models
from benchmarks.runner import DEFAULT_PG_URL, FLOOR_OPTIONS, OPTION_VARIANTS, resolve_variant
from benchmarks.worker import reset_database
from benchmarks.workloads import FLOOR, WORKLOADS, Context, Sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--variant", default="chronicle",
                        help="plain, chronicle, continuum, or "
                             + ", ".join([*OPTION_VARIANTS, *FLOOR_OPTIONS])
                             + " (chronicle with options of its own, as in the runner)")
    parser.add_argument("--url", default=os.environ.get("CHRONICLE_BENCH_PG_URL", DEFAULT_PG_URL))
    parser.add_argument("--quick", action="store_true", help="the --quick sizes")
    parser.add_argument("--cprofile", action="store_true", help="cProfile instead of pyinstrument")
    parser.add_argument("--sql", action="store_true", help="database time per statement kind")
    parser.add_argument("--no-profiler", action="store_true",
                        help="time the run without a profiler (with --sql: the split between "
                             "the database and Python, undistorted)")
    parser.add_argument("--chronicle-options", type=json.loads, default=None,
                        help="JSON object passed to make_versioned(options=...)")
    opts = parser.parse_args(argv)

    opts.variant, opts.chronicle_options = resolve_variant(opts.variant, opts.chronicle_options)
    workload = WORKLOADS[opts.workload]
    models = build_models(workload.models_for(opts.variant), tags=workload.tags,
                          chronicle_options=opts.chronicle_options)
    models.variant = opts.variant
    path = opts.url.removeprefix("sqlite:///") if opts.url.startswith("sqlite:///") else None
    if path and os.path.exists(path):
        os.remove(path)
    engine = sa.create_engine(opts.url)
    ctx = Context(models, engine, Sizes.quick() if opts.quick else Sizes())
    reset_database(engine, models.metadata)
    workload.setup(ctx)
    workload.warmup(ctx)
    if opts.variant == FLOOR and models.library is not None:
        models.library.remove_versioning()  # as the worker: the floor runs no chronicle code

    seconds: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter[str] = collections.Counter()
    started: list[float] = [0.0]

    @event.listens_for(engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started[0] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        kind = " ".join(statement.split()[:3])[:48]
        seconds[kind] += time.perf_counter() - started[0]
        counts[kind] += 1

    do_commit = engine.dialect.do_commit

    def timed_commit(dbapi_connection: Any) -> None:
        start = time.perf_counter()
        do_commit(dbapi_connection)
        seconds["COMMIT"] += time.perf_counter() - start
        counts["COMMIT"] += 1

    engine.dialect.do_commit = timed_commit  # type: ignore[method-assign]

    gc.collect()
    gc.freeze()  # as the worker does
    start = time.perf_counter()
    if opts.no_profiler:
        workload.run(ctx)
        total = time.perf_counter() - start
    elif opts.cprofile:
        profile = cProfile.Profile()
        profile.runcall(workload.run, ctx)
        total = time.perf_counter() - start
        pstats.Stats(profile).sort_stats("cumulative").print_stats(60)
    else:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        workload.run(ctx)
        profiler.stop()
        total = time.perf_counter() - start
        print(profiler.output_text(unicode=False, color=False))
    ctx.data["queries"] = sum(n for k, n in counts.items() if k != "COMMIT")
    event.remove(engine, "before_cursor_execute", before)
    event.remove(engine, "after_cursor_execute", after)
    workload.check(ctx)
    engine.dispose()
    if path and os.path.exists(path):
        os.remove(path)
    database = sum(seconds.values())
    how = "timed" if opts.no_profiler else "profiled"
    print(f"{opts.workload} / {opts.variant}: {total * 1000:.0f} ms ({how}), "
          f"{ctx.data['queries']} statements, database {database * 1000:.0f} ms, "
          f"Python {(total - database) * 1000:.0f} ms")
    if opts.sql:
        for kind, value in sorted(seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {value * 1000:8.1f} ms  {counts[kind]:6d}  {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
