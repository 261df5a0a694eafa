"""``chronicle log``, ``chronicle show`` and ``chronicle diff``: a database's history.

They work on any database whose tables follow sqlalchemy-chronicle's (and
SQLAlchemy-Continuum's) layout, by reflection, without the application's code; with
``--models package.module:Base`` they use the application's models instead (column
attribute keys, custom table names). Built on
:class:`~sqlalchemy_chronicle.browse.HistoryBrowser`; they never write.

``chronicle log URL [--table T] [--id ID] [--user U] [--since WHEN] [--until WHEN]
[--limit N] [--before TX]``
    The transactions that changed versioned rows, newest first, ``--limit`` (50) at a
    time; ``--before TX`` shows the page after the one whose last transaction is TX.
``chronicle show URL TX``
    Every change of transaction TX, like a commit.
``chronicle diff URL TABLE ID [--from TX] [--to TX] [--all]``
    One row compared at two transactions (default: its last change).

In a terminal the output is aligned tables, coloured, values cut to fit, times in
local time with the zone, long output through a pager (``$PAGER``, else ``less``).
``--json`` prints one JSON object per line instead (per transaction for ``log``; one
object for ``show`` and ``diff``), times in ISO 8601 UTC. Errors (an unreachable
database, a table that is not versioned, an unknown transaction) go to stderr, with
exit status 1.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import decimal
import enum
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import sqlalchemy as sa

from ..browse import Change, EntityDiff, HistoryBrowser, TransactionSummary
from ..exc import ChronicleError, ConfigurationError

__all__ = ["add_history_commands", "json_value", "parse_when"]

#: Longest value shown in a table cell before it is cut (``--full`` shows all).
MAX_CELL = 60

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

_STYLES = {
    "header": "1",
    "insert": "32",
    "update": "33",
    "delete": "31",
    "dim": "2",
    "tx": "36",
    "old": "31",
    "new": "32",
}


# -- the parsers ---------------------------------------------------------------------


def add_history_commands(commands: Any) -> None:
    """Add ``log``, ``show`` and ``diff`` to the ``chronicle`` subparsers ``commands``."""
    log = commands.add_parser(
        "log",
        help="list the transactions that changed versioned rows, newest first",
        description=(
            "List the transactions that changed versioned rows, newest first: time (local), "
            "user, remote address, number of changes and tables. Keyset paginated: "
            "--before TX continues after transaction TX."
        ),
    )
    _add_common(log)
    log.add_argument("--table", help="only transactions that changed this table")
    log.add_argument(
        "--id", dest="entity_id", metavar="ID",
        help="only those that changed the row of --table with this key ('1,2' if composite)",
    )
    log.add_argument("--user", help="only those of this user (user id or name)")
    log.add_argument(
        "--since", metavar="WHEN", type=_when_arg(end=False),
        help=(
            "issued at or after WHEN: 2026-01-31, '2026-01-31 14:00', an ISO time with a "
            "zone, or 30m / 12h / 7d / 2w ago; local time unless a zone is given"
        ),
    )
    log.add_argument(
        "--until", metavar="WHEN", type=_when_arg(end=True),
        help="issued before WHEN (a date alone includes that whole day)",
    )
    log.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N",
        help="at most N transactions (default 50)",
    )
    log.add_argument(
        "--before", type=int, metavar="TX",
        help="only transactions older than TX (the next page after TX)",
    )
    log.set_defaults(handler=_log)

    show = commands.add_parser(
        "show",
        help="show every change of one transaction",
        description="Show a transaction (time, user, address) and every change it made.",
    )
    _add_common(show)
    show.add_argument("tx", type=int, metavar="TX", help="the transaction id")
    show.set_defaults(handler=_show)

    diff = commands.add_parser(
        "diff",
        help="compare one row of a versioned table at two transactions",
        description=(
            "Compare a row at two transactions. The state at a transaction is the row's "
            "last version written in or before it. Default: the row's last change (--to: "
            "its last version, --from: the version before it)."
        ),
    )
    _add_common(diff)
    diff.add_argument("table", metavar="TABLE", help="the versioned table")
    diff.add_argument("id", metavar="ID", help="the row's key ('1,2' if composite)")
    diff.add_argument("--from", dest="from_tx", type=int, metavar="TX", help="old side")
    diff.add_argument("--to", dest="to_tx", type=int, metavar="TX", help="new side")
    diff.add_argument(
        "--all", action="store_true", help="list unchanged fields too (marked with no '*')"
    )
    diff.set_defaults(handler=_diff)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL", help="SQLAlchemy database URL")
    parser.add_argument(
        "--models", metavar="MODULE:BASE",
        help=(
            "use the application's models (e.g. myapp.models:Base) instead of reflecting "
            "the tables; the current directory is importable"
        ),
    )
    parser.add_argument("--schema", help="the schema of the history tables")
    parser.add_argument(
        "--transaction-table", default="transaction", metavar="NAME",
        help="the transaction table's name (default: transaction)",
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line, for scripts"
    )
    parser.add_argument("--utc", action="store_true", help="show times in UTC")
    parser.add_argument("--full", action="store_true", help="do not cut long values")
    parser.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto",
        help="colour the output (auto: only on a terminal, unless NO_COLOR is set)",
    )
    parser.add_argument(
        "--no-pager", action="store_true", help="never pipe long output through a pager"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _when_arg(*, end: bool) -> Callable[[str], datetime.datetime]:
    def parse(text: str) -> datetime.datetime:
        try:
            return parse_when(text, end=end)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return parse


def parse_when(
    text: str, *, end: bool = False, now: datetime.datetime | None = None
) -> datetime.datetime:
    """An aware datetime from a ``--since``/``--until`` value.

    ``7d`` (also ``s``, ``m``, ``h``, ``w``) is that long before ``now``; a date or a
    date and time without zone is local time; an ISO 8601 time with a zone is taken as
    given. With ``end=True`` a date alone means the end of that day (the next midnight),
    so that ``--until 2026-01-31`` includes the 31st.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - datetime.timedelta(**{_UNITS[unit]: amount})
    cleaned = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d\d-\d\d", cleaned):
            day = datetime.date.fromisoformat(cleaned)
            if end:
                day += datetime.timedelta(days=1)
            moment = datetime.datetime.combine(day, datetime.time())
        else:
            moment = datetime.datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 2026-01-31, '2026-01-31 14:00', "
            f"2026-01-31T14:00:00+02:00, or 30m / 12h / 7d / 2w"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return moment


# -- running -------------------------------------------------------------------------


def _engine(url: str) -> sa.Engine:
    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
        raise ConfigurationError(f"{url!r} is not a usable database URL: {error}") from error
    except ImportError as error:
        raise ConfigurationError(f"The driver for {url!r} is not installed: {error}") from error


def _browser(args: argparse.Namespace, engine: sa.Engine) -> HistoryBrowser:
    if args.models:
        return HistoryBrowser.from_models(_load_models(args.models), engine,
                                          transaction_table=args.transaction_table)
    return HistoryBrowser(engine, schema=args.schema,
                          transaction_table=args.transaction_table)


def _load_models(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"--models takes 'package.module:Base', not {spec!r}."
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f"--models: cannot import {module_name!r}: {error}") from error
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                f"--models: {module_name!r} has no attribute {attribute!r}."
            ) from None
    return target


def _run(args: argparse.Namespace, body: Callable[[HistoryBrowser, _Output], None]) -> int:
    out = _Output(args)
    try:
        engine = _engine(args.url)
    except ChronicleError as error:
        print(f"chronicle {args.command}: error: {error}", file=sys.stderr)
        return 1
    try:
        body(_browser(args, engine), out)
    except ChronicleError as error:
        print(f"chronicle {args.command}: error: {error}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()  # close the pooled connection before the interpreter exits
    out.flush()
    return 0


def _log(args: argparse.Namespace) -> int:
    def body(browser: HistoryBrowser, out: _Output) -> None:
        if args.entity_id is not None and args.table is None:
            raise ConfigurationError("--id needs --table: the table the row belongs to.")
        page = browser.transactions(
            table=args.table,
            entity_id=args.entity_id,
            user=args.user,
            since=args.since,
            until=args.until,
            limit=args.limit,
            before=args.before,
        )
        if args.json:
            for tx in page.items:
                out.json(_summary_json(tx))
            return
        if not page.items:
            out.line("No transactions.")
            return
        rows = [
            [
                out.paint(str(tx.id), "tx"),
                out.time(tx.issued_at),
                out.cut(tx.user or "-"),
                out.cut(tx.remote_addr or "-"),
                str(tx.change_count),
                out.cut(", ".join(tx.tables)),
            ]
            for tx in page.items
        ]
        out.table(["TX", "TIME", "USER", "FROM", "CHANGES", "TABLES"], rows,
                  right={0, 4})
        if page.next_before is not None:
            out.line("")
            out.line(out.paint(
                f"Older transactions: add --before {page.next_before}", "dim"
            ))

    return _run(args, body)


def _show(args: argparse.Namespace) -> int:
    def body(browser: HistoryBrowser, out: _Output) -> None:
        detail = browser.transaction(args.tx)
        tx = detail.summary
        if args.json:
            out.json({**_summary_json(tx),
                      "changes": [_change_json(c) for c in detail.changes]})
            return
        out.line(out.paint(f"Transaction {tx.id}", "header"))
        facts = [
            ("Date", out.time(tx.issued_at)),
            ("User", tx.user or "-"),
            ("From", tx.remote_addr or "-"),
            ("Changes", f"{tx.change_count} ({', '.join(tx.tables)})"),
        ]
        for name, value in facts:
            out.line(f"  {name + ':':<9}{value}")
        for change in detail.changes:
            out.line("")
            _print_change(out, change)

    return _run(args, body)


def _print_change(out: _Output, change: Change) -> None:
    key = " ".join(f"{k}={_text(v)}" for k, v in change.key.items())
    out.line(f"{out.paint(change.table, 'header')} {key}  "
             f"{out.paint(change.operation.upper(), change.operation)}")
    if change.operation == "delete" and not change.changed:
        out.line("  (row deleted)")
        return
    if change.operation == "insert" and not change.changed:  # e.g. an association row
        out.line("  (row inserted)")
        return
    if not change.changed:
        out.line("  (no versioned column changed)")
        return
    # An insert has no "before", even one that follows a delete of the same key.
    previous = change.previous if change.operation != "insert" else None
    rows = [
        [name, out.cut(_text(previous.get(name)) if previous is not None else ""),
         out.cut(_text(change.values[name]))]
        for name in change.changed
    ]
    out.table(["FIELD", "BEFORE", "AFTER"], rows, indent="  ",
              styles=[None, "old", "new"])


def _diff(args: argparse.Namespace) -> int:
    def body(browser: HistoryBrowser, out: _Output) -> None:
        diff = browser.diff(args.table, args.id, from_tx=args.from_tx, to_tx=args.to_tx)
        if args.json:
            out.json(_diff_json(diff))
            return
        key = " ".join(f"{k}={_text(v)}" for k, v in diff.key.items())
        out.line(out.paint(f"{diff.table} {key}", "header") + ": "
                 f"{_side(diff.from_tx, diff.from_operation)} -> "
                 f"{_side(diff.to_tx, diff.to_operation)}")
        fields = diff.fields if args.all else [f for f in diff.fields if f.changed]
        if not fields:
            out.line("  No differences.")
            return
        # A side where the row does not exist (not yet, or deleted) shows "-", not NULL.
        old_exists = diff.from_operation not in (None, "delete")
        new_exists = diff.to_operation not in (None, "delete")
        rows = []
        for f in fields:
            row = [
                f.name,
                out.cut(_text(f.old)) if old_exists else "-",
                out.cut(_text(f.new)) if new_exists else "-",
            ]
            if args.all:
                row.insert(0, "*" if f.changed else "")
            rows.append(row)
        headers = ["FIELD", "BEFORE", "AFTER"]
        styles: list[str | None] = [None, "old", "new"]
        if args.all:
            headers.insert(0, "")
            styles.insert(0, None)
        out.table(headers, rows, indent="  ", styles=styles,
                  dim_rows={i for i, f in enumerate(fields) if not f.changed})

    return _run(args, body)


def _side(tx: int | None, operation: str | None) -> str:
    if tx is None:
        return "(before it existed)"
    if operation is None:
        return f"transaction {tx} (before it existed)"
    if operation == "delete":
        return f"transaction {tx} (deleted)"
    return f"transaction {tx}"


# -- values --------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A value as a table cell: NULL, numbers as they are, text quoted (so that '' and
    ' x' are visible), times in ISO format, bytes as hex."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool | int | float | decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat(sep=" ") if isinstance(value, datetime.datetime) \
            else value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex()
    return repr(value)


def json_value(value: Any) -> Any:
    """``value`` as JSON can hold it: times in ISO 8601, decimals and UUIDs as text,
    bytes as base64 text, enums by value, sets and tuples as lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return json_value(value.value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    return str(value)


def _summary_json(tx: TransactionSummary) -> dict[str, Any]:
    return {
        "id": tx.id,
        "issued_at": json_value(tx.issued_at),
        "user": tx.user,
        "user_id": json_value(tx.user_id),
        "remote_addr": tx.remote_addr,
        "tables": list(tx.tables),
        "change_count": tx.change_count,
    }


def _change_json(change: Change) -> dict[str, Any]:
    return {
        "transaction_id": change.transaction_id,
        "table": change.table,
        "key": json_value(change.key),
        "operation": change.operation,
        "values": json_value(change.values),
        "previous": json_value(change.previous),
        "changed": list(change.changed),
    }


def _diff_json(diff: EntityDiff) -> dict[str, Any]:
    return {
        "table": diff.table,
        "key": json_value(diff.key),
        "from_tx": diff.from_tx,
        "to_tx": diff.to_tx,
        "from_operation": diff.from_operation,
        "to_operation": diff.to_operation,
        "fields": [
            {"name": f.name, "old": json_value(f.old), "new": json_value(f.new),
             "changed": f.changed}
            for f in diff.fields
        ],
    }


# -- output --------------------------------------------------------------------------


class _Output:
    """Collects the lines of a command's output; on a terminal, colours them and pages
    them when they do not fit the screen."""

    def __init__(self, args: argparse.Namespace, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        if args.color == "always":
            self.color = True
        elif args.color == "never" or args.json:
            self.color = False
        else:
            self.color = (
                self.tty and not os.environ.get("NO_COLOR")
                and os.environ.get("TERM") != "dumb"
            )
        self.pager = self.tty and not args.no_pager and not args.json
        self.full = args.full
        self.utc = args.utc
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def json(self, obj: dict[str, Any]) -> None:
        self.lines.append(json.dumps(obj, ensure_ascii=False, sort_keys=False))

    def paint(self, text: str, style: str | None) -> str:
        if not self.color or style is None or not text:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    def cut(self, text: str) -> str:
        text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", " ")
        if self.full or len(text) <= MAX_CELL:
            return text
        return text[: MAX_CELL - 1] + "…"

    def time(self, moment: datetime.datetime | None) -> str:
        if moment is None:
            return "-"
        shown = moment.astimezone(datetime.timezone.utc if self.utc else None)
        return shown.strftime("%Y-%m-%d %H:%M:%S ") + (shown.tzname() or shown.strftime("%z"))

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        indent: str = "",
        right: set[int] | frozenset[int] = frozenset(),
        styles: Sequence[str | None] | None = None,
        dim_rows: set[int] | frozenset[int] = frozenset(),
    ) -> None:
        """Aligned columns under a bold header; widths from the text without colour."""
        def width(text: str) -> int:
            return len(re.sub(r"\x1b\[[0-9;]*m", "", text))

        widths = [max(width(h), *(width(r[i]) for r in rows)) for i, h in enumerate(headers)]

        def render(cells: Sequence[str], style_of: Callable[[int], str | None]) -> str:
            parts = []
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
                pad = " " * (w - width(cell))
                painted = self.paint(cell, style_of(i))
                parts.append(pad + painted if i in right else painted + pad)
            return (indent + "  ".join(parts)).rstrip()

        self.line(render(headers, lambda i: "header"))
        for n, row in enumerate(rows):
            if n in dim_rows:
                self.line(render(row, lambda i: "dim"))
            else:
                self.line(render(row, lambda i: styles[i] if styles else None))

    def flush(self) -> None:
        if not self.lines:
            return
        text = "\n".join(self.lines) + "\n"
        if self.pager and len(self.lines) >= shutil.get_terminal_size().lines:
            command = os.environ.get("PAGER") or ("less" if shutil.which("less") else "")
            if command:
                env = {**os.environ}
                env.setdefault("LESS", "FRX")  # quit on one screen, keep colours
                try:
                    proc = subprocess.Popen(
                        shlex.split(command), stdin=subprocess.PIPE, env=env
                    ) if not any(c in command for c in "|;&><") else subprocess.Popen(
                        command, shell=True, stdin=subprocess.PIPE, env=env
                    )
                except OSError:
                    pass
                else:
                    assert proc.stdin is not None
                    try:
                        proc.stdin.write(text.encode(self.stream.encoding or "utf-8",
                                                     errors="replace"))
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass  # the reader quit the pager early
                    proc.wait()
                    return
        self.stream.write(text)
        self.stream.flush()
