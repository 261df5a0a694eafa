"""Versioning options (global and per class) and their validation at configure time."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import (
    ChronicleError,
    ConfigurationError,
    IndexLayout,
    Operation,
    VersioningManager,
    end_tx_column_name,
    make_versioned,
    transaction_class,
    tx_column_name,
    version_class,
)

# -- helpers ---------------------------------------------------------------------------


def write_history(session: orm.Session, Article: Any) -> Any:
    """Insert an article, then rename it twice: three versions, three transactions."""
    article = Article(name="v1", content="c1")
    session.add(article)
    session.commit()
    article.name = "v2"
    session.commit()
    article.name = "v3"
    article.content = "c3"
    session.commit()
    return article


def define_tag(base: Any, versioned: dict[str, Any] | None = None) -> Any:
    class Tag(base):
        __tablename__ = "tag"
        __versioned__ = dict(versioned or {})
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str | None] = mapped_column(sa.String(50))

    return Tag


def assert_config_error(err: pytest.ExceptionInfo[Any], *words: str) -> None:
    """The error is ours, also an ArgumentError, and its message names every word."""
    assert isinstance(err.value, ConfigurationError)
    assert isinstance(err.value, ChronicleError)
    assert isinstance(err.value, sa_exc.ArgumentError)
    message = str(err.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


# -- versioning ------------------------------------------------------------------------


def test_versioning_false_per_class_builds_nothing_and_writes_nothing(db, base):
    Article = define_article(base, {"versioning": False})
    Tag = define_tag(base)
    db.create(base.metadata)

    assert version_class(Article) is Article
    assert "article_version" not in base.metadata.tables
    assert "versions" not in sa.inspect(Article).attrs
    assert version_class(Tag).__name__ == "TagVersion"

    session = db.session()
    article = Article(name="a")
    session.add(article)
    session.commit()
    article.name = "b"
    session.commit()
    assert db.rows("transaction") == []
    assert "article_version" not in sa.inspect(db.engine).get_table_names()
    assert db.rows("article") == [{"id": article.id, "name": "b", "content": None}]


@pytest.mark.versioning(options={"versioning": False})
def test_versioning_false_globally_builds_nothing_and_writes_nothing(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    assert version_class(Article) is Article
    assert set(base.metadata.tables) == {"article"}
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    assert [r["name"] for r in db.rows("article")] == ["a"]


def define_article(base: Any, versioned: dict[str, Any] | None = None) -> Any:
    class Article(base):
        __tablename__ = "article"
        __versioned__ = dict(versioned or {})
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255))
        content: Mapped[str | None] = mapped_column(sa.UnicodeText)

    return Article


# -- table_name ------------------------------------------------------------------------


def test_table_name_per_class(db, base):
    Article = define_article(base, {"table_name": "%s_history"})
    Tag = define_tag(base)
    db.create(base.metadata)
    assert version_class(Article).__table__.name == "article_history"
    assert version_class(Tag).__table__.name == "tag_version"
    assert {"article_history", "tag_version"} <= set(sa.inspect(db.engine).get_table_names())
    write_history(db.session(), Article)
    assert [r["name"] for r in db.rows("article_history", order_by="transaction_id")] == [
        "v1", "v2", "v3",
    ]


@pytest.mark.versioning(options={"table_name": "%s_log"})
def test_table_name_global(db, base):
    Article = define_article(base)
    Tag = define_tag(base, {"table_name": "%s_audit"})
    db.create(base.metadata)
    assert version_class(Article).__table__.name == "article_log"
    assert version_class(Tag).__table__.name == "tag_audit"
    session = db.session()
    session.add_all([Article(name="a"), Tag(id=1, label="t")])
    session.commit()
    assert [r["name"] for r in db.rows("article_log")] == ["a"]
    assert [r["label"] for r in db.rows("tag_audit")] == ["t"]


# -- exclude / include -----------------------------------------------------------------


def test_exclude_leaves_columns_out_of_table_and_class(db, base):
    Article = define_article(base, {"exclude": ["content"]})
    db.create(base.metadata)
    ArticleVersion = version_class(Article)
    assert "content" not in ArticleVersion.__table__.c
    assert "content" not in sa.inspect(ArticleVersion).attrs
    columns = [c["name"] for c in sa.inspect(db.engine).get_columns("article_version")]
    assert "content" not in columns and "name" in columns
    write_history(db.session(), Article)
    rows = db.rows("article_version", order_by="transaction_id")
    assert [r["name"] for r in rows] == ["v1", "v2", "v3"]
    assert all("content" not in r for r in rows)


def test_include_wins_over_exclude(db, base):
    Article = define_article(base, {"exclude": ["name", "content"], "include": ["name"]})
    db.create(base.metadata)
    table = version_class(Article).__table__
    assert "name" in table.c and "content" not in table.c
    session = db.session()
    article = Article(name="a", content="x")
    session.add(article)
    session.commit()
    article.content = "only excluded column changed"
    session.commit()
    article.name = "b"
    session.commit()
    assert [r["name"] for r in db.rows("article_version", order_by="transaction_id")] == ["a", "b"]


@pytest.mark.versioning(options={"exclude": ["content"]})
def test_exclude_global(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    assert "content" not in version_class(Article).__table__.c
    assert "name" in version_class(Article).__table__.c


# -- create_models / create_tables -----------------------------------------------------


def test_create_models_false_builds_table_but_no_class_and_still_captures(db, base):
    Article = define_article(base, {"create_models": False})
    Tag = define_tag(base)
    db.create(base.metadata)
    assert "article_version" in sa.inspect(db.engine).get_table_names()
    assert version_class(Article) is Article
    assert not any(m.class_.__name__ == "ArticleVersion" for m in base.registry.mappers)
    assert "versions" not in sa.inspect(Article).attrs
    assert version_class(Tag).__name__ == "TagVersion"

    write_history(db.session(), Article)
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["name"], r["operation_type"]) for r in rows] == [
        ("v1", Operation.INSERT), ("v2", Operation.UPDATE), ("v3", Operation.UPDATE),
    ]
    txs = [r["transaction_id"] for r in rows]
    assert [r["end_transaction_id"] for r in rows] == [txs[1], txs[2], None]


@pytest.mark.versioning(options={"create_models": False})
def test_create_models_false_globally(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    assert version_class(Article) is Article
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["a"]
    assert len(db.rows("transaction")) == 1


def test_create_tables_false_adds_no_version_table(db, base):
    Article = define_article(base, {"create_tables": False})
    Tag = define_tag(base)
    db.create(base.metadata)
    assert version_class(Article) is Article
    assert "tag_version" in base.metadata.tables
    assert "article_version" not in base.metadata.tables
    assert "article_version" not in sa.inspect(db.engine).get_table_names()
    session = db.session()
    session.add_all([Article(name="a"), Tag(id=1, label="t")])
    session.commit()
    assert [r["name"] for r in db.rows("article")] == ["a"]
    assert [r["label"] for r in db.rows("tag_version")] == ["t"]


def test_create_tables_false_builds_no_version_class(db, base):
    Article = define_article(base, {"create_tables": False})
    db.create(base.metadata)
    assert version_class(Article) is Article
    assert "versions" not in sa.inspect(Article).attrs


# -- internal column names -------------------------------------------------------------

CUSTOM_NAMES = {
    "transaction_column_name": "tx_id",
    "end_transaction_column_name": "end_tx_id",
    "operation_type_column_name": "op",
}


def check_custom_names(db: Any, Article: Any) -> None:
    ArticleVersion = version_class(Article)
    table = ArticleVersion.__table__
    assert [c.name for c in table.c] == ["id", "name", "content", "tx_id", "end_tx_id", "op"]
    assert [c.name for c in table.primary_key] == ["id", "tx_id"]
    assert tx_column_name(Article) == "tx_id"
    assert end_tx_column_name(Article) == "end_tx_id"

    session = db.session()
    article = write_history(session, Article)
    rows = db.rows("article_version", order_by="tx_id")
    txs = [r["tx_id"] for r in rows]
    assert [r["op"] for r in rows] == [Operation.INSERT, Operation.UPDATE, Operation.UPDATE]
    assert [r["end_tx_id"] for r in rows] == [txs[1], txs[2], None]
    assert [r["id"] for r in db.rows("transaction")] == txs

    session.expire_all()
    versions = article.versions.all()
    assert [v.name for v in versions] == ["v1", "v2", "v3"]
    assert [v.tx_id for v in versions] == txs
    assert versions[1].previous is versions[0]
    assert versions[1].next is versions[2]
    assert versions[0].previous is None and versions[2].next is None
    assert [v.index for v in versions] == [0, 1, 2]
    assert versions[2].changeset == {"name": ["v2", "v3"], "content": ["c1", "c3"]}
    assert versions[0].transaction.id == txs[0]
    assert versions[0].version_parent is article


@pytest.mark.versioning(options=CUSTOM_NAMES)
def test_custom_internal_column_names_global(db, base):
    Article = define_article(base)
    db.create(base.metadata)
    check_custom_names(db, Article)


def test_custom_internal_column_names_per_class(db, base):
    Article = define_article(base, CUSTOM_NAMES)
    Tag = define_tag(base)
    db.create(base.metadata)
    check_custom_names(db, Article)
    # The other class keeps the defaults in the same configuration.
    assert [c.name for c in version_class(Tag).__table__.c] == [
        "id", "label", "transaction_id", "end_transaction_id", "operation_type",
    ]
    session = db.session()
    session.add(Tag(id=1, label="t"))
    session.commit()
    assert [(r["label"], r["operation_type"]) for r in db.rows("tag_version")] == [("t", 0)]


# -- strategy --------------------------------------------------------------------------


def test_subquery_strategy_per_class_has_no_end_column(db, base):
    Article = define_article(base, {"strategy": "subquery"})
    Tag = define_tag(base)
    db.create(base.metadata)
    columns = [c["name"] for c in sa.inspect(db.engine).get_columns("article_version")]
    assert columns == ["id", "name", "content", "transaction_id", "operation_type"]
    assert "end_transaction_id" in version_class(Tag).__table__.c

    session = db.session()
    article = write_history(session, Article)
    assert [r["name"] for r in db.rows("article_version", order_by="transaction_id")] == [
        "v1", "v2", "v3",
    ]
    session.expire_all()
    versions = article.versions.all()
    assert versions[1].previous is versions[0]
    assert versions[1].next is versions[2]
    assert versions[2].next is None
    assert versions[2].changeset == {"name": ["v2", "v3"], "content": ["c1", "c3"]}


@pytest.mark.parametrize("strategy", ["subquery"])
def test_subquery_strategy_global(db, base, strategy):
    Article = define_article(base)
    db.create(base.metadata)
    assert "end_transaction_id" not in version_class(Article).__table__.c
    article = write_history(db.session(), Article)
    assert [v.name for v in article.versions] == ["v1", "v2", "v3"]


# -- use_module_name -------------------------------------------------------------------


def continuum_module_name(cls: type) -> str:
    return cls.__module__.title().replace(".", "") + cls.__name__ + "Version"


def test_use_module_name_per_class(db, base):
    Article = define_article(base, {"use_module_name": True})
    Tag = define_tag(base)
    db.create(base.metadata)
    name = version_class(Article).__name__
    assert name.endswith("ArticleVersion") and name != "ArticleVersion"
    module = Article.__module__.replace(".", "").replace("_", "")
    assert name.replace("_", "").lower() == f"{module}ArticleVersion".lower()
    assert version_class(Tag).__name__ == "TagVersion"
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    assert [r["name"] for r in db.rows("article_version")] == ["a"]


@pytest.mark.versioning(options={"use_module_name": True})
def test_use_module_name_matches_continuum_name(base, manager):
    Article = define_article(base)
    orm.configure_mappers()
    assert "_" in Article.__module__  # test_config: the case that tells the two apart
    assert version_class(Article).__name__ == continuum_module_name(Article)


# -- create_composite_index ------------------------------------------------------------


def index_names(engine: sa.Engine, table: str) -> set[str]:
    return {ix["name"] for ix in sa.inspect(engine).get_indexes(table)}


@pytest.mark.parametrize("strategy", ["validity", "subquery"])
def test_composite_indexes_by_default(db, base, strategy):
    define_article(base)
    db.create(base.metadata)
    names = index_names(db.engine, "article_version")
    assert "ix_article_version_pk_transaction_id" in names
    assert ("ix_article_version_pk_validity" in names) == (strategy == "validity")
    by_name = {ix["name"]: ix for ix in sa.inspect(db.engine).get_indexes("article_version")}
    assert by_name["ix_article_version_pk_transaction_id"]["column_names"][0] == "id"
    if strategy == "validity":
        assert by_name["ix_article_version_pk_validity"]["column_names"] == [
            "id", "transaction_id", "end_transaction_id",
        ]


def test_composite_indexes_off_per_class(db, base):
    define_article(base, {"create_composite_index": False})
    define_tag(base)
    db.create(base.metadata)
    names = index_names(db.engine, "article_version")
    assert not any("_pk_" in n for n in names)
    assert "ix_article_version_transaction_id" in names
    assert {"ix_tag_version_pk_transaction_id", "ix_tag_version_pk_validity"} <= index_names(
        db.engine, "tag_version"
    )


@pytest.mark.versioning(options={"create_composite_index": False})
def test_composite_indexes_off_globally(db, base):
    define_article(base)
    db.create(base.metadata)
    assert not any("_pk_" in n for n in index_names(db.engine, "article_version"))


# -- indexes ---------------------------------------------------------------------------

CONTINUUM_INDEXES = {
    "transaction_id", "end_transaction_id", "operation_type", "pk_transaction_id", "pk_validity",
}


def define_tagged(base: Any, versioned: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Article (``versioned``) with tags through ``article_tag``, and a default Tag."""
    article_tag = sa.Table(
        "article_tag",
        base.metadata,
        sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(base):
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        label: Mapped[str | None] = mapped_column(sa.String(50))

    class Article(base):
        __tablename__ = "article"
        __versioned__ = dict(versioned or {})
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str | None] = mapped_column(sa.Unicode(255), index=True)
        tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag, order_by=Tag.id)

    return Article, Tag


def version_indexes(engine: sa.Engine, table: str) -> set[str]:
    """The indexes of version table ``table`` (besides its primary key), without the
    ``ix_<table>_`` prefix."""
    return {name.removeprefix(f"ix_{table}_") for name in index_names(engine, table)}


def test_indexes_are_continuums_by_default(db, base):
    define_tagged(base)
    db.create(base.metadata)
    assert version_indexes(db.engine, "article_version") == CONTINUUM_INDEXES | {"name"}
    assert version_indexes(db.engine, "article_tag_version") == CONTINUUM_INDEXES
    assert version_indexes(db.engine, "tag_version") == CONTINUUM_INDEXES


def test_minimal_indexes_per_class_keep_the_transaction_and_the_parents_indexes(db, base):
    # The association table is versioned with the options of the model that owns the
    # relationship; Tag keeps the default.
    define_tagged(base, {"indexes": "minimal"})
    db.create(base.metadata)
    assert version_indexes(db.engine, "article_version") == {"transaction_id", "name"}
    assert version_indexes(db.engine, "article_tag_version") == {"transaction_id"}
    assert version_indexes(db.engine, "tag_version") == CONTINUUM_INDEXES
    pk = sa.inspect(db.engine).get_pk_constraint("article_version")["constrained_columns"]
    assert pk == ["id", "transaction_id"]


@pytest.mark.versioning(options={"indexes": IndexLayout.MINIMAL, "create_composite_index": True})
def test_minimal_indexes_globally_override_create_composite_index(db, base):
    define_tagged(base)
    db.create(base.metadata)
    for table in ("article_version", "article_tag_version", "tag_version"):
        assert version_indexes(db.engine, table) <= {"transaction_id", "name"}


@pytest.mark.versioning(options={"indexes": "minimal"})
def test_minimal_indexes_history_reads_and_reverts_as_with_continuums(db, base):
    Article, Tag = define_tagged(base)
    db.create(base.metadata)
    ArticleVersion = version_class(Article)
    session = db.session()
    red, blue = Tag(id=1, label="red"), Tag(id=2, label="blue")
    article = Article(id=1, name="first", tags=[red, blue])
    session.add(article)
    session.commit()
    article.name = "second"
    article.tags.remove(blue)
    session.commit()
    session.delete(article)
    session.commit()

    with db.executions() as sent:
        versions = ArticleVersion.all_versions(session, 1, desc=False)
        assert [(v.name, v.operation) for v in versions] == [
            ("first", Operation.INSERT), ("second", Operation.UPDATE), ("second", Operation.DELETE),
        ]
        first, second, deleted = versions
        assert [t.label for t in first.tags] == ["red", "blue"]
        assert [t.label for t in second.tags] == ["red"]
        assert ArticleVersion.version_at(session, 1, first.transaction_id).name == "first"
        assert second.previous.name == "first" and second.next is deleted
        assert second.changeset == {"name": ["first", "second"]}
        assert second.index == 1
        # Every version but the last is closed by the next one's transaction.
        assert [v.end_transaction_id for v in versions] == [
            second.transaction_id, deleted.transaction_id, None,
        ]
        session.expunge_all()
        restored = session.get(ArticleVersion, (1, first.transaction_id)).revert(
            relations=["tags"]
        )
    session.commit()
    assert restored.name == "first" and [t.label for t in restored.tags] == ["red", "blue"]
    assert [r["name"] for r in db.rows("article_version", order_by="transaction_id")] == [
        "first", "second", "second", "first",
    ]
    if db.name == "sqlite":
        # The reads above search the primary key; none scans a version table.
        assert db.sqlite_scans(sent, "article_version") == []
        assert db.sqlite_scans(sent, "article_tag_version") == []


# -- schema ----------------------------------------------------------------------------


def test_schema_option_places_version_table(base, manager):
    Article = define_article(base, {"schema": "history"})
    orm.configure_mappers()
    table = version_class(Article).__table__
    assert table.schema == "history"
    assert "history.article_version" in base.metadata.tables
    assert Article.__table__.schema is None


@pytest.mark.dbs("postgresql")
def test_schema_option_on_postgresql(db, base):
    with db.engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS chronicle_history"))
    Article = define_article(base, {"schema": "chronicle_history"})
    db.create(base.metadata)
    assert "article_version" in sa.inspect(db.engine).get_table_names(schema="chronicle_history")
    assert "article_version" not in sa.inspect(db.engine).get_table_names()
    article = write_history(db.session(), Article)
    assert [r["name"] for r in db.rows("chronicle_history.article_version",
                                        order_by="transaction_id")] == ["v1", "v2", "v3"]
    assert [v.name for v in article.versions] == ["v1", "v2", "v3"]


# -- validation of __versioned__ -------------------------------------------------------


@pytest.mark.parametrize(
    ("versioned", "option"),
    [
        ({"exclud": ["name"]}, "exclud"),
        ({"exclude": ""}, "exclude"),
        ({"exclude": 5}, "exclude"),
        ({"exclude": "missing"}, "exclude"),
        ({"exclude": ["name", None]}, "exclude"),
        ({"include": [1]}, "include"),
        ({"strategy": "x"}, "strategy"),
        ({"table_name": "no_placeholder"}, "table_name"),
        ({"table_name": "%s_%s"}, "table_name"),
        ({"versioning": "yes"}, "versioning"),
        ({"transaction_column_name": ""}, "transaction_column_name"),
        ({"create_composite_index": 1}, "create_composite_index"),
        ({"indexes": "none"}, "indexes"),
        ({"base_classes": "Base"}, "base_classes"),
    ],
)
def test_invalid_versioned_option_raises_at_configure(base, manager, versioned, option):
    define_article(base, versioned)
    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    assert_config_error(err, "Article", option)


def test_versioned_must_be_a_dict(base, manager):
    class Article(base):
        __tablename__ = "article"
        __versioned__ = ["name"]
        id: Mapped[int] = mapped_column(primary_key=True)

    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    assert_config_error(err, "Article", "__versioned__")


def test_continuum_internal_keys_are_accepted(db, base):
    # SQLAlchemy-Continuum writes 'transaction_changes' into __versioned__ itself.
    Article = define_article(base, {"transaction_changes": None})
    db.create(base.metadata)
    assert version_class(Article).__name__ == "ArticleVersion"


# -- validation of manager options -----------------------------------------------------


def test_unknown_manager_option_raises_on_assignment(manager):
    with pytest.raises(ConfigurationError) as err:
        manager.options["strategyy"] = "validity"
    assert_config_error(err, "strategyy", "manager")
    assert "strategyy" not in manager.options


def test_wrong_manager_option_type_raises_on_assignment(manager):
    with pytest.raises(ConfigurationError) as err:
        manager.options["exclude"] = 5
    assert_config_error(err, "exclude")
    assert manager.options["exclude"] == ()
    with pytest.raises(ConfigurationError, match="strategy"):
        manager.options.update({"strategy": "sometimes"})


def test_unknown_option_in_make_versioned_and_constructor():
    with pytest.raises(ConfigurationError, match="tabel_name"):
        VersioningManager(options={"tabel_name": "%s_v"})
    m = VersioningManager()
    with pytest.raises(ConfigurationError, match="tabel_name"):
        make_versioned(manager=m, user_cls=None, options={"tabel_name": "%s_v"})


def test_manager_option_assignment_takes_effect(db, base, manager):
    manager.options["table_name"] = "%s_hist"
    manager.options["strategy"] = "subquery"
    Article = define_article(base)
    db.create(base.metadata)
    table = version_class(Article).__table__
    assert table.name == "article_hist"
    assert "end_transaction_id" not in table.c
    assert manager.option(Article, "strategy") == "subquery"


# -- validation of the models ----------------------------------------------------------


def test_model_without_primary_key_in_its_table(base, manager):
    table = sa.Table(
        "article", base.metadata,
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(50)),
    )

    class Article(base):
        __table__ = table
        __versioned__: dict[str, Any] = {}
        __mapper_args__ = {"primary_key": [table.c.id]}

    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    assert_config_error(err, "Article", "primary key")


def test_imperative_model_without_primary_key_in_its_table(base, manager):
    table = sa.Table(
        "note", base.metadata,
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("body", sa.String(50)),
    )

    class Note:
        __versioned__: dict[str, Any] = {}

    base.registry.map_imperatively(Note, table, primary_key=[table.c.id])
    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    assert_config_error(err, "Note", "primary key")


@pytest.mark.parametrize("column", ["transaction_id", "operation_type", "end_transaction_id"])
def test_model_with_internal_column_name(base, manager, column):
    class Article(base):
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        clash: Mapped[int | None] = mapped_column(column)

    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    assert_config_error(err, "Article", column, "_column_name")


def test_model_with_transaction_id_column_works_with_renamed_option(db, base):
    class Article(base):
        __tablename__ = "article"
        __versioned__ = {"transaction_column_name": "version_tx"}
        id: Mapped[int] = mapped_column(primary_key=True)
        transaction_id: Mapped[int | None] = mapped_column()

    db.create(base.metadata)
    session = db.session()
    session.add(Article(id=1, transaction_id=42))
    session.commit()
    rows = db.rows("article_version")
    assert [(r["transaction_id"], r["version_tx"]) for r in rows] == [
        (42, db.rows("transaction")[0]["id"]),
    ]
    assert transaction_class(Article).__name__ == "Transaction"


# -- base_classes, legacy keys, manager.option -----------------------------------------


class AuditMixin:
    """A base every version class of the test gets."""

    def label(self) -> str:
        return f"{type(self).__name__}:{self.name}"  # type: ignore[attr-defined]


def test_base_classes_option(db, base):
    Article = define_article(base, {"base_classes": (base, AuditMixin)})
    Tag = define_tag(base)
    db.create(base.metadata)
    ArticleVersion = version_class(Article)
    assert issubclass(ArticleVersion, AuditMixin) and issubclass(ArticleVersion, base)
    assert not issubclass(version_class(Tag), AuditMixin)
    article = write_history(db.session(), Article)
    assert [v.label() for v in article.versions] == [
        "ArticleVersion:v1", "ArticleVersion:v2", "ArticleVersion:v3",
    ]


def test_legacy_class_key_means_not_versioned_here(db, base):
    Article = define_article(base, {"class": object})
    define_tag(base)
    db.create(base.metadata)
    assert "article_version" not in base.metadata.tables
    assert "tag_version" in base.metadata.tables
    session = db.session()
    session.add(Article(name="a"))
    session.commit()
    assert db.rows("transaction") == []


def test_manager_option_lookup(base, manager):
    Article = define_article(base, {"table_name": "%s_h"})

    class Plain(base):
        __tablename__ = "plain"
        id: Mapped[int] = mapped_column(primary_key=True)

    orm.configure_mappers()
    assert manager.option(Article, "table_name") == "%s_h"
    assert manager.option(Article, "transaction_column_name") == "transaction_id"
    assert manager.option(Article(), "exclude") == ()
    with pytest.raises(TypeError):
        manager.option(Plain, "table_name")


def test_models_defined_after_a_first_configure_are_versioned(db, base):
    Article = define_article(base)
    orm.configure_mappers()
    assert version_class(Article).__name__ == "ArticleVersion"
    Tag = define_tag(base)
    db.create(base.metadata)
    assert version_class(Tag).__name__ == "TagVersion"
    assert transaction_class(Tag) is transaction_class(Article)
    session = db.session()
    session.add_all([Article(name="a"), Tag(id=1, label="t")])
    session.commit()
    assert len(db.rows("article_version")) == len(db.rows("tag_version")) == 1
    assert len(db.rows("transaction")) == 1


@pytest.mark.parametrize("option", ["exclude", "include"])
def test_exclude_of_unknown_attribute_is_reported(base, manager, option):
    define_article(base, {option: ["nmae"]})
    with pytest.raises(ConfigurationError) as err:
        orm.configure_mappers()
    assert_config_error(err, "Article", "nmae", option)
