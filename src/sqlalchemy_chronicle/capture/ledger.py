"""Tamper evidence: a hash chain over the transactions and the version rows they wrote.

Opt-in, with :class:`~sqlalchemy_chronicle.plugins.TamperEvidencePlugin`. When a
versioning transaction commits, :func:`write_ledger_entry` reads back the transaction
row and every version row it wrote, hashes them (:func:`transaction_digest`), and
appends one row to the ledger table (``transaction_ledger`` by default):

``transaction_id``, ``sequence``, ``digest``, ``chain``
    ``digest`` is SHA-256 over the transaction row and the sorted hashes of its
    version rows; ``chain`` is SHA-256 over the previous entry's ``chain``, this
    entry's ``digest``, its transaction id and its ``sequence``
    (:func:`chain_hash`), so altering, removing or inserting any entry breaks every
    later link.

Entries are chained in commit order, not transaction-id order: ids are taken at the
first flush, so a transaction with a smaller id may commit later. The ledger's head
row (``transaction_id`` 0, created on first use) holds the last entry's ``chain``
and, negated (entries' sequences are unique), its ``sequence``; each commit locks it
(``SELECT ... FOR UPDATE``), so two transactions committing at once are chained one
after the other, never to the same predecessor. SQLite serialises writers anyway.
Under PostgreSQL's REPEATABLE READ or SERIALIZABLE a concurrent commit makes the
later one fail with a serialization error, to be retried as usual at those levels.

``end_transaction_id`` is left out of the hashes: the next version of an entity sets
it after the fact. Its consistency is what ``chronicle verify`` checks as chains.

Values are hashed as the database driver returns them (no SQLAlchemy type
conversion), so the application, with its models, and ``chronicle verify``, with
reflected tables, compute the same digests; verify with the same driver family that
wrote.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.types import NullType

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "GENESIS_CHAIN",
    "HEAD_TRANSACTION_ID",
    "build_ledger_table",
    "canonical",
    "chain_hash",
    "raw_columns",
    "row_hash",
    "transaction_digest",
    "write_ledger_entry",
]

#: The ``chain`` the first entry links to.
GENESIS_CHAIN = "0" * 64
#: The ``transaction_id`` of the ledger's head row (no transaction has id 0).
HEAD_TRANSACTION_ID = 0


def build_ledger_table(transaction_table: sa.Table, name: str | None = None) -> sa.Table:
    """The ledger table for ``transaction_table``, in the same metadata and schema."""
    metadata = transaction_table.metadata
    name = name or f"{transaction_table.name}_ledger"
    key = f"{transaction_table.schema}.{name}" if transaction_table.schema else name
    existing = metadata.tables.get(key)
    if existing is not None:
        return existing
    return sa.Table(
        name,
        metadata,
        sa.Column("transaction_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger, nullable=False, unique=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("chain", sa.String(64), nullable=False),
        schema=transaction_table.schema,
    )


def canonical(value: Any) -> str:
    """``value`` as text tagged with its kind, equal for equal stored values."""
    if value is None:
        return "n"
    if isinstance(value, str):
        return "s" + value
    if isinstance(value, bool):
        return "i" + str(int(value))
    if isinstance(value, int):
        return "i" + str(value)
    if isinstance(value, float):
        return "f" + repr(value)
    if isinstance(value, decimal.Decimal):
        return "d" + str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "b" + bytes(value).hex()
    if isinstance(value, datetime.datetime):
        moment: datetime.datetime = value
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.timezone.utc)
        return "t" + moment.isoformat()
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        return "t" + str(value)
    if isinstance(value, uuid.UUID):
        return "u" + str(value)
    if isinstance(value, enum.Enum):
        return "e" + str(value.name)
    if isinstance(value, dict | list | tuple):
        return "j" + json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return "r" + str(value)


def row_hash(table_name: str, row: Mapping[Any, Any]) -> str:
    """SHA-256 (hex) of one row of table ``table_name``, its columns by name.

    Each name and value is written with its length in front, so no value can pass for
    a separator."""
    parts = [f"{len(table_name)}:{table_name}"]
    for key in sorted(row):
        text = canonical(row[key])
        parts.append(f"{len(key)}:{key}{len(text)}:{text}")
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def transaction_digest(transaction_row: Mapping[Any, Any] | None, row_hashes: Iterable[str]) -> str:
    """SHA-256 (hex) over a transaction row and the hashes of the version rows it wrote
    (in any order: they are sorted)."""
    h = hashlib.sha256()
    h.update(row_hash("", transaction_row or {}).encode("ascii"))
    for item in sorted(row_hashes):
        h.update(item.encode("ascii"))
    return h.hexdigest()


def chain_hash(previous: str, digest: str, transaction_id: int, sequence: int) -> str:
    """The ``chain`` of a ledger entry, linking ``previous`` (the last entry's chain)."""
    text = f"{previous}:{digest}:{int(transaction_id)}:{int(sequence)}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def raw_columns(table: sa.Table, leave_out: Sequence[str] = ()) -> list[Any]:
    """The columns of ``table`` (but ``leave_out``, by name) selected as the driver
    returns them, labelled by column name."""
    return [
        sa.type_coerce(c, NullType()).label(c.name)
        for c in table.columns
        if c.name not in leave_out
    ]


def write_ledger_entry(
    connection: Connection,
    ledger: sa.Table,
    transaction_table: sa.Table,
    transaction_id: int,
    version_tables: Iterable[tuple[sa.Table, str, str | None]],
) -> tuple[int, str]:
    """Append the ledger entry of transaction ``transaction_id``; its (sequence, chain).

    ``version_tables`` are (version table, transaction column name, end transaction
    column name or None) for every table the transaction may have written.
    """
    tx_row = connection.execute(
        sa.select(*raw_columns(transaction_table)).where(transaction_table.c.id == transaction_id)
    ).first()
    hashes: list[str] = []
    for table, tx_name, end_name in version_tables:
        leave_out = (end_name,) if end_name else ()
        rows = connection.execute(
            sa.select(*raw_columns(table, leave_out)).where(table.c[tx_name] == transaction_id)
        )
        hashes.extend(row_hash(table.name, row._mapping) for row in rows)
    digest = transaction_digest(tx_row._mapping if tx_row is not None else None, hashes)

    last, previous = _lock_head(connection, ledger)
    sequence = last + 1
    chain = chain_hash(previous, digest, transaction_id, sequence)
    connection.execute(
        sa.insert(ledger),
        {"transaction_id": transaction_id, "sequence": sequence, "digest": digest, "chain": chain},
    )
    connection.execute(
        sa.update(ledger)
        .where(ledger.c.transaction_id == HEAD_TRANSACTION_ID)
        .values(sequence=-sequence, chain=chain)
    )
    return sequence, chain


def _lock_head(connection: Connection, ledger: sa.Table) -> tuple[int, str]:
    """Lock the head row (creating it on first use); the last entry's sequence and
    chain. A locking read: MariaDB's REPEATABLE READ then reads the latest committed
    head, not its snapshot's."""
    select_head = (
        sa.select(ledger.c.sequence, ledger.c.chain)
        .where(ledger.c.transaction_id == HEAD_TRANSACTION_ID)
        .with_for_update()
    )
    head = connection.execute(select_head).first()
    if head is None:
        values = {
            "transaction_id": HEAD_TRANSACTION_ID,
            "sequence": 0,
            "digest": GENESIS_CHAIN,
            "chain": GENESIS_CHAIN,
        }
        connection.execute(_insert_ignoring_duplicate(connection, ledger), values)
        head = connection.execute(select_head).one()
    return -int(head[0]), str(head[1])


def _insert_ignoring_duplicate(connection: Connection, ledger: sa.Table) -> Any:
    """An INSERT of the head row that does nothing when a concurrent one wrote it."""
    name = connection.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(ledger).on_conflict_do_nothing()
    if name in ("mysql", "mariadb"):
        return sa.insert(ledger).prefix_with("IGNORE")
    if name == "sqlite":
        return sa.insert(ledger).prefix_with("OR IGNORE")
    return sa.insert(ledger)
