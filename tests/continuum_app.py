"""An application written for SQLAlchemy-Continuum 2.0, as its users write one.

``tests/test_continuum_database.py`` runs this file with the real SQLAlchemy-Continuum in
a subprocess (``python continuum_app.py write URL``): Continuum creates the tables and writes
some history. The test then loads this same source with ``sqlalchemy_continuum``
renamed to ``sqlalchemy_chronicle`` in its imports, as a user switching does, and reads
and writes that database. Nothing imports this module as it is: loading Continuum would
install its global listeners in the test process.
"""

from __future__ import annotations

import sys

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy_continuum import make_versioned, versioning_manager
from sqlalchemy_continuum.plugins import (
    ActivityPlugin,
    PropertyModTrackerPlugin,
    TransactionChangesPlugin,
    TransactionMetaPlugin,
)

activity_plugin = ActivityPlugin()
make_versioned(
    user_cls="User",
    plugins=[
        activity_plugin,
        PropertyModTrackerPlugin(),
        TransactionChangesPlugin(),
        TransactionMetaPlugin(),
    ],
)

Base = orm.declarative_base()


class User(Base):
    __tablename__ = "user"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Unicode(100), nullable=False)


class Category(Base):
    __tablename__ = "category"
    __versioned__: dict[str, object] = {}
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Unicode(100))


article_tag = sa.Table(
    "article_tag",
    Base.metadata,
    sa.Column("article_id", sa.Integer, sa.ForeignKey("article.id"), primary_key=True),
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("tag.id"), primary_key=True),
)


class Article(Base):
    __tablename__ = "article"
    __versioned__: dict[str, object] = {}
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Unicode(255), index=True)
    content = sa.Column(sa.UnicodeText)
    category_id = sa.Column(sa.Integer, sa.ForeignKey("category.id"))
    category = orm.relationship(Category, backref="articles")
    tags = orm.relationship("Tag", secondary=article_tag, backref="articles")


class Tag(Base):
    __tablename__ = "tag"
    __versioned__: dict[str, object] = {}
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.Unicode(50))


orm.configure_mappers()
Activity = activity_plugin.activity_cls


def start_transaction(session: orm.Session, user: User, **meta: str) -> None:
    """Say who makes this transaction's changes, and why (Continuum's documented way)."""
    uow = versioning_manager.unit_of_work(session)
    tx = uow.create_transaction(session)
    tx.user_id = user.id
    tx.meta = meta


def write_history(engine: sa.Engine) -> None:
    """Four transactions: inserts, updates, association changes and a delete."""
    Base.metadata.create_all(engine)
    with orm.Session(engine) as session:
        alice = User(name="alice")
        session.add(alice)
        session.commit()

        # transaction 1: two articles, a category, two tags
        start_transaction(session, alice, reason="import")
        news = Category(name="News")
        first = Article(name="First", content="one", category=news)
        first.tags = [Tag(name="a"), Tag(name="b")]
        second = Article(name="Second", content="two")
        session.add_all([first, second])
        session.flush()
        session.add(Activity(verb="create", object=first))
        session.commit()

        # transaction 2: updates, and a tag unlinked (an association version row)
        start_transaction(session, alice, reason="edit")
        first.name = "First, edited"
        first.tags.remove(next(t for t in first.tags if t.name == "b"))
        second.content = "two, edited"
        session.commit()

        # transaction 3: a delete
        session.delete(second)
        session.flush()
        session.add(Activity(verb="delete", object=second))
        session.commit()

        # transaction 4: a relationship changed, a tag linked, a column changed
        first.category = Category(name="Sports")
        first.tags.append(Tag(name="c"))
        first.content = "one, again"
        session.commit()


def differences(engine: sa.Engine, server_defaults: bool = True) -> list[str]:
    """What Alembic's autogenerate finds between these models and the database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_server_default": server_defaults}
        )
        found = []
        for diff in compare_metadata(context, Base.metadata):
            for change in diff if isinstance(diff, list) else [diff]:
                if change[0] == "modify_default":
                    _, _, table, column, _, in_database, declared = change
                    found.append(
                        f"{table}.{column}: default {in_database.arg} in the database, "
                        f"{declared.arg} declared"
                    )
                else:
                    found.append(repr(change))
        return found


if __name__ == "__main__":
    engine = sa.create_engine(sys.argv[2])
    if sys.argv[1] == "write":
        write_history(engine)
    else:
        for line in differences(engine):
            print(line)
    engine.dispose()
