"""schema.update_property_mod_flags: ``*_mod`` flags computed for existing history."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import ConfigurationError, Operation
from sqlalchemy_chronicle.plugins import PropertyModTrackerPlugin
from sqlalchemy_chronicle.schema import update_property_mod_flags

BOTH_STRATEGIES = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def add_flag_columns(conn, table_name, names, suffix="_mod"):
    """What a migration does first: add the flag columns, then reflect the table."""
    for name in names:
        conn.execute(sa.text(
            f"ALTER TABLE {table_name} ADD {name}{suffix} BOOLEAN NOT NULL DEFAULT false"
        ))
    return sa.Table(table_name, sa.MetaData(), autoload_with=conn)


def flag_rows(conn, table, names, suffix="_mod"):
    tx = table.c.transaction_id
    keys = [c for c in table.primary_key.columns if c is not tx]
    rows = conn.execute(
        sa.select(*keys, table.c.operation_type, *[table.c[n + suffix] for n in names])
        .order_by(*keys, tx)
    )
    n_keys = len(keys)
    return [
        (*row[:n_keys], row[n_keys], *[bool(v) for v in row[n_keys + 1:]]) for row in rows
    ]


def write_history(db, Article):
    """Two articles edited in interleaved transactions, with NULLs coming and going."""
    session = db.session()
    a, b = Article(id=1, name="a1", content=None), Article(id=2, name="b1", content="x")
    session.add_all([a, b])
    session.commit()
    a.content = "c1"  # NULL -> value
    b.content = None  # value -> NULL
    session.commit()
    a.name = "a2"
    session.commit()
    b.name = "b2"  # content stays NULL: NULL -> NULL is no change
    a.content = None
    session.commit()
    session.delete(a)
    session.commit()


@BOTH_STRATEGIES
def test_flags_mark_first_versions_and_changes_only(db, article_models, strategy):
    Article = article_models()
    write_history(db, Article)
    with db.engine.begin() as conn:
        table = add_flag_columns(conn, "article_version", ["name", "content"])
        conn.execute(table.update().values(name_mod=True, content_mod=True))  # stale values
        update_property_mod_flags(table, ["name", "content"], conn=conn)
        assert flag_rows(conn, table, ["name", "content"]) == [
            (1, Operation.INSERT, True, True),
            (1, Operation.UPDATE, False, True),
            (1, Operation.UPDATE, True, False),
            (1, Operation.UPDATE, False, True),
            (1, Operation.DELETE, False, False),  # it changed no value
            (2, Operation.INSERT, True, True),
            (2, Operation.UPDATE, False, True),
            (2, Operation.UPDATE, True, False),
        ]


@pytest.mark.versioning(plugins=[PropertyModTrackerPlugin()])
@BOTH_STRATEGIES
def test_flags_match_what_the_plugin_writes(db, article_models, strategy):
    """Except on DELETE versions, where the plugin flags every column (as Continuum's
    does) and the helper flags only changed values (as Continuum's does)."""
    Article = article_models()
    write_history(db, Article)
    table = db.manager.tables[Article]
    with db.engine.begin() as conn:
        written = flag_rows(conn, table, ["name", "content"])
        conn.execute(table.update().values(name_mod=False, content_mod=False))
        update_property_mod_flags(table, ["name", "content"], conn=conn)
        computed = flag_rows(conn, table, ["name", "content"])
        assert [r for r in computed if r[1] != Operation.DELETE] == [
            r for r in written if r[1] != Operation.DELETE
        ]
        assert [r[2:] for r in written if r[1] == Operation.DELETE] == [(True, True)]
        assert [r[2:] for r in computed if r[1] == Operation.DELETE] == [(False, False)]
    assert any(not flag for row in written for flag in row[2:])  # not all true


def test_one_statement_for_the_whole_table(db, article_models):
    Article = article_models()
    session = db.session()
    articles = [Article(name=f"a{i}", content="c") for i in range(60)]
    session.add_all(articles)
    session.commit()
    for article in articles[::2]:
        article.name += "!"
    session.commit()
    with db.engine.begin() as conn:
        table = add_flag_columns(conn, "article_version", ["name", "content"])
    with db.count_statements() as statements, db.engine.begin() as conn:
        update_property_mod_flags(table, ["name", "content"], conn=conn)
    assert [s for s in statements if "article_version" in s] == [statements[0]]
    assert statements[0].lstrip().upper().startswith("UPDATE")
    with db.engine.connect() as conn:
        updates = [r for r in flag_rows(conn, table, ["name", "content"]) if r[1] == 1]
    assert len(updates) == 30 and {r[2:] for r in updates} == {(True, False)}


def test_composite_keys_and_custom_names(db, base):
    class Cell(base):
        __tablename__ = "cell"
        __versioned__ = {}
        row: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        col: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        value: Mapped[str | None] = mapped_column(sa.String(20))

    db.create(base.metadata)
    session = db.session()
    first, second = Cell(row=1, col=1, value="v"), Cell(row=1, col=2, value="v")
    session.add_all([first, second])
    session.commit()
    second.value = "w"
    session.commit()
    first.value = "v2"
    session.commit()
    with db.engine.begin() as conn:
        table = add_flag_columns(conn, "cell_version", ["value"], suffix="_changed")
        update_property_mod_flags(
            table, ["value"], mod_suffix="_changed", tx_column_name="transaction_id", conn=conn
        )
        assert flag_rows(conn, table, ["value"], suffix="_changed") == [
            (1, 1, Operation.INSERT, True),
            (1, 1, Operation.UPDATE, True),
            (1, 2, Operation.INSERT, True),
            (1, 2, Operation.UPDATE, True),
        ]
        # Each cell is compared with its own previous version only: once (1, 1)'s
        # versions hold the same value, its update is no change.
        conn.execute(table.update().where(table.c.col == 1).values(value="v"))
        update_property_mod_flags(table, ["value"], mod_suffix="_changed", conn=conn)
        assert [r[3] for r in flag_rows(conn, table, ["value"], suffix="_changed")] == [
            True, False, True, True,
        ]


def test_without_a_connection_it_uses_the_alembic_migration_connection(db, article_models):
    Article = article_models()
    write_history(db, Article)
    with db.engine.begin() as conn:
        table = add_flag_columns(conn, "article_version", ["name"])
        context = MigrationContext.configure(conn)
        with Operations.context(context):
            update_property_mod_flags(table, ["name"])
        assert [r[2] for r in flag_rows(conn, table, ["name"])] == [
            True, False, True, False, False, True, False, True,
        ]


def test_missing_columns_are_named(db, article_models):
    Article = article_models()
    version = db.manager.tables[Article]
    with db.engine.connect() as conn:
        with pytest.raises(ConfigurationError, match="'name_mod'"):
            update_property_mod_flags(version, ["name"], conn=conn)
        with pytest.raises(ConfigurationError, match="'title'"):
            update_property_mod_flags(version, ["title"], conn=conn)
        with pytest.raises(ConfigurationError, match="'tx'"):
            update_property_mod_flags(version, ["name"], tx_column_name="tx", conn=conn)


def test_no_tracked_columns_runs_nothing(db, article_models):
    Article = article_models()
    with db.count_statements() as statements, db.engine.connect() as conn:
        update_property_mod_flags(db.manager.tables[Article], [], conn=conn)
    assert statements == []
