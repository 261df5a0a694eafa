"""Many-to-many association (``secondary``) tables are versioned like any other table.

ORM collection changes and Core ``insert()``/``delete()`` statements on the table
both write rows into ``<table>_version``, with ``end_transaction_id`` maintained.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import NotSupportedError, Operation

INSERT, UPDATE, DELETE = int(Operation.INSERT), int(Operation.UPDATE), int(Operation.DELETE)

KINDS = ["composite", "surrogate", "extra", "no_pk"]


def _association_table(kind: str, metadata: sa.MetaData) -> sa.Table:
    article = sa.Column("article_id", sa.ForeignKey("article.id"), nullable=False)
    tag = sa.Column("tag_id", sa.ForeignKey("tag.id"), nullable=False)
    if kind == "composite":
        article.primary_key = tag.primary_key = True
        return sa.Table("article_tag", metadata, article, tag)
    if kind == "surrogate":
        return sa.Table(
            "article_tag", metadata, sa.Column("id", sa.Integer, primary_key=True), article, tag
        )
    if kind == "extra":
        article.primary_key = tag.primary_key = True
        return sa.Table(
            "article_tag", metadata, article, tag, sa.Column("position", sa.Integer, default=7)
        )
    assert kind == "no_pk"
    return sa.Table("article_tag", metadata, article, tag)


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def models(base, db, kind):
    article_tag = _association_table(kind, base.metadata)

    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))

    class Article(base):
        __tablename__ = "article"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.String(50))
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag, order_by=Tag.id)

    db.create(base.metadata)
    return SimpleNamespace(
        Article=Article,
        Tag=Tag,
        table=article_tag,
        version=base.metadata.tables["article_tag_version"],
        kind=kind,
    )


def _pairs(db, m):
    """(article, tag, tx, end_tx, op[, position]) of each association version row."""
    rows = db.rows(m.version, order_by=["transaction_id", "article_id", "tag_id"])
    extra = ("position",) if m.kind == "extra" else ()
    keys = ("article_id", "tag_id", "transaction_id", "end_transaction_id", "operation_type")
    return [tuple(r[k] for k in keys + extra) for r in rows]


def _txs(db):
    return [r["id"] for r in db.rows("transaction")]


def _seed(session, m, n_tags=3, articles=(1,)):
    session.add_all([m.Tag(id=i, name=f"t{i}") for i in range(1, n_tags + 1)])
    session.add_all([m.Article(id=a, name=f"a{a}") for a in articles])
    session.commit()


# -- schema ------------------------------------------------------------------------------


def test_version_table_columns_and_primary_key(db, models, kind):
    inspector = sa.inspect(db.engine)
    columns = [c["name"] for c in inspector.get_columns("article_tag_version")]
    internal = ["transaction_id", "end_transaction_id", "operation_type"]
    expected = {
        "composite": (["article_id", "tag_id"], ["article_id", "tag_id"]),
        "surrogate": (["id", "article_id", "tag_id"], ["id"]),
        "extra": (["article_id", "tag_id", "position"], ["article_id", "tag_id"]),
        "no_pk": (["article_id", "tag_id"], ["article_id", "tag_id"]),
    }[kind]
    assert columns == expected[0] + internal
    pk = inspector.get_pk_constraint("article_tag_version")["constrained_columns"]
    assert sorted(pk) == sorted(expected[1] + ["transaction_id"])
    # the copies carry no foreign keys and no defaults
    assert inspector.get_foreign_keys("article_tag_version") == []
    assert models.version.c.get("position") is None or models.version.c.position.default is None


# -- ORM collections -------------------------------------------------------------------


def test_orm_add_remove_clear_chain_versions(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m)
    t1, t2, t3 = (session.get(m.Tag, i) for i in (1, 2, 3))
    article = session.get(m.Article, 1)
    article.tags.extend([t1, t2])
    session.commit()  # tx2
    article.tags.remove(t1)
    session.commit()  # tx3
    article.tags.append(t3)
    session.commit()  # tx4
    article.tags.clear()
    session.commit()  # tx5
    _, tx2, tx3, tx4, tx5 = _txs(db)
    p = (7,) if kind == "extra" else ()
    assert _pairs(db, m) == [
        (1, 1, tx2, tx3, INSERT, *p),
        (1, 2, tx2, tx5, INSERT, *p),
        (1, 1, tx3, None, DELETE, *p),
        (1, 3, tx4, tx5, INSERT, *p),
        (1, 2, tx5, None, DELETE, *p),
        (1, 3, tx5, None, DELETE, *p),
    ]


def test_readding_a_removed_pair_closes_its_delete_version(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m)
    article = session.get(m.Article, 1)
    t1 = session.get(m.Tag, 1)
    article.tags.append(t1)
    session.commit()  # tx2
    article.tags.remove(t1)
    session.commit()  # tx3
    article.tags.append(t1)
    session.commit()  # tx4
    _, tx2, tx3, tx4 = _txs(db)
    rows = [r[:5] for r in _pairs(db, m)]
    closed = tx4
    if kind == "surrogate":
        # the history is keyed by the surrogate id: a new id starts afresh (SQLite may
        # hand out the same id again, which then continues the old history)
        ids = [r["id"] for r in db.rows(m.version, order_by="transaction_id")]
        closed = tx4 if ids[2] == ids[0] else None
    assert rows == [
        (1, 1, tx2, tx3, INSERT), (1, 1, tx3, closed, DELETE), (1, 1, tx4, None, INSERT)
    ]


def test_association_versions_share_the_transaction_of_the_flush(db, models):
    m = models
    session = db.session()
    tag = m.Tag(id=1, name="t")
    session.add(m.Article(id=1, name="a", tags=[tag]))
    session.commit()
    [tx] = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [(1, 1, tx, None, INSERT)]
    assert [r["transaction_id"] for r in db.rows("article_version")] == [tx]
    assert [r["transaction_id"] for r in db.rows("tag_version")] == [tx]


def test_removing_the_article_versions_its_pairs(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    article = session.get(m.Article, 1)
    article.tags = [session.get(m.Tag, 1), session.get(m.Tag, 2)]
    session.commit()
    session.delete(article)
    session.commit()
    _, tx2, tx3 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [
        (1, 1, tx2, tx3, INSERT), (1, 2, tx2, tx3, INSERT),
        (1, 1, tx3, None, DELETE), (1, 2, tx3, None, DELETE),
    ]
    assert db.rows(m.table) == []


# -- Core statements -------------------------------------------------------------------


def test_core_insert_executemany_is_versioned(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": t} for t in (1, 2, 3)])
    session.commit()
    _, tx = _txs(db)
    p = (7,) if kind == "extra" else ()
    assert _pairs(db, m) == [(1, t, tx, None, INSERT, *p) for t in (1, 2, 3)]
    # the ORM sees them and the next removal closes them
    article = session.get(m.Article, 1)
    assert [t.id for t in article.tags] == [1, 2, 3]


def test_core_insert_single_row_and_multi_values_are_versioned(db, models):
    m = models
    session = db.session()
    _seed(session, m, articles=(1, 2))
    session.execute(sa.insert(m.table).values(article_id=1, tag_id=1))
    session.execute(
        sa.insert(m.table).values([{"article_id": 2, "tag_id": 2}, {"article_id": 2, "tag_id": 3}])
    )
    session.commit()
    _, tx = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [
        (1, 1, tx, None, INSERT), (2, 2, tx, None, INSERT), (2, 3, tx, None, INSERT)
    ]


def test_core_insert_keeps_the_extra_column_value(db, models, kind):
    if kind != "extra":
        pytest.skip("only the table with a position column")
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(
        sa.insert(m.table),
        [{"article_id": 1, "tag_id": 1, "position": 10}, {"article_id": 1, "tag_id": 2,
                                                           "position": 20}],
    )
    session.commit()
    assert [(r[1], r[5]) for r in _pairs(db, m)] == [(1, 10), (2, 20)]


def test_core_delete_with_arbitrary_where_is_versioned(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m, articles=(1, 2))
    session.execute(
        sa.insert(m.table),
        [{"article_id": a, "tag_id": t} for a in (1, 2) for t in (1, 2, 3)],
    )
    session.commit()
    session.execute(sa.delete(m.table).where(m.table.c.article_id == 1))
    session.execute(
        sa.delete(m.table).where(m.table.c.tag_id.in_([2, 3]), m.table.c.article_id > 1)
    )
    session.commit()
    _, tx2, tx3 = _txs(db)
    p = (7,) if kind == "extra" else ()
    assert _pairs(db, m) == [
        (1, 1, tx2, tx3, INSERT, *p), (1, 2, tx2, tx3, INSERT, *p), (1, 3, tx2, tx3, INSERT, *p),
        (2, 1, tx2, None, INSERT, *p), (2, 2, tx2, tx3, INSERT, *p),
        (2, 3, tx2, tx3, INSERT, *p),
        (1, 1, tx3, None, DELETE, *p), (1, 2, tx3, None, DELETE, *p),
        (1, 3, tx3, None, DELETE, *p),
        (2, 2, tx3, None, DELETE, *p), (2, 3, tx3, None, DELETE, *p),
    ]
    assert [(r["article_id"], r["tag_id"]) for r in db.rows(m.table)] == [(2, 1)]


def test_core_delete_with_bound_parameters_executemany(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": t} for t in (1, 2, 3)])
    session.commit()
    stmt = sa.delete(m.table).where(
        m.table.c.article_id == sa.bindparam("a"), m.table.c.tag_id == sa.bindparam("t")
    )
    session.execute(stmt, [{"a": 1, "t": 1}, {"a": 1, "t": 3}])
    session.commit()
    _, tx2, tx3 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [
        (1, 1, tx2, tx3, INSERT), (1, 2, tx2, None, INSERT), (1, 3, tx2, tx3, INSERT),
        (1, 1, tx3, None, DELETE), (1, 3, tx3, None, DELETE),
    ]


def test_core_delete_where_a_column_equals_a_subquery_is_versioned(db, models):
    """``col = (SELECT ...)`` is not a bound value: the statement's own WHERE reads the
    rows it deletes. The subquery's entity (Tag) is not what the statement writes: no
    tag gets a version (they used to get DELETE versions, as if the statement were on
    the tag table)."""
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": t} for t in (1, 2, 3)])
    session.commit()
    t2 = sa.select(m.Tag.id).where(m.Tag.name == "t2").scalar_subquery()
    session.execute(sa.delete(m.table).where(m.table.c.tag_id == t2))
    session.commit()
    _, tx2, tx3 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [
        (1, 1, tx2, None, INSERT), (1, 2, tx2, tx3, INSERT), (1, 3, tx2, None, INSERT),
        (1, 2, tx3, None, DELETE),
    ]
    assert [(r["id"], r["operation_type"]) for r in db.rows("tag_version")] == [
        (1, INSERT), (2, INSERT), (3, INSERT),
    ]
    assert [r["name"] for r in db.rows("tag")] == ["t1", "t2", "t3"]


def test_core_delete_matching_nothing_writes_nothing(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.delete(m.table).where(m.table.c.article_id == 99))
    session.commit()
    assert _pairs(db, m) == []
    assert len(_txs(db)) == 1  # only the seeding transaction


# -- folding within one transaction ----------------------------------------------------


def test_insert_then_delete_in_one_transaction_leaves_one_delete(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    article, t1 = session.get(m.Article, 1), session.get(m.Tag, 1)
    article.tags.append(t1)
    session.flush()
    article.tags.remove(t1)
    session.commit()
    _, tx = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [(1, 1, tx, None, DELETE)]


def test_core_insert_then_delete_in_one_transaction_leaves_one_delete(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1}])
    session.execute(sa.delete(m.table).where(m.table.c.tag_id == 1))
    session.commit()
    _, tx = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [(1, 1, tx, None, DELETE)]


def test_delete_then_reinsert_in_one_transaction_is_one_update(db, models, kind):
    if kind == "surrogate":
        pytest.skip("a re-inserted row gets a new surrogate key: another row, not an update")
    m = models
    session = db.session()
    _seed(session, m)
    article, t1 = session.get(m.Article, 1), session.get(m.Tag, 1)
    article.tags.append(t1)
    session.commit()  # tx2
    article.tags.remove(t1)
    session.flush()
    article.tags.append(t1)
    session.commit()  # tx3
    _, tx2, tx3 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [(1, 1, tx2, tx3, INSERT), (1, 1, tx3, None, UPDATE)]


def test_core_delete_then_reinsert_with_new_position_is_an_update(db, models, kind):
    if kind != "extra":
        pytest.skip("only the table with a position column")
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1, "position": 1}])
    session.commit()
    session.execute(sa.delete(m.table).where(m.table.c.article_id == 1))
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1, "position": 2}])
    session.commit()
    _, tx2, tx3 = _txs(db)
    assert _pairs(db, m) == [(1, 1, tx2, tx3, INSERT, 1), (1, 1, tx3, None, UPDATE, 2)]


# -- savepoints and rollback -----------------------------------------------------------


def test_rolled_back_savepoint_leaves_nothing(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    article = session.get(m.Article, 1)
    article.tags.append(session.get(m.Tag, 1))
    session.commit()
    with session.begin_nested() as savepoint:
        article.tags.append(session.get(m.Tag, 2))
        session.flush()
        session.execute(sa.delete(m.table).where(m.table.c.tag_id == 1))
        savepoint.rollback()
    session.commit()
    _, tx2 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [(1, 1, tx2, None, INSERT)]


def test_changes_after_a_rolled_back_savepoint_are_versioned(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    article = session.get(m.Article, 1)
    with session.begin_nested() as savepoint:
        session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1}])
        savepoint.rollback()
    session.expire_all()
    article.tags.append(session.get(m.Tag, 1))
    session.flush()
    article.tags.remove(session.get(m.Tag, 1))
    session.commit()
    _, tx = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [(1, 1, tx, None, DELETE)]


def test_rollback_leaves_nothing(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1}])
    session.rollback()
    assert _pairs(db, m) == []
    assert len(_txs(db)) == 1


# -- cost ------------------------------------------------------------------------------


def _clear_cost(db, m, session, article_id):
    article = session.get(m.Article, article_id)
    article.tags  # noqa: B018 - load the collection outside the count
    with db.count_statements() as statements:
        article.tags.clear()
        session.commit()
    return statements


def _add_cost(db, m, session, article_id, tag_ids):
    article = session.get(m.Article, article_id)
    tags = [session.get(m.Tag, t) for t in tag_ids]
    article.tags  # noqa: B018
    with db.count_statements() as statements:
        article.tags.extend(tags)
        session.commit()
    return statements


def test_statements_do_not_grow_with_the_pairs(db, models):
    m = models
    session = db.session()
    _seed(session, m, n_tags=100, articles=(1, 2))
    added_10 = _add_cost(db, m, session, 1, range(1, 11))
    added_100 = _add_cost(db, m, session, 2, range(1, 101))
    removed_10 = _clear_cost(db, m, session, 1)
    removed_100 = _clear_cost(db, m, session, 2)
    assert len(added_10) == len(added_100)
    assert len(removed_10) == len(removed_100)
    rows = _pairs(db, m)
    assert len(rows) == 220
    assert sum(r[4] == DELETE for r in rows) == 110
    assert all(r[3] is not None for r in rows if r[4] == INSERT)


def test_more_links_than_one_statement_takes_are_versioned_in_chunks(
    db, models, kind, monkeypatch
):
    from sqlalchemy_chronicle.capture import templates

    monkeypatch.setattr(templates, "CHUNK_PARAMS", 4)  # 2 pairs per statement
    m = models
    session = db.session()
    _seed(session, m, n_tags=7)
    article = session.get(m.Article, 1)
    article.tags.extend(session.get(m.Tag, i) for i in range(1, 7))
    session.commit()  # tx2
    article.tags.remove(session.get(m.Tag, 1))
    article.tags.append(session.get(m.Tag, 7))
    session.commit()  # tx3
    _, tx2, tx3 = _txs(db)
    p = (7,) if kind == "extra" else ()
    assert _pairs(db, m) == [
        (1, 1, tx2, tx3, INSERT, *p),
        *[(1, t, tx2, None, INSERT, *p) for t in range(2, 7)],
        (1, 1, tx3, None, DELETE, *p),
        (1, 7, tx3, None, INSERT, *p),
    ]


def test_a_server_default_of_a_link_column_is_versioned_as_stored(base, db):
    article_tag = sa.Table(
        "article_tag",
        base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
        sa.Column("weight", sa.Integer, server_default=sa.text("3")),
    )

    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)

    class Article(base):
        __tablename__ = "article"
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag)

    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1, tags=[Tag(id=1), Tag(id=2)]))
    session.commit()
    rows = db.rows("article_tag_version", order_by=["tag_id"])
    assert [(r["tag_id"], r["weight"], r["operation_type"]) for r in rows] == [
        (1, 3, INSERT), (2, 3, INSERT)
    ]


@pytest.mark.dbs("sqlite")
@pytest.mark.parametrize("kind", ["composite"])
@pytest.mark.parametrize("sqlite", ["3.38+", "older"])
def test_sqlite_finds_pairs_through_the_index_not_by_scanning(db, models, monkeypatch, sqlite):
    # A row-value IN (VALUES ...) makes SQLite scan the whole table, a cost that grows
    # with the history. Pairs go as JSON (json_each) from SQLite 3.38, and otherwise
    # with an IN on the first column that lets SQLite search the index.
    if sqlite == "older":
        monkeypatch.setattr(db.engine.dialect, "server_version_info", (3, 37, 2))
    m = models
    session = db.session()
    _seed(session, m, n_tags=5, articles=range(1, 41))
    for article in session.scalars(sa.select(m.Article)):
        article.tags = [session.get(m.Tag, t) for t in range(1, 6)]
    session.commit()
    with db.executions() as sent:
        for article in session.scalars(sa.select(m.Article).where(m.Article.id <= 20)):
            article.tags = [*article.tags[2:], m.Tag(id=100 + article.id, name="new")]
        session.commit()

    sent = [(statement, params) for statement, params in sent if "article_tag" in statement]
    assert sent
    assert db.sqlite_scans(sent, "article_tag") == []
    rows = _pairs(db, m)
    assert sum(r[4] == DELETE for r in rows) == 40
    assert sum(r[4] == INSERT and r[3] is None for r in rows) == 40 * 5 - 20 * 2 + 20


# -- INSERT ... FROM SELECT ------------------------------------------------------------


def test_core_insert_from_select_is_versioned(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m, articles=(1, 2))
    session.execute(sa.insert(m.table), [{"article_id": 2, "tag_id": 3}])
    session.commit()
    source = sa.select(sa.literal(1).label("article_id"), m.Tag.id).where(m.Tag.id <= 2)
    session.execute(sa.insert(m.table).from_select(["article_id", "tag_id"], source))
    session.commit()
    _, tx2, tx3 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [
        (2, 3, tx2, None, INSERT), (1, 1, tx3, None, INSERT), (1, 2, tx3, None, INSERT)
    ]


@pytest.mark.parametrize("kind", ["surrogate", "no_pk"])
def test_core_insert_of_a_pair_already_present_versions_only_the_new_row(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1}])
    session.commit()
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": t} for t in (1, 2)])
    session.commit()
    _, tx2, tx3 = _txs(db)
    if kind == "surrogate":  # the second (1, 1) row has a key of its own
        expected = [
            (1, 1, tx2, None, INSERT), (1, 1, tx3, None, INSERT), (1, 2, tx3, None, INSERT)
        ]
    else:  # rows without a key are the pair itself: (1, 1) was linked already
        expected = [(1, 1, tx2, None, INSERT), (1, 2, tx3, None, INSERT)]
    assert [r[:5] for r in _pairs(db, m)] == expected


def test_core_update_of_an_association_row_is_refused_before_it_runs(db, models, kind):
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1}])
    session.commit()
    before = _pairs(db, m)
    with pytest.raises(NotSupportedError, match=f"UPDATE of association table {m.table.name!r}"):
        session.execute(sa.update(m.table).where(m.table.c.tag_id == 1).values(tag_id=2))
    session.rollback()
    assert [(r["article_id"], r["tag_id"]) for r in db.rows(m.table.name)] == [(1, 1)]
    assert _pairs(db, m) == before


def test_core_insert_from_select_reading_the_association_table_itself(db, models, kind):
    """The SELECT reads the table the INSERT adds to: the rows versioned are those it
    returned before the INSERT ran (article 1's links, copied to article 2), not those
    it would return after."""
    m = models
    session = db.session()
    _seed(session, m, articles=(1, 2, 3))
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": t} for t in (1, 3)])
    session.commit()
    # Read after the INSERT, it would return (3, 1) and (3, 3) too.
    source = sa.select(m.table.c.article_id + 1, m.table.c.tag_id).where(m.table.c.article_id < 3)
    session.execute(sa.insert(m.table).from_select(["article_id", "tag_id"], source))
    session.commit()
    _, tx2, tx3 = _txs(db)
    assert [r[:5] for r in _pairs(db, m)] == [
        (1, 1, tx2, None, INSERT), (1, 3, tx2, None, INSERT),
        (2, 1, tx3, None, INSERT), (2, 3, tx3, None, INSERT),
    ]
    assert sorted((r["article_id"], r["tag_id"]) for r in db.rows(m.table.name)) == [
        (1, 1), (1, 3), (2, 1), (2, 3)
    ]


@pytest.mark.parametrize("kind", ["surrogate", "no_pk"])
def test_core_insert_from_select_of_a_pair_already_present(db, models, kind):
    """As for a plain INSERT: a second (1, 1) row has a key of its own (surrogate); a
    row without a key is the pair itself, linked already (no_pk)."""
    m = models
    session = db.session()
    _seed(session, m)
    session.execute(sa.insert(m.table), [{"article_id": 1, "tag_id": 1}])
    session.commit()
    source = sa.select(sa.literal(1), m.Tag.id).where(m.Tag.id <= 2)
    session.execute(sa.insert(m.table).from_select(["article_id", "tag_id"], source))
    session.commit()
    _, tx2, tx3 = _txs(db)
    if kind == "surrogate":
        expected = [
            (1, 1, tx2, None, INSERT), (1, 1, tx3, None, INSERT), (1, 2, tx3, None, INSERT)
        ]
    else:
        expected = [(1, 1, tx2, None, INSERT), (1, 2, tx3, None, INSERT)]
    assert [r[:5] for r in _pairs(db, m)] == expected


def test_core_insert_from_select_adding_nothing_writes_nothing(db, models):
    m = models
    session = db.session()
    _seed(session, m)
    source = sa.select(sa.literal(1), m.Tag.id).where(m.Tag.id > 99)
    session.execute(sa.insert(m.table).from_select(["article_id", "tag_id"], source))
    session.commit()
    assert _pairs(db, m) == []
    assert len(_txs(db)) == 1
