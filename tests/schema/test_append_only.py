"""``make_append_only()``: on PostgreSQL the application's role can version, not rewrite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import ConfigurationError, NotSupportedError, vacuum, verify
from sqlalchemy_chronicle.plugins import TamperEvidencePlugin
from sqlalchemy_chronicle.schema.append_only import make_append_only, remove_append_only

ROLE = "chronicle_append_only_app"


@pytest.fixture
def app_engine(engine: sa.Engine) -> Iterator[sa.Engine]:
    """An engine connected as a role that owns nothing."""
    with engine.begin() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": ROLE}
        ).first()
        if exists is None:
            conn.exec_driver_sql(f"CREATE ROLE {ROLE} LOGIN")
    app = sa.create_engine(engine.url.set(username=ROLE))
    yield app
    app.dispose()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP OWNED BY {ROLE}")


@pytest.fixture
def models(base: Any, db: Any, app_engine: sa.Engine) -> Any:
    class Article(base):  # type: ignore[misc, valid-type]
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.Unicode(100))

    db.create(base.metadata)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON article TO {ROLE}")
        assert make_append_only(conn, base, role=ROLE) == [
            "article_version",
            "transaction",
            "transaction_ledger",
        ]
        # Its search_path is pinned, as the versioning functions' are.
        assert conn.scalar(
            sa.text("SELECT proconfig FROM pg_proc WHERE proname = 'chronicle_append_only_guard'")
        ) == ["search_path=pg_catalog, pg_temp"]
    yield Article
    with db.engine.begin() as conn:
        remove_append_only(conn, base)
        # ... and the guard function with the last of its triggers.
        assert conn.scalars(
            sa.text("SELECT proname FROM pg_proc WHERE proname = 'chronicle_append_only_guard'")
        ).all() == []


pytestmark = [
    pytest.mark.dbs("postgresql"),
    pytest.mark.versioning(plugins=[TamperEvidencePlugin()]),
]


def test_the_app_role_versions_as_usual(models, app_engine, db, base):
    Article = models
    with orm.Session(app_engine) as session:
        session.add_all([Article(id=1, name="a"), Article(id=2, name="b")])
        session.commit()
        session.get(Article, 1).name = "a2"
        session.flush()
        session.get(Article, 1).name = "a3"  # a second flush folds into one version
        session.delete(session.get(Article, 2))
        with session.begin_nested():
            session.add(Article(id=3, name="c"))
        session.commit()
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    assert [(r["id"], r["operation_type"]) for r in db.rows("article_version")] == [
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 2),
        (3, 0),
    ]


def test_the_app_role_cannot_rewrite_or_delete_history(models, app_engine, base):
    Article = models
    with orm.Session(app_engine) as session:
        session.add(Article(id=1, name="a"))
        session.commit()
        session.get(Article, 1).name = "b"
        session.commit()
    version = base.metadata.tables["article_version"]
    transaction = base.metadata.tables["transaction"]
    ledger = base.metadata.tables["transaction_ledger"]
    attempts = [
        version.update().where(version.c.transaction_id == 1).values(name="forged"),
        version.update().where(version.c.transaction_id == 1).values(end_transaction_id=None),
        version.delete().where(version.c.transaction_id == 2),
        transaction.update().values(remote_addr="10.0.0.1"),
        transaction.delete(),
        ledger.update().where(ledger.c.transaction_id == 1).values(chain="0" * 64),
        ledger.delete(),
    ]
    for statement in attempts:
        with app_engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError) as caught:
                conn.execute(statement)
            assert "is append-only for role chronicle_append_only_app" in str(caught.value), (
                statement
            )
            assert "of a row of an earlier transaction is not allowed" in str(caught.value)
    # The privilege is gone (and the trigger would stop it).
    denied = pytest.raises(sa.exc.ProgrammingError, match="permission denied")
    with app_engine.connect() as conn, denied:
        conn.execute(sa.text("TRUNCATE article_version"))
    with app_engine.begin() as conn:  # moving the ledger's head is what commits do
        conn.execute(ledger.update().where(ledger.c.transaction_id == 0).values(chain="1" * 64))
        conn.execute(  # closing an open version is what versioning does
            version.update().where(version.c.transaction_id == 2).values(end_transaction_id=9)
        )
        conn.rollback()


def test_maintenance_runs_as_the_privileged_role(models, app_engine, db, base):
    Article = models
    with orm.Session(app_engine) as session:
        session.add(Article(id=1, name="a"))
        session.commit()
        session.get(Article, 1).name = "b"
        session.commit()
        session.get(Article, 1).name = "a"
        session.commit()
        session.get(Article, 1).name = "a "  # then back: the versions change something
        session.commit()
    with orm.Session(db.engine) as session:  # the owner
        session.execute(sa.text("UPDATE article_version SET name = 'a ' WHERE transaction_id = 3"))
        assert vacuum(session, Article) == 1
        session.commit()


def test_bad_input_is_refused_by_name(engine, base, manager):
    refused = pytest.raises(ConfigurationError, match="declarative base or a MetaData")
    with engine.connect() as conn, refused:
        make_append_only(conn, 42, role=ROLE)


@pytest.mark.dbs("sqlite", "mysql")
def test_other_databases_are_refused(engine, base):
    with engine.connect() as conn, pytest.raises(NotSupportedError, match="needs PostgreSQL"):
        make_append_only(conn, base, role=ROLE)
