"""A small application whose history ``chronicle log/show/diff`` read in the CLI tests.

``tests/integrations/test_cli_history.py`` runs ``python history_app.py write URL`` (with
``HISTORY_APP_NATIVE=1`` for PostgreSQL triggers instead of ORM capture) to write the
history, then runs the installed ``chronicle`` command on it, by reflection and with
``--models history_app:Base`` (this module, imported by the command). It is never
imported by the test process itself: its ``make_versioned`` would install listeners.

=====  ======  =============================================================
tx     user    changes
=====  ======  =============================================================
1      alice   Article 1 (Hello / First draft.), Article 2 (Scratch, a long
       (from   two-line body), Tag 1 (news), Article 1 tagged news
       10.0.0.1)
2      bob     Article 1 retitled "Hello, world"
3      alice   Article 2 deleted
4      (none)  Article 1 body "Second draft."; Tag 1 renamed "breaking"
=====  ======  =============================================================
"""

from __future__ import annotations

import os
import sys
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import make_versioned, versioning_context

NATIVE = os.environ.get("HISTORY_APP_NATIVE") == "1"
LONG_BODY = "Line one of a long body.\n" + "word " * 40

make_versioned(user_cls="User", options={"native_versioning": NATIVE})


class Base(orm.DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(sa.String(50))


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
    __versioned__: dict[str, Any] = {}
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    title: Mapped[str | None] = mapped_column(sa.String(200))
    # The attribute key differs from the column name: reflection shows body_text,
    # --models shows body.
    body: Mapped[str | None] = mapped_column("body_text", sa.Text)
    tags: Mapped[list[Tag]] = orm.relationship(secondary=article_tag)


orm.configure_mappers()


def write_history(engine: sa.Engine) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with orm.Session(engine) as session:
        session.add_all([User(id=1, name="alice"), User(id=2, name="bob")])
        session.commit()
    with versioning_context(user_id=1, remote_addr="10.0.0.1"), orm.Session(engine) as session:
        news = Tag(id=1, name="news")
        session.add_all([
            Article(id=1, title="Hello", body="First draft.", tags=[news]),
            Article(id=2, title="Scratch", body=LONG_BODY),
        ])
        session.commit()
    with versioning_context(user_id=2), orm.Session(engine) as session:
        session.get_one(Article, 1).title = "Hello, world"
        session.commit()
    with versioning_context(user_id=1), orm.Session(engine) as session:
        session.delete(session.get_one(Article, 2))
        session.commit()
    with orm.Session(engine) as session:
        session.get_one(Article, 1).body = "Second draft."
        session.get_one(Tag, 1).name = "breaking"
        session.commit()


if __name__ == "__main__":
    engine = sa.create_engine(sys.argv[2], poolclass=sa.NullPool)
    if sys.argv[1] == "write":
        write_history(engine)
    engine.dispose()
