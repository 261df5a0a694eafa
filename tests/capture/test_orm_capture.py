"""ORM capture: one version row per changed entity per transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, Plugin, version_class
from sqlalchemy_chronicle.capture import templates
from sqlalchemy_chronicle.capture.sql import key_in


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_insert_update_delete_write_one_version_each(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    article = Article(name="first", content="body")
    session.add(article)
    session.commit()
    article.name = "second"
    session.commit()
    session.delete(article)
    session.commit()

    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["name"], r["operation_type"]) for r in rows] == [
        ("first", Operation.INSERT),
        ("second", Operation.UPDATE),
        ("second", Operation.DELETE),
    ]
    txs = [r["transaction_id"] for r in rows]
    assert txs == sorted(txs) and len(set(txs)) == 3
    if strategy == "validity":
        assert [r["end_transaction_id"] for r in rows] == [txs[1], txs[2], None]
    else:
        assert "end_transaction_id" not in rows[0]
    assert [r["id"] for r in db.rows("transaction")] == txs


def test_update_that_changes_nothing_writes_nothing(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="same", content="x")
    session.add(article)
    session.commit()
    article.name = "same"
    session.commit()
    assert len(db.rows("article_version")) == 1
    assert len(db.rows("transaction")) == 1


def test_object_flagged_dirty_without_a_change_writes_nothing(db, article_models):
    """``flag_dirty`` sends an object through the flush with no attribute changed (an
    UPDATE event with nothing in it): no version, no transaction row."""
    Article = article_models()
    session = db.session()
    article = Article(name="same", content="x")
    session.add(article)
    session.commit()
    sa.orm.attributes.flag_dirty(article)
    assert article in session.dirty
    session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["same"]
    assert len(db.rows("transaction")) == 1


class _VersionObjects(Plugin):
    """A plugin of the object-per-version hook: it notes each version and stamps it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, Operation]] = []

    def after_create_version_object(self, uow, parent_obj, version_obj):
        assert parent_obj.id == version_obj.id
        self.seen.append((parent_obj.name, version_obj.id, version_obj.operation_type))
        version_obj.content = f"noted {len(self.seen)}"


OBJECT_HOOK = _VersionObjects()


@pytest.mark.versioning(plugins=[OBJECT_HOOK])
def test_object_per_version_hook_sees_and_changes_each_version(db, article_models):
    Article = article_models()
    OBJECT_HOOK.seen.clear()
    session = db.session()
    a, b = Article(name="a"), Article(name="b")
    session.add_all([a, b])
    session.commit()
    b.name = "b2"
    session.commit()
    assert sorted(OBJECT_HOOK.seen) == [
        ("a", a.id, Operation.INSERT), ("b", b.id, Operation.INSERT),
        ("b2", b.id, Operation.UPDATE),
    ]
    noted = {name: f"noted {i}" for i, (name, _, _) in enumerate(OBJECT_HOOK.seen, 1)}
    rows = db.rows("article_version", order_by=["transaction_id", "id"])
    assert [(r["name"], r["content"]) for r in rows] == [
        ("a", noted["a"]), ("b", noted["b"]), ("b2", noted["b2"])
    ]
    assert noted["b2"] == "noted 3"


class _HookCalls(Plugin):
    """Notes each object-per-version call (classes, key, whether ``uow`` is the writing
    transaction's) and each dropped transaction (session, id)."""

    def __init__(self) -> None:
        self.objects: list[tuple[str, str, int, bool]] = []
        self.dropped: list[tuple[Any, int]] = []

    def after_create_version_object(self, uow, parent_obj, version_obj):
        self.objects.append((
            type(parent_obj).__name__, type(version_obj).__name__, parent_obj.id,
            version_obj.transaction_id == uow.transaction_id,
        ))

    def transaction_dropped(self, uow, session, tx_id):
        self.dropped.append((session, tx_id))


HOOK_CALLS = _HookCalls()


@pytest.mark.versioning(plugins=[HOOK_CALLS])
def test_object_per_version_hook_runs_once_per_object_of_joined_models(db, base):
    """A subclass object has a row in both tables of a joined model: the hook gets it
    once, as a version of its own class, and the base-class object beside it too."""

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
    HOOK_CALLS.objects.clear()
    session = db.session()
    session.add_all([Engineer(id=1, name="e", skill="sql"), Employee(id=2, name="p")])
    session.commit()
    assert sorted(HOOK_CALLS.objects) == [
        ("Employee", version_class(Employee).__name__, 2, True),
        ("Engineer", version_class(Engineer).__name__, 1, True),
    ]


@pytest.mark.versioning(plugins=[HOOK_CALLS])
def test_object_per_version_hook_sees_only_the_versions_of_its_flush(db, article_models):
    """The second flush of a transaction hands over its own versions, not again those
    the first flush wrote under the same transaction id."""
    Article = article_models()
    HOOK_CALLS.objects.clear()
    session = db.session()
    a, b = Article(name="a"), Article(name="b")
    session.add(a)
    session.flush()
    session.add(b)
    session.commit()
    name = version_class(Article).__name__
    assert HOOK_CALLS.objects == [("Article", name, a.id, True), ("Article", name, b.id, True)]


@pytest.mark.versioning(plugins=[HOOK_CALLS])
def test_transaction_dropped_hook_gets_the_session_and_the_dropped_id(db, article_models):
    """A delete of a row another session deleted meanwhile versions nothing: the
    transaction row is dropped and plugins are told which, with the user's session."""
    Article = article_models()
    setup = db.session()
    setup.add(Article(id=1, name="a"))
    setup.commit()
    setup.close()
    late = db.session()
    stale = late.get(Article, 1)  # a plain read: no lock held against the other session
    other = db.session()
    other.delete(other.get(Article, 1))
    other.commit()
    other.close()
    HOOK_CALLS.dropped.clear()
    late.delete(stale)
    with pytest.warns(sa.exc.SAWarning, match="0 were matched"):
        late.commit()
    [(session, tx_id)] = HOOK_CALLS.dropped
    assert session is late
    ids = [r["id"] for r in db.rows("transaction")]
    assert len(ids) == 2 and tx_id > max(ids)


def test_session_bound_per_model_writes_versions_on_the_models_connection(db, article_models):
    """A session with no default bind, only one for the versioned model: the flush's
    versions and transaction row go on the connection of the model it wrote."""
    Article = article_models()
    with sa.orm.Session(binds={Article: db.engine}) as session:
        session.add(Article(name="a"))
        session.commit()
        session.get(Article, 1).name = "b"
        session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["a", "b"]
    assert len(db.rows("transaction")) == 2


def test_update_of_excluded_column_only_writes_nothing(db, article_models):
    Article = article_models({"exclude": ["content"]})
    session = db.session()
    article = Article(name="a", content="x")
    session.add(article)
    session.commit()
    article.content = "changed"
    session.commit()
    rows = db.rows("article_version")
    assert len(rows) == 1 and "content" not in rows[0]
    assert len(db.rows("transaction")) == 1


def test_several_flushes_fold_into_one_version(db, article_models):
    Article = article_models()
    session = db.session()
    article = Article(name="a")
    session.add(article)
    session.flush()
    article.name = "b"
    session.flush()
    article.content = "c"
    session.commit()
    rows = db.rows("article_version")
    assert [(r["name"], r["content"], r["operation_type"]) for r in rows] == [("b", "c", 0)]


def test_delete_and_reinsert_in_one_transaction_is_an_update(db, article_models):
    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="old"))
    session.commit()
    session.delete(session.get(Article, 1))
    session.flush()
    session.add(Article(id=1, name="new"))
    session.commit()
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["name"], r["operation_type"]) for r in rows] == [("old", 0), ("new", 1)]
    assert rows[0]["end_transaction_id"] == rows[1]["transaction_id"]
    assert rows[1]["end_transaction_id"] is None


def test_insert_delete_and_insert_again_in_one_transaction_is_an_insert(db, article_models):
    """The row did not exist before the transaction: its one version is an INSERT."""
    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="first"))
    session.flush()
    session.delete(session.get(Article, 1))
    session.flush()
    session.add(Article(id=1, name="again"))
    session.commit()
    rows = db.rows("article_version")
    assert [(r["name"], r["operation_type"], r["end_transaction_id"]) for r in rows] == [
        ("again", Operation.INSERT, None)
    ]


def test_delete_after_the_key_changed_in_the_same_flush_versions_the_old_key(
    db, article_models
):
    """The row deleted is the one with the key it had; so is the DELETE version."""
    Article = article_models()
    session = db.session()
    article = Article(id=1, name="a")
    session.add(article)
    session.commit()
    article.id = 5
    session.delete(article)
    session.commit()
    assert db.rows("article") == []
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["id"], r["operation_type"]) for r in rows] == [
        (1, Operation.INSERT), (1, Operation.DELETE)
    ]


def test_rollback_leaves_no_version_and_no_transaction(db, article_models):
    Article = article_models()
    session = db.session()
    session.add(Article(name="a"))
    session.flush()
    session.rollback()
    assert db.rows("article_version") == []
    assert db.rows("transaction") == []
    session.add(Article(name="b"))
    session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["b"]


def test_rolled_back_savepoint_leaves_no_version(db, article_models):
    Article = article_models()
    session = db.session()
    kept = Article(name="kept")
    session.add(kept)
    with session.begin_nested() as sp:
        session.add(Article(name="dropped"))
        session.flush()
        sp.rollback()
    kept.content = "more"
    session.commit()
    rows = db.rows("article_version")
    assert [(r["name"], r["content"], r["operation_type"]) for r in rows] == [("kept", "more", 0)]
    assert len(db.rows("transaction")) == 1


def test_savepoint_that_wrote_the_transaction_row_then_rolled_back(db, article_models):
    Article = article_models()
    session = db.session()
    with session.begin_nested() as sp:
        session.add(Article(name="dropped"))
        session.flush()
        sp.rollback()
    session.add(Article(name="kept"))
    session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["kept"]
    txs = db.rows("transaction")
    assert [t["id"] for t in txs] == [db.rows("article_version")[0]["transaction_id"]]


def test_state_does_not_outlive_the_transaction(db, article_models):
    Article = article_models()
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    assert not [k for k in session.info if str(k).startswith("sqlalchemy_chronicle")]
    session.add(Article(name="b"))
    session.flush()
    assert [k for k in session.info if str(k).startswith("sqlalchemy_chronicle")]
    session.rollback()
    assert not [k for k in session.info if str(k).startswith("sqlalchemy_chronicle")]


def test_two_sessions_get_their_own_transactions(db, article_models):
    Article = article_models()
    s1, s2 = db.session(), db.session()
    s1.add(Article(name="one"))
    s1.commit()
    s2.add(Article(name="two"))
    s2.commit()
    rows = db.rows("article_version")
    assert len({r["transaction_id"] for r in rows}) == 2
    assert len(db.rows("transaction")) == 2


def test_flush_statement_count_does_not_grow_with_rows(db, article_models):
    Article = article_models()
    session = db.session()

    def statements_for(n: int) -> int:
        objs = [Article(name=f"n{i}") for i in range(n)]
        session.add_all(objs)
        session.commit()
        session.scalars(sa.select(Article)).all()  # load them all before changing them
        for obj in objs:
            obj.name = obj.name + "!"
            obj.content = "c"
        with db.count_statements() as stmts:
            session.flush()
        versioned = [s for s in stmts if "version" in s or "transaction" in s]
        session.commit()
        return len(versioned)

    small, large = statements_for(10), statements_for(100)
    assert small == large
    # the transaction row, one INSERT ... SELECT and one closing UPDATE; on PostgreSQL
    # all three are one statement (data-modifying WITH); on MySQL/MariaDB a lock-free
    # SELECT finds the whole keys of the versions the UPDATE closes
    assert large == {"postgresql": 1, "mysql": 4}.get(db.engine.dialect.name, 3)
    assert len(db.rows("transaction")) == 4
    assert len(db.rows("article_version")) == 220


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_delete_flush_statement_count_does_not_grow_with_rows(db, article_models, strategy):
    Article = article_models()
    session = db.session()
    next_id = iter(range(1, 1000))  # SQLite would hand out the ids of deleted rows again

    def statements_for(n: int) -> int:
        objs = [Article(id=next(next_id), name=f"n{i}") for i in range(n)]
        session.add_all(objs)
        session.commit()
        for obj in objs:
            obj.name += "!"
        session.commit()
        for obj in objs:
            session.delete(obj)
        with db.count_statements() as stmts:
            session.flush()
        session.commit()
        return len([s for s in stmts if "version" in s or "transaction" in s])

    small, large = statements_for(10), statements_for(100)
    assert small == large
    # the transaction row, one INSERT ... SELECT copying the last versions and, for the
    # validity strategy, one closing UPDATE: on PostgreSQL all three are one statement
    # (on MySQL/MariaDB, one more: the SELECT of the whole keys to close)
    if strategy == "subquery":
        assert large == 2
    else:
        assert large == {"postgresql": 1, "mysql": 4}.get(db.engine.dialect.name, 3)
    assert len(db.rows("transaction")) == 6
    rows = db.rows("article_version", order_by=["id", "transaction_id"])
    assert len(rows) == 330
    for i in range(0, 330, 3):
        history = rows[i : i + 3]
        assert len({r["id"] for r in history}) == 1
        assert [r["operation_type"] for r in history] == [0, 1, 2]
        assert history[2]["name"] == history[1]["name"]
        assert history[1]["name"].endswith("!")
        if strategy == "validity":
            ends = [r["end_transaction_id"] for r in history]
            assert ends == [history[1]["transaction_id"], history[2]["transaction_id"], None]


@pytest.mark.dbs("sqlite")
@pytest.mark.parametrize("sqlite", ["3.38+", "older"])
def test_sqlite_versions_composite_keys_through_the_index(db, base, monkeypatch, sqlite):
    # The write path for a composite key on SQLite: keys as JSON (3.38+) or with an IN
    # on the first key column; every statement searches an index.
    if sqlite == "older":
        monkeypatch.setattr(db.engine.dialect, "server_version_info", (3, 37, 2))

    class Doc(base):
        __tablename__ = "doc"
        __versioned__ = {}
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
        lang = sa.Column(sa.Integer, primary_key=True)
        title = sa.Column(sa.String(50))

    db.create(base.metadata)
    session = db.session()
    docs = [Doc(id=i, lang=lang, title="a") for i in range(300) for lang in (1, 2)]
    session.add_all(docs)
    session.commit()
    for doc in docs[:300]:
        doc.title = "b"
    session.commit()
    with db.executions() as sent:
        for doc in docs[:200]:
            doc.title = "c"
        session.commit()
        for doc in docs[100:400]:
            session.delete(doc)
        session.commit()

    sent = [(statement, params) for statement, params in sent if "doc_version" in statement]
    assert len(sent) >= 4
    assert db.sqlite_scans(sent, "doc") == []
    rows = db.rows("doc_version", order_by=["id", "lang", "transaction_id"])
    ops: dict[tuple[int, int], list[int]] = {}
    for r in rows:
        ops.setdefault((r["id"], r["lang"]), []).append(r["operation_type"])
    assert ops[(0, 1)] == [0, 1, 1]
    assert ops[(75, 2)] == [0, 1, 1, 2]
    assert ops[(120, 1)] == [0, 1, 2]
    assert ops[(180, 1)] == [0, 2]
    assert ops[(299, 2)] == [0]
    assert len(rows) == 600 + 300 + 200 + 300


@pytest.mark.dbs("sqlite")
@pytest.mark.parametrize("sqlite", ["3.38+", "older"])
@pytest.mark.parametrize("width", [1, 2], ids=["one_column_key", "composite_key"])
def test_sqlite_key_lookups_search_the_index_instead_of_scanning(db, monkeypatch, sqlite, width):
    # SQLite answers a row-value IN (VALUES ...) by scanning the table (here: a version
    # table's shape), a cost that would grow with the history; keys as JSON must be
    # looked up through the index too.
    if sqlite == "older":
        monkeypatch.setattr(db.engine.dialect, "server_version_info", (3, 37, 2))
    metadata = sa.MetaData()
    table = sa.Table(
        "pairs", metadata,
        sa.Column("a", sa.Integer, primary_key=True),
        sa.Column("b", sa.Integer, primary_key=True),
        sa.Column("tx", sa.Integer, primary_key=True),
        sa.Column("end_tx", sa.Integer, index=True),
    )
    db.create(metadata)
    with db.engine.begin() as conn:
        conn.execute(table.insert(), [{"a": i // 5, "b": i % 5, "tx": i} for i in range(5000)])
    columns = [table.c.a, table.c.b][:width]
    keys = [(i, i % 5)[:width] for i in range(10, 310)]
    with db.executions() as sent, db.engine.connect() as conn:
        stmt = sa.select(*columns).where(key_in(columns, keys, conn.dialect))
        found = {tuple(row) for row in conn.execute(stmt)}
    [(statement, params)] = sent
    with db.engine.connect() as conn:
        plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
    assert found == set(keys)
    assert db.sqlite_scans(sent, "pairs") == []
    assert any(step.startswith("SEARCH pairs USING") for step in plan), plan


@pytest.mark.dbs("postgresql", "sqlite")
@pytest.mark.parametrize("composite", [False, True], ids=["one_column_key", "composite_key"])
def test_versioning_sql_does_not_depend_on_the_number_of_rows(db, base, composite):
    # Keys travel as arrays (PostgreSQL) or as one JSON document (SQLite 3.38+), so the
    # server sees the same statements (and can keep them prepared) however many rows a
    # flush changes, and SQLAlchemy does not render a list of parameters each time.
    if db.name == "sqlite" and sqlite3.sqlite_version_info < (3, 38):
        pytest.skip("JSON keys need SQLite 3.38")
    key = {"id": sa.Column(sa.Integer, primary_key=True)}
    if composite:
        key["lang"] = sa.Column(sa.String(2), primary_key=True)

    Doc = type("Doc", (base,), {
        "__tablename__": "doc", "__versioned__": {}, **key,
        "title": sa.Column(sa.String(50)),
    })
    db.create(base.metadata)
    session = db.session()
    next_id = iter(range(1, 1000))

    def versioning_sql(n: int) -> set[str]:
        docs = [Doc(id=next(next_id), title="a", **({"lang": "en"} if composite else {}))
                for _ in range(n)]
        session.add_all(docs)
        session.commit()
        session.scalars(sa.select(Doc)).all()  # load them all before changing them
        for doc in docs:
            doc.title = "b"
        with db.count_statements() as stmts:
            session.commit()
        return {s for s in stmts if "doc_version" in s or "transaction" in s}

    small, large = versioning_sql(3), versioning_sql(40)
    assert small == large
    if db.name == "postgresql":
        # the transaction row, the closing UPDATE and the INSERT ... SELECT in one WITH
        assert len(large) == 1
    else:
        assert len(large) == 3
    assert len(db.rows("transaction")) == 4
    rows = db.rows("doc_version")
    assert len(rows) == 86
    assert sorted(r["title"] for r in rows if r["end_transaction_id"] is None) == ["b"] * 43


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_a_flush_with_more_keys_than_one_statement_takes_is_split(
    db, article_models, monkeypatch, strategy
):
    monkeypatch.setattr(templates, "CHUNK_PARAMS", 3)  # 3 keys per statement
    Article = article_models()
    session = db.session()
    articles = [Article(name=f"a{i}") for i in range(10)]
    session.add_all(articles)
    session.commit()
    session.scalars(sa.select(Article)).all()
    for article in articles:
        article.name += "!"
    with db.count_statements() as statements:
        session.commit()
    assert len([s for s in statements if "INSERT INTO article_version" in s]) == 4
    for article in articles:
        session.delete(article)
    session.commit()

    rows = db.rows("article_version", order_by="transaction_id")
    assert len(rows) == 30
    assert len({r["transaction_id"] for r in rows}) == len(db.rows("transaction")) == 3
    for i in range(10):
        mine = [r for r in rows if r["id"] == articles[i].id]
        assert [r["operation_type"] for r in mine] == [0, 1, 2]
        assert [r["name"] for r in mine] == [f"a{i}", f"a{i}!", f"a{i}!"]
        if strategy == "validity":
            ends = [r["end_transaction_id"] for r in mine]
            assert ends == [mine[1]["transaction_id"], mine[2]["transaction_id"], None]


def test_version_class_columns(db, article_models):
    Article = article_models()
    ArticleVersion = version_class(Article)
    table = ArticleVersion.__table__
    assert [c.name for c in table.columns] == [
        "id", "name", "content", "transaction_id", "end_transaction_id", "operation_type",
    ]
    assert [c.name for c in table.primary_key.columns] == ["id", "transaction_id"]
    assert isinstance(table.c.operation_type.type, sa.SmallInteger)
    assert table.c.name.nullable
