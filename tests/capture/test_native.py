"""Native versioning: PostgreSQL triggers write the very rows ORM capture writes.

The scenario suite runs each scenario twice on PostgreSQL, once with ORM capture and
once with ``native_versioning=True``, and compares the version, transaction and
plugin tables row by row (transaction ids by their order). Other tests drive the
paths only triggers see: raw SQL, Core statements, ORM bulk statements, a second
connection, concurrent transactions, and the DDL itself.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ChronicleError,
    NotSupportedError,
    VersioningManager,
    make_versioned,
    remove_versioning,
    versioning_context,
)
from sqlalchemy_chronicle.dialects.postgresql import create_trigger, drop_trigger, sync_trigger
from sqlalchemy_chronicle.plugins import (
    PropertyModTrackerPlugin,
    TransactionChangesPlugin,
    TransactionMetaPlugin,
)
from sqlalchemy_chronicle.schema import triggers

OTHER_SCHEMA = "chronicle_other"

pg_only = pytest.mark.dbs("postgresql")


@pytest.fixture(autouse=True, params=["small", "large"])
def statement_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with both paths of the triggers: static SQL with kept plans for
    statements of at most ``SMALL_STATEMENT_ROWS`` rows (the ORM's one-row UPDATEs and
    DELETEs), and the same statements planned per call (EXECUTE) for larger ones, here
    taken by every statement."""
    if request.param == "large":
        monkeypatch.setattr(triggers, "SMALL_STATEMENT_ROWS", 0)
    return str(request.param)


# -- models -----------------------------------------------------------------------------


@dataclass
class Models:
    manager: VersioningManager
    base: Any
    Article: Any
    Tag: Any
    Item: Any
    TextItem: Any
    Pair: Any
    Remote: Any
    Odd: Any
    article_tag: sa.Table


def define(manager: VersioningManager, schema: str | None = OTHER_SCHEMA) -> Models:
    class Base(orm.DeclarativeBase):
        pass

    article_tag = sa.Table(
        "article_tag",
        Base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(Base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Article(Base):
        __tablename__ = "article"
        __versioned__ = {"exclude": ["views"]}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        content: Mapped[str | None] = mapped_column(sa.Text)
        views: Mapped[int | None]
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag, order_by=Tag.id)

    class Item(Base):
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        kind: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}

    class TextItem(Item):
        __tablename__ = "text_item"
        id: Mapped[int] = mapped_column(sa.ForeignKey(Item.id), primary_key=True)
        body: Mapped[str | None] = mapped_column(sa.String(50))
        __mapper_args__ = {"polymorphic_identity": "text"}

    class Pair(Base):
        __tablename__ = "pair"
        __versioned__: dict[str, Any] = {}
        left: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        right: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
        value: Mapped[str | None] = mapped_column(sa.String(50))

    class Remote(Base):
        __tablename__ = "remote"
        __table_args__ = {"schema": schema}
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        value: Mapped[str | None] = mapped_column(sa.String(50))

    class Odd(Base):
        __tablename__ = 'Odd "Quoted" Name'
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column("ID", primary_key=True, autoincrement=False)
        value: Mapped[str | None] = mapped_column("Some Value", sa.String(50))

    orm.configure_mappers()
    return Models(manager, Base, Article, Tag, Item, TextItem, Pair, Remote, Odd, article_tag)


PLUGINS = (PropertyModTrackerPlugin, TransactionChangesPlugin, TransactionMetaPlugin)


@contextlib.contextmanager
def versioned(
    engine: sa.Engine, native: bool, strategy: str = "validity", plugins: bool = True
) -> Iterator[Models]:
    """The models, versioned by triggers (``native``) or by the ORM, with fresh tables;
    with the plugins of ``PLUGINS`` or none."""
    manager = VersioningManager()
    make_versioned(
        manager=manager,
        user_cls=None,
        options={"native_versioning": native, "strategy": strategy},
        plugins=[plugin() for plugin in PLUGINS] if plugins else [],
    )
    models = None
    try:
        on_pg = engine.dialect.name == "postgresql"
        models = define(manager, OTHER_SCHEMA if on_pg else None)
        if on_pg:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {OTHER_SCHEMA}")
        models.base.metadata.drop_all(engine)
        models.base.metadata.create_all(engine)
        yield models
    finally:
        if models is not None:
            models.base.metadata.drop_all(engine)
            models.base.registry.dispose()
        remove_versioning(manager=manager)


def snapshot(engine: sa.Engine, models: Models) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the version, transaction and plugin tables; transaction ids are
    replaced by their rank, ``issued_at`` is left out."""
    metadata = models.base.metadata
    tx = models.manager.transaction_table
    result: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        ids = conn.scalars(sa.select(tx.c.id).order_by(tx.c.id)).all()
        rank = {tx_id: i for i, tx_id in enumerate(ids)}
        rank[None] = None
        result["transaction"] = sorted(
            (rank[row.id], row.remote_addr) for row in conn.execute(sa.select(tx))
        )
        for key, table in sorted(metadata.tables.items()):
            if not (key.endswith("_version") or key.startswith("transaction_")):
                continue
            rows = []
            for row in conn.execute(sa.select(table)).mappings():
                values = dict(row)
                for name in ("transaction_id", "end_transaction_id"):
                    if name in values:
                        values[name] = rank[values[name]]
                rows.append(tuple(sorted(values.items(), key=lambda kv: kv[0])))
            result[key] = sorted(rows, key=repr)
    return result


def compare(
    engine: sa.Engine,
    scenario: Callable[[orm.Session, Models], None],
    strategy: str = "validity",
    plugins: bool = True,
) -> None:
    """Run ``scenario`` with ORM capture and with triggers; the tables must be equal."""
    results = []
    for native in (False, True):
        with versioned(engine, native, strategy, plugins) as models:
            with orm.Session(engine) as session:
                scenario(session, models)
            results.append(snapshot(engine, models))
    orm_rows, native_rows = results
    assert orm_rows["transaction"], "the scenario versioned nothing"
    for table in orm_rows:
        assert native_rows[table] == orm_rows[table], table


# -- the scenario suite -----------------------------------------------------------------


def inserts_updates_deletes(session: orm.Session, m: Models) -> None:
    session.add_all([m.Article(id=1, name="a", content="x"), m.Article(id=2, name="b")])
    session.commit()
    article = session.get(m.Article, 1)
    article.name = "a2"
    session.commit()
    article.name = "a2"  # the same value: no version
    session.commit()
    article.views = 10  # an excluded column only: no version, no transaction
    session.commit()
    session.delete(session.get(m.Article, 2))
    session.commit()
    session.add(m.Article(id=2, name="b again"))  # re-insert
    session.commit()
    article.content = None
    session.commit()


def one_version_per_transaction(session: orm.Session, m: Models) -> None:
    article = m.Article(id=1, name="a")
    session.add(article)
    session.flush()
    article.name = "b"
    session.flush()
    article.content = "c"
    session.commit()
    article.name = "d"
    session.flush()
    session.delete(article)
    session.commit()
    session.add(m.Article(id=1, name="e"))
    session.commit()
    session.delete(session.get(m.Article, 1))
    session.flush()
    session.add(m.Article(id=1, name="f"))  # deleted and re-inserted in one transaction
    session.commit()
    session.add(m.Article(id=3, name="g"))
    session.flush()
    session.delete(session.get(m.Article, 3))  # inserted and deleted in one transaction
    session.commit()


def savepoints_and_rollbacks(session: orm.Session, m: Models) -> None:
    session.add(m.Article(id=1, name="a"))
    session.commit()
    article = session.get(m.Article, 1)
    with session.begin_nested():
        article.name = "kept"
    savepoint = session.begin_nested()
    article.name = "undone"
    session.flush()
    savepoint.rollback()
    session.add(m.Article(id=2, name="b"))
    session.commit()
    article.name = "rolled back"
    session.flush()
    session.rollback()
    savepoint = session.begin_nested()
    session.add(m.Article(id=3, name="c"))  # the transaction's first write, undone
    session.flush()
    savepoint.rollback()
    session.get(m.Article, 2).name = "b2"
    session.commit()


def associations(session: orm.Session, m: Models) -> None:
    tags = [m.Tag(id=i, name=f"t{i}") for i in range(1, 4)]
    article = m.Article(id=1, name="a", tags=tags[:2])
    session.add(article)
    session.commit()
    article.tags.append(tags[2])
    session.commit()
    article.tags.remove(tags[0])
    article.name = "a2"
    session.commit()
    article.tags.remove(tags[1])
    session.flush()
    article.tags.append(tags[1])  # removed and added back in one transaction
    session.commit()
    session.delete(article)
    session.commit()


def inheritance(session: orm.Session, m: Models) -> None:
    session.add_all([m.TextItem(id=1, name="t", body="b"), m.Item(id=2, name="i")])
    session.commit()
    item = session.get(m.TextItem, 1)
    item.name = "t2"  # the base table only
    session.commit()
    item.body = "b2"  # the child table only
    session.commit()
    item.name, item.body = "t3", "b3"
    session.commit()
    session.delete(item)
    session.commit()


def composite_keys_schemas_and_odd_names(session: orm.Session, m: Models) -> None:
    session.add_all(
        [
            m.Pair(left=1, right="a", value="x"),
            m.Pair(left=1, right="b", value="y"),
            m.Remote(id=1, value="r"),
            m.Odd(id=1, value="o"),
        ]
    )
    session.commit()
    session.get(m.Pair, (1, "a")).value = "x2"
    session.get(m.Remote, 1).value = "r2"
    session.get(m.Odd, 1).value = "o2"
    session.commit()
    session.delete(session.get(m.Pair, (1, "b")))
    session.delete(session.get(m.Remote, 1))
    session.delete(session.get(m.Odd, 1))
    session.commit()


def context_and_metadata(session: orm.Session, m: Models) -> None:
    with versioning_context(remote_addr="10.0.0.1", reason="import"):
        session.add(m.Article(id=1, name="a"))
        session.commit()
    with versioning_context(remote_addr="10.0.0.2"):
        session.get(m.Article, 1).name = "b"
        session.flush()
        with versioning_context(ticket="T-1"):
            session.get(m.Article, 1).name = "c"
            session.commit()
    uow = m.manager.unit_of_work(session)
    session.get(m.Article, 1).name = "d"
    session.flush()
    tx = uow.current_transaction
    assert tx is not None and tx.id == uow.transaction_id
    session.commit()


SCENARIOS = [
    inserts_updates_deletes,
    one_version_per_transaction,
    savepoints_and_rollbacks,
    associations,
    inheritance,
    composite_keys_schemas_and_odd_names,
    context_and_metadata,
]


@pg_only
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: getattr(s, "__name__", None))
def test_triggers_write_what_orm_capture_writes(engine, scenario):
    compare(engine, scenario)


@pg_only
@pytest.mark.parametrize("scenario", [inserts_updates_deletes, one_version_per_transaction])
def test_triggers_write_what_orm_capture_writes_under_the_subquery_strategy(engine, scenario):
    compare(engine, scenario, strategy="subquery")


@pg_only
@pytest.mark.parametrize(
    "scenario",
    [inserts_updates_deletes, one_version_per_transaction, savepoints_and_rollbacks, inheritance],
    ids=lambda s: getattr(s, "__name__", None),
)
def test_triggers_write_what_orm_capture_writes_without_plugins(engine, scenario):
    """Without TransactionChangesPlugin the triggers read the transaction id themselves
    once the transaction has one (the function is called for the first write only)."""
    compare(engine, scenario, plugins=False)


def small_and_large_statements(conn: sa.Connection, m: Models, n: int) -> None:
    """Core statements of one row and of ``n`` or more, mixed in each transaction."""
    article = m.Article.__table__
    with conn.begin():
        conn.execute(article.insert().values([{"id": i, "name": f"a{i}"} for i in range(n)]))
        conn.execute(article.update().where(article.c.id == 1).values(name="one row"))
        conn.execute(article.delete().where(article.c.id == 2))
        conn.execute(article.update().where(article.c.id < 50).values(content="many"))
    with conn.begin():
        conn.execute(article.delete().where(article.c.id == 3))
        conn.execute(article.update().where(article.c.id.between(4, n)).values(content="x"))
        conn.execute(article.insert().values(id=3, name="again"))
        conn.execute(article.insert().values([{"id": i, "name": f"b{i}"} for i in range(n, 2 * n)]))
        conn.execute(article.update().where(article.c.id == 4).values(name="four"))
    with conn.begin():  # the even rows do not change: no version
        conn.execute(
            article.update().values(
                content=sa.case((article.c.id % 2 == 0, article.c.content), else_=sa.literal("odd"))
            )
        )
        conn.execute(article.update().where(article.c.id == 5).values(content="five"))
    with conn.begin():
        conn.execute(article.delete().where(article.c.id >= n + 10))
        conn.execute(article.delete().where(article.c.id == 1))
        savepoint = conn.begin_nested()
        conn.execute(article.update().values(name="undone"))
        savepoint.rollback()
        conn.execute(article.update().where(article.c.id < 20).values(name="kept"))


@pg_only
def test_small_and_large_statements_write_the_same_rows(engine, statement_size, monkeypatch):
    """Whichever path each statement takes (static SQL up to SMALL_STATEMENT_ROWS rows,
    planned per call above), the triggers write the same rows."""
    if statement_size == "large":
        pytest.skip("this test sets the size itself")
    results = []
    n = triggers.SMALL_STATEMENT_ROWS + 20
    for small in (triggers.SMALL_STATEMENT_ROWS, 1, 0):  # as is; one-row only; none
        monkeypatch.setattr(triggers, "SMALL_STATEMENT_ROWS", small)
        with versioned(engine, native=True) as models, engine.connect() as conn:
            small_and_large_statements(conn, models, n)
            results.append(snapshot(engine, models))
    default, one_row, none = results
    assert len(default["article_version"]) > 4 * n, "too few versions written"
    assert one_row == default
    assert none == default


# -- other databases --------------------------------------------------------------------


@pytest.mark.dbs("sqlite", "mysql")
def test_other_databases_refuse_native_versioning_by_name(engine):
    manager = VersioningManager()
    make_versioned(manager=manager, user_cls=None, options={"native_versioning": True})
    try:
        models = define(manager, schema=None)
        metadata = models.base.metadata
        with pytest.raises(NotSupportedError) as err:
            metadata.create_all(engine)
        message = str(err.value)
        assert engine.dialect.name in message and "native_versioning" in message
        assert any(name in message for name in ("Article", "Tag", "Item", "Pair", "Odd"))
        assert isinstance(err.value, ChronicleError)
        assert sa.inspect(engine).get_table_names() == []  # refused before creating any
    finally:
        remove_versioning(manager=manager)


@pytest.mark.dbs("sqlite", "mysql")
def test_a_flush_on_another_database_is_refused_and_writes_nothing(engine):
    manager = VersioningManager()
    make_versioned(manager=manager, user_cls=None, options={"native_versioning": True})
    try:
        models = define(manager, schema=None)
        metadata = models.base.metadata
        metadata.drop_all(engine)
        with engine.begin() as conn:  # tables made by a migration, not by create_all
            for table in metadata.sorted_tables:
                conn.execute(sa.schema.CreateTable(table))
        with orm.Session(engine) as session:
            session.add(models.Article(id=1, name="a"))
            with pytest.raises(NotSupportedError, match=r"Article.*native_versioning"):
                session.flush()
            session.rollback()
        with engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(models.Article)) == 0
        metadata.drop_all(engine)
    finally:
        remove_versioning(manager=manager)


# -- what only triggers see --------------------------------------------------------------


def article_history(engine: sa.Engine, article_id: int = 1) -> list[tuple[Any, ...]]:
    """(name, operation, transaction id, end transaction id) of each version."""
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT name, operation_type, transaction_id, end_transaction_id "
                    "FROM article_version WHERE id = :id ORDER BY transaction_id"
                ),
                {"id": article_id},
            )
        ]


def transactions(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text('SELECT id, remote_addr FROM "transaction" ORDER BY id')
            )
        ]


def assert_chained(history: list[tuple[Any, ...]]) -> None:
    """Each version's end is the next one's start; the last is open."""
    for version, following in itertools.pairwise(history):
        assert version[3] == following[2], history
    assert history[-1][3] is None, history


@pg_only
def test_raw_sql_before_any_flush_is_versioned_with_the_context(engine):
    with versioned(engine, native=True):
        with orm.Session(engine) as session:
            with versioning_context(remote_addr="10.1.1.1", reason="script"):
                session.execute(sa.text("INSERT INTO article (id, name) VALUES (1, 'a')"))
                session.execute(sa.text("UPDATE article SET name = 'b' WHERE id = 1"))
                session.commit()
            session.execute(sa.text("UPDATE article SET views = 5"))  # excluded only
            session.commit()
            session.execute(sa.text("DELETE FROM article"))
            session.commit()
        history = article_history(engine)
        assert [(n, op) for n, op, _, _ in history] == [("b", 0), ("b", 2)]
        assert_chained(history)
        txs = transactions(engine)
        assert [addr for _, addr in txs] == ["10.1.1.1", None]
        with engine.connect() as conn:
            meta = conn.execute(sa.text("SELECT transaction_id, key, value FROM transaction_meta"))
            assert [tuple(r) for r in meta] == [(txs[0][0], "reason", "script")]
            changes = conn.execute(
                sa.text("SELECT transaction_id, entity_name FROM transaction_changes ORDER BY 1")
            )
            assert [tuple(r) for r in changes] == [(txs[0][0], "Article"), (txs[1][0], "Article")]


@pg_only
def test_core_statements_on_a_plain_connection_are_versioned(engine):
    with versioned(engine, native=True) as m:
        table = m.Article.__table__
        with versioning_context(remote_addr="10.2.2.2"), engine.begin() as conn:
            conn.execute(sa.insert(table), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
            conn.execute(sa.update(table).where(table.c.id == 1).values(name="a2"))
        with engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.id == 2))
        assert [(n, op) for n, op, _, _ in article_history(engine, 1)] == [("a2", 0)]
        assert [(n, op) for n, op, _, _ in article_history(engine, 2)] == [("b", 0), ("b", 2)]
        assert_chained(article_history(engine, 2))
        assert [addr for _, addr in transactions(engine)] == ["10.2.2.2", None]


@pg_only
def test_orm_bulk_statements_are_versioned(engine):
    with versioned(engine, native=True) as m:
        with orm.Session(engine) as session:
            session.execute(sa.insert(m.Article), [{"id": i, "name": f"n{i}"} for i in (1, 2, 3)])
            session.commit()
            session.execute(sa.update(m.Article).where(m.Article.id < 3).values(name="bulk"))
            session.commit()
            session.execute(sa.delete(m.Article).where(m.Article.id == 3))
            session.commit()
        assert [(n, op) for n, op, _, _ in article_history(engine, 1)] == [("n1", 0), ("bulk", 1)]
        assert [(n, op) for n, op, _, _ in article_history(engine, 3)] == [("n3", 0), ("n3", 2)]
        for article_id in (1, 2, 3):
            assert_chained(article_history(engine, article_id))
        assert len(transactions(engine)) == 3


@pg_only
def test_raw_sql_and_a_flush_share_one_transaction_row(engine):
    with versioned(engine, native=True) as m:
        with orm.Session(engine) as session:
            session.execute(sa.text("INSERT INTO article (id, name) VALUES (1, 'raw')"))
            session.add(m.Article(id=2, name="orm"))
            session.flush()
            uow = m.manager.unit_of_work(session)
            tx = uow.current_transaction
            session.execute(sa.text("UPDATE article SET name = 'raw2' WHERE id = 1"))
            session.commit()
            assert [tx_id for tx_id, _ in transactions(engine)] == [tx.id]
            assert [c.entity_name for c in tx.changes] == ["Article"]
        assert [r[2] for r in article_history(engine, 1)] == [tx.id]
        assert [r[2] for r in article_history(engine, 2)] == [tx.id]


@contextlib.contextmanager
def sent(engine: sa.Engine) -> Iterator[list[str]]:
    """The statements sent to the database meanwhile (their first words)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()[:2]))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


@pg_only
def test_a_flush_sends_only_its_own_statements_until_the_id_is_read(engine):
    """Without a context a flush sends nothing of ours: the trigger writes the row and
    the database's clock stamps it. The id is asked for when something reads it."""
    with versioned(engine, native=True) as m:
        with orm.Session(engine) as session:
            session.add(m.Article(id=1, name="a"))
            session.commit()
            article = session.get(m.Article, 1)
            with sent(engine) as statements:
                article.name = "b"
                session.flush()
                article.content = "c"
                session.flush()
            assert statements == ["UPDATE article", "UPDATE article"]
            uow = m.manager.unit_of_work(session)
            with sent(engine) as statements:
                tx_id = uow.transaction_id
                assert uow.transaction_id == tx_id  # asked once
            assert statements == ["SELECT current_setting(%(name)s,"]
            assert uow.current_transaction.id == tx_id
            session.commit()
        assert [r[2] for r in article_history(engine, 1)][1:] == [tx_id]
        with engine.connect() as conn:
            issued = conn.execute(
                sa.text('SELECT issued_at FROM "transaction" WHERE id = :id'), {"id": tx_id}
            ).scalar()
        assert issued is not None


@pg_only
def test_a_flush_with_a_context_hands_it_over_once(engine):
    with versioned(engine, native=True) as m:
        with orm.Session(engine) as session, versioning_context(remote_addr="10.1.2.3"):
            with sent(engine) as statements:
                article = m.Article(id=1, name="a")
                session.add(article)
                session.flush()
                article.name = "b"
                session.flush()
            assert statements == [
                "SELECT set_config(%(name_context)s,",
                "INSERT INTO",
                "UPDATE article",
            ]
            session.commit()
        assert [remote for _, remote in transactions(engine)] == ["10.1.2.3"]


@pg_only
def test_the_orm_reads_history_written_by_triggers(engine):
    with versioned(engine, native=True) as m, orm.Session(engine) as session:
        session.execute(sa.text("INSERT INTO article (id, name) VALUES (1, 'a')"))
        session.commit()
        session.execute(sa.text("UPDATE article SET name = 'b' WHERE id = 1"))
        session.commit()
        article = session.get(m.Article, 1)
        names = [v.name for v in article.versions]
        assert names == ["a", "b"]
        assert article.versions[1].changeset == {"name": ["a", "b"]}
        article.versions[0].revert()
        session.commit()
        assert session.get(m.Article, 1).name == "a"
        assert [v.name for v in session.get(m.Article, 1).versions] == ["a", "b", "a"]


@pg_only
@pytest.mark.parametrize("plugins", [True, False], ids=["plugins", "no_plugins"])
def test_two_concurrent_transactions_keep_unbroken_chains(engine, plugins):
    with versioned(engine, native=True, plugins=plugins) as m:
        with orm.Session(engine) as session:
            session.add_all([m.Article(id=1, name="a"), m.Article(id=2, name="b")])
            session.commit()
        with engine.connect() as first, engine.connect() as second:
            first_tx = first.begin()
            first.execute(sa.text("UPDATE article SET name = 'a1' WHERE id = 1"))  # takes its id
            with second.begin():
                second.execute(sa.text("UPDATE article SET name = 'b2' WHERE id = 2"))
            # The first transaction now versions a row the newer one versioned.
            first.execute(sa.text("UPDATE article SET name = 'b1' WHERE id = 2"))
            first_tx.commit()
        for article_id in (1, 2):
            assert_chained(article_history(engine, article_id))
        assert [name for name, *_ in article_history(engine, 2)] == ["b", "b2", "b1"]
        with engine.connect() as conn:
            ids = conn.scalars(sa.text('SELECT id FROM "transaction" ORDER BY id')).all()
            if plugins:
                changes = conn.execute(sa.text("SELECT transaction_id FROM transaction_changes"))
                assert sorted(r[0] for r in changes) == ids  # moved with the transaction
        assert len(ids) == 3
        # The first transaction moved to the newest id, its two versions with it.
        assert article_history(engine, 1)[-1][2] == article_history(engine, 2)[-1][2] == ids[-1]


@pg_only
def test_a_flush_after_a_move_to_a_new_id_sees_the_new_transaction(engine):
    with versioned(engine, native=True) as m:
        with orm.Session(engine) as session:
            session.add_all([m.Article(id=1, name="a"), m.Article(id=2, name="b")])
            session.commit()
            session.get(m.Article, 1).name = "a1"
            session.flush()
            uow = m.manager.unit_of_work(session)
            early = uow.transaction_id
            with engine.begin() as other:
                other.execute(sa.text("UPDATE article SET name = 'b2' WHERE id = 2"))
            session.get(m.Article, 2).name = "b1"
            session.flush()
            assert uow.transaction_id > early
            assert uow.current_transaction.id == uow.transaction_id
            session.commit()
        for article_id in (1, 2):
            assert_chained(article_history(engine, article_id))


# -- DDL and the Continuum functions ------------------------------------------------------


def our_functions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.scalars(
                sa.text(
                    "SELECT proname FROM pg_proc WHERE proname LIKE 'chronicle!_%' ESCAPE '!' "
                    "OR proname LIKE '%!_audit' ESCAPE '!'"
                )
            )
        )


@pg_only
def test_create_all_installs_and_drop_all_removes_pinned_functions(engine):
    with versioned(engine, native=True) as m:
        functions = our_functions(engine)
        assert "article_audit" in functions and "chronicle_transaction_id" in functions
        assert 'Odd "Quoted" Name_audit' in functions
        with engine.connect() as conn:
            configs = conn.execute(
                sa.text("SELECT proname, proconfig FROM pg_proc WHERE proname = ANY(:names)"),
                {"names": functions},
            ).all()
        assert configs and all(c[0] == "search_path=pg_catalog, pg_temp" for _, c in configs)
        # The audit functions keep one plan per static statement (the small-statement
        # path); the statements run through EXECUTE are planned per call anyway.
        assert {n: c[1:] for n, c in configs} == {
            n: ["plan_cache_mode=force_generic_plan"] if n.endswith("_audit") else []
            for n in functions
        }
        with engine.connect() as conn:
            triggers = conn.scalars(
                sa.text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.article'::regclass "
                    "AND NOT tgisinternal ORDER BY tgname"
                )
            ).all()
        assert triggers == [
            "article_delete_trigger",
            "article_insert_trigger",
            "article_update_trigger",
        ]
        m.base.metadata.drop_all(engine)
        assert our_functions(engine) == []


@pg_only
def test_a_callers_search_path_cannot_redirect_the_versions(engine):
    with versioned(engine, native=True) as m:
        decoy = sa.Table(
            "article_version",
            sa.MetaData(),
            *[sa.Column(c.name, c.type) for c in m.manager.tables[m.Article].columns],
            schema=OTHER_SCHEMA,
        )
        decoy.create(engine)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL search_path = {OTHER_SCHEMA}, public")
                conn.exec_driver_sql("INSERT INTO public.article (id, name) VALUES (1, 'a')")
            with engine.connect() as conn:
                assert conn.scalar(sa.select(sa.func.count()).select_from(decoy)) == 0
            assert [r[0] for r in article_history(engine)] == ["a"]
        finally:
            decoy.drop(engine)


def write(engine: sa.Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(statement)


@pg_only
def test_switching_from_orm_capture_to_triggers_and_back_keeps_the_history(engine):
    def configure(native: bool) -> tuple[VersioningManager, Models]:
        manager = VersioningManager()
        make_versioned(
            manager=manager,
            user_cls=None,
            options={"native_versioning": native},
            plugins=[plugin() for plugin in PLUGINS],
        )
        return manager, define(manager)

    def done(manager: VersioningManager, models: Models) -> None:
        remove_versioning(manager=manager)
        models.base.registry.dispose()

    manager, models = configure(native=False)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {OTHER_SCHEMA}")
    models.base.metadata.drop_all(engine)
    models.base.metadata.create_all(engine)
    metadata = models.base.metadata
    try:
        with orm.Session(engine) as session:
            session.add(models.Article(id=1, name="orm 1"))
            session.commit()
            session.get(models.Article, 1).name = "orm 2"
            session.commit()
        write(engine, "UPDATE article SET name = 'unversioned'")  # no triggers yet
        done(manager, models)

        manager, models = configure(native=True)  # the same tables, now with triggers
        with engine.begin() as conn:
            create_trigger(conn, models.Article.__table__)
        with orm.Session(engine) as session:
            session.get(models.Article, 1).name = "native 1"
            session.commit()
        write(engine, "UPDATE article SET name = 'native 2'")
        done(manager, models)

        manager, models = configure(native=False)  # and back
        with engine.begin() as conn:
            drop_trigger(conn, "article")
        with orm.Session(engine) as session:
            session.get(models.Article, 1).name = "orm 3"
            session.commit()
            history = article_history(engine)
            assert [r[0] for r in history] == ["orm 1", "orm 2", "native 1", "native 2", "orm 3"]
            assert [r[1] for r in history] == [0, 1, 1, 1, 1]
            assert_chained(history)
            versions = session.get(models.Article, 1).versions
            assert [v.name for v in versions] == [r[0] for r in history]
        assert our_functions(engine) == [
            "chronicle_transaction_id",
            "chronicle_transaction_restamp",
        ]
        done(manager, models)
    finally:
        metadata.drop_all(engine)


@pg_only
def test_sync_trigger_versions_a_column_a_migration_added(engine):
    with versioned(engine, native=True) as m:
        write(engine, "INSERT INTO article (id, name) VALUES (1, 'a')")
        write(engine, "ALTER TABLE article ADD COLUMN summary TEXT")
        write(engine, "ALTER TABLE article_version ADD COLUMN summary TEXT")
        write(engine, "ALTER TABLE article ADD COLUMN internal TEXT")  # not versioned
        with orm.Session(engine) as session:
            sync_trigger(session, "article_version", entity_name="Article")
            session.commit()
        write(engine, "UPDATE article SET summary = 's', internal = 'i'")
        write(engine, "UPDATE article SET internal = 'j'")  # an unversioned column only
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT name, summary, operation_type, end_transaction_id IS NULL "
                    "FROM article_version ORDER BY transaction_id"
                )
            ).all()
        assert [tuple(r) for r in rows] == [("a", None, 0, False), ("a", "s", 1, True)]
        with engine.connect() as conn:
            assert conn.scalar(sa.text("SELECT count(*) FROM transaction_changes")) == 2
        del m


@pg_only
def test_tables_in_the_schema_of_their_metadata_take_transaction_ids_from_the_sequence(engine):
    """``MetaData(schema=...)`` puts the transaction table there, but SQLAlchemy creates
    its sequence (named without a schema) in the default schema: the triggers use it."""
    manager = VersioningManager()
    make_versioned(manager=manager, user_cls=None, options={"native_versioning": True})

    class Base(orm.DeclarativeBase):
        metadata = sa.MetaData(schema=OTHER_SCHEMA)

    class Article(Base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    try:
        orm.configure_mappers()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {OTHER_SCHEMA}")
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO {OTHER_SCHEMA}.article VALUES (1, 'a'), (2, 'b')")
            conn.execute(  # an executemany(): one statement, and its triggers, per row
                sa.update(Article.__table__).where(Article.__table__.c.id == sa.bindparam("k")),
                [{"k": 1, "name": "a2"}, {"k": 2, "name": "b2"}],
            )
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {OTHER_SCHEMA}.article SET name = 'a3' WHERE id = 1")
            rows = conn.exec_driver_sql(
                f"SELECT id, name, operation_type, transaction_id, end_transaction_id "
                f"FROM {OTHER_SCHEMA}.article_version ORDER BY id, transaction_id"
            ).all()
        first, second = rows[0][3], rows[1][3]
        assert second > first
        assert [tuple(r) for r in rows] == [
            (1, "a2", 0, first, second), (1, "a3", 1, second, None), (2, "b2", 0, first, None)
        ]
    finally:
        Base.metadata.drop_all(engine)
        Base.registry.dispose()
        remove_versioning(manager=manager)
