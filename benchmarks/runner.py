"""The benchmark runner: ``python -m benchmarks [options]``.

It measures each workload for each variant (plain SQLAlchemy, sqlalchemy-chronicle
with its default tables and with ``indexes="minimal"``, and, when
``sqlalchemy_continuum`` is importable, SQLAlchemy-Continuum) on each
database, every measurement in a fresh process, interleaved: round after round, each
round runs every variant once (in an order rotated from round to round), so that
noise from other work on the machine falls on all variants alike. It prints a
markdown table of medians (min-max) and of ratios: the median over the rounds of
the ratio of two variants measured in the same round.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from benchmarks.workloads import FLOOR, FLOOR_MINIMAL, ROW_LEVEL, WORKLOADS, Sizes, Workload

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test_f"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test_f"
DATABASES = ("sqlite", "postgresql", "mysql")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Cell:
    """The measurements of one (workload, database, variant)."""

    seconds: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--db", default="sqlite,postgresql",
                        help="comma-separated databases: sqlite, postgresql, mysql "
                        "(default: sqlite,postgresql)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds per measurement (default 5, quick 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default=None, help="comma-separated workload names")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variants "
                             "(default: plain,chronicle,minimal[,continuum])")
    parser.add_argument("--pg-url", default=os.environ.get("CHRONICLE_BENCH_PG_URL",
                                                           DEFAULT_PG_URL))
    parser.add_argument("--mysql-url", default=os.environ.get("CHRONICLE_BENCH_MYSQL_URL",
                                                              DEFAULT_MYSQL_URL))
    parser.add_argument("--rows", type=int, help="N of the insert/update/delete workloads")
    parser.add_argument("--bulk", type=int, help="rows of the one-transaction insert")
    parser.add_argument("--backfill", type=int, help="existing rows of the backfill workload")
    parser.add_argument("--objects", type=int, help="objects of the read and revert workloads")
    parser.add_argument("--verify", type=int, help="version rows of the verify workload")
    parser.add_argument("--chronicle-options", type=json.loads, default=None,
                        help="JSON object passed to sqlalchemy-chronicle's "
                             "make_versioned(options=...), "
                             "e.g. '{\"create_composite_index\": false}'")
    parser.add_argument("--against", metavar="SRC", default=None,
                        help="also measure the sqlalchemy_chronicle found in directory SRC "
                             "(e.g. another checkout's src/), as variant 'base', interleaved "
                             "with the rest: a before/after in one run")
    parser.add_argument("--against-variant", default="chronicle", metavar="VARIANT",
                        help="which of our variants 'base' measures: chronicle (default) or "
                             "an option variant (e.g. native: the trigger backend of SRC); "
                             "the report then compares that variant with it")
    parser.add_argument("--json", dest="json_path", help="also write the raw results here")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    return parser.parse_args(argv)


#: The variant measuring the library of ``--against``; its workers run the chronicle
#: variant with that directory first on the import path.
BASE = "base"

#: Variants whose workers run the chronicle variant with these options added to
#: ``--chronicle-options``.
OPTION_VARIANTS: dict[str, dict[str, Any]] = {
    "minimal": {"indexes": "minimal"},
    "native": {"native_versioning": True},
    # TamperEvidencePlugin (benchmarks/models.py turns the key into the plugin).
    "ledger": {"tamper_evidence": True},
}

#: Option variants measured only when --variants names them.
OPT_IN_VARIANTS = ("ledger",)

#: The variant whose versions PostgreSQL triggers write: measured on PostgreSQL only,
#: for the workloads that write (``Workload.native``).
NATIVE = "native"

#: The variants that measure sqlalchemy-chronicle.
CHRONICLE_VARIANTS = ("chronicle", *OPTION_VARIANTS, BASE)

#: The floors (hand-written Core writing the rows chronicle writes) and the options of
#: the layout each one builds: ``floor`` has chronicle's default tables (Continuum's
#: indexes), ``floor_minimal`` those of ``indexes="minimal"``.
FLOOR_OPTIONS: dict[str, dict[str, Any]] = {FLOOR: {}, FLOOR_MINIMAL: {"indexes": "minimal"}}


def floor_of(variant: str, variants: list[str]) -> str | None:
    """The floor a chronicle variant is compared with: the one of its layout."""
    floor = FLOOR_MINIMAL if variant == "minimal" else FLOOR
    return floor if floor in variants else None


def resolve_variant(
    variant: str, options: dict[str, Any] | None
) -> tuple[str, dict[str, Any] | None]:
    """The variant a worker defines for ``variant``, and the chronicle options it
    passes: an option variant is the chronicle variant with its options added."""
    if variant in OPTION_VARIANTS:
        return "chronicle", {**(options or {}), **OPTION_VARIANTS[variant]}
    if variant in FLOOR_OPTIONS:
        return FLOOR, {**(options or {}), **FLOOR_OPTIONS[variant]} or None
    return variant, options


def run_one(args: dict[str, Any], against: str | None = None) -> dict[str, Any]:
    env = None
    if args["variant"] in OPTION_VARIANTS or args["variant"] in FLOOR_OPTIONS:
        variant, options = resolve_variant(args["variant"], args.get("chronicle_options"))
        args = {**args, "variant": variant, "chronicle_options": options}
    elif args["variant"] == BASE:
        assert against is not None
        args = {**args, "variant": "chronicle"}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [os.path.abspath(against), ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(args)],
        capture_output=True, text=True, cwd=ROOT, timeout=1800, check=False, env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "error": f"worker exited {proc.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1])
    if not result["ok"] and proc.stderr:
        sys.stderr.write(proc.stderr)
    return result


def fmt_seconds(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    unit, scale = ("s", 1.0) if med >= 1 else ("ms", 1000.0)
    digits = 2 if med >= 1 else (0 if med * scale >= 100 else 1)
    return (f"{med * scale:.{digits}f} {unit} "
            f"({min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f})")


def fmt_mib(values: list[int]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med / 1024:.1f} MiB ({min(values) / 1024:.1f}-{max(values) / 1024:.1f})"


def paired_ratio(a: list[float], b: list[float]) -> float | None:
    """Median of a[i]/b[i] over the rounds where both were measured."""
    pairs = [x / y for x, y in zip(a, b, strict=False) if y > 0]
    return statistics.median(pairs) if pairs else None


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def machine_info(dbs: list[str], pg_url: str) -> list[str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} cores (shared with other work)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        f"- SQLAlchemy {sa.__version__}",
    ]
    for name in ("sqlalchemy_chronicle", "sqlalchemy_continuum"):
        if importlib.util.find_spec(name) is not None:
            module = __import__(name)
            lines.append(f"- {name} {getattr(module, '__version__', '?')}")
    if "sqlite" in dbs:
        import sqlite3
        lines.append(f"- SQLite {sqlite3.sqlite_version} (a file in a temporary directory, "
                     f"default pragmas)")
    if "postgresql" in dbs:
        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
        engine.dispose()
        import psycopg
        lines.append(f"- PostgreSQL {version} on localhost, psycopg {psycopg.__version__}")
    return lines


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.list:
        for w in WORKLOADS.values():
            note = f"  [skipped: {w.skip}]" if w.skip else ""
            print(f"{w.name:18} {w.title}{note}")
        return 0
    sizes = Sizes.quick() if opts.quick else Sizes()
    for key in ("rows", "bulk", "objects", "backfill", "verify"):
        if getattr(opts, key) is not None:
            setattr(sizes, key, getattr(opts, key))
    repeat = opts.repeat or (3 if opts.quick else 5)
    dbs = [d.strip() for d in opts.db.split(",") if d.strip()]
    unknown = set(dbs) - set(DATABASES)
    if unknown:
        print(f"unknown database(s): {sorted(unknown)}", file=sys.stderr)
        return 2
    names = [n.strip() for n in opts.only.split(",")] if opts.only else list(WORKLOADS)
    missing = [n for n in names if n not in WORKLOADS]
    if missing:
        print(f"unknown workload(s): {missing}; see --list", file=sys.stderr)
        return 2
    has_continuum = importlib.util.find_spec("sqlalchemy_continuum") is not None
    if opts.variants:
        variants = [v.strip() for v in opts.variants.split(",")]
    else:
        variants = ["plain", "chronicle"]
        variants += [v for v in OPTION_VARIANTS if v not in OPT_IN_VARIANTS]
        variants += ["continuum"] if has_continuum else []
        variants += list(FLOOR_OPTIONS)
    if opts.against:
        if not os.path.isdir(os.path.join(opts.against, "sqlalchemy_chronicle")):
            print(f"--against: no sqlalchemy_chronicle package in {opts.against}",
                  file=sys.stderr)
            return 2
        if opts.against_variant != "chronicle" and opts.against_variant not in OPTION_VARIANTS:
            print(f"--against-variant: {opts.against_variant!r} is not chronicle or one of "
                  f"{sorted(OPTION_VARIANTS)}", file=sys.stderr)
            return 2
        variants.append(BASE)
    workloads = [WORKLOADS[n] for n in names]
    active = [w for w in workloads if not w.skip]

    cells: dict[tuple[str, str, str], Cell] = {}
    tmpdir = tempfile.mkdtemp(prefix="chronicle-bench-")
    started = time.perf_counter()
    for round_no in range(repeat):
        for db in dbs:
            for w in active:
                order = [v for v in variants if measures(w, v, db, opts.against_variant)]
                shift = round_no % len(order)
                for variant in order[shift:] + order[:shift]:
                    url = (f"sqlite:///{os.path.join(tmpdir, uuid.uuid4().hex)}.db"
                           if db == "sqlite"
                           else opts.mysql_url if db == "mysql" else opts.pg_url)
                    options = opts.chronicle_options
                    if variant == BASE:
                        options = base_options(w, opts)
                    result = run_one({"variant": variant, "workload": w.name, "url": url,
                                      "sizes": vars(sizes), "chronicle_options": options},
                                     opts.against)
                    cell = cells.setdefault((w.name, db, variant), Cell())
                    if result["ok"]:
                        cell.seconds.append(result["seconds"])
                        cell.queries.append(result["queries"])
                        cell.rss_kib.append(result["rss_kib"])
                        status = f"{result['seconds']:.3f}s"
                    else:
                        cell.errors.append(result["error"])
                        status = "FAILED: " + result["error"]
                    print(f"[round {round_no + 1}/{repeat} {time.perf_counter() - started:6.0f}s]"
                          f" {db:10} {w.name:16} {variant:10} {status}", file=sys.stderr)
    with contextlib.suppress(OSError):
        os.rmdir(tmpdir)

    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = render(workloads, dbs, variants, cells, sizes, repeat, opts, command)
    print(report)
    if opts.json_path:
        raw = {f"{w}|{d}|{v}": vars(c) for (w, d, v), c in cells.items()}
        with open(opts.json_path, "w") as f:
            json.dump({"command": command, "sizes": vars(sizes), "cells": raw}, f, indent=1)
    return 0


def base_options(w: Workload, opts: argparse.Namespace) -> dict[str, Any] | None:
    """The chronicle options of the ``base`` variant on workload ``w``: those of
    ``--against-variant``, and the trigger backend's on a workload of it alone."""
    options = opts.chronicle_options
    if native_only(w):
        return {**(options or {}), **OPTION_VARIANTS[NATIVE]}
    if opts.against_variant in OPTION_VARIANTS:
        return {**(options or {}), **OPTION_VARIANTS[opts.against_variant]}
    return options


def base_variant(opts: argparse.Namespace) -> str:
    """The variant ``base`` is compared with (the one it is a checkout of)."""
    return str(getattr(opts, "against_variant", "chronicle"))


def native_only(w: Workload) -> bool:
    """A workload of the trigger backend alone: its ``base`` runs with triggers too."""
    return w.native and "chronicle" not in w.variants


def measures(
    w: Workload, variant: str, db: str | None = None, against_variant: str = "chronicle"
) -> bool:
    """Whether workload ``w`` is measured for ``variant`` (on database ``db``; ``base``
    measuring ``against_variant``)."""
    if variant == BASE and against_variant == NATIVE:
        variant = NATIVE
    if variant == NATIVE or (variant == BASE and native_only(w)):
        return w.native and db in (None, "postgresql")
    if variant in FLOOR_OPTIONS:  # hand-written SQL for SQLite and PostgreSQL
        if db == "mysql" or FLOOR not in w.variants:
            return False
        if native_only(w):  # its floor and row-level trigger are PostgreSQL's
            return db in (None, "postgresql")
        return variant == FLOOR or "chronicle" in w.variants
    if variant == ROW_LEVEL and db not in (None, "postgresql"):
        return False
    if variant in CHRONICLE_VARIANTS:
        return "chronicle" in w.variants
    return variant in w.variants


def verdict(ratio: float | None, target: float | None) -> str:
    if ratio is None or target is None:
        return ""
    return "met" if ratio <= target else "**missed**"


def verdicts(ratios: dict[str, float | None], target: float) -> str:
    """``<= 1.5x: met`` for chronicle alone, else one verdict per chronicle variant."""
    if len(ratios) == 1:
        return f"<= {target}x: {verdict(next(iter(ratios.values())), target)}"
    return f"<= {target}x: " + ", ".join(f"{v} {verdict(r, target)}" for v, r in ratios.items())


def named_verdicts(ratios: dict[str, float | None], target: float, against: str) -> str:
    """``<= 1.3x floor: chronicle met, minimal met``: one verdict per variant."""
    return f"<= {target}x {against}: " + ", ".join(
        f"{v} {verdict(r, target)}" for v, r in ratios.items())


def render(
    workloads: list[Workload], dbs: list[str], variants: list[str],
    cells: dict[tuple[str, str, str], Cell], sizes: Sizes, repeat: int,
    opts: argparse.Namespace, command: str,
) -> str:
    # Ratios to plain for the variants of sqlalchemy-chronicle with options of their
    # own, and chronicle's ratio to the other libraries (and to --against).
    ours = [v for v in variants if v in ("chronicle", ROW_LEVEL) or v in OPTION_VARIANTS]
    # The numerator of the comparisons with other libraries and --against: chronicle, or
    # the trigger backend when only it is measured.
    main = "chronicle" if "chronicle" in variants else NATIVE if NATIVE in variants else None
    other = [v for v in variants if v not in ("plain", *FLOOR_OPTIONS, *ours)] if main else []
    # How far above the physical floor of its layout (hand-written Core writing the
    # same rows) each variant is, and what the floors cost over plain SQLAlchemy.
    floors = [v for v in FLOOR_OPTIONS if v in variants]
    floored = {v: f for v in ours if (f := floor_of(v, variants)) is not None}
    head = ["workload", "db", *variants, *[f"{v} / plain" for v in ours]]
    head += [f"{f} / plain" for f in floors]
    head += [f"{v} / {f}" for v, f in floored.items()]
    against = base_variant(opts)
    # ``base`` is compared with the variant it measures in the other checkout.
    numerator = {v: against if v == BASE and against in variants else str(main) for v in other}
    head += [f"{numerator[v]} / {v}" for v in other]
    # Triggers against ORM capture (the native target of the ORM write workloads).
    versus_orm = NATIVE in variants and "chronicle" in variants
    if versus_orm:
        head.append(f"{NATIVE} / chronicle")
    head += ["target", "queries (" + " / ".join(variants) + ")"]
    out = [
        f"Sizes: N={sizes.rows} rows (commits of 100), one transaction of {sizes.bulk} rows, "
        f"{sizes.objects} objects x 10 versions for the reads and revert, {sizes.objects} "
        f"articles x 5 tags for the tag workloads, {sizes.backfill} rows backfilled, "
        f"{sizes.verify} version rows verified; "
        f"{repeat} rounds, "
        f"each measurement in a fresh process.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    failures: list[str] = []
    for w in workloads:
        if w.skip:
            out.append(f"| {w.name} | | skipped: {w.skip} |" + " |" * (len(head) - 3))
            continue
        for db in dbs:
            got = {v: cells.get((w.name, db, v), Cell()) for v in variants}
            row = [f"{w.name}", db]
            for v in variants:
                c = got[v]
                if not measures(w, v, db, against):
                    row.append("n/a")
                elif c.errors:
                    row.append(f"FAILED ({len(c.errors)}/{len(c.errors) + len(c.seconds)})")
                    failures += [f"{w.name} / {db} / {v}: {e}" for e in sorted(set(c.errors))]
                else:
                    row.append(fmt_seconds(c.seconds))
            base = got["plain"].seconds
            ratios = {v: paired_ratio(got[v].seconds, base) for v in ours}
            row += [fmt_ratio(r) for r in ratios.values()]
            for f in floors:
                row.append(fmt_ratio(paired_ratio(got[f].seconds, base)
                                     if measures(w, f, db) else None))
            floor_ratios = {v: paired_ratio(got[v].seconds, got[f].seconds)
                            for v, f in floored.items()
                            if measures(w, f, db) and measures(w, v, db)}
            row += [fmt_ratio(floor_ratios.get(v)) for v in floored]
            for v in other:
                row.append(fmt_ratio(paired_ratio(got[numerator[v]].seconds, got[v].seconds)))
            native_ratio = None
            if versus_orm and measures(w, NATIVE, db):
                native_ratio = paired_ratio(got[NATIVE].seconds, got["chronicle"].seconds)
            if versus_orm:
                row.append(fmt_ratio(native_ratio))
            queries = [str(int(statistics.median(got[v].queries))) if got[v].queries else "-"
                       for v in variants]
            target = ""
            if w.floor_target is not None and floor_ratios:
                # Each layout against its floor; the minimal layout against plain too.
                target = named_verdicts(floor_ratios, w.floor_target, "floor")
                versus_plain = {v: r for v, r in ratios.items()
                                if v != "chronicle" and v in floor_ratios}
                if w.target is not None and versus_plain and w.plain_target_with_floor:
                    target += "; " + named_verdicts(versus_plain, w.target, "plain")
            elif w.target is not None and ours:
                target = verdicts(ratios, w.target)
                chron_q, plain_q = got[ours[0]].queries, got["plain"].queries
                if w.constant_queries and chron_q and plain_q and max(chron_q) > max(plain_q):
                    if w.selectin_batch is None:
                        target = f"<= {w.target}x: **missed** (queries)"
                    else:  # checked by the worker: 1 + 1 per batch of parents
                        target += f" (queries: 1 + 1 per {w.selectin_batch} versions)"
            if native_ratio is not None and w.native_target is not None:
                target += ("; " if target else "") + (
                    f"native <= {w.native_target}x chronicle: "
                    f"{verdict(native_ratio, w.native_target)}")
            row += [target, " / ".join(queries)]
            out.append("| " + " | ".join(row) + " |")
            if w.memory_target is not None:
                mem = ["peak RSS growth", db]
                for v in variants:
                    mem.append(fmt_mib(got[v].rss_kib) if measures(w, v, db, against)
                               else "n/a")
                rss = {v: [float(x) for x in got[v].rss_kib] for v in variants}
                mratios = {v: paired_ratio(rss[v], rss["plain"]) for v in ours}
                mem += [fmt_ratio(r) for r in mratios.values()]
                mem += ["" for _ in (*floors, *floored)]
                for v in other:
                    mem.append(fmt_ratio(paired_ratio(rss[numerator[v]], rss[v])))
                if versus_orm:
                    mem.append("")
                mem += [verdicts(mratios, w.memory_target) if ours else "", ""]
                out.append("| " + " | ".join(mem) + " |")
    if failures:
        out += ["", "Failures:", *[f"- {f}" for f in failures]]
    if opts.against:
        out += ["", f"`base`: the sqlalchemy_chronicle of `{opts.against}`"
                    + (f", variant `{against}`." if against != "chronicle" else ".")]
    out += ["", "Machine:", *machine_info(dbs, opts.pg_url), "", f"Command: `{command}`"]
    return "\n".join(out)
