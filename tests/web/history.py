"""A small history with hostile values, written through the ORM, for the web tests.

Four transactions: two users (one with a hostile name), remote addresses (one
hostile), two versioned tables, an article whose title is a script tag, a long
multi-line body edited line by line, a deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import versioning_context

SCRIPT = '<script>alert("pwned")</script>'
ATTRIBUTE = "\"'><img src=x onerror=alert(1)>"
BOB = 'Bob "<b>" O\'Brien & co'

BODY_1 = "\n".join([
    "Chronicle keeps the history of your SQLAlchemy models.",
    "Every change is copied into a version table.",
    "Transactions group the changes.",
    "The end.",
])
BODY_2 = "\n".join([
    "Chronicle keeps the history of your SQLAlchemy models.",
    "Every change is copied into its own version table.",
    "Transactions group the changes.",
    "A diff shows <what> changed & where.",
    "The end.",
])


@dataclass
class History:
    """What the history holds: the transaction ids, in order."""

    txs: list[int]
    Article: Any
    Tag: Any


def write_history(base: Any, db: Any) -> History:
    """Define User, Article and Tag on ``base``, create the tables, write the history.

    Needs ``@pytest.mark.versioning(user_cls="User")``.
    """

    class User(base):  # type: ignore[misc, valid-type]
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(100))

    class Article(base):  # type: ignore[misc, valid-type]
        __tablename__ = "article"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        title: Mapped[str] = mapped_column(sa.String(200))
        body: Mapped[str | None] = mapped_column(sa.Text)
        status: Mapped[str] = mapped_column(sa.String(20), default="draft")

    class Tag(base):  # type: ignore[misc, valid-type]
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(sa.String(100))

    db.create(base.metadata)
    with db.session() as session:
        session.add_all([User(id=1, name="alice"), User(id=2, name=BOB)])
        session.commit()

    def change(user_id: int | None, remote_addr: str | None, fn: Any) -> None:
        with versioning_context(user_id=user_id, remote_addr=remote_addr), \
                db.session() as session:
            fn(session)
            session.commit()

    change(1, "192.0.2.1", lambda s: s.add_all([
        Article(id=1, title="Hello", body=BODY_1),
        Article(id=2, title=SCRIPT, body=ATTRIBUTE),
        Tag(id=1, name="news"),
    ]))

    def edit(s: Any) -> None:
        article = s.get(Article, 1)
        article.title = "Hello, world"
        article.body = BODY_2

    change(2, "198.51.100.7", edit)
    change(None, ATTRIBUTE[:40], lambda s: s.delete(s.get(Article, 2)))

    def publish(s: Any) -> None:
        s.get(Article, 1).status = "published"

    change(1, "192.0.2.1", publish)
    transaction = db.manager.transaction_cls.__table__
    with db.engine.connect() as conn:
        txs = list(conn.scalars(sa.select(transaction.c.id).order_by(transaction.c.id)))
    assert len(txs) == 4
    return History(txs=txs, Article=Article, Tag=Tag)
