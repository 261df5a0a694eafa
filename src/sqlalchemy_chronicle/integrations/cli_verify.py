"""``chronicle verify URL``: check a database's history from the command line.

::

    $ chronicle verify postgresql+psycopg://app@db/app
    $ chronicle verify sqlite:///app.db --json
    $ chronicle verify URL --table article --models myapp.models:Base
    $ chronicle verify URL --fix

It runs :func:`sqlalchemy_chronicle.verify` and prints each violation with its
version table, key and transaction (``--json``: one JSON document on stdout). The
exit code is 0 when the history is sound, 1 when a violation was found (after
``--fix``: when one remains), 2 for a bad argument or a database it cannot read.
On a terminal, a progress bar on stderr follows the chunks of each table.

Without ``--models`` the tables are reflected: every ``<name>_version`` table with
a ``transaction_id`` column next to a table ``<name>``. ``--models module:Base``
imports the application's declarative base (or MetaData) instead, so renamed
columns and options need no flags. ``--fix`` repairs what is safe, in one
transaction, lists what it changed and verifies again.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy import orm

from ..exc import ChronicleError
from ..read.verify import CHUNK_ROWS, VerifyReport, verify

__all__ = ["add_verify_command", "run_verify"]


def add_verify_command(commands: Any) -> None:
    """Add ``verify`` to the subcommands of the ``chronicle`` parser."""
    parser = commands.add_parser(
        "verify",
        help="check the version history of a database (exit code 1 on a violation)",
        description=(
            "Check every versioning invariant of a database: one open version per "
            "entity, equal to its live row; contiguous chains; existing transactions; "
            "no version after a delete but a re-insert; the tamper-evidence ledger."
        ),
    )
    parser.add_argument("url", metavar="URL", help="SQLAlchemy database URL")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--fix",
        action="store_true",
        help=(
            "repair what is safe (close a dangling open version, write a missing version "
            "for a live row) in one transaction, report it and verify again"
        ),
    )
    parser.add_argument(
        "--table",
        action="append",
        metavar="TABLE",
        help="check only this table (a live or version table name; repeatable)",
    )
    parser.add_argument(
        "--models",
        metavar="MODULE:ATTR",
        help="the application's declarative base or MetaData, e.g. myapp.models:Base",
    )
    parser.add_argument("--schema", help="the schema of the tables (default: the default one)")
    parser.add_argument("--transaction-table", default="transaction", help="default: %(default)s")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=CHUNK_ROWS,
        help="version rows read per chunk (default: %(default)s)",
    )
    parser.set_defaults(handler=run_verify)


def _load_models(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ChronicleError(f"--models must look like package.module:Base, got {spec!r}.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ChronicleError(f"--models: cannot import {module_name!r}: {err}") from None
    models = module
    for part in attr.split("."):
        if not hasattr(models, part):
            raise ChronicleError(f"--models: {module_name!r} has no attribute {attr!r}.")
        models = getattr(models, part)
    orm.configure_mappers()  # builds the version tables into the metadata
    return models


class _Bar:
    """A progress bar on ``stream`` (a terminal), one line per table."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, table: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{table:<32} [{bar}] {done}/{total}{end}")
        self.stream.flush()


def run_verify(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``chronicle verify`` with parsed ``args``; the exit code."""
    out = out or sys.stdout
    err = sys.stderr
    try:
        models = _load_models(args.models) if args.models else None
        engine = sa.create_engine(args.url)
    except (ChronicleError, sa.exc.ArgumentError) as error:
        err.write(f"chronicle verify: {error}\n")
        return 2
    progress = _Bar(err) if err.isatty() and not args.json else None
    options: dict[str, Any] = {
        "models": models,
        "tables": args.table,
        "schema": args.schema,
        "transaction_table": args.transaction_table,
        "chunk_rows": args.chunk_rows,
        "progress": progress,
    }
    started = time.monotonic()
    try:
        report = verify(engine, fix=args.fix, **options)
        after = verify(engine, **{**options, "progress": None}) if report.fixes else None
    except (ChronicleError, sa.exc.SQLAlchemyError) as error:
        err.write(f"chronicle verify: {error}\n")
        return 2
    finally:
        engine.dispose()
    seconds = time.monotonic() - started
    final = after if after is not None else report
    if args.json:
        data = report.as_dict()
        data["seconds"] = round(seconds, 3)
        if after is not None:
            data["after_fix"] = after.as_dict()
        out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        _print_report(report, after, seconds, out)
    return 0 if final.ok else 1


def _key_text(key: dict[str, Any] | None) -> str:
    if not key:
        return "-"
    return ",".join(f"{k}={v}" for k, v in key.items())


def _print_report(
    report: VerifyReport, after: VerifyReport | None, seconds: float, out: TextIO
) -> None:
    rows = sum(report.tables.values())
    out.write(
        f"Checked {len(report.tables)} version tables ({rows} version rows) in {seconds:.1f} s.\n"
    )
    if report.ledger_head is not None:
        seq, chain = report.ledger_head
        out.write(f"Ledger: {seq} entries, head {chain}\n")
    if report.ok:
        out.write("OK: no violation found.\n")
        return
    count = len(report.violations) + report.unlisted
    out.write(f"{count} violation{'s' if count != 1 else ''}:\n")
    for v in report.violations:
        tx = "-" if v.transaction_id is None else str(v.transaction_id)
        out.write(f"  {v.check}  table={v.table}  key={_key_text(v.key)}  transaction={tx}\n")
        out.write(f"      {v.message}\n")
    if report.unlisted:
        out.write(f"  ... and {report.unlisted} more, not listed\n")
    if report.first_altered_transaction is not None:
        out.write(f"First altered transaction: {report.first_altered_transaction}\n")
    if report.fixes:
        out.write(f"Repaired {len(report.fixes)}, in one transaction:\n")
        for f in report.fixes:
            out.write(f"  {f.table}  key={_key_text(f.key)}: {f.message}\n")
    if after is not None:
        if after.ok:
            out.write("After the repair: OK, no violation found.\n")
        else:
            left = len(after.violations) + after.unlisted
            out.write(f"After the repair: {left} violation{'s' if left != 1 else ''} left.\n")
