"""Cases the replay proof (tests/capture/test_replay_proof.py) found, one test each."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, version_class

both_strategies = pytest.mark.parametrize("strategy", ["validity", "subquery"])


def _items(base: Any, db: Any, layout: str = "joined", note: Any = None) -> tuple[Any, Any]:
    class Item(base):  # type: ignore[misc, valid-type]
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        kind: Mapped[str] = mapped_column(sa.String(10))
        name: Mapped[str] = mapped_column(sa.String(20))
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}
        if note is not None:
            notes = orm.relationship(note, order_by=note.id, back_populates="item")

    if layout == "joined":
        class Book(Item):
            __tablename__ = "book"
            id: Mapped[int] = mapped_column(sa.ForeignKey("item.id"), primary_key=True)
            pages: Mapped[int | None]
            __mapper_args__ = {"polymorphic_identity": "book"}
    else:
        class Book(Item):  # type: ignore[no-redef]
            pages: Mapped[int | None] = mapped_column(nullable=True)
            __mapper_args__ = {"polymorphic_identity": "book"}

    db.create(base.metadata)
    return Item, Book


def _book_becomes_an_item(db: Any, Item: Any, Book: Any) -> tuple[orm.Session, int, int]:
    """tx1 inserts Book 1; tx2 deletes it and inserts Item 1 (same key)."""
    session = db.session()
    session.add(Book(id=1, name="book", pages=3))
    session.commit()
    session.delete(session.get(Item, 1))
    session.flush()
    session.add(Item(id=1, name="item"))
    session.commit()
    txs = sorted({r["transaction_id"] for r in db.rows("item_version")})
    assert len(txs) == 2
    return session, txs[0], txs[1]


def test_as_of_leaves_out_an_entity_whose_subclass_was_deleted(db, base):
    Item, Book = _items(base, db)
    session, tx1, tx2 = _book_becomes_an_item(db, Item, Book)
    BookVersion, ItemVersion = version_class(Book), version_class(Item)

    # Before the fix, loading BookVersion.as_of(tx2) failed: the base table's version
    # is an UPDATE whose kind is 'item', so the row could not load as a BookVersion.
    assert [(v.id, v.pages) for v in session.scalars(BookVersion.as_of(tx1))] == [(1, 3)]
    assert session.scalars(BookVersion.as_of(tx2)).all() == []
    now = session.scalars(ItemVersion.as_of(tx2)).all()
    assert [(type(v), v.name) for v in now] == [(ItemVersion, "item")]
    then = session.scalars(ItemVersion.as_of(tx1)).all()
    assert [(type(v), v.name) for v in then] == [(BookVersion, "book")]


def _live(db: Any, layout: str) -> list[tuple[Any, ...]]:
    """(id, kind, name, pages) of each live row, read from the tables."""
    if layout == "single":
        return [(r["id"], r["kind"], r["name"], r["pages"]) for r in db.rows("item")]
    pages = {r["id"]: r["pages"] for r in db.rows("book")}
    return [(r["id"], r["kind"], r["name"], pages.get(r["id"])) for r in db.rows("item")]


def _history(db: Any, layout: str) -> list[tuple[Any, ...]]:
    """(table, name or pages, tx, end tx, operation) of each version row."""
    rows = [
        ("item", r["kind"], r["name"], r["transaction_id"], r.get("end_transaction_id"),
         Operation(r["operation_type"]))
        for r in db.rows("item_version", order_by="transaction_id")
    ]
    if layout == "joined":
        rows += [
            ("book", r["pages"], None, r["transaction_id"], r.get("end_transaction_id"),
             Operation(r["operation_type"]))
            for r in db.rows("book_version", order_by="transaction_id")
        ]
    return rows


def _tx_ids(db: Any) -> list[int]:
    return [r["id"] for r in db.rows("transaction")]


@both_strategies
@pytest.mark.parametrize("layout", ["joined", "single"])
def test_revert_brings_back_the_subclass_an_entity_had(db, base, strategy, layout):
    Item, Book = _items(base, db, layout)
    session, tx1, _ = _book_becomes_an_item(db, Item, Book)
    BookVersion = version_class(Book)
    restored = BookVersion.version_at(session, 1, tx1).revert()
    assert (type(restored), restored.name, restored.pages) == (Book, "book", 3)
    session.commit()
    session.expunge_all()
    restored = session.get(Item, 1)
    assert (type(restored), restored.name, restored.pages) == (Book, "book", 3)
    assert _live(db, layout) == [(1, "book", "book", 3)]
    t1, t2, t3 = _tx_ids(db)
    validity = strategy == "validity"
    # One UPDATE of the entity (its base table): it was an Item, it is a Book again.
    item = [r for r in _history(db, layout) if r[0] == "item"]
    assert item == [
        ("item", "book", "book", t1, t2 if validity else None, Operation.INSERT),
        ("item", "item", "item", t2, t3 if validity else None, Operation.UPDATE),
        ("item", "book", "book", t3, None, Operation.UPDATE),
    ]
    if layout == "joined":
        book = [r for r in _history(db, layout) if r[0] == "book"]
        assert book == [
            ("book", 3, None, t1, t2 if validity else None, Operation.INSERT),
            ("book", 3, None, t2, t3 if validity else None, Operation.DELETE),
            ("book", 3, None, t3, None, Operation.INSERT),
        ]
    # Read back as the history says: a Book at t1 and t3, an Item at t2.
    ItemVersion = version_class(Item)
    assert [
        (type(v).__name__, v.name) for v in session.scalars(ItemVersion.as_of(t3))
    ] == [("BookVersion", "book")]
    assert [v.pages for v in session.scalars(BookVersion.as_of(t3))] == [3]


@both_strategies
@pytest.mark.parametrize("layout", ["joined", "single"])
def test_revert_brings_back_the_base_class_an_entity_had(db, base, strategy, layout):
    """The other way round: an Item that became a Book is an Item again, and the
    Book's own columns (its table's row, or its columns of the shared table) are gone."""
    Item, Book = _items(base, db, layout)
    session = db.session()
    session.add(Item(id=1, name="item"))
    session.commit()
    session.delete(session.get(Item, 1))
    session.flush()
    session.add(Book(id=1, name="book", pages=3))
    session.commit()
    t1, t2 = _tx_ids(db)
    ItemVersion = version_class(Item)
    restored = ItemVersion.version_at(session, 1, t1).revert()
    assert (type(restored), restored.name) == (Item, "item")
    session.commit()
    _, _, t3 = _tx_ids(db)
    assert _live(db, layout) == [(1, "item", "item", None)]
    validity = strategy == "validity"
    item = [r for r in _history(db, layout) if r[0] == "item"]
    assert item == [
        ("item", "item", "item", t1, t2 if validity else None, Operation.INSERT),
        ("item", "book", "book", t2, t3 if validity else None, Operation.UPDATE),
        ("item", "item", "item", t3, None, Operation.UPDATE),
    ]
    if layout == "joined":
        assert [r for r in _history(db, layout) if r[0] == "book"] == [
            ("book", 3, None, t2, t3 if validity else None, Operation.INSERT),
            ("book", 3, None, t3, None, Operation.DELETE),
        ]
    session.expunge_all()
    assert type(session.get(Item, 1)) is Item


def test_revert_to_a_transaction_after_a_link_only_change(db, base):
    """Reverting an entity to a transaction restores the links it had at its own
    version's transaction: a link-only change writes no version of the entity (unlike
    SQLAlchemy-Continuum), so links changed after that version come back as they
    were before the change (issue 15: relationship-only change)."""
    link = sa.Table(
        "item_tag",
        base.metadata,
        sa.Column("item_id", sa.ForeignKey("item.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Tag(base):  # type: ignore[misc, valid-type]
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)

    class Item(base):  # type: ignore[misc, valid-type]
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        tags: Mapped[list[Tag]] = orm.relationship(secondary=link)

    db.create(base.metadata)
    session = db.session()
    item, tag = Item(id=1), Tag(id=1)
    session.add_all([item, tag])
    session.commit()  # tx1: no link
    item.tags.append(tag)
    session.commit()  # tx2: the link only
    txs = sorted({r["transaction_id"] for r in db.rows("item_tag_version")})
    ItemVersion = version_class(Item)
    at_tx2 = ItemVersion.version_at(session, 1, txs[0])
    at_tx2.revert(relations=["tags"])
    session.flush()
    # What revert does today: the version valid at tx2 is tx1's, so the link goes.
    # Once a link-only change versions the item, this is [(1, 1)] and the replay
    # proof can compare the links after revert too.
    assert session.execute(sa.select(link)).all() == []


def test_deleted_entity_inserted_deleted_and_inserted_again_is_an_insert(db, article_models):
    """After a committed DELETE, one transaction inserts the row, deletes it and inserts
    it again (a flush between each): its version is an INSERT, as the row did not exist
    before it. (It was an UPDATE following a DELETE.)"""
    from sqlalchemy_chronicle import Operation

    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="a"))
    session.commit()
    session.delete(session.get(Article, 1))
    session.commit()
    session.add(Article(id=1, name="b"))
    session.flush()
    session.delete(session.get(Article, 1))
    session.flush()
    session.add(Article(id=1, name="c"))
    session.commit()
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["name"], Operation(r["operation_type"])) for r in rows] == [
        ("a", Operation.INSERT), ("a", Operation.DELETE), ("c", Operation.INSERT),
    ]
    assert rows[1]["end_transaction_id"] == rows[2]["transaction_id"]
    assert rows[2]["end_transaction_id"] is None


def test_existing_entity_deleted_and_inserted_again_stays_an_update(db, article_models):
    """The other side of the case above: an entity that existed before the transaction,
    deleted and inserted again in it, is an UPDATE (a rolled-back savepoint that
    inserted another row in between changes nothing)."""
    from sqlalchemy_chronicle import Operation

    Article = article_models()
    session = db.session()
    session.add(Article(id=1, name="a"))
    session.commit()
    with session.begin_nested() as savepoint:
        session.add(Article(id=2, name="gone"))
        session.flush()
        savepoint.rollback()
    session.delete(session.get(Article, 1))
    session.flush()
    session.add(Article(id=1, name="b"))
    session.commit()
    rows = db.rows("article_version", order_by="transaction_id")
    assert [(r["id"], r["name"], Operation(r["operation_type"])) for r in rows] == [
        (1, "a", Operation.INSERT), (1, "b", Operation.UPDATE),
    ]


@both_strategies
@pytest.mark.parametrize("layout", ["joined", "single"])
def test_revert_of_relations_follows_the_class_brought_back(db, base, strategy, layout):
    class Note(base):  # type: ignore[misc, valid-type]
        __tablename__ = "note"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        item_id: Mapped[int] = mapped_column(sa.ForeignKey("item.id"))
        item = orm.relationship("Item", back_populates="notes")

    Item, Book = _items(base, db, layout, note=Note)
    session = db.session()
    session.add(Book(id=1, name="book", pages=3, notes=[Note(id=1), Note(id=2)]))
    session.commit()
    session.delete(session.get(Note, 1))
    session.delete(session.get(Note, 2))
    session.delete(session.get(Item, 1))
    session.flush()
    session.add(Item(id=1, name="item", notes=[Note(id=3)]))
    session.commit()
    t1, _ = _tx_ids(db)
    note = session.get(Note, 3)
    assert type(note.item) is Item
    restored = version_class(Book).version_at(session, 1, t1).revert(relations=["notes"])
    session.commit()
    assert (type(restored), [n.id for n in restored.notes]) == (Book, [1, 2])
    assert sa.inspect(note).detached  # note 3 did not exist then: deleted
    assert [(r["id"], r["item_id"]) for r in db.rows("note")] == [(1, 1), (2, 1)]
    assert _live(db, layout) == [(1, "book", "book", 3)]


@both_strategies
@pytest.mark.parametrize("layout", ["joined", "single"])
def test_revert_many_brings_back_the_class_of_each_entity(db, base, strategy, layout):
    Item, Book = _items(base, db, layout)
    session = db.session()
    session.add_all([Book(id=1, name="b1", pages=1), Item(id=2, name="i2"),
                     Book(id=3, name="b3", pages=3), Item(id=4, name="i4")])
    session.commit()
    for key in (1, 2):  # 1 becomes an Item, 2 a Book
        session.delete(session.get(Item, key))
    session.get(Book, 3).pages = 30
    session.get(Item, 4).name = "i4 renamed"
    session.flush()
    session.add_all([Item(id=1, name="i1"), Book(id=2, name="b2", pages=2)])
    session.commit()
    t1, _ = _tx_ids(db)
    ItemVersion = version_class(Item)
    versions = ItemVersion.versions_at(session, [1, 2, 3, 4], t1)
    ItemVersion.revert_many(session, versions.values())
    session.commit()
    assert _live(db, layout) == [
        (1, "book", "b1", 1), (2, "item", "i2", None), (3, "book", "b3", 3), (4, "item", "i4", None)
    ]
    session.expunge_all()
    assert [type(session.get(Item, k)) for k in (1, 2, 3, 4)] == [Book, Item, Book, Item]
    _, _, t3 = _tx_ids(db)
    now = {v.id: (type(v).__name__, v.name) for v in session.scalars(ItemVersion.as_of(t3))}
    assert now == {1: ("BookVersion", "b1"), 2: ("ItemVersion", "i2"),
                   3: ("BookVersion", "b3"), 4: ("ItemVersion", "i4")}
    assert {v.id: v.pages for v in session.scalars(version_class(Book).as_of(t3))} == {1: 1, 3: 3}


@pytest.mark.dbs("postgresql")
@pytest.mark.versioning(options={"native_versioning": True})
@pytest.mark.parametrize("layout", ["joined", "single"])
def test_revert_brings_back_the_subclass_under_native_versioning(db, base, layout):
    """PostgreSQL's triggers version the statements that change the class: the same
    history as the ORM writes."""
    Item, Book = _items(base, db, layout)
    session, tx1, _ = _book_becomes_an_item(db, Item, Book)
    restored = version_class(Book).version_at(session, 1, tx1).revert()
    session.commit()
    assert (type(restored), restored.pages) == (Book, 3)
    assert _live(db, layout) == [(1, "book", "book", 3)]
    t1, t2, t3 = _tx_ids(db)
    history = _history(db, layout)
    assert [r for r in history if r[0] == "item"] == [
        ("item", "book", "book", t1, t2, Operation.INSERT),
        ("item", "item", "item", t2, t3, Operation.UPDATE),
        ("item", "book", "book", t3, None, Operation.UPDATE),
    ]
    if layout == "joined":
        assert [r for r in history if r[0] == "book"] == [
            ("book", 3, None, t1, t2, Operation.INSERT),
            ("book", 3, None, t2, t3, Operation.DELETE),
            ("book", 3, None, t3, None, Operation.INSERT),
        ]


@pytest.mark.parametrize("layout", ["joined", "single"])
def test_objects_holding_the_replaced_entity_see_its_new_class(db, base, layout):
    """A loaded object whose relationship holds the Item gets the Book on its next
    read, and a later flush does not put the Item back."""

    class Note(base):  # type: ignore[misc, valid-type]
        __tablename__ = "note"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        item_id: Mapped[int] = mapped_column(sa.ForeignKey("item.id"))
        text: Mapped[str | None] = mapped_column(sa.String(20))
        item = orm.relationship("Item", back_populates="notes")

    Item, Book = _items(base, db, layout, note=Note)
    session, tx1, _ = _book_becomes_an_item(db, Item, Book)
    session.add(Note(id=1, item_id=1))
    session.commit()
    note = session.get(Note, 1)
    assert type(note.item) is Item and [n.id for n in note.item.notes] == [1]
    restored = version_class(Book).version_at(session, 1, tx1).revert()
    assert note.item is restored  # before any commit expires it
    note.text = "edited"
    session.commit()
    assert (type(note.item), note.item.pages) == (Book, 3)
    assert [(r["id"], r["item_id"], r["text"]) for r in db.rows("note")] == [(1, 1, "edited")]
    assert _live(db, layout) == [(1, "book", "book", 3)]
