"""Versioning models whose keys and attributes are not the plain ``id`` shape."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import version_class


def test_composite_key_named_unlike_id_with_a_relationship(base, db):
    class Shelf(base):
        __tablename__ = "shelf"
        __versioned__ = {}
        room: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
        number: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str | None] = mapped_column(sa.String(20))
        books: Mapped[list[Book]] = orm.relationship(back_populates="shelf")

    class Book(base):
        __tablename__ = "book"
        __versioned__ = {}
        isbn: Mapped[str] = mapped_column(sa.String(13), primary_key=True)
        title: Mapped[str] = mapped_column(sa.String(50))
        shelf_room: Mapped[str | None] = mapped_column(sa.String(10))
        shelf_number: Mapped[int | None]
        shelf: Mapped[Shelf | None] = orm.relationship(back_populates="books")
        __table_args__ = (
            sa.ForeignKeyConstraint(
                ["shelf_room", "shelf_number"], ["shelf.room", "shelf.number"]
            ),
        )

    globals().update(Book=Book, Shelf=Shelf)
    db.create(base.metadata)
    session = db.session()
    shelf = Shelf(room="A", number=1, label="novels")
    session.add(Book(isbn="1", title="One", shelf=shelf))
    session.commit()
    shelf.label = "fiction"
    session.add(Book(isbn="2", title="Two", shelf=shelf))
    session.commit()

    ShelfVersion = version_class(Shelf)
    assert [c.name for c in ShelfVersion.__table__.primary_key.columns] == [
        "room", "number", "transaction_id",
    ]
    first, second = shelf.versions.all()
    assert (first.label, second.label) == ("novels", "fiction")
    assert sorted(b.title for b in first.books) == ["One"]
    assert sorted(b.title for b in second.books) == ["One", "Two"]
    assert second.previous is first and first.index == 0 and second.index == 1
    book_version = version_class(Book).version_at(session, {"isbn": "1"}, first.transaction_id)
    assert book_version.shelf.label == "novels"


def test_attribute_named_unlike_its_column_and_computed_attributes(base, db):
    class Person(base):
        __tablename__ = "person"
        __versioned__ = {}
        person_id: Mapped[int] = mapped_column("id", primary_key=True)
        first: Mapped[str] = mapped_column("first_name", sa.String(20))
        last: Mapped[str] = mapped_column("last_name", sa.String(20))
        full = orm.column_property(first + " " + last)

        @hybrid_property
        def initials(self) -> str:
            return self.first[0] + self.last[0]

    db.create(base.metadata)
    session = db.session()
    person = Person(person_id=1, first="Ada", last="Byron")
    session.add(person)
    session.commit()
    person.last = "Lovelace"
    session.commit()

    rows = db.rows("person_version", order_by="transaction_id")
    assert [(r["id"], r["first_name"], r["last_name"]) for r in rows] == [
        (1, "Ada", "Byron"), (1, "Ada", "Lovelace"),
    ]
    versions = person.versions.all()
    assert [v.last for v in versions] == ["Byron", "Lovelace"]
    assert versions[1].changeset == {"last": ["Byron", "Lovelace"]}
    versions[0].revert()
    session.commit()
    assert (person.last, person.full, person.initials) == ("Byron", "Ada Byron", "AB")


def test_models_in_another_schema_and_the_schema_option(base, db, engine):
    if engine.dialect.name == "sqlite":
        # SQLite's schemas are attached databases.
        folder = engine.url.database.rsplit("/", 1)[0]

        @sa.event.listens_for(engine, "connect")
        def attach(dbapi_connection, record):
            for name in ("chronicle_app", "chronicle_history"):
                dbapi_connection.execute(f"ATTACH DATABASE '{folder}/{name}.db' AS {name}")

        engine.dispose()
    else:
        word = "SCHEMA" if engine.dialect.name == "postgresql" else "DATABASE"
        with engine.begin() as conn:
            for name in ("chronicle_app", "chronicle_history"):
                conn.execute(sa.text(f"CREATE {word} IF NOT EXISTS {name}"))

    class Note(base):
        __tablename__ = "note"
        __table_args__ = {"schema": "chronicle_app"}
        __versioned__ = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(sa.String(20))

    class Memo(base):
        __tablename__ = "memo"
        __table_args__ = {"schema": "chronicle_app"}
        __versioned__ = {"schema": "chronicle_history"}
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(sa.String(20))

    db.create(base.metadata)
    session = db.session()
    session.add_all([Note(id=1, text="n"), Memo(id=1, text="m")])
    session.commit()
    assert version_class(Note).__table__.schema == "chronicle_app"
    assert version_class(Memo).__table__.schema == "chronicle_history"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT text FROM chronicle_app.note_version")).all() == [
            ("n",)
        ]
        assert conn.execute(
            sa.text("SELECT text FROM chronicle_history.memo_version")
        ).all() == [("m",)]
