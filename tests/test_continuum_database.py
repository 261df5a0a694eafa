"""A database that SQLAlchemy-Continuum 2.0 created keeps working after the switch.

``continuum_app.py`` is an application written for Continuum: a versioned article with
a category (a relationship) and tags (a many-to-many association table), a user class
for the transaction table, and the ActivityPlugin, PropertyModTrackerPlugin,
TransactionChangesPlugin and TransactionMetaPlugin. The real SQLAlchemy-Continuum runs it
in a subprocess (its ``make_versioned`` installs global listeners, so it never enters
this process): it creates the tables and writes four transactions. This process then
loads the same source with ``sqlalchemy_continuum`` renamed to ``sqlalchemy_chronicle``,
as a user switching does, and reads, navigates, reverts and writes that history.

Continuum's history (``python continuum_app.py write URL``):

=====  ====================================================================
tx     what Continuum wrote
=====  ====================================================================
1      articles First (category News, tags a and b) and Second; by alice,
       meta reason=import; an activity "create" of First
2      First renamed "First, edited", tag b unlinked; Second's content
       edited; by alice, meta reason=edit
3      Second deleted; an activity "delete" of Second
4      First moved to a new category Sports, tag c linked, content edited
=====  ====================================================================
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

from app_process import CONTINUUM_APP, run_continuum_app, wipe
from sqlalchemy_chronicle import remove_versioning, version_class
from sqlalchemy_chronicle.schema.tables import TX_ID_TYPE

APP = CONTINUUM_APP

# Subprocesses running the real Continuum: what they check does not depend on the
# SQLAlchemy line, so CI runs them on one.
pytestmark = pytest.mark.once


def _continuum_installed() -> bool:
    # find_spec of a top-level name does not import it.
    return importlib.util.find_spec("sqlalchemy_continuum") is not None


@pytest.fixture
def continuum(db_name: str) -> None:
    """SQLAlchemy-Continuum is installed (the 'test' extra pins it, on Python 3.11+)."""
    if _continuum_installed():
        return
    chosen = [n.strip() for n in os.environ.get("CHRONICLE_TEST_DBS", "").split(",")]
    if db_name in chosen and sys.version_info >= (3, 11):
        pytest.fail("SQLAlchemy-Continuum 2.0.0 is not installed: pip install -e '.[test]'")
    pytest.skip("SQLAlchemy-Continuum 2.0.0 is not installed (it needs Python 3.11+)")


def run_continuum(engine: sa.Engine, command: str) -> str:
    """Run ``continuum_app.py command URL`` with the real SQLAlchemy-Continuum."""
    return run_continuum_app(command, engine.url.render_as_string(hide_password=False))


def load_switched_app() -> types.ModuleType:
    """``continuum_app.py`` with its imports renamed, as a switching user edits it."""
    source = APP.read_text(encoding="utf-8")
    assert source.count("from sqlalchemy_continuum") == 2  # the only lines a user edits
    module = types.ModuleType("continuum_app_switched")
    module.__file__ = str(APP)
    code = compile(source.replace("sqlalchemy_continuum", "sqlalchemy_chronicle"), APP, "exec")
    exec(code, module.__dict__)
    return module


@pytest.fixture
def empty(engine: sa.Engine) -> Iterator[sa.Engine]:
    """The test database, empty before and after the test."""
    wipe(engine)
    yield engine
    wipe(engine)


@pytest.fixture
def fresh(empty: sa.Engine, continuum: None) -> sa.Engine:
    """The empty test database, and SQLAlchemy-Continuum to run."""
    return empty


@pytest.fixture
def app(fresh: sa.Engine) -> Iterator[types.ModuleType]:
    """The switched application, on a database Continuum created and wrote."""
    run_continuum(fresh, "write")
    module = load_switched_app()
    yield module
    remove_versioning()
    module.Base.registry.dispose()


@pytest.fixture
def session(app: types.ModuleType, fresh: sa.Engine) -> Iterator[orm.Session]:
    with orm.Session(fresh) as session:
        yield session


def rows(engine: sa.Engine, table: str, *order_by: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        t = sa.Table(table, sa.MetaData(), autoload_with=conn)
        order = [t.c[name] for name in order_by] or list(t.primary_key.columns)
        return [tuple(r) for r in conn.execute(sa.select(t).order_by(*order))]


def versions_of(session: orm.Session, cls: Any, id: int) -> list[Any]:
    vcls = version_class(cls)
    return list(session.scalars(
        sa.select(vcls).where(vcls.id == id).order_by(vcls.transaction_id)
    ))


# -- reading -------------------------------------------------------------------------------


def test_history_reads_as_continuum_wrote_it(app, fresh, session):
    first = session.get(app.Article, 1)
    v1, v2, v4 = first.versions.all()
    assert [(v.transaction_id, v.name, v.content) for v in (v1, v2, v4)] == [
        (1, "First", "one"), (2, "First, edited", "one"), (4, "First, edited", "one, again"),
    ]
    assert [v.index for v in (v1, v2, v4)] == [0, 1, 2]
    assert (v1.previous, v1.next, v2.previous, v2.next, v4.previous, v4.next) == (
        None, v2, v1, v4, v2, None,
    )
    assert v1.changeset == {
        "id": [None, 1], "name": [None, "First"], "content": [None, "one"],
        "category_id": [None, 1],
    }
    assert v2.changeset == {"name": ["First", "First, edited"]}
    assert v4.changeset == {"content": ["one", "one, again"], "category_id": [1, 2]}

    # relationships as they were: the category, and the tags through the association
    # version table (whose rows Continuum never closes: tag b's link, removed by
    # transaction 2, is still an open row)
    assert [v.category.name for v in (v1, v2, v4)] == ["News", "News", "Sports"]
    assert [sorted(t.name for t in v.tags) for v in (v1, v2, v4)] == [
        ["a", "b"], ["a"], ["a", "c"],
    ]
    ArticleVersion = version_class(app.Article)
    assert ArticleVersion.version_at(session, 1, 3) == v2
    assert ArticleVersion.version_at(session, 2, 3).operation_type == 2  # deleted by then
    assert sorted(v.name for v in session.scalars(ArticleVersion.as_of(2))) == [
        "First, edited", "Second",
    ]

    # the transaction table with its user class, and the plugins' rows
    assert v1.transaction.user.name == "alice" and v4.transaction.user is None
    assert (v1.transaction.meta, v2.transaction.meta, v4.transaction.meta) == (
        {"reason": "import"}, {"reason": "edit"}, {},
    )
    assert sorted(c.entity_name for c in v1.transaction.changes) == [
        "Article", "Category", "Tag",
    ]
    assert (v1.name_mod, v1.content_mod, v2.name_mod, v2.content_mod, v4.category_id_mod) == (
        True, True, True, False, True,
    )
    created, deleted = session.scalars(sa.select(app.Activity).order_by(app.Activity.id))
    assert (created.verb, created.object, created.object_version) == ("create", first, v1)
    assert created.transaction.user.name == "alice"
    assert (deleted.verb, deleted.object_id, deleted.transaction_id) == ("delete", 2, 3)


# -- writing -------------------------------------------------------------------------------


def test_revert_after_the_switch(app, fresh, session):
    first = session.get(app.Article, 1)
    first.versions[0].revert(relations=["tags"])
    session.commit()
    assert (first.name, first.content, first.category.name) == ("First", "one", "News")
    assert sorted(t.name for t in first.tags) == ["a", "b"]

    # a deleted object comes back from its last version before the delete
    second_versions = versions_of(session, app.Article, 2)
    assert [v.operation_type for v in second_versions] == [0, 1, 2]
    second = second_versions[1].revert()
    session.commit()
    assert (second.id, second.name, second.content) == (2, "Second", "two, edited")

    # the transaction ids go on from Continuum's; each new version closes the last one
    assert [r[0] for r in rows(fresh, "transaction")] == [1, 2, 3, 4, 5, 6]
    assert [(tx, end, op) for (_, _, _, _, tx, end, op, *_) in rows(
        fresh, "article_version", "id", "transaction_id"
    )] == [
        (1, 2, 0), (2, 4, 1), (4, 5, 1), (5, None, 1),  # First
        (1, 2, 0), (2, 3, 1), (3, 6, 2), (6, None, 0),  # Second, deleted and back
    ]
    # tag b linked again, tag c unlinked, in transaction 5
    assert [r for r in rows(fresh, "article_tag_version", "transaction_id", "tag_id")
            if r[2] == 5] == [(1, 2, 5, None, 0), (1, 3, 5, None, 2)]
    assert [sorted(t.name for t in v.tags) for v in first.versions] == [
        ["a", "b"], ["a"], ["a", "c"], ["a", "b"],
    ]


def test_new_history_goes_on_from_continuums(app, fresh, session):
    alice = session.scalars(sa.select(app.User)).one()
    first = session.get(app.Article, 1)

    app.start_transaction(session, alice, reason="after the switch")
    first.name = "First, again"
    first.tags.append(app.Tag(name="d"))
    # (an explicit id: SQLite would give the deleted Second's id 2 again)
    third = app.Article(id=3, name="Third", category=first.category)
    session.add(third)
    session.flush()
    session.add(app.Activity(verb="update", object=first))
    session.commit()

    assert [r[0] for r in rows(fresh, "transaction")] == [1, 2, 3, 4, 5]
    last = first.versions.all()[-1]
    tx = last.transaction
    assert (tx.id, tx.user, tx.meta) == (5, alice, {"reason": "after the switch"})
    assert sorted(c.entity_name for c in tx.changes) == ["Article", "Tag"]
    assert [(v.transaction_id, v.end_transaction_id, v.name) for v in first.versions] == [
        (1, 2, "First"), (2, 4, "First, edited"), (4, 5, "First, edited"),
        (5, None, "First, again"),
    ]

    assert (last.name_mod, last.content_mod, last.category_id_mod) == (True, False, False)
    assert last.changeset == {"name": ["First, edited", "First, again"]}
    assert sorted(t.name for t in last.tags) == ["a", "c", "d"]
    assert (third.id, [v.transaction_id for v in third.versions]) == (3, [5])
    # the activity's id goes on from Continuum's sequence too
    activity = session.scalars(sa.select(app.Activity).order_by(app.Activity.id.desc())).first()
    assert (activity.id, activity.transaction_id, activity.object_version) == (3, 5, last)
    assert rows(fresh, "transaction_meta")[-1] == (5, "reason", "after the switch")


# -- the layout ----------------------------------------------------------------------------


#: What Alembic reports on MariaDB with ``compare_server_default``, whichever library's
#: metadata it compares with whichever library's tables: both declare the ``_mod`` flags
#: ``server_default=false()``, MariaDB stores that default as ``0``, and Alembic's MySQL
#: comparator does not see that ``false`` and ``0`` are the same default. Alembic's noise,
#: not a difference between the two layouts (Continuum reports it on its own tables).
MARIADB_NOISE = [
    f"{table}.{column}_mod: default 0 in the database, false declared"
    for table, column in [
        ("article_version", "name"), ("article_version", "content"),
        ("article_version", "category_id"), ("category_version", "name"),
        ("tag_version", "name"),
    ]
]


def test_autogenerate_finds_continuums_tables_equal(app, fresh, db_name):
    """Our metadata against the tables Continuum created."""
    noise = MARIADB_NOISE if db_name == "mysql" else []
    assert app.differences(fresh, server_defaults=False) == []
    assert sorted(app.differences(fresh)) == sorted(noise)
    # Continuum's own metadata against its own tables: the same
    assert sorted(run_continuum(fresh, "compare").splitlines()) == sorted(noise)


def test_continuum_finds_our_fresh_tables_equal(fresh, db_name):
    """The other way round: Continuum's metadata against a fresh create_all of ours."""
    module = load_switched_app()
    try:
        module.Base.metadata.create_all(fresh)
        noise = MARIADB_NOISE if db_name == "mysql" else []
        assert sorted(module.differences(fresh)) == sorted(noise)
    finally:
        remove_versioning()
        module.Base.registry.dispose()
    assert sorted(run_continuum(fresh, "compare").splitlines()) == sorted(noise)


# -- the transaction tables of earlier versions of this library -----------------------------


def test_transaction_table_of_an_earlier_version_takes_writes(empty, db_name):
    """Before it took ids from transaction_id_seq, the transaction table had a BIGSERIAL
    (sequence transaction_id_seq) on PostgreSQL and AUTO_INCREMENT (no sequence) on
    MariaDB: writes go on there too."""
    module = load_switched_app()
    try:
        module.Base.metadata.create_all(empty)
        earlier = sa.Table(
            "transaction", sa.MetaData(),
            sa.Column("id", TX_ID_TYPE, primary_key=True, autoincrement=True),
            sa.Column("issued_at", sa.DateTime),
            sa.Column("remote_addr", sa.String(50)),
            sa.Column("user_id", sa.Integer),
        )
        with empty.begin() as conn:
            conn.execute(sa.schema.DropTable(earlier))
            if conn.dialect.supports_sequences:
                conn.execute(sa.schema.DropSequence(sa.Sequence("transaction_id_seq")))
            earlier.create(conn)
        with orm.Session(empty) as session:
            article = module.Article(name="a")
            session.add(article)
            session.commit()
            article.name = "b"
            statements: list[str] = []

            def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                statements.append(statement)

            sa.event.listen(empty, "before_cursor_execute", before)
            try:
                session.commit()
            finally:
                sa.event.remove(empty, "before_cursor_execute", before)
            assert [v.transaction_id for v in article.versions] == [1, 2]
        # the layout is looked up once (MariaDB): not again for the second transaction
        assert not [s for s in statements if "SHOW CREATE" in s.upper()]
        with empty.connect() as conn:
            assert conn.scalars(sa.select(earlier.c.id)).all() == [1, 2]
    finally:
        remove_versioning()
        module.Base.registry.dispose()
