"""The plain records the history reader returns: frozen dataclasses, no SQL."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

__all__ = [
    "Change",
    "EntityDiff",
    "FieldDiff",
    "OperationName",
    "Page",
    "TransactionDetail",
    "TransactionSummary",
]

T = TypeVar("T")

#: How a version row changed its entity (``operation_type`` 0, 1, 2).
OperationName = Literal["insert", "update", "delete"]


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a newest-first listing.

    ``next_before`` is the cursor of the next (older) page: pass it as ``before=`` to
    get that page; it is ``None`` on the last page.
    """

    items: Sequence[T]
    next_before: int | None


@dataclass(frozen=True)
class TransactionSummary:
    """One row of the transaction table, with what it changed.

    ``issued_at`` is an aware datetime in UTC (the table stores naive UTC). ``user`` is
    a readable label of the user (a name column of the user table when there is one,
    else the ``user_id`` as text), ``user_id`` the raw value. ``tables`` are the parent
    tables the transaction changed, sorted; ``change_count`` counts its version rows.
    """

    id: int
    issued_at: datetime.datetime | None
    user: str | None
    remote_addr: str | None
    tables: tuple[str, ...]
    change_count: int
    user_id: Any = None


@dataclass(frozen=True)
class Change:
    """One version row: how one entity (row of ``table``) changed in one transaction.

    ``key`` maps the key column(s) to their values, ``values`` every versioned column
    to its value in this version, ``previous`` the values of the version before (None
    for the first one). ``changed`` names the columns whose value differs from the
    previous version (for a first version, or one written after a delete: those that
    are not null), key excluded.
    """

    transaction_id: int
    table: str
    key: dict[str, Any]
    operation: OperationName
    values: dict[str, Any]
    previous: dict[str, Any] | None
    changed: tuple[str, ...]


@dataclass(frozen=True)
class TransactionDetail:
    """A transaction and every change it made, ordered by table then key."""

    summary: TransactionSummary
    changes: list[Change]

    @property
    def id(self) -> int:
        """The transaction id (``summary.id``)."""
        return self.summary.id


@dataclass(frozen=True)
class FieldDiff:
    """One column in an :class:`EntityDiff`: its value on each side."""

    name: str
    old: Any
    new: Any
    changed: bool


@dataclass(frozen=True)
class EntityDiff:
    """An entity compared at two points of its history.

    ``from_tx`` / ``to_tx`` are the transactions compared (``from_tx`` is None for
    "before the entity existed"). The state at a transaction is that of the entity's
    last version written in or before it; ``from_operation`` / ``to_operation`` say
    which operation wrote that version (None when there was none yet). A side where
    the entity does not exist (not yet, or deleted) has every value None.
    """

    table: str
    key: dict[str, Any]
    from_tx: int | None
    to_tx: int | None
    fields: list[FieldDiff]
    from_operation: OperationName | None = None
    to_operation: OperationName | None = None

    @property
    def changed(self) -> tuple[str, ...]:
        """The names of the fields whose value differs between the two sides."""
        return tuple(f.name for f in self.fields if f.changed)
