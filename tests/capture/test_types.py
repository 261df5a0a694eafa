"""Keys and values beyond Integer and String.

Keys of other types (UUID, Date, Enum, a custom ``TypeDecorator``) travel to the
write path's statements as an expanding ``IN`` rather than as arrays (PostgreSQL) or
JSON (SQLite); see ``capture/sql.py``, ``key_transport``. Values are copied by the
database (``INSERT ... SELECT``), but compared in Python to skip no-op updates: non-ASCII
and large text, JSON, binary and NULL transitions must come back exactly as written.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import Operation, version_class
from sqlalchemy_chronicle.capture.sql import IN, key_transport

INSERT, UPDATE, DELETE = Operation.INSERT, Operation.UPDATE, Operation.DELETE


class Color(enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


@dataclasses.dataclass(frozen=True)
class Sku:
    """A key value of a custom type: hashable, not orderable, not JSON."""

    code: str


class SkuType(sa.types.TypeDecorator[Sku]):
    impl = sa.String(20)
    cache_ok = True

    def process_bind_param(self, value: Sku | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else f"sku:{value.code}"

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Sku | None:
        return None if value is None else Sku(value.removeprefix("sku:"))


KEYS: dict[str, tuple[Any, list[Any]]] = {
    "uuid": (sa.Uuid(), [uuid.UUID(int=n) for n in (3, 1, 2)]),
    "date": (sa.Date(), [datetime.date(2026, 1, d) for d in (3, 1, 2)]),
    "enum": (sa.Enum(Color, name="color"), [Color.blue, Color.red, Color.green]),
    "custom": (SkuType(), [Sku("c"), Sku("a"), Sku("b")]),
}


@pytest.fixture(params=sorted(KEYS))
def keyed(request: pytest.FixtureRequest, base: Any, db: Any) -> tuple[Any, list[Any]]:
    key_type, keys = KEYS[request.param]

    class Item(base):
        __tablename__ = "item"
        __versioned__: dict[str, Any] = {}
        key = sa.Column(key_type, primary_key=True)
        name = sa.Column(sa.String(20))

    db.create(base.metadata)
    return Item, keys


def _history(db: Any, Item: Any) -> dict[Any, list[tuple[Any, ...]]]:
    ItemVersion = version_class(Item)
    session = db.session()
    history: dict[Any, list[tuple[Any, ...]]] = {}
    stmt = sa.select(ItemVersion).order_by(ItemVersion.transaction_id)
    for v in session.scalars(stmt):
        history.setdefault(v.key, []).append(
            (v.name, v.transaction_id, v.end_transaction_id, v.operation_type)
        )
    session.close()
    return history


def test_these_keys_take_the_in_path(keyed, db):
    Item, _ = keyed
    version_key = version_class(Item).__table__.c.key
    assert key_transport([version_key], db.engine.dialect) == IN


def test_keys_of_other_types_version_navigate_and_revert(keyed, db):
    Item, (k1, k2, k3) = keyed
    session = db.session()
    session.add_all([Item(key=k1, name="a"), Item(key=k2, name="b"), Item(key=k3, name="c")])
    session.commit()
    one, three = session.get(Item, k1), session.get(Item, k3)
    one.name = "a2"
    session.flush()
    one.name = "a3"  # folded into the version of the first flush
    session.delete(session.get(Item, k2))
    session.flush()
    three.name = "c2"
    session.commit()
    session.add(Item(key=k2, name="b2"))  # the deleted key comes back
    session.delete(three)
    session.commit()
    tx1, tx2, tx3 = sorted(r["id"] for r in db.rows("transaction"))

    assert _history(db, Item) == {
        k1: [("a", tx1, tx2, INSERT), ("a3", tx2, None, UPDATE)],
        k2: [("b", tx1, tx2, INSERT), ("b", tx2, tx3, DELETE), ("b2", tx3, None, INSERT)],
        k3: [("c", tx1, tx2, INSERT), ("c2", tx2, tx3, UPDATE), ("c2", tx3, None, DELETE)],
    }
    first, second = one.versions.all()
    assert (first.key, second.key) == (k1, k1)
    assert first.next is second and second.previous is first
    assert second.changeset == {"name": ["a", "a3"]}
    ItemVersion = version_class(Item)
    as_of = {v.key: v.name for v in session.scalars(ItemVersion.as_of(tx2))}
    assert as_of == {k1: "a3", k3: "c2"}

    (restored,) = [v for v in ItemVersion.all_versions(session, [k3]) if v.transaction_id == tx2]
    restored.revert()
    session.commit()
    assert session.get(Item, k3).name == "c2"
    assert _history(db, Item)[k3][-1][1:] == (tx3 + 1, None, INSERT)


def test_a_many_to_many_between_keys_of_other_types(base, db):
    link = sa.Table(
        "doc_day", base.metadata,
        sa.Column("doc_id", sa.ForeignKey("doc.id"), primary_key=True),
        sa.Column("day", sa.ForeignKey("day.day"), primary_key=True),
    )

    class Day(base):
        __tablename__ = "day"
        __versioned__: dict[str, Any] = {}
        day = sa.Column(sa.Date, primary_key=True)

    class Doc(base):
        __tablename__ = "doc"
        __versioned__: dict[str, Any] = {}
        id = sa.Column(sa.Uuid, primary_key=True)
        title = sa.Column(sa.String(20))
        days = sa.orm.relationship(Day, secondary=link, order_by=Day.day)

    db.create(base.metadata)
    d1, d2, d3 = (datetime.date(2026, 2, n) for n in (1, 2, 3))
    doc_id = uuid.UUID(int=7)
    session = db.session()
    doc = Doc(id=doc_id, days=[Day(day=d1), Day(day=d2)])
    session.add(doc)
    session.commit()
    doc.days = [doc.days[1], Day(day=d3)]
    doc.title = "second"
    session.commit()
    tx1, tx2 = sorted(r["id"] for r in db.rows("transaction"))
    rows = db.rows("doc_day_version", order_by=["day", "transaction_id"])
    assert [(r["doc_id"], r["day"], r["transaction_id"], r["end_transaction_id"],
             r["operation_type"]) for r in rows] == [
        (doc_id, d1, tx1, tx2, INSERT), (doc_id, d1, tx2, None, DELETE),
        (doc_id, d2, tx1, None, INSERT), (doc_id, d3, tx2, None, INSERT),
    ]
    first, second = doc.versions.all()
    assert [d.day for d in first.days] == [d1, d2]
    assert [d.day for d in second.days] == [d2, d3]


# -- values -------------------------------------------------------------------------

NON_ASCII = "Grüße \u2013 東京 \u2013 Ωμέγα \u2013 🙂 \u2013 \u00a0\u200b"
BIG_TEXT = "ä€" * 100_000  # 500 kB in UTF-8: more than MariaDB's TEXT holds
BINARY = bytes(range(256)) * 4 + b"\x00"
BIG_BINARY = bytes(range(256)) * 1024  # 256 kB: more than MariaDB's BLOB holds


@pytest.fixture
def Record(base: Any, db: Any) -> Any:
    class Record(base):
        __tablename__ = "record"
        __versioned__: dict[str, Any] = {}
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str | None] = mapped_column(
            sa.UnicodeText().with_variant(mysql.LONGTEXT(), "mysql")
        )
        data: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
        blob: Mapped[bytes | None] = mapped_column(
            sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql")
        )
        note: Mapped[str | None] = mapped_column(sa.Unicode(50))

    db.create(base.metadata)
    return Record


def _values(v: Any) -> tuple[Any, ...]:
    return (v.text, v.data, v.blob, v.note)


def test_values_of_other_types_come_back_as_written(db, Record):
    session = db.session()
    written = [
        (NON_ASCII, {"a": [1, 2], "ü": None, "n": 1.5}, BINARY, None),
        (BIG_TEXT, {"a": [1, 2, 3], "ü": "東京"}, BIG_BINARY, "set"),
        (None, None, None, None),
        ("", [], b"", "again"),
    ]
    record = Record(id=1)
    session.add(record)
    for text, data, blob, note in written:
        record.text, record.data, record.blob, record.note = text, data, blob, note
        session.commit()

    versions = record.versions.all()
    assert [_values(v) for v in versions] == written
    assert [v.operation_type for v in versions] == [INSERT, UPDATE, UPDATE, UPDATE]
    assert versions[1].changeset == {
        "text": [NON_ASCII, BIG_TEXT],
        "data": [written[0][1], written[1][1]],
        "blob": [BINARY, BIG_BINARY],
        "note": [None, "set"],
    }
    assert versions[2].changeset == {
        "text": [BIG_TEXT, None], "data": [written[1][1], None],
        "blob": [BIG_BINARY, None], "note": ["set", None],
    }
    assert versions[3].changeset == {
        "text": [None, ""], "data": [None, []], "blob": [None, b""], "note": [None, "again"],
    }

    versions[1].revert()
    session.commit()
    session.expire_all()
    assert _values(session.get(Record, 1)) == written[1]
    assert _values(record.versions.all()[-1]) == written[1]


def test_equal_values_of_other_types_write_no_version(db, Record):
    session = db.session()
    session.add(Record(id=1, text=BIG_TEXT, data={"a": [1, 2]}, blob=BIG_BINARY, note=None))
    session.commit()
    record = session.get(Record, 1)
    record.text = "".join(["ä€"] * 100_000)  # equal, not the same object
    record.data = {"a": [1, 2]}
    record.blob = bytes(BIG_BINARY)
    record.note = None
    session.commit()
    assert len(db.rows("transaction")) == 1
    record.data = {"a": [1, 2, 3]}
    session.commit()
    assert [v.data for v in record.versions] == [{"a": [1, 2]}, {"a": [1, 2, 3]}]


def test_bulk_update_by_keys_of_other_types(keyed, db):
    """A bulk UPDATE by primary key reads its rows before and after by keys that travel
    as an ``IN`` list: each changed row gets its version."""
    Item, (k1, k2, _) = keyed
    session = db.session()
    session.add_all([Item(key=k1, name="a"), Item(key=k2, name="b")])
    session.commit()
    session.execute(sa.update(Item), [{"key": k1, "name": "a2"}, {"key": k2, "name": "b"}])
    session.commit()
    tx1, tx2 = sorted(r["id"] for r in db.rows("transaction"))
    assert _history(db, Item) == {
        k1: [("a", tx1, tx2, INSERT), ("a2", tx2, None, UPDATE)],
        k2: [("b", tx1, None, INSERT)],
    }
