"""Replay proof: whatever a program does, the version tables can rebuild every commit.

A stateful ``hypothesis`` test drives random sequences of inserts, updates, no-op
updates, deletes, re-inserts, many-to-one and many-to-many changes, savepoints
(released and rolled back), rollbacks and commits, through several sessions, over
three versioned models: ``Shelf`` (a composite primary key), ``Item``/``Book``
(joined inheritance) and ``Tag``, with the association table ``item_tag``.

After every commit it takes a snapshot of the live tables. At the end, for every
committed transaction, the tables rebuilt from the version tables as of that
transaction (``VersionClass.as_of()`` and the versions' relationships) equal the
snapshot taken then, and ``revert()`` of every entity to that transaction puts the
live tables back to that snapshot.

The normal suite runs a bounded number of examples. A longer run::

    CHRONICLE_HYPOTHESIS_PROFILE=soak pytest tests/capture/test_replay_proof.py

(``make soak`` does that too), with ``CHRONICLE_HYPOTHESIS_EXAMPLES`` to set the number
of examples.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, version_class, version_table

_examples = os.environ.get("CHRONICLE_HYPOTHESIS_EXAMPLES")
settings.register_profile(
    "chronicle-ci",
    max_examples=int(_examples or 25),
    stateful_step_count=35,
    deadline=None,
    # The same programs every run: a CI result does not depend on the draw (the soak
    # profile explores).
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "chronicle-soak",
    max_examples=int(_examples or 2000),
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "chronicle-debug",
    parent=settings.get_profile("chronicle-ci"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
PROFILE = "chronicle-" + os.environ.get("CHRONICLE_HYPOTHESIS_PROFILE", "ci")

SHELVES = [("a", 1), ("a", 2), ("b", 1)]
ITEMS = [1, 2, 3, 4]
TAGS = [1, 2, 3]
NAMES = st.sampled_from(["x", "y", "zé", ""])
SESSIONS = 3


def _models(base: Any) -> dict[str, Any]:
    item_tag = sa.Table(
        "item_tag",
        base.metadata,
        sa.Column("item_id", sa.ForeignKey("item.id"), primary_key=True),
        sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
    )

    class Shelf(base):  # type: ignore[misc, valid-type]
        __tablename__ = "shelf"
        __versioned__: dict[str, Any] = {}
        room: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
        number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        label: Mapped[str | None] = mapped_column(sa.String(20))

    class Tag(base):  # type: ignore[misc, valid-type]
        __tablename__ = "tag"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        name: Mapped[str] = mapped_column(sa.String(20))
        items: Mapped[list[Item]] = orm.relationship(
            secondary=item_tag, back_populates="tags"
        )

    class Item(base):  # type: ignore[misc, valid-type]
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        kind: Mapped[str] = mapped_column(sa.String(10))
        name: Mapped[str] = mapped_column(sa.String(20))
        shelf_room: Mapped[str | None] = mapped_column(sa.String(10))
        shelf_number: Mapped[int | None]
        shelf: Mapped[Shelf | None] = orm.relationship()
        tags: Mapped[list[Tag]] = orm.relationship(secondary=item_tag, back_populates="items")
        __table_args__ = (
            sa.ForeignKeyConstraint(
                ["shelf_room", "shelf_number"], ["shelf.room", "shelf.number"]
            ),
        )
        __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "item"}

    class Book(Item):
        __tablename__ = "book"
        id: Mapped[int] = mapped_column(sa.ForeignKey("item.id"), primary_key=True)
        pages: Mapped[int | None]
        __mapper_args__ = {"polymorphic_identity": "book"}

    return {"Shelf": Shelf, "Tag": Tag, "Item": Item, "Book": Book, "item_tag": item_tag}


# The live tables, and what a snapshot keeps of each (all their columns).
TABLES = ("shelf", "tag", "item", "book", "item_tag")
Snapshot = dict[str, frozenset[tuple[Any, ...]]]


def _live(connection: sa.Connection, metadata: sa.MetaData) -> Snapshot:
    return {
        name: frozenset(tuple(row) for row in connection.execute(sa.select(metadata.tables[name])))
        for name in TABLES
    }


def _columns(metadata: sa.MetaData, name: str) -> list[str]:
    return [c.key for c in metadata.tables[name].columns]


def _from_versions(session: orm.Session, m: dict[str, Any], tx: int) -> Snapshot:
    """The live tables as of ``tx``, rebuilt through the public reading API."""
    metadata = m["Item"].metadata
    out: dict[str, set[tuple[Any, ...]]] = {name: set() for name in TABLES}
    shelf_cols = _columns(metadata, "shelf")
    for v in session.scalars(version_class(m["Shelf"]).as_of(tx)):
        out["shelf"].add(tuple(getattr(v, c) for c in shelf_cols))
    for v in session.scalars(version_class(m["Tag"]).as_of(tx)):
        out["tag"].add((v.id, v.name))
    # The links as of tx, from the association's version table (an item version's
    # ``tags`` shows the links as of that version's own transaction, checked below).
    links = version_table(m["item_tag"])
    window = sa.and_(
        links.c.transaction_id <= tx,
        sa.or_(links.c.end_transaction_id.is_(None), links.c.end_transaction_id > tx),
        links.c.operation_type != int(Operation.DELETE),
    )
    for row in session.execute(sa.select(links.c.item_id, links.c.tag_id).where(window)):
        out["item_tag"].add(tuple(row))
    item_cols = _columns(metadata, "item")
    for v in session.scalars(version_class(m["Item"]).as_of(tx)):
        out["item"].add(tuple(getattr(v, c) for c in item_cols))
        if v.transaction_id == tx:
            tags = {(v.id, tag.id) for tag in v.tags}
            assert tags == {link for link in out["item_tag"] if link[0] == v.id}, (v, tx)
    for v in session.scalars(version_class(m["Book"]).as_of(tx)):
        out["book"].add((v.id, v.pages))
    return {name: frozenset(rows) for name, rows in out.items()}


def _history_problems(connection: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """Chains of every version table: contiguous, at most one open version, every
    transaction id a row of the transaction table."""
    problems = []
    transaction = metadata.tables["transaction"]
    tx_ids = set(connection.scalars(sa.select(transaction.c.id)))
    for name in TABLES:
        version = metadata.tables[name + "_version"]
        key_cols = [c for c in version.primary_key.columns if c.key != "transaction_id"]
        chains: dict[tuple[Any, ...], list[Any]] = {}
        stmt = sa.select(version).order_by(version.c.transaction_id)
        for row in connection.execute(stmt):
            chains.setdefault(tuple(row._mapping[c.key] for c in key_cols), []).append(row)
        for key, rows in chains.items():
            for older, newer in itertools.pairwise(rows):
                if older.end_transaction_id != newer.transaction_id:
                    problems.append(f"{name} {key}: {older.transaction_id} ends at "
                                    f"{older.end_transaction_id}, next is {newer.transaction_id}")
            if rows[-1].end_transaction_id is not None:
                problems.append(f"{name} {key}: last version is closed")
            for row in rows:
                if row.transaction_id not in tx_ids:
                    problems.append(f"{name} {key}: no transaction row {row.transaction_id}")
            for older, newer in itertools.pairwise(rows):
                # After a DELETE: an INSERT, or a DELETE (inserted and deleted again in
                # one transaction), never an UPDATE.
                if (Operation(older.operation_type) is Operation.DELETE
                        and Operation(newer.operation_type) is Operation.UPDATE):
                    problems.append(f"{name} {key}: {newer.transaction_id} updates a "
                                    f"deleted entity")
    return problems


def _revert_all(session: orm.Session, m: dict[str, Any], tx: int) -> None:
    """Revert every entity ever versioned to what it was at ``tx`` (delete those
    that did not exist yet).

    Without ``relations``: ``revert(relations=["tags"])`` restores the links (and the
    tags) of the item's version valid at ``tx`` as they were at that version's own
    transaction, and a link-only change (``item.tags.remove(tag)``, or deleting a
    linked tag) writes no item version, so they can differ from ``tx``'s (see
    test_revert_to_a_transaction_after_a_link_only_change in tests/read/
    test_replay_findings.py); the replay found both, the links and a deleted tag
    brought back."""
    # One flush at the end, so that the unit of work orders the statements by their
    # dependencies (an item leaves a shelf before the shelf goes, a shelf comes back
    # before an item points at it); the queries below must not flush half of it.
    with session.no_autoflush:
        _revert_each(session, m, tx)
    session.flush()


def _revert_each(session: orm.Session, m: dict[str, Any], tx: int) -> None:
    for cls_name, relations in (("Shelf", None), ("Tag", None), ("Item", None)):
        cls = m[cls_name]
        vcls = version_class(cls)
        spec_keys = [c.key for c in sa.inspect(cls).primary_key]
        keys = {
            tuple(getattr(v, k) for k in spec_keys)
            for v in session.scalars(sa.select(vcls))
        }
        for key in sorted(keys):
            at = vcls.version_at(session, key, tx)
            if at is None:
                live = session.get(cls, key)
                if live is not None:
                    session.delete(live)
            else:
                # A Book that is an Item now (or the reverse) gets its class back too.
                at.revert(relations=relations)


class ReplayMachine(RuleBasedStateMachine):
    """One program: the test sets ``db`` and ``m`` on the class before running it."""

    db: Any
    m: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        metadata = self.m["Item"].metadata
        self.metadata = metadata
        with self.db.engine.begin() as connection:
            for table in reversed(metadata.sorted_tables):
                connection.execute(table.delete())
        self.sessions = [orm.Session(self.db.engine) for _ in range(SESSIONS)]
        self.current = 0
        self.savepoints: list[orm.SessionTransaction] = []
        self.snapshots: dict[int, Snapshot] = {}
        with self.db.engine.connect() as connection:
            self.last_snapshot = _live(connection, metadata)
        self.last_tx = 0

    @property
    def session(self) -> orm.Session:
        return self.sessions[self.current]

    def get(self, name: str, key: Any) -> Any:
        """The live object, or None; an object marked for deletion is flushed first
        (``Session.get()`` still returns it from the identity map)."""
        obj = self.session.get(self.m[name], key)
        if obj is not None and obj in self.session.deleted:
            self.session.flush()
            obj = self.session.get(self.m[name], key)
        return obj

    # -- writes -------------------------------------------------------------------------

    @rule(key=st.sampled_from(SHELVES), label=st.none() | NAMES)
    def write_shelf(self, key: tuple[str, int], label: str | None) -> None:
        shelf = self.get("Shelf", key)
        if shelf is None:
            self.session.add(self.m["Shelf"](room=key[0], number=key[1], label=label))
        else:
            shelf.label = label  # the same value is a no-op update

    @rule(key=st.sampled_from(SHELVES))
    def delete_shelf(self, key: tuple[str, int]) -> None:
        shelf = self.get("Shelf", key)
        if shelf is None:
            return
        Item = self.m["Item"]
        on_it = self.session.scalars(
            sa.select(Item).where(Item.shelf_room == key[0], Item.shelf_number == key[1])
        )
        for item in on_it:
            item.shelf = None
        self.session.delete(shelf)

    @rule(key=st.sampled_from(TAGS), name=NAMES)
    def write_tag(self, key: int, name: str) -> None:
        tag = self.get("Tag", key)
        if tag is None:
            self.session.add(self.m["Tag"](id=key, name=name))
        else:
            tag.name = name

    @rule(key=st.sampled_from(TAGS))
    def delete_tag(self, key: int) -> None:
        tag = self.get("Tag", key)
        if tag is not None:
            self.session.delete(tag)

    @rule(key=st.sampled_from(ITEMS), name=NAMES, book=st.booleans(),
          pages=st.none() | st.integers(0, 3))
    def write_item(self, key: int, name: str, book: bool, pages: int | None) -> None:
        item = self.get("Item", key)
        if item is None:
            if book:
                self.session.add(self.m["Book"](id=key, name=name, pages=pages))
            else:
                self.session.add(self.m["Item"](id=key, name=name))
        else:
            item.name = name
            if isinstance(item, self.m["Book"]):
                item.pages = pages

    @rule(key=st.sampled_from(ITEMS))
    def delete_item(self, key: int) -> None:
        item = self.get("Item", key)
        if item is not None:
            self.session.delete(item)

    @rule(key=st.sampled_from(ITEMS), shelf=st.none() | st.sampled_from(SHELVES))
    def move_item(self, key: int, shelf: tuple[str, int] | None) -> None:
        item = self.get("Item", key)
        if item is None:
            return
        item.shelf = None if shelf is None else self.get("Shelf", shelf)

    @rule(key=st.sampled_from(ITEMS), tag=st.sampled_from(TAGS), link=st.booleans())
    def tag_item(self, key: int, tag: int, link: bool) -> None:
        item = self.get("Item", key)
        tag_obj = self.get("Tag", tag)
        if item is None or tag_obj is None:
            return
        if link and tag_obj not in item.tags:
            item.tags.append(tag_obj)
        elif not link and tag_obj in item.tags:
            item.tags.remove(tag_obj)

    @rule()
    def flush(self) -> None:
        self.session.flush()

    # -- transactions -------------------------------------------------------------------

    @rule()
    def begin_savepoint(self) -> None:
        self.savepoints.append(self.session.begin_nested())

    @precondition(lambda self: self.savepoints)
    @rule(release=st.booleans())
    def end_savepoint(self, release: bool) -> None:
        savepoint = self.savepoints.pop()
        if release:
            savepoint.commit()
        else:
            savepoint.rollback()

    @rule(next_session=st.integers(0, SESSIONS - 1))
    def rollback(self, next_session: int) -> None:
        self.session.rollback()
        self.savepoints.clear()
        self.current = next_session

    @rule(next_session=st.integers(0, SESSIONS - 1))
    def commit(self, next_session: int) -> None:
        self.session.commit()
        self.savepoints.clear()
        with self.db.engine.connect() as connection:
            snapshot = _live(connection, self.metadata)
            transaction = self.metadata.tables["transaction"]
            new = sorted(
                connection.scalars(
                    sa.select(transaction.c.id).where(transaction.c.id > self.last_tx)
                )
            )
        if not new:
            # Nothing was versioned: then nothing changed.
            assert snapshot == self.last_snapshot
        else:
            assert len(new) == 1, f"one commit wrote transaction rows {new}"
            self.last_tx = new[0]
            self.snapshots[new[0]] = snapshot
        self.last_snapshot = snapshot
        self.current = next_session

    @invariant()
    def one_session_at_a_time(self) -> None:
        # Sessions take turns (SQLite has one writer): the others hold no transaction.
        for i, session in enumerate(self.sessions):
            if i != self.current:
                assert not session.in_transaction()

    def teardown(self) -> None:
        try:
            self.session.rollback()
            self._check()
        finally:
            for session in self.sessions:
                session.close()

    def _check(self) -> None:
        commits = len(self.snapshots)
        event(f"versioned commits: {commits if commits < 5 else '5+'}")
        with self.db.engine.connect() as connection:
            assert _history_problems(connection, self.metadata) == []
        reader = orm.Session(self.db.engine)
        try:
            for tx, snapshot in self.snapshots.items():
                assert _from_versions(reader, self.m, tx) == snapshot, f"as_of({tx})"
                reader.rollback()
        finally:
            reader.close()
        for tx, snapshot in self.snapshots.items():
            session = orm.Session(self.db.engine)
            try:
                _revert_all(session, self.m, tx)
                reverted = _live(session.connection(), self.metadata)
                # The links are left out: see _revert_all.
                assert {**reverted, "item_tag": None} == {**snapshot, "item_tag": None}, (
                    f"revert({tx})"
                )
            finally:
                session.rollback()
                session.close()


def test_version_tables_replay_every_commit(db, base):
    m = _models(base)
    db.create(base.metadata)
    machine = type("Replay", (ReplayMachine,), {"db": db, "m": m})
    run_state_machine_as_test(machine, settings=settings.get_profile(PROFILE))
