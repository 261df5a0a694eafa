"""Bulk and ORM-enabled statements through a Session write versions (capture/bulk.py)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, Plugin
from sqlalchemy_chronicle.exc import NotSupportedError

INSERT, UPDATE, DELETE = Operation.INSERT, Operation.UPDATE, Operation.DELETE


def _history(db: Any) -> list[tuple[Any, ...]]:
    """(id, name, transaction, end transaction, operation) of every version."""
    rows = db.rows("article_version", order_by=["transaction_id", "id"])
    return [
        (r["id"], r["name"], r["transaction_id"], r["end_transaction_id"], r["operation_type"])
        for r in rows
    ]


def _txs(db: Any) -> list[int]:
    return [r["id"] for r in db.rows("transaction")]



def _returning(db: Any) -> bool:
    return db.name != "mysql"  # MariaDB has DELETE ... RETURNING, no UPDATE ... RETURNING


@pytest.mark.parametrize("sync", [False, "evaluate", "fetch", "auto"])
@pytest.mark.parametrize("returning", [False, True])
def test_update_statement_versions_the_rows_it_changed(db, seeded, sync, returning):
    Article, session = seeded
    if returning and not _returning(db):
        pytest.skip("MariaDB has no UPDATE ... RETURNING")
    loaded = session.get(Article, 1)
    session.add(Article(id=9, name="new"))  # flushed in the same transaction
    stmt = sa.update(Article).where(Article.id <= 2).values(name="x")
    if returning:
        stmt = stmt.returning(Article.id)
    result = session.execute(stmt, execution_options={"synchronize_session": sync})
    if returning:
        assert sorted(result.scalars()) == [1, 2]
    else:
        assert result.rowcount == 2
    if sync in ("evaluate", "fetch", "auto"):
        assert loaded.name == "x"
    session.commit()
    tx1, tx2 = _txs(db)
    assert _history(db) == [
        (1, "a1", tx1, tx2, INSERT), (2, "a2", tx1, tx2, INSERT),
        (3, "a3", tx1, None, INSERT), (4, "a4", tx1, None, INSERT),
        (1, "x", tx2, None, UPDATE), (2, "x", tx2, None, UPDATE),
        (9, "new", tx2, None, INSERT),
    ]


def test_where_on_the_column_the_update_changes_finds_the_rows_before(db, seeded):
    Article, session = seeded
    session.execute(sa.update(Article).where(Article.name.in_(["a1", "a3"])).values(name="z"))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "z", tx2, None, UPDATE), (3, "z", tx2, None, UPDATE)
    ]


def test_rows_whose_values_did_not_change_get_no_version(db, seeded):
    Article, session = seeded
    session.execute(sa.update(Article).values(name=Article.name))
    session.execute(sa.update(Article).where(Article.id <= 2).values(name="a1"))
    session.commit()
    _, tx2 = _txs(db)
    # only article 2 changed (a2 -> a1); article 1 was named a1 already
    assert [h for h in _history(db) if h[2] == tx2] == [(2, "a1", tx2, None, UPDATE)]


def test_an_update_that_changes_nothing_writes_no_transaction(db, seeded):
    Article, session = seeded
    session.execute(sa.update(Article).where(Article.id == 99).values(name="none"))
    session.commit()
    assert len(_txs(db)) == 1


def test_update_with_a_sql_expression_and_several_statements_in_one_transaction(db, seeded):
    Article, session = seeded
    session.execute(sa.update(Article).where(Article.id == 1).values(name=Article.name + "!"))
    session.execute(sa.update(Article).where(Article.id == 1).values(name=Article.name + "?"))
    article = session.get(Article, 2)
    article.name = "flushed"
    session.flush()
    session.execute(sa.update(Article).where(Article.id == 2).values(name="bulk"))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "a1!?", tx2, None, UPDATE), (2, "bulk", tx2, None, UPDATE)
    ]


@pytest.mark.parametrize("sync", [False, "evaluate", "fetch", "auto"])
@pytest.mark.parametrize("returning", [False, True])
def test_delete_statement_versions_the_rows_it_deleted(db, seeded, sync, returning):
    Article, session = seeded
    stmt = sa.delete(Article).where(Article.name.in_(["a2", "a4"]))
    if returning:
        stmt = stmt.returning(Article.id)
    result = session.execute(stmt, execution_options={"synchronize_session": sync})
    if returning:
        assert sorted(result.scalars()) == [2, 4]
    session.commit()
    tx1, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2 or h[0] in (2, 4)] == [
        (2, "a2", tx1, tx2, INSERT), (4, "a4", tx1, tx2, INSERT),
        (2, "a2", tx2, None, DELETE), (4, "a4", tx2, None, DELETE),
    ]


def test_delete_of_a_row_older_than_versioning_copies_its_values(db, seeded):
    Article, session = seeded
    with db.engine.begin() as conn:  # a row written without versioning
        conn.execute(sa.insert(Article.__table__).values(id=7, name="old", content="c"))
    session.execute(sa.delete(Article).where(Article.id == 7))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [(7, "old", tx2, None, DELETE)]


def test_legacy_query_update_and_delete(db, seeded):
    Article, session = seeded
    assert session.query(Article).filter(Article.id == 1).update({"name": "q"}) == 1
    assert session.query(Article).filter(Article.id == 2).delete() == 1
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "q", tx2, None, UPDATE), (2, "a2", tx2, None, DELETE)
    ]


def test_orm_bulk_insert_with_and_without_keys(db, seeded):
    Article, session = seeded
    session.execute(sa.insert(Article), [{"id": 10, "name": "k10"}, {"id": 11, "name": "k11"}])
    session.execute(sa.insert(Article), [{"name": "auto1"}, {"name": "auto2"}])
    session.execute(sa.insert(Article).values(id=20, name="v20"))
    session.execute(sa.insert(Article).values([{"id": 21, "name": "v21"}]))
    session.execute(sa.insert(Article).values(name="auto3"))
    session.commit()
    _, tx2 = _txs(db)
    added = [h for h in _history(db) if h[2] == tx2]
    assert {h[1] for h in added} == {"k10", "k11", "auto1", "auto2", "v20", "v21", "auto3"}
    assert all(h[3] is None and h[4] == INSERT for h in added)
    live = {r["id"]: r["name"] for r in db.rows("article")}
    assert {h[0]: h[1] for h in added} == {k: v for k, v in live.items() if k > 4}


def test_orm_bulk_insert_returning(db, seeded):
    Article, session = seeded
    if not _returning(db):
        pytest.skip("MariaDB's INSERT ... RETURNING is not used by the ORM bulk insert")
    result = session.scalars(
        sa.insert(Article).returning(Article), [{"name": "r1"}, {"name": "r2"}]
    )
    assert sorted(a.name for a in result) == ["r1", "r2"]
    session.commit()
    _, tx2 = _txs(db)
    assert sorted(h[1] for h in _history(db) if h[2] == tx2 and h[4] == INSERT) == ["r1", "r2"]


def test_insert_after_a_delete_of_the_same_key_is_an_update(db, seeded):
    Article, session = seeded
    session.execute(sa.delete(Article).where(Article.id == 1))
    session.execute(sa.insert(Article), [{"id": 1, "name": "again"}])
    session.commit()
    tx1, tx2 = _txs(db)
    assert [h for h in _history(db) if h[0] == 1] == [
        (1, "a1", tx1, tx2, INSERT), (1, "again", tx2, None, UPDATE)
    ]


def test_orm_bulk_update_by_primary_key(db, seeded):
    Article, session = seeded
    session.execute(
        sa.update(Article),
        [{"id": 1, "name": "b1"}, {"id": 2, "name": "a2"}, {"id": 3, "name": "b3"}],
    )
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "b1", tx2, None, UPDATE), (3, "b3", tx2, None, UPDATE)
    ]


def _upsert(db: Any, Article: Any, rows: list[dict[str, Any]], nothing: bool) -> Any:
    if db.name == "mysql":
        stmt = mysql.insert(Article).values(rows)
        return stmt.on_duplicate_key_update(name=stmt.inserted.name)
    dialect = postgresql if db.name == "postgresql" else sqlite
    stmt = dialect.insert(Article).values(rows)
    if nothing:
        return stmt.on_conflict_do_nothing(index_elements=["id"])
    return stmt.on_conflict_do_update(index_elements=["id"], set_={"name": stmt.excluded.name})


@pytest.mark.parametrize("nothing", [False, True])
def test_upserts(db, seeded, nothing):
    Article, session = seeded
    if nothing and db.name == "mysql":
        pytest.skip("MariaDB has no ON CONFLICT DO NOTHING")
    rows = [{"id": 1, "name": "u1"}, {"id": 2, "name": "a2"}, {"id": 8, "name": "u8"}]
    session.execute(_upsert(db, Article, rows, nothing))
    session.commit()
    _, tx2 = _txs(db)
    expected = [(8, "u8", tx2, None, INSERT)]
    if not nothing:
        expected.insert(0, (1, "u1", tx2, None, UPDATE))  # 2 is unchanged: no version
    assert [h for h in _history(db) if h[2] == tx2] == expected


def test_bulk_statements_share_the_transaction_of_the_flush(db, seeded):
    Article, session = seeded
    session.add(Article(id=30, name="flushed"))
    session.flush()
    session.execute(sa.update(Article).where(Article.id == 30).values(name="bulk"))
    session.execute(sa.delete(Article).where(Article.id == 1))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "a1", tx2, None, DELETE), (30, "bulk", tx2, None, INSERT)
    ]


def test_rolled_back_bulk_statement_leaves_no_version(db, seeded):
    Article, session = seeded
    savepoint = session.begin_nested()
    session.execute(sa.update(Article).values(name="gone"))
    savepoint.rollback()
    session.execute(sa.update(Article).where(Article.id == 1).values(name="kept"))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [(1, "kept", tx2, None, UPDATE)]


def test_bulk_statement_count_does_not_grow_with_rows(db, article_models):
    Article = article_models()
    session = db.session()
    next_id = iter(range(1, 10000))

    def statements_for(n: int) -> int:
        ids = [next(next_id) for _ in range(n)]
        session.execute(sa.insert(Article), [{"id": i, "name": f"n{i}"} for i in ids])
        session.commit()
        in_ids = Article.id.in_(ids)
        with db.count_statements() as stmts:
            session.execute(sa.update(Article).where(in_ids).values(name=Article.name + "!"))
            session.execute(sa.update(Article), [{"id": i, "name": "by key"} for i in ids])
            session.execute(sa.delete(Article).where(in_ids))
        session.commit()
        return len(stmts)

    small, large = statements_for(10), statements_for(200)
    assert small == large
    rows = _history(db)
    assert len(rows) == 210 * 2  # the three statements of a transaction fold into one
    assert [(r[1], r[4]) for r in rows if r[0] == 1] == [("n1", INSERT), ("by key", DELETE)]


def test_update_where_of_thousands_of_rows_costs_five_statements(db, article_models):
    """More keys than one key list carries (2,000 parameters): on SQLite and PostgreSQL
    they travel as one JSON document or one array, so the statement costs the SELECT
    of its keys, itself, the transaction row, one closing UPDATE and one INSERT of the
    versions; on MariaDB the last two run once per 2,000 keys."""
    Article = article_models()
    session = db.session()
    n = 2500
    session.execute(sa.insert(Article), [{"id": i, "name": f"n{i}"} for i in range(1, n + 1)])
    session.commit()
    with db.count_statements() as stmts:
        session.execute(sa.update(Article).where(Article.id > 0).values(name=Article.name + "!"))
    session.commit()
    assert len(stmts) == (7 if db.name == "mysql" else 5)
    tx1, tx2 = _txs(db)
    rows = _history(db)
    assert len(rows) == 2 * n
    assert {(r[2], r[3], r[4]) for r in rows} == {(tx1, tx2, INSERT), (tx2, None, UPDATE)}
    assert sorted(r[1] for r in rows if r[2] == tx2) == sorted(f"n{i}!" for i in range(1, n + 1))


def test_legacy_bulk_save_statement_count_does_not_grow_with_rows(db, article_models):
    Article = article_models()
    session = db.session()
    next_id = iter(range(1, 10000))

    def statements_for(n: int) -> int:
        ids = [next(next_id) for _ in range(n)]
        with db.count_statements() as stmts:
            session.bulk_insert_mappings(Article, [{"id": i, "name": f"n{i}"} for i in ids])
            session.bulk_update_mappings(Article, [{"id": i, "name": f"m{i}"} for i in ids])
            session.bulk_save_objects([Article(id=i + 5000, name="o") for i in ids])
        session.commit()
        return len(stmts)

    statements_for(1)  # the first transaction may cost more (MariaDB: the session setup)
    small, large = statements_for(10), statements_for(200)
    assert small == large
    rows = _history(db)
    assert len(rows) == 211 * 2  # insert + update of one transaction fold into one INSERT
    assert {(r[1], r[4]) for r in rows if r[0] in (1, 5001)} == {("m1", INSERT), ("o", INSERT)}


def test_statements_on_unversioned_tables_cost_nothing(db, base, article_models):
    class Note(base):
        __tablename__ = "note"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(sa.String(20))

    article_models()
    session = db.session()
    session.add(Note(id=1, text="n"))
    session.commit()
    with db.count_statements() as stmts:
        session.execute(sa.update(Note).values(text="m"))
        session.execute(sa.delete(Note))
    session.commit()
    assert len(stmts) == 2
    assert db.rows("transaction") == []


def test_joined_inheritance_bulk_statement_is_refused_before_it_runs(db, base):
    class Employee(base):
        __tablename__ = "employee"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(20))
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "employee"}

    class Engineer(Employee):
        __tablename__ = "engineer"
        id: Mapped[int] = mapped_column(sa.ForeignKey("employee.id"), primary_key=True)
        skill: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_identity": "engineer"}

    db.create(base.metadata)
    session = db.session()
    session.add(Engineer(id=1, name="e", skill="sql"))
    session.commit()
    with pytest.raises(NotSupportedError, match=r"UPDATE on 'engineer'.*Engineer"):
        session.execute(sa.update(Engineer).values(skill="python"))
    session.rollback()
    assert [r["skill"] for r in db.rows("engineer")] == ["sql"]
    assert len(db.rows("engineer_version")) == 1


def test_insert_without_keys_of_a_non_integer_key_is_refused(db, base):
    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        code: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(20))

    db.create(base.metadata)
    session = db.session()
    with pytest.raises(NotSupportedError, match=r"INSERT on 'tag'.*code"):
        session.execute(sa.insert(Tag).values(name="no key"))
    session.rollback()
    assert db.rows("tag") == []


def test_core_statement_on_the_table_of_a_versioned_class(db, seeded):
    Article, session = seeded
    table = Article.__table__
    session.execute(table.update().where(table.c.id == 1).values(name="core"))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [(1, "core", tx2, None, UPDATE)]


def test_bare_connection_statements_are_not_versioned(db, seeded):
    # Documented limit: ORM capture lives in the Session.
    Article, session = seeded
    with db.engine.begin() as conn:
        conn.execute(sa.update(Article.__table__).values(name="unseen"))
    assert len(_history(db)) == 4
    assert orm.object_session(session.get(Article, 1)) is session


def test_insert_without_keys_after_rows_given_explicit_keys(db, article_models):
    # PostgreSQL's sequence starts at 1 whatever keys were given explicitly before.
    Article = article_models()
    session = db.session()
    session.execute(sa.insert(Article), [{"id": 50, "name": "explicit"}])
    session.commit()
    session.execute(sa.insert(Article), [{"name": "generated1"}, {"name": "generated2"}])
    session.commit()
    assert sorted((h[1], h[4]) for h in _history(db)) == [
        ("explicit", INSERT), ("generated1", INSERT), ("generated2", INSERT)
    ]


def test_insert_without_keys_where_a_deleted_row_was(db, seeded):
    """A row inserted without its key may get the key of a deleted row (SQLite hands it
    out again): it gets a version of its own all the same."""
    Article, session = seeded
    session.delete(session.get(Article, 4))
    session.commit()
    session.execute(sa.insert(Article), [{"name": "new"}])
    session.commit()
    tx1, tx2, tx3 = _txs(db)
    (new_id,) = [r["id"] for r in db.rows("article") if r["name"] == "new"]
    assert [h for h in _history(db) if h[2] == tx3] == [(new_id, "new", tx3, None, INSERT)]
    if new_id == 4:
        assert [h[2:] for h in _history(db) if h[0] == 4] == [
            (tx1, tx2, INSERT), (tx2, tx3, DELETE), (tx3, None, INSERT)
        ]


class _HookCalls(Plugin):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def before_create_version_objects(self, uow: Any, session: Any) -> None:
        self.calls.append(("before", session))

    def after_create_version_objects(self, uow: Any, session: Any) -> None:
        self.calls.append(("after", session))


HOOKS = _HookCalls()


@pytest.mark.versioning(plugins=[HOOKS])
def test_plugin_hooks_run_around_the_versions_of_a_bulk_update(db, seeded):
    Article, session = seeded
    HOOKS.calls.clear()
    session.execute(sa.update(Article).where(Article.id <= 2).values(name="renamed"))
    assert HOOKS.calls == [("before", session), ("after", session)]
    session.commit()
    _, tx2 = _txs(db)
    assert sorted(h[:2] for h in _history(db) if h[2] == tx2) == [(1, "renamed"), (2, "renamed")]


@pytest.mark.versioning(plugins=[HOOKS])
def test_plugin_hooks_do_not_run_for_a_bulk_update_that_changes_nothing(db, seeded):
    """As for a flush that versions nothing: neither hook, before or after the
    transaction row was written."""
    Article, session = seeded
    HOOKS.calls.clear()
    session.execute(sa.update(Article).where(Article.id <= 2).values(name=Article.name))
    assert HOOKS.calls == []
    session.get(Article, 3).name = "flushed"
    session.flush()
    HOOKS.calls.clear()
    session.execute(sa.update(Article).where(Article.id <= 2).values(content="c"))
    assert HOOKS.calls == []
    session.execute(sa.update(Article).where(Article.id <= 2).values(content="d"))
    assert HOOKS.calls == [("before", session), ("after", session)]
    session.commit()
    _, tx2 = _txs(db)
    assert sorted(h[:2] for h in _history(db) if h[2] == tx2) == [
        (1, "a1"), (2, "a2"), (3, "flushed")
    ]


def test_a_bulk_save_stops_watching_the_connection_when_it_ends(db, seeded):
    """A second bulk save in the same transaction costs what the first one did: the
    first one's listeners are gone from the connection."""
    Article, session = seeded
    counts = []
    for i in range(3):
        with db.count_statements() as statements:
            session.bulk_insert_mappings(Article, [{"id": 10 + i, "name": f"k{i}"}])
        counts.append(len(statements))
    session.commit()
    assert counts[1] == counts[2] <= counts[0]  # the first may write the transaction row
    _, tx2 = _txs(db)
    assert sorted(h[:2] for h in _history(db) if h[2] == tx2) == [
        (10, "k0"), (11, "k1"), (12, "k2")
    ]


@pytest.mark.dbs("sqlite", "postgresql")
def test_bulk_statements_through_an_async_session(db, seeded):
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    Article, _ = seeded
    drivers = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg_async"}
    url = db.engine.url.set(drivername=drivers[db.name])

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with AsyncSession(engine) as session:
                await session.execute(sa.update(Article).where(Article.id == 1).values(name="x"))
                await session.execute(sa.delete(Article).where(Article.id == 2))
                await session.execute(sa.insert(Article), [{"id": 7, "name": "async"}])
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "x", tx2, None, UPDATE), (2, "a2", tx2, None, DELETE), (7, "async", tx2, None, INSERT)
    ]


# -- legacy bulk saves: bulk_save_objects(), bulk_insert_mappings(), bulk_update_mappings()


def test_bulk_insert_mappings_with_and_without_keys(db, seeded):
    Article, session = seeded
    session.bulk_insert_mappings(Article, [{"id": 10, "name": "k10"}, {"id": 11, "name": "k11"}])
    session.bulk_insert_mappings(Article, [{"name": "auto1"}, {"name": "auto2"}])
    session.bulk_insert_mappings(Article, [{"name": "auto3"}], return_defaults=True)
    session.commit()
    _, tx2 = _txs(db)
    added = [h for h in _history(db) if h[2] == tx2]
    assert sorted(h[1] for h in added) == ["auto1", "auto2", "auto3", "k10", "k11"]
    assert all(h[3] is None and h[4] == INSERT for h in added)
    live = {r["id"]: r["name"] for r in db.rows("article")}
    assert {h[0]: h[1] for h in added} == {k: v for k, v in live.items() if k > 4}


def test_bulk_update_mappings_versions_changed_rows_only(db, seeded):
    Article, session = seeded
    session.bulk_update_mappings(
        Article, [{"id": 1, "name": "b1"}, {"id": 2, "name": "a2"}, {"id": 3, "name": "b3"}]
    )
    session.commit()
    tx1, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2 or h[3] == tx2] == [
        (1, "a1", tx1, tx2, INSERT), (3, "a3", tx1, tx2, INSERT),
        (1, "b1", tx2, None, UPDATE), (3, "b3", tx2, None, UPDATE),
    ]


def test_bulk_save_objects_inserts_and_updates(db, seeded):
    Article, session = seeded
    loaded = session.get(Article, 1)
    loaded.name = "saved"
    session.bulk_save_objects([loaded, Article(id=12, name="new"), Article(name="no key")])
    session.commit()
    _, tx2 = _txs(db)
    assert sorted((h[1], h[3], h[4]) for h in _history(db) if h[2] == tx2) == [
        ("new", None, INSERT), ("no key", None, INSERT), ("saved", None, UPDATE)
    ]


def test_bulk_saves_share_the_transaction_of_flushes_and_statements(db, seeded):
    Article, session = seeded
    session.add(Article(id=30, name="flushed"))
    session.flush()
    session.bulk_update_mappings(Article, [{"id": 30, "name": "bulk"}, {"id": 1, "name": "b1"}])
    session.execute(sa.update(Article).where(Article.id == 1).values(name="stmt"))
    session.bulk_insert_mappings(Article, [{"id": 31, "name": "m31"}])
    session.commit()
    assert len(_txs(db)) == 2
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (1, "stmt", tx2, None, UPDATE), (30, "bulk", tx2, None, INSERT),
        (31, "m31", tx2, None, INSERT),
    ]


def test_failed_bulk_save_leaves_no_version_and_the_session_goes_on(db, seeded):
    Article, session = seeded
    savepoint = session.begin_nested()
    with pytest.raises(sa.exc.IntegrityError):
        session.bulk_insert_mappings(Article, [{"id": 40, "name": "ok"}, {"id": 1, "name": "dup"}])
    savepoint.rollback()
    session.bulk_update_mappings(Article, [{"id": 2, "name": "after"}])
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [(2, "after", tx2, None, UPDATE)]
    assert 40 not in {r["id"] for r in db.rows("article")}


def test_bulk_save_of_joined_inheritance_is_refused_and_rolled_back(db, base):
    class Employee(base):
        __tablename__ = "employee"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(20))
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "employee"}

    class Engineer(Employee):
        __tablename__ = "engineer"
        id: Mapped[int] = mapped_column(sa.ForeignKey("employee.id"), primary_key=True)
        skill: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_identity": "engineer"}

    db.create(base.metadata)
    session = db.session()
    with pytest.raises(NotSupportedError, match=r"bulk save INSERT on 'engineer'.*Engineer"):
        session.bulk_insert_mappings(Engineer, [{"id": 1, "name": "e", "skill": "sql"}])
    session.rollback()
    assert db.rows("employee") == [] and db.rows("engineer") == []
    assert db.rows("employee_version") == []


def test_bulk_saves_on_unversioned_models_cost_nothing(db, base, article_models):
    class Note(base):
        __tablename__ = "note"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(sa.String(20))

    article_models()
    session = db.session()
    with db.count_statements() as stmts:
        session.bulk_insert_mappings(Note, [{"id": 1, "text": "n"}, {"id": 2, "text": "m"}])
        session.bulk_update_mappings(Note, [{"id": 1, "text": "o"}])
    session.commit()
    assert len(stmts) == 2
    assert db.rows("transaction") == []


def test_update_where_versions_a_row_older_than_versioning(db, seeded):
    # Documented: the shorter path compares rows with their last version; a row that
    # has none gets one, changed or not.
    Article, session = seeded
    with db.engine.begin() as conn:
        conn.execute(sa.insert(Article.__table__).values(id=7, name="old", content="c"))
    session.execute(sa.update(Article).where(Article.id.in_([1, 7])).values(name=Article.name))
    session.execute(sa.update(Article).where(Article.id == 2).values(name="changed"))
    session.commit()
    _, tx2 = _txs(db)
    assert [h for h in _history(db) if h[2] == tx2] == [
        (2, "changed", tx2, None, UPDATE), (7, "old", tx2, None, UPDATE)
    ]


def test_rows_older_than_versioning_a_statement_does_not_write_get_no_version(db, seeded):
    """A row written without versioning (the largest key) keeps having no version when
    statements around it write other rows: an UPDATE ... WHERE on another row, a
    bulk_insert_mappings() and an insert() without keys version only their own rows."""
    Article, session = seeded
    with db.engine.begin() as conn:  # key 5, generated as the next ones will be
        conn.execute(sa.insert(Article.__table__).values(name="old", content="c"))
    session.execute(sa.update(Article).where(Article.id == 1).values(name="changed"))
    session.bulk_insert_mappings(Article, [{"name": "legacy"}])
    session.execute(sa.insert(Article), [{"name": "auto"}])
    session.commit()
    _, tx2 = _txs(db)
    assert [(h[0], h[1], h[4]) for h in _history(db) if h[2] == tx2] == [
        (1, "changed", UPDATE), (6, "legacy", INSERT), (7, "auto", INSERT),
    ]
    assert [r["name"] for r in db.rows("article_version") if r["id"] == 5] == []


def test_update_where_closes_only_the_open_version(db, seeded):
    """The shorter path of UPDATE ... WHERE closes the version open before it, and
    leaves the older, closed ones as they were."""
    Article, session = seeded
    session.get(Article, 1).name = "second"
    session.commit()
    session.execute(sa.update(Article).where(Article.id == 1).values(name="third"))
    session.commit()
    tx1, tx2, tx3 = _txs(db)
    assert [h for h in _history(db) if h[0] == 1] == [
        (1, "a1", tx1, tx2, INSERT), (1, "second", tx2, tx3, UPDATE),
        (1, "third", tx3, None, UPDATE),
    ]


def test_bulk_statements_in_a_session_bound_per_model(db, article_models):
    """A session with no default bind, only one for the model: its bulk statements are
    read before and after on the model's connection, and versioned."""
    Article = article_models()
    with orm.Session(binds={Article: db.engine}) as session:
        session.execute(sa.insert(Article), [{"id": 1, "name": "a"}])
        session.commit()
        session.execute(sa.update(Article).where(Article.id == 1).values(name="b"))
        session.commit()
    tx1, tx2 = _txs(db)
    assert _history(db) == [(1, "a", tx1, tx2, INSERT), (1, "b", tx2, None, UPDATE)]
