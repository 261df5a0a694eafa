"""The ``chronicle`` command line (also ``python -m sqlalchemy_chronicle``).

Subcommands:

``demo``
    Versions a small ``Article`` model on a throw-away SQLite database (or the
    database given with ``--db URL``), makes a few changes in separate
    transactions, prints the recorded history as a table, restores the deleted
    article from its history and prints that article's history again::

        $ python -m sqlalchemy_chronicle demo
        $ chronicle demo --db sqlite:///demo.db

``log``, ``show``, ``diff``
    Read the history of any database whose tables follow sqlalchemy-chronicle's (and
    SQLAlchemy-Continuum's) layout; see :mod:`sqlalchemy_chronicle.integrations.cli_history`
    and ``docs/cli.md``::

        $ chronicle log sqlite:///demo.db --table article --limit 20
        $ chronicle show sqlite:///demo.db 2
        $ chronicle diff sqlite:///demo.db article 1 --from 1

The demo uses its own :class:`~sqlalchemy_chronicle.VersioningManager`, installed
on its own ``sessionmaker`` and removed at the end, so it leaves the default
``versioning_manager`` untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from ..manager import VersioningManager
from .cli_history import add_history_commands
from .cli_serve import add_serve_command
from .cli_verify import add_verify_command

__all__ = ["build_parser", "main", "run_demo"]

#: Rows of the history table: transaction, time, entity, operation, one change.
_HEADERS = ("TX", "TIME", "ENTITY", "OPERATION", "CHANGES")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``chronicle`` command.

    Each subcommand is added by one ``add_*`` function given the subparsers object;
    its parser sets ``handler``, a function of the parsed arguments returning the exit
    status, with ``set_defaults(handler=...)``. A new subcommand is one more line here.
    """
    parser = argparse.ArgumentParser(
        prog="chronicle",
        description="sqlalchemy-chronicle: versioning and audit history for SQLAlchemy.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo_command(commands)
    add_history_commands(commands)
    add_serve_command(commands)
    add_verify_command(commands)
    return parser


def _add_demo_command(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="version a small model, print its history and revert a change",
        description=(
            "Create an Article model with versioning, make a few changes in separate "
            "transactions, print the recorded history, then restore the deleted article "
            "from its history and print that article's history again."
        ),
    )
    demo.add_argument(
        "--db",
        metavar="URL",
        default=None,
        help=(
            "SQLAlchemy database URL, e.g. sqlite:///demo.db (default: a SQLite file in a "
            "temporary directory, deleted afterwards)"
        ),
    )
    demo.add_argument(
        "--reset",
        action="store_true",
        help="drop the demo's tables first if they exist in the database",
    )
    demo.set_defaults(handler=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    if args.db is None:
        with tempfile.TemporaryDirectory(prefix="chronicle-demo-") as tmp:
            return run_demo(f"sqlite:///{tmp}/demo.db", reset=args.reset, label=None)
    return run_demo(args.db, reset=args.reset)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chronicle`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status = handler(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (``chronicle demo | head``): stop quietly, and keep the
        # interpreter from failing again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


# -- the demo --------------------------------------------------------------------------


def run_demo(
    url: str, *, reset: bool = False, label: str | None = "", out: TextIO | None = None
) -> int:
    """Run the demo on the database at ``url``; return the exit status.

    ``label`` is how the database is named in the output: ``""`` for the URL itself
    (password hidden), ``None`` for "a temporary SQLite file".
    """
    stream = out if out is not None else sys.stdout

    def say(line: str = "") -> None:
        print(line, file=stream)

    engine = sa.create_engine(url)
    Session = orm.sessionmaker(engine, expire_on_commit=False)

    class Base(orm.DeclarativeBase):
        pass

    manager = VersioningManager(user_cls=None)
    # Installed before the model is defined: the manager collects the versioned
    # classes as they are mapped.
    manager.install(mapper=orm.Mapper, session=Session)
    try:

        class Article(Base):
            __tablename__ = "article"
            __versioned__: dict[str, Any] = {}
            # Claimed up front, so that another installed manager leaves this class alone.
            __versioning_manager__ = manager

            id: Mapped[int] = mapped_column(primary_key=True)
            title: Mapped[str] = mapped_column(sa.String(200))
            body: Mapped[str] = mapped_column(sa.Text, default="")
            status: Mapped[str] = mapped_column(sa.String(20), default="draft")

        orm.configure_mappers()
        ArticleVersion: Any = manager.version_class_map[Article]

        existing = sorted(set(sa.inspect(engine).get_table_names()) & set(Base.metadata.tables))
        if existing and not reset:
            print(
                f"chronicle demo: the database already has the table(s) {', '.join(existing)}; "
                f"pass --reset to drop them, or use another --db.",
                file=sys.stderr,
            )
            return 1
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)

        where = (
            "a temporary SQLite file (deleted on exit)"
            if label is None
            else label or engine.url.render_as_string(hide_password=True)
        )
        say(f"Database: {where}")
        say()

        steps: list[tuple[str, Callable[[orm.Session], None]]] = []

        def step(description: str) -> Callable[
            [Callable[[orm.Session], None]], Callable[[orm.Session], None]
        ]:
            def register(fn: Callable[[orm.Session], None]) -> Callable[[orm.Session], None]:
                steps.append((description, fn))
                return fn

            return register

        @step("create two articles")
        def _create(session: orm.Session) -> None:
            session.add_all([
                Article(id=1, title="Hello", body="First draft."),
                Article(id=2, title="Scratch", body="Notes to self."),
            ])

        @step("retitle and publish article 1")
        def _publish(session: orm.Session) -> None:
            article = session.get_one(Article, 1)
            article.title = "Hello, world"
            article.status = "published"

        @step("edit the body of article 1")
        def _edit(session: orm.Session) -> None:
            session.get_one(Article, 1).body = "Second draft."

        @step("delete article 2")
        def _delete(session: orm.Session) -> None:
            session.delete(session.get_one(Article, 2))

        say("Changes, one transaction each:")
        for number, (description, fn) in enumerate(steps, start=1):
            with Session.begin() as session:
                fn(session)
            say(f"  {number}. {description}")
        say()

        with Session() as session:
            versions = list(session.scalars(
                sa.select(ArticleVersion).order_by(
                    ArticleVersion.transaction_id, ArticleVersion.id
                )
            ))
            say("History of all articles:")
            _print_table(say, [_history_rows(v, "Article") for v in versions])
        say()

        # Restore the deleted article from the last version before its deletion.
        with Session.begin() as session:
            deleted = session.scalars(
                sa.select(ArticleVersion)
                .where(ArticleVersion.id == 2)
                .order_by(ArticleVersion.transaction_id.desc())
                .limit(1)
            ).one()
            last = deleted.previous
            say(
                f"Reverting Article#2 to its version of transaction {last.transaction_id} "
                f"(before the {deleted.operation.name} in transaction "
                f"{deleted.transaction_id}):"
            )
            restored = last.revert()
        say(f"  restored Article#{restored.id}: title={restored.title!r} "
            f"body={restored.body!r} status={restored.status!r}")
        say()

        with Session() as session:
            history = ArticleVersion.all_versions(session, 2, desc=False)
            say("History of Article#2 after the revert:")
            _print_table(say, [_history_rows(v, "Article") for v in history])
        return 0
    finally:
        manager.uninstall()
        manager.reset()
        Base.registry.dispose()
        engine.dispose()


def _format_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _history_rows(version: Any, entity: str) -> list[tuple[str, ...]]:
    """The table rows of one version: one per changed column (at least one)."""
    pk = {c.key for c in sa.inspect(type(version)).primary_key}
    changes = [
        f"{key}: {old!r} -> {new!r}"
        for key, (old, new) in version.changeset.items()
        if key not in pk
    ]
    if not changes:
        changes = [
            "(row deleted)" if version.operation.name == "DELETE"
            else "(re-inserted with its earlier values)"
        ]
    tx = version.transaction
    first = (
        str(version.transaction_id),
        _format_time(tx.issued_at if tx is not None else None),
        f"{entity}#{version.id}",
        version.operation.name,
    )
    blank = ("",) * len(first)
    return [(*(first if i == 0 else blank), change) for i, change in enumerate(changes)]


def _print_table(say: Callable[[str], None], groups: list[list[tuple[str, ...]]]) -> None:
    """Print row groups as an aligned table, a rule under the header."""
    rows = [row for group in groups for row in group]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(_HEADERS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    say(line(_HEADERS))
    say(line(["-" * w for w in widths]))
    for row in rows:
        say(line(row))
