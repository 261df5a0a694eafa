"""``verify()``: what it finds in a real database, where, and what ``fix=True`` repairs."""

from __future__ import annotations

import datetime
import decimal
import enum
import ipaddress
import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import ConfigurationError, verify
from sqlalchemy_chronicle.capture.ledger import (
    GENESIS_CHAIN,
    chain_hash,
    row_hash,
    transaction_digest,
)
from sqlalchemy_chronicle.plugins import TamperEvidencePlugin

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


@pytest.fixture
def models(base: Any, db: Any) -> Any:
    """Article (JSON, text), Tag and the article_tag association, tables created."""
    article_tag = sa.Table(
        "article_tag",
        base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(base):  # type: ignore[misc, valid-type]
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.Unicode(50))

    class Article(base):  # type: ignore[misc, valid-type]
        __tablename__ = "article"
        __versioned__ = {"exclude": ["views"]}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.Unicode(100))
        data: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
        views: Mapped[int] = mapped_column(default=0)
        tags = orm.relationship(Tag, secondary=article_tag)

    db.create(base.metadata)
    return Article, Tag


def _history(db: Any, models: Any) -> dict[str, int]:
    """Inserts, updates, a delete and re-insert, links, a rolled-back savepoint.
    Returns the transaction id of each step."""
    Article, Tag = models
    session = db.session()
    session.add_all([Article(id=1, name="a", data={"k": [1, 2]}), Article(id=2, name="b")])
    session.commit()
    a = session.get(Article, 1)
    a.name = "a, renamed"
    a.tags.append(Tag(id=1, name="t"))
    session.commit()
    session.delete(session.get(Article, 2))
    session.commit()
    session.add(Article(id=2, name="b, again"))
    with session.begin_nested():  # released: part of the transaction
        a.data = {"k": "é"}
    savepoint = session.begin_nested()
    session.get(Article, 1).name = "never"
    session.flush()
    savepoint.rollback()
    session.commit()
    a.tags.clear()
    a.views = 5  # excluded: no version
    session.commit()
    txs = sorted({r["transaction_id"] for r in db.rows("article_version")})
    session.close()
    return {"insert": txs[0], "update": txs[1], "delete": txs[2], "reinsert": txs[3]}


def _found(report: Any) -> list[tuple[str, str, Any, Any]]:
    return sorted((v.check, v.table, v.key, v.transaction_id) for v in report.violations)


@both_strategies
def test_a_history_written_by_orm_capture_verifies_clean(db, models, base, strategy):
    _history(db, models)
    report = verify(db.engine, models=base)
    assert report.violations == [] and report.ok
    assert set(report.tables) == {"article_version", "tag_version", "article_tag_version"}
    assert report.tables["article_version"] == 6
    # The same database, its tables reflected instead of taken from the models.
    reflected = verify(db.engine, tables=["article", "tag", "article_tag"])
    assert reflected.ok, reflected.violations
    assert reflected.tables == report.tables


def test_a_broken_chain_is_reported_with_table_key_and_transaction(db, models, base):
    txs = _history(db, models)
    version = base.metadata.tables["article_version"]
    with db.engine.begin() as conn:
        conn.execute(
            version.update()
            .where(version.c.id == 1, version.c.transaction_id == txs["insert"])
            .values(end_transaction_id=txs["insert"] + 100)
        )
    report = verify(db.engine, models=base)
    assert _found(report) == [("broken_chain", "article_version", {"id": 1}, txs["insert"])]
    message = report.violations[0].message
    assert f"ends at transaction {txs['insert'] + 100}" in message
    assert f"next version is of transaction {txs['update']}" in message
    assert not report.violations[0].fixable


def test_a_missing_transaction_row_is_reported_for_each_of_its_versions(db, models, base):
    txs = _history(db, models)
    transaction = base.metadata.tables["transaction"]
    with db.engine.begin() as conn:
        conn.execute(transaction.delete().where(transaction.c.id == txs["delete"]))
    report = verify(db.engine, tables=["article"])  # reflected
    assert _found(report) == [("missing_transaction", "article_version", {"id": 2}, txs["delete"])]
    assert "has no row in 'transaction'" in report.violations[0].message


def test_fix_closes_a_dangling_open_version_and_a_second_run_is_clean(db, models, base):
    txs = _history(db, models)
    version = base.metadata.tables["article_version"]
    with db.engine.begin() as conn:
        conn.execute(
            version.update()
            .where(version.c.id == 1, version.c.transaction_id == txs["insert"])
            .values(end_transaction_id=None)
        )
    found = verify(db.engine, models=base)
    assert _found(found) == [
        ("multiple_open_versions", "article_version", {"id": 1}, txs["insert"])
    ]
    assert found.fixes == []  # verify alone changes nothing
    assert not verify(db.engine, models=base).ok

    fixed = verify(db.engine, models=base, fix=True)
    assert [(f.table, f.key, f.action, f.transaction_id) for f in fixed.fixes] == [
        ("article_version", {"id": 1}, "closed", txs["insert"])
    ]
    assert verify(db.engine, models=base).ok
    ends = {
        r["transaction_id"]: r["end_transaction_id"]
        for r in db.rows("article_version")
        if r["id"] == 1
    }
    assert ends[txs["insert"]] == txs["update"]


@both_strategies
def test_fix_writes_the_missing_or_stale_version_of_a_live_row(db, models, base, strategy):
    txs = _history(db, models)
    article = base.metadata.tables["article"]
    with db.engine.begin() as conn:  # Core, outside a session: not versioned
        conn.execute(article.insert().values(id=3, name="unversioned", views=0))
        conn.execute(article.update().where(article.c.id == 1).values(name="edited by hand"))
    report = verify(db.engine, models=base)
    assert _found(report) == [
        ("missing_version", "article_version", {"id": 3}, None),
        ("stale_version", "article_version", {"id": 1}, txs["reinsert"]),
    ]
    stale = next(v for v in report.violations if v.check == "stale_version")
    assert "differs from the live row in name" in stale.message

    fixed = verify(db.engine, models=base, fix=True)
    assert sorted((f.key["id"], f.action) for f in fixed.fixes) == [(1, "wrote"), (3, "wrote")]
    fix_tx = fixed.fixes[0].transaction_id
    assert {f.transaction_id for f in fixed.fixes} == {fix_tx}  # one repair transaction
    assert verify(db.engine, models=base).ok
    rows = {(r["id"], r["transaction_id"]): r for r in db.rows("article_version")}
    assert rows[(3, fix_tx)]["operation_type"] == 0 and rows[(3, fix_tx)]["name"] == "unversioned"
    assert rows[(1, fix_tx)]["operation_type"] == 1
    assert rows[(1, fix_tx)]["name"] == "edited by hand"


@both_strategies
def test_deleted_rows_and_operations_after_a_delete(db, models, base, strategy):
    txs = _history(db, models)
    article = base.metadata.tables["article"]
    version = base.metadata.tables["article_version"]
    with db.engine.begin() as conn:
        conn.execute(article.delete().where(article.c.id == 1))  # not versioned
        # The re-insert of article 2 turned into an UPDATE after its DELETE.
        conn.execute(
            version.update()
            .where(version.c.id == 2, version.c.transaction_id == txs["reinsert"])
            .values(operation_type=1)
        )
    report = verify(db.engine, models=base, fix=True)
    assert _found(report) == [
        ("deleted_row_open", "article_version", {"id": 1}, txs["reinsert"]),
        ("version_after_delete", "article_version", {"id": 2}, txs["reinsert"]),
    ]
    assert report.fixes == []  # neither is safe to guess


def test_association_versions_are_checked_against_the_live_links(db, models, base):
    Article, Tag = models
    session = db.session()
    session.add(Article(id=1, name="a", tags=[Tag(id=1, name="t"), Tag(id=2, name="u")]))
    session.commit()
    link = base.metadata.tables["article_tag"]
    with db.engine.begin() as conn:  # removed behind the history's back
        conn.execute(link.delete().where(link.c.tag_id == 2))
    report = verify(db.engine, models=base)
    assert [(v.check, v.table, v.key) for v in report.violations] == [
        ("deleted_row_open", "article_tag_version", {"article_id": 1, "tag_id": 2})
    ]


def test_chunks_cover_every_key(db, models, base):
    Article, _ = models
    session = db.session()
    session.add_all([Article(id=i, name=str(i)) for i in range(1, 41)])
    session.commit()
    article = base.metadata.tables["article"]
    with db.engine.begin() as conn:
        conn.execute(article.insert().values(id=0, name="below", views=0))
        conn.execute(article.insert().values(id=99, name="above", views=0))
        conn.execute(article.update().where(article.c.id == 17).values(name="x"))
    calls: list[tuple[str, int, int]] = []
    report = verify(
        db.engine,
        models=base,
        tables=["article"],
        chunk_rows=7,
        progress=lambda *args: calls.append(args),
    )
    assert [(v.check, v.key["id"]) for v in report.violations] == [
        ("missing_version", 0),
        ("stale_version", 17),
        ("missing_version", 99),
    ]
    assert calls[-1] == ("article_version", 6, 6) and len(calls) == 6  # 40 rows by 7


def test_bad_arguments_raise_our_error_naming_them(db, models, base):
    with pytest.raises(ConfigurationError, match="no versioned table named nope"):
        verify(db.engine, models=base, tables=["nope"])
    with pytest.raises(ConfigurationError, match="chunk_rows"):
        verify(db.engine, chunk_rows=0)
    with pytest.raises(ConfigurationError, match="declarative base or a MetaData"):
        verify(db.engine, models=42)
    with pytest.raises(ConfigurationError, match="no table 'audit'"):
        verify(db.engine, transaction_table="audit")


# -- tamper evidence ---------------------------------------------------------------------

ledgered = pytest.mark.versioning(plugins=[TamperEvidencePlugin()])


@ledgered
@both_strategies
def test_a_ledgered_history_verifies_clean(db, models, base, strategy):
    _history(db, models)
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    assert report.ledger_head is not None and report.ledger_head[0] == 5
    assert verify(db.engine).ok  # reflected: the same digests
    ledger = db.rows("transaction_ledger", order_by="sequence")
    assert [r["sequence"] for r in ledger] == [-5, 1, 2, 3, 4, 5]  # the head: minus the last


@ledgered
def test_an_altered_version_names_the_first_altered_transaction(db, models, base):
    txs = _history(db, models)
    version = base.metadata.tables["article_version"]
    link = base.metadata.tables["article_tag_version"]
    with db.engine.begin() as conn:
        conn.execute(link.delete().where(link.c.transaction_id == txs["reinsert"] + 1))
        conn.execute(
            version.update()
            .where(version.c.id == 1, version.c.transaction_id == txs["update"])
            .values(name="rewritten")
        )
    report = verify(db.engine, models=base)
    ledger = [v for v in report.violations if v.table == "transaction_ledger"]
    assert [(v.check, v.transaction_id) for v in ledger] == [
        ("ledger_digest", txs["update"]),
        ("ledger_digest", txs["reinsert"] + 1),
    ]
    assert "its rows were altered" in ledger[0].message
    assert report.first_altered_transaction == txs["update"]
    # The live row and its version still agree: only the hashes show the rewrite.
    assert ("stale_version", "article_version") not in {
        (v.check, v.table) for v in report.violations
    }


@ledgered
def test_an_altered_transaction_row_or_ledger_is_found(db, models, base):
    txs = _history(db, models)
    transaction = base.metadata.tables["transaction"]
    ledger = base.metadata.tables["transaction_ledger"]
    with db.engine.begin() as conn:
        conn.execute(
            transaction.update()
            .where(transaction.c.id == txs["delete"])
            .values(remote_addr="10.0.0.1")
        )
        conn.execute(ledger.delete().where(ledger.c.transaction_id == txs["reinsert"]))
    report = verify(db.engine)
    found = [(v.check, v.transaction_id) for v in report.violations]
    assert ("ledger_digest", txs["delete"]) in found
    assert ("ledger_missing", txs["reinsert"]) in found
    assert ("ledger_chain", txs["reinsert"] + 1) in found  # sequence 4 is gone
    assert report.first_altered_transaction == txs["delete"]


@ledgered
def test_a_repair_is_ledgered_too(db, models, base):
    _history(db, models)
    article = base.metadata.tables["article"]
    with db.engine.begin() as conn:
        conn.execute(article.insert().values(id=3, name="unversioned", views=0))
    assert verify(db.engine, fix=True).fixes
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    assert report.ledger_head is not None and report.ledger_head[0] == 6


@ledgered
@pytest.mark.dbs("postgresql", "mysql")
def test_concurrent_commits_give_one_verifiable_chain(db, models, base):
    Article, _ = models
    session = db.session()
    session.add_all([Article(id=i, name="0") for i in range(1, 9)])
    session.commit()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        try:
            start.wait()
            for n in range(6):
                with orm.Session(db.engine) as s, s.begin():
                    s.get(Article, worker * 2 + 1).name = f"{worker}.{n}"
                    s.flush()
                    s.get(Article, worker * 2 + 2).name = f"{worker}.{n}"
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    assert report.ledger_head is not None and report.ledger_head[0] == 25


def test_the_plugin_validates_its_option():
    with pytest.raises(ConfigurationError, match="table_name"):
        TamperEvidencePlugin(table_name="")


# -- native versioning (PostgreSQL triggers) ---------------------------------------------


@pytest.mark.dbs("postgresql")
@pytest.mark.versioning(options={"native_versioning": True})
def test_a_history_written_by_triggers_verifies_clean(db, models, base):
    _history(db, models)
    article = base.metadata.tables["article"]
    with db.engine.begin() as conn:  # a plain connection: the triggers version it too
        conn.execute(article.insert().values(id=7, name="raw", views=0))
        conn.execute(article.update().where(article.c.id == 1).values(name="raw edit"))
    with db.engine.begin() as conn:
        conn.execute(article.delete().where(article.c.id == 7))
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    assert report.tables["article_version"] == 9


@pytest.mark.dbs("postgresql")
@pytest.mark.versioning(options={"native_versioning": True}, plugins=[TamperEvidencePlugin()])
def test_a_ledgered_history_written_by_triggers_verifies_clean(db, models, base):
    txs = _history(db, models)
    report = verify(db.engine, models=base)
    assert report.ok, report.violations
    assert report.ledger_head is not None and report.ledger_head[0] == 5
    version = base.metadata.tables["article_version"]
    with db.engine.begin() as conn:
        conn.execute(
            version.update().where(version.c.transaction_id == txs["delete"]).values(name="x")
        )
    assert verify(db.engine).first_altered_transaction == txs["delete"]


def test_ledger_hashes_keep_their_format():
    """The ledger is stored: hashes written by one release must verify with the next, so
    the text each kind of value hashes as is fixed (a change breaks every ledger)."""
    class Color(enum.Enum):
        RED = 1

    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    row = {
        "none": None, "text": "zoë", "flag": True, "count": 42, "ratio": 0.5,
        "price": decimal.Decimal("9.90"), "blob": b"\x00\xff",
        "moment": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=plus_two),
        "day": datetime.date(2026, 1, 2), "uuid": uuid.UUID(int=1), "color": Color.RED,
        "doc": {"b": [1, 2], "a": "x"}, "address": ipaddress.ip_address("192.0.2.1"),
    }
    digest = row_hash("article_version", row)
    assert digest == "1a975eabfedfd80f7b1780846c291921afe35234311cd5e2523493f541cbca49"
    issued_at = datetime.datetime(2026, 1, 2, 3, 4, 5)
    tx = transaction_digest({"id": 7, "issued_at": issued_at}, [digest])
    assert tx == "f4678a8dac64af0b1c4884b96b0bad1eadb0d77f5a8ef71aa31972f3fc5aacdb"
    assert chain_hash(GENESIS_CHAIN, tx, 7, 1) == (
        "28428530408eda315425e9db8bf2e97bfccd47acbf92e3d1cfc3620a00db6708"
    )
    # The same moment in another zone is the same stored value.
    utc = row["moment"].astimezone(datetime.timezone.utc)
    assert row_hash("article_version", {**row, "moment": utc}) == digest
