"""Test fixtures: every test that uses ``engine`` runs on each selected database.

Databases are chosen with ``--db sqlite,postgresql,mysql`` or the environment
variable ``CHRONICLE_TEST_DBS``; those named are mandatory (an unreachable server is
an error). With neither, SQLite runs always and each server runs if it answers.
Server URLs: ``CHRONICLE_PG_URL`` and ``CHRONICLE_MYSQL_URL``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import VersioningManager, make_versioned, remove_versioning

SERVER_URLS = {
    "postgresql": os.environ.get(
        "CHRONICLE_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("CHRONICLE_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
ALL_DBS = ("sqlite", "postgresql", "mysql")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db", default=None,
        help="comma-separated databases to run on (sqlite, postgresql, mysql); mandatory",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "versioning(**kw): arguments of make_versioned()")
    config.addinivalue_line("markers", "dbs(*names): run only on these databases")
    config.addinivalue_line(
        "markers",
        "once: slow and independent of the SQLAlchemy line; CI runs it on one line only",
    )
    chosen = config.getoption("--db") or os.environ.get("CHRONICLE_TEST_DBS")
    if chosen:
        names = [n.strip() for n in chosen.split(",") if n.strip()]
        unknown = set(names) - set(ALL_DBS)
        if unknown:
            raise pytest.UsageError(f"unknown database(s) {sorted(unknown)}; use {ALL_DBS}")
        for name in names:
            if name != "sqlite" and not _reachable(name):
                raise pytest.UsageError(
                    f"database {name!r} was required but {SERVER_URLS[name]} does not answer"
                )
        config._chronicle_dbs = names  # type: ignore[attr-defined]
    else:
        config._chronicle_dbs = ["sqlite"] + [  # type: ignore[attr-defined]
            n for n in ("postgresql", "mysql") if _reachable(n)
        ]


def pytest_report_header(config: pytest.Config) -> str:
    return f"chronicle databases: {', '.join(config._chronicle_dbs)}; SQLAlchemy {sa.__version__}"  # type: ignore[attr-defined]


def _reachable(name: str) -> bool:
    engine = sa.create_engine(SERVER_URLS[name])
    try:
        with engine.connect():
            return True
    except Exception:
        return False
    finally:
        engine.dispose()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_name" in metafunc.fixturenames:
        names = list(metafunc.config._chronicle_dbs)  # type: ignore[attr-defined]
        marker = metafunc.definition.get_closest_marker("dbs")
        if marker is not None:
            names = [n for n in names if n in marker.args]
        metafunc.parametrize("db_name", names, scope="session")


@pytest.fixture(scope="session")
def _engines() -> Iterator[dict[str, sa.Engine]]:
    engines: dict[str, sa.Engine] = {}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture
def engine(db_name: str, _engines: dict[str, sa.Engine], tmp_path: Any) -> sa.Engine:
    """An engine on the database under test (a fresh SQLite file per test)."""
    if db_name == "sqlite":
        return sa.create_engine(f"sqlite:///{tmp_path}/test.db")
    if db_name not in _engines:
        _engines[db_name] = sa.create_engine(SERVER_URLS[db_name])
    return _engines[db_name]


@pytest.fixture
def strategy() -> str:
    """The versioning strategy; parametrize ``strategy`` to run a test under both."""
    return "validity"


@pytest.fixture
def manager(request: pytest.FixtureRequest, strategy: str) -> Iterator[VersioningManager]:
    """A fresh manager installed on all sessions; ``@pytest.mark.versioning(...)`` passes
    arguments to ``make_versioned`` (``user_cls`` defaults to None here)."""
    marker = request.node.get_closest_marker("versioning")
    kwargs: dict[str, Any] = {"user_cls": None}
    if marker is not None:
        kwargs.update(marker.kwargs)
    options = {"strategy": strategy, **kwargs.pop("options", {})}
    m = VersioningManager()
    make_versioned(manager=m, options=options, **kwargs)
    yield m
    remove_versioning(manager=m)


class Base(orm.DeclarativeBase):
    """Placeholder so type checkers know the fixture's shape."""


@pytest.fixture
def base(manager: VersioningManager) -> Iterator[type[orm.DeclarativeBase]]:
    """A fresh declarative base (2.0 style) for the test's models."""

    class TestBase(orm.DeclarativeBase):
        pass

    yield TestBase
    TestBase.registry.dispose()


class Db:
    """The database side of a test: create the schema, open sessions, count SQL."""

    def __init__(self, engine: sa.Engine, manager: VersioningManager) -> None:
        self.engine = engine
        self.manager = manager
        self.metadatas: list[sa.MetaData] = []
        self.sessions: list[orm.Session] = []

    @property
    def name(self) -> str:
        return self.engine.dialect.name

    def create(self, *metadatas: sa.MetaData) -> None:
        """Configure the mappers (building version tables) and create the tables."""
        orm.configure_mappers()
        for metadata in metadatas:
            metadata.drop_all(self.engine)
            metadata.create_all(self.engine)
            self.metadatas.append(metadata)

    def session(self, **kwargs: Any) -> orm.Session:
        session = orm.Session(self.engine, **kwargs)
        self.sessions.append(session)
        return session

    def rows(self, table: sa.Table | str, order_by: Any = None) -> list[dict[str, Any]]:
        """All rows of a table as dicts, read on a fresh connection."""
        if isinstance(table, str):
            table = next(m.tables[table] for m in self.metadatas if table in m.tables)
        stmt = sa.select(table)
        if order_by is not None:
            stmt = stmt.order_by(*(order_by if isinstance(order_by, list | tuple) else [order_by]))
        else:
            stmt = stmt.order_by(*table.primary_key.columns)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    @contextlib.contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        """Collect the SQL statements executed inside the block."""
        statements: list[str] = []

        def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                   executemany: bool) -> None:
            statements.append(statement)

        event.listen(self.engine, "before_cursor_execute", before)
        try:
            yield statements
        finally:
            event.remove(self.engine, "before_cursor_execute", before)

    @contextlib.contextmanager
    def executions(self) -> Iterator[list[tuple[str, Any]]]:
        """Collect (SQL, parameters) of each single (not executemany) execution inside
        the block."""
        sent: list[tuple[str, Any]] = []

        def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                   executemany: bool) -> None:
            if not executemany:
                sent.append((statement, params))

        event.listen(self.engine, "before_cursor_execute", before)
        try:
            yield sent
        finally:
            event.remove(self.engine, "before_cursor_execute", before)

    def sqlite_scans(self, sent: list[tuple[str, Any]], table: str) -> list[tuple[str, list[str]]]:
        """The executions in ``sent`` that SQLite answers by scanning a table whose name
        starts with ``table`` (``EXPLAIN QUERY PLAN``), with their plans."""
        scans = []
        with self.engine.connect() as conn:
            for statement, params in sent:
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                steps = [row[-1] for row in plan]
                if any(step.startswith("SCAN " + table) for step in steps):
                    scans.append((statement, steps))
        return scans

    def close(self) -> None:
        for session in self.sessions:
            session.close()
        for metadata in reversed(self.metadatas):
            metadata.drop_all(self.engine)
        if self.name == "sqlite":
            self.engine.dispose()


@pytest.fixture
def db(engine: sa.Engine, manager: VersioningManager) -> Iterator[Db]:
    helper = Db(engine, manager)
    yield helper
    helper.close()


@pytest.fixture
def article_models(base: Any, db: Db) -> Callable[..., Any]:
    """Define the classic Article model (``name``, ``content``) and create its tables."""
    def make(versioned: dict[str, Any] | None = None) -> Any:
        class Article(base):  # type: ignore[misc, valid-type]
            __tablename__ = "article"
            __versioned__ = dict(versioned or {})
            id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
            name: Mapped[str | None] = mapped_column(sa.Unicode(255))
            content: Mapped[str | None] = mapped_column(sa.UnicodeText)

        db.create(base.metadata)
        return Article

    return make


@pytest.fixture
def seeded(db: Db, article_models: Callable[..., Any]) -> tuple[Any, Any]:
    """Articles 1-4 named a1-a4 with content c, committed in the first transaction:
    ``(Article, session)``."""
    Article = article_models()
    session = db.session()
    session.add_all([Article(name=f"a{i}", content="c") for i in range(1, 5)])
    session.commit()
    return Article, session
