"""The version tables and the transaction table, as built in the metadata and in the DB."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, version_class

INTERNAL = ["transaction_id", "end_transaction_id", "operation_type"]


def define_models(base: Any) -> tuple[Any, Any]:
    class Category(base):
        __tablename__ = "category"
        id: Mapped[int] = mapped_column(primary_key=True)

    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        title: Mapped[str] = mapped_column(sa.String(100), nullable=False, index=True)
        code: Mapped[str | None] = mapped_column(sa.String(20), index=True, unique=True)
        slug: Mapped[str | None] = mapped_column(sa.String(100), unique=True)
        views: Mapped[int] = mapped_column(default=0, server_default="0", onupdate=sa.text("1"))
        category_id: Mapped[int | None] = mapped_column(sa.ForeignKey("category.id"))

    return Category, Article


ARTICLE_COLUMNS = ["id", "title", "code", "slug", "views", "category_id"]


# -- the Table in the metadata ---------------------------------------------------------


def test_version_table_in_metadata(base, manager):
    _, Article = define_models(base)
    orm.configure_mappers()
    table = base.metadata.tables["article_version"]
    assert version_class(Article).__table__ is table
    assert table.metadata is Article.__table__.metadata
    assert table.schema is None
    assert [c.name for c in table.c] == ARTICLE_COLUMNS + INTERNAL
    assert [c.name for c in table.primary_key] == ["id", "transaction_id"]
    assert "category_version" not in base.metadata.tables

    for column in table.c:
        assert column.default is None, column.name
        assert column.server_default is None, column.name
        assert column.onupdate is None, column.name
        assert column.server_onupdate is None, column.name
        assert not column.unique, column.name
        assert not column.foreign_keys, column.name
        if column.primary_key:
            assert column.autoincrement is False, column.name
        if column.name not in ("id", "transaction_id", "operation_type"):
            assert column.nullable, column.name
    assert table.autoincrement_column is None
    assert not table.foreign_key_constraints
    assert not [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    assert isinstance(table.c.transaction_id.type, sa.BigInteger)
    assert isinstance(table.c.end_transaction_id.type, sa.BigInteger)
    assert isinstance(table.c.operation_type.type, sa.SmallInteger)
    assert table.c.operation_type.nullable is False
    assert table.c.id.type._type_affinity is sa.Integer
    assert table.c.title.type.length == 100


def test_version_table_keeps_parent_schema(base, manager):
    class Article(base):
        __tablename__ = "article"
        __table_args__ = {"schema": "content"}
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)

    orm.configure_mappers()
    table = version_class(Article).__table__
    assert table.schema == "content"
    assert base.metadata.tables["content.article_version"] is table


def test_column_keys_follow_attribute_names(db, base):
    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        headline: Mapped[str | None] = mapped_column("title", sa.String(50))

    db.create(base.metadata)
    ArticleVersion = version_class(Article)
    assert ArticleVersion.__table__.c.headline.name == "title"
    session = db.session()
    article = Article(id=1, headline="h")
    session.add(article)
    session.commit()
    assert [r["title"] for r in db.rows("article_version")] == ["h"]
    assert article.versions[0].headline == "h"


def test_sqlite_compiles_transaction_ids_as_integer(base, manager):
    from sqlalchemy.dialects import postgresql, sqlite  # loaded here whatever ran before

    define_models(base)
    orm.configure_mappers()
    table = base.metadata.tables["article_version"]
    ddl = {
        name: str(sa.schema.CreateTable(table).compile(dialect=dialect))
        for name, dialect in [
            ("sqlite", sqlite.dialect()),
            ("postgresql", postgresql.dialect()),
        ]
    }
    assert "transaction_id INTEGER NOT NULL" in ddl["sqlite"]
    assert "transaction_id BIGINT NOT NULL" in ddl["postgresql"]
    assert "end_transaction_id BIGINT" in ddl["postgresql"]


# -- the tables in the database --------------------------------------------------------


def test_version_table_in_database(db, base):
    define_models(base)
    db.create(base.metadata)
    inspector = sa.inspect(db.engine)

    columns = {c["name"]: c for c in inspector.get_columns("article_version")}
    assert list(columns) == ARTICLE_COLUMNS + INTERNAL
    for name in ("title", "code", "slug", "views", "category_id", "end_transaction_id"):
        assert columns[name]["nullable"] is True, name
    for name in ("id", "transaction_id", "operation_type"):
        assert columns[name]["nullable"] is False, name
    assert all(c["default"] is None for c in columns.values())
    assert not any(c.get("autoincrement") is True for c in columns.values())
    if db.name == "sqlite":
        assert isinstance(columns["transaction_id"]["type"], sa.INTEGER)
    else:
        assert isinstance(columns["transaction_id"]["type"], sa.BigInteger)
        assert isinstance(columns["end_transaction_id"]["type"], sa.BigInteger)
    assert isinstance(columns["operation_type"]["type"], sa.SmallInteger)

    assert inspector.get_pk_constraint("article_version")["constrained_columns"] == [
        "id", "transaction_id",
    ]
    assert inspector.get_foreign_keys("article_version") == []
    assert inspector.get_unique_constraints("article_version") == []

    indexes = {ix["name"]: ix for ix in inspector.get_indexes("article_version")}
    single = {n: ix["column_names"] for n, ix in indexes.items() if "_pk_" not in n}
    assert single == {
        "ix_article_version_transaction_id": ["transaction_id"],
        "ix_article_version_end_transaction_id": ["end_transaction_id"],
        "ix_article_version_operation_type": ["operation_type"],
        "ix_article_version_title": ["title"],
        "ix_article_version_code": ["code"],
    }
    assert not any(ix["unique"] for ix in indexes.values())
    # The parent's own constraints were really created, so the copies did drop them.
    assert inspector.get_foreign_keys("article") != []
    assert any(ix["unique"] for ix in inspector.get_indexes("article")
               if ix["column_names"] == ["code"])


def test_version_rows_ignore_parent_constraints(db, base):
    _, Article = define_models(base)
    db.create(base.metadata)
    session = db.session()
    article = Article(id=1, title="t", code="c", slug="s")
    session.add(article)
    session.commit()
    session.delete(article)
    session.commit()
    # Re-use the unique values: the live table accepts them again, and so must the
    # version table, which now holds two rows with the same code and slug.
    session.add(Article(id=1, title="t", code="c", slug="s"))
    session.commit()
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["code"], r["slug"], r["operation_type"]) for r in rows] == [
        ("c", "s", Operation.INSERT), ("c", "s", Operation.DELETE), ("c", "s", Operation.INSERT),
    ]
    assert rows[0]["views"] == 0


def test_transaction_table_in_database(db, base):
    define_models(base)
    db.create(base.metadata)
    inspector = sa.inspect(db.engine)
    columns = {c["name"]: c for c in inspector.get_columns("transaction")}
    assert list(columns) == ["id", "issued_at", "remote_addr"]
    assert isinstance(columns["issued_at"]["type"], sa.DateTime)
    assert isinstance(columns["remote_addr"]["type"], sa.String)
    assert columns["remote_addr"]["type"].length == 50
    if db.name != "sqlite":
        assert isinstance(columns["id"]["type"], sa.BigInteger)
    assert inspector.get_pk_constraint("transaction")["constrained_columns"] == ["id"]
    assert inspector.get_foreign_keys("transaction") == []


def test_parent_index_is_copied_non_unique_under_version_name(db, base):
    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(sa.String(30), unique=True, index=True)

    db.create(base.metadata)
    indexes = {
        ix["name"]: (ix["column_names"], bool(ix["unique"]))
        for ix in sa.inspect(db.engine).get_indexes("tag_version")
    }
    assert indexes["ix_tag_version_label"] == (["label"], False)
    session = db.session()
    tag = Tag(id=1, label="x")
    session.add(tag)
    session.commit()
    tag.label = "y"
    session.commit()
    tag.label = "x"
    session.commit()
    assert [r["label"] for r in db.rows("tag_version", order_by="transaction_id")] == [
        "x", "y", "x",
    ]


# -- enums -----------------------------------------------------------------------------


class Status(enum.Enum):
    draft = "draft"
    published = "published"


def test_named_enum_is_created_once_and_dropped(db, base):
    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        status: Mapped[Status] = mapped_column(sa.Enum(Status, name="chronicle_status"))

    orm.configure_mappers()
    with db.count_statements() as statements:
        db.create(base.metadata)
    if db.name == "postgresql":
        creates = [s for s in statements if s.lstrip().upper().startswith("CREATE TYPE")]
        assert len(creates) == 1, creates
        columns = {c["name"]: c for c in sa.inspect(db.engine).get_columns("article_version")}
        assert columns["status"]["type"].name == "chronicle_status"

    session = db.session()
    article = Article(id=1, status=Status.draft)
    session.add(article)
    session.commit()
    article.status = Status.published
    session.commit()
    session.expire_all()
    assert [v.status for v in article.versions] == [Status.draft, Status.published]
    assert [r["status"] for r in db.rows("article_version", order_by="transaction_id")] == [
        Status.draft, Status.published,
    ]

    session.close()
    base.metadata.drop_all(db.engine)
    assert not {"article", "article_version"} & set(sa.inspect(db.engine).get_table_names())
    if db.name == "postgresql":
        with db.engine.connect() as conn:
            assert conn.scalar(sa.text(
                "SELECT count(*) FROM pg_type WHERE typname = 'chronicle_status'"
            )) == 0


# -- generated values ------------------------------------------------------------------


def test_generated_values_are_stored_as_plain_values(db, base):
    class Item(base):
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(sa.Identity(), primary_key=True)
        qty: Mapped[int] = mapped_column()
        doubled: Mapped[int | None] = mapped_column(sa.Computed("qty * 2", persisted=True))
        status: Mapped[str | None] = mapped_column(sa.String(20), server_default="new")

    db.create(base.metadata)
    table = version_class(Item).__table__
    for column in table.c:
        assert column.computed is None and column.identity is None, column.name
        assert column.server_default is None, column.name
    columns = {c["name"]: c for c in sa.inspect(db.engine).get_columns("item_version")}
    for name in ("id", "doubled", "status"):
        assert "computed" not in columns[name], name
        assert "identity" not in columns[name], name
        assert columns[name]["default"] is None, name
    if db.name == "postgresql":
        live = {c["name"]: c for c in sa.inspect(db.engine).get_columns("item")}
        assert "computed" in live["doubled"] and "identity" in live["id"]

    session = db.session()
    item = Item(qty=3)
    session.add(item)
    session.commit()
    item.qty = 5
    session.commit()
    other = Item(qty=1, status="set")
    session.add(other)
    session.commit()

    live = {r["id"]: r for r in db.rows("item")}
    versions = db.rows("item_version", order_by="transaction_id")
    assert [(v["id"], v["qty"], v["doubled"], v["status"]) for v in versions] == [
        (item.id, 3, 6, "new"), (item.id, 5, 10, "new"), (other.id, 1, 2, "set"),
    ]
    for v in versions[1:]:
        assert {k: v[k] for k in ("qty", "doubled", "status")} == {
            k: live[v["id"]][k] for k in ("qty", "doubled", "status")
        }


# -- autogenerate ----------------------------------------------------------------------


@pytest.mark.parametrize("indexes", ["continuum", "minimal"])
@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_autogenerate_finds_no_difference(db, base, manager, strategy, indexes):
    pytest.importorskip("alembic")
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    manager.options["indexes"] = indexes
    define_models(base)
    db.create(base.metadata)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), base.metadata)
    assert diff == []
    names = {
        ix["name"] for t in sa.inspect(db.engine).get_table_names() if t.endswith("_version")
        for ix in sa.inspect(db.engine).get_indexes(t)
    }
    assert any("operation_type" in name for name in names) == (indexes == "continuum")


@pytest.mark.dbs("postgresql")
def test_transaction_id_sequence_keeps_continuum_name(db, base):
    define_models(base)
    db.create(base.metadata)
    with db.engine.begin() as conn:
        default = conn.scalar(sa.text(
            "SELECT column_default FROM information_schema.columns "
            "WHERE table_name = 'transaction' AND column_name = 'id'"
        ))
        # SQL that writes a transaction row itself (a trigger) needs no id
        new_id = conn.scalar(sa.text(
            "INSERT INTO transaction (issued_at) VALUES (now()) RETURNING id"
        ))
    assert default == "nextval('transaction_id_seq'::regclass)"
    assert new_id == 1
