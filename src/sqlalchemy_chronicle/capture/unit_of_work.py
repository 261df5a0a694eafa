"""Per-session-transaction capture state.

A :class:`UnitOfWork` lives in ``session.info`` for as long as the session's
outermost transaction; it is created by the first flush (or bulk statement) that
needs it and dropped when that transaction ends (commit, rollback or close).
Savepoints snapshot it (:class:`Snapshot`), and a rolled-back savepoint restores the
snapshot. Nothing is kept anywhere else, so sessions in other threads or tasks never
see each other's state.

It holds state only: what this transaction wrote, and its transaction row. The
statements are written by :mod:`.writer`, fed by the sources (:mod:`.orm`,
:mod:`.associations`, :mod:`.bulk`), and the writer records what it wrote here: the
writer depends on this module, never the other way. :meth:`UnitOfWork.make_versions`
and :meth:`UnitOfWork.create_transaction` are kept, for SQLAlchemy-Continuum
compatibility, as calls into the writer the manager holds (:class:`VersionWriter`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import attributes
from sqlalchemy.orm import util as orm_util

from ..config import Operation
from .plan import PK

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import InstanceState, Mapper, Session, SessionTransaction

    from ..hooks import PluginCollection
    from ..schema.models import VersionedModel
    from ..schema.tables import VersionTableSpec
    from .committed import CommittedReads


__all__ = [
    "BulkCapture",
    "CaptureConfig",
    "NativeBackend",
    "Operations",
    "Snapshot",
    "UnitOfWork",
    "VersionWriter",
]


class VersionWriter(Protocol):
    """The writer, as the unit of work's Continuum-compatible calls need it (the
    module :mod:`.writer` is one)."""

    def write_flush(self, uow: UnitOfWork, session: Session) -> None:
        """Write the versions of the rows the last flush wrote (``uow.changes``)."""

    def open_transaction(self, uow: UnitOfWork, session: Session) -> None:
        """Write ``uow``'s transaction row now, if it is not written yet."""


class NativeBackend(Protocol):
    """What the write path asks of the trigger backend (``capture/native``)."""

    @property
    def active(self) -> bool:
        """Whether some model is versioned by triggers."""

    def is_native(self, table: Any) -> bool:
        """Whether triggers version ``table``."""

    def before_flush(self, uow: UnitOfWork, session: Session) -> None: ...

    def after_flush(self, uow: UnitOfWork, session: Session) -> None: ...

    def transaction_opened(self, connection: Connection, tx_id: int) -> None: ...


class BulkCapture(Protocol):
    """A legacy bulk save being versioned (:class:`.bulk.BulkSave`), as the unit of
    work holds it."""

    def watch(self, connection: Connection) -> None: ...

    def unwatch(self) -> None: ...

    def finish(self) -> None: ...


class CaptureConfig(Protocol):
    """What the write path needs from the versioning manager."""

    plugins: PluginCollection
    association_tables: set[sa.Table]
    #: The trigger backend (PostgreSQL), for models with ``native_versioning``.
    native: NativeBackend
    #: The writer of version rows (:mod:`.writer`).
    writer: VersionWriter
    #: Reads of what is committed now, beside a transaction (MySQL/MariaDB).
    committed_reads: CommittedReads

    @property
    def transaction_table(self) -> sa.Table: ...

    @property
    def transaction_cls(self) -> Any: ...

    def model_for_mapper(self, mapper: Mapper[Any]) -> VersionedModel | None: ...

    def model_for_table(self, table: Any) -> VersionedModel | None: ...

    def association_spec(self, table: Any) -> VersionTableSpec | None: ...


@dataclass(frozen=True)
class Snapshot:
    """The state of a unit of work when a savepoint began; restored if it rolls back."""

    transaction: SessionTransaction
    transaction_id: int | None
    transaction_obj: Any
    transaction_values: dict[str, Any]
    written: dict[tuple[sa.Table, PK], Operation]
    info: dict[str, Any]
    association_touched: set[sa.Table]
    born: frozenset[tuple[sa.Table, PK]] = frozenset()


class Operations(Mapping[tuple[sa.Table, PK], Operation]):
    """Read-only view of what a unit of work versioned (``uow.operations``).

    Maps (version table, primary key values) to the :class:`Operation` of the version
    row this transaction wrote for that entity; several changes of one entity in a
    transaction fold into one entry, as they fold into one version row.
    """

    def __init__(self, written: Mapping[tuple[sa.Table, PK], Operation]) -> None:
        self._written = written

    def __getitem__(self, key: tuple[sa.Table, PK]) -> Operation:
        return self._written[key]

    def __iter__(self) -> Iterator[tuple[sa.Table, PK]]:
        return iter(self._written)

    def __len__(self) -> int:
        return len(self._written)

    def __repr__(self) -> str:
        return f"Operations({dict(self._written)!r})"


class UnitOfWork:
    """The versioning state of one session transaction.

    Get it with ``versioning_manager.unit_of_work(session)``. ``current_transaction``
    is the transaction row of this database transaction (None until something was
    versioned or :meth:`create_transaction` was called).
    """

    def __init__(self, manager: CaptureConfig, session: Session) -> None:
        self.manager = manager
        self.session_ref = weakref.ref(session)
        self._transaction_id: int | None = None
        #: Learns the id from the database (triggers may have written or moved the
        #: row since it was last known), run when the id is next read.
        self._lookup: Callable[[UnitOfWork], None] | None = None
        #: The column values that row was written with.
        self.transaction_values: dict[str, Any] = {}
        #: The values of a transaction row that the next version statement writes.
        self.pending_values: dict[str, Any] | None = None
        self.transaction_obj: Any = None
        #: The connection versions are written on (None before the first write).
        self.connection: Connection | None = None
        #: (version table, key) -> the operation of the row this transaction wrote.
        self.written: dict[tuple[sa.Table, PK], Operation] = {}
        #: (version table, key) of the entities this transaction inserted first: one
        #: inserted, deleted and inserted again here is an INSERT, not an UPDATE.
        self.born: frozenset[tuple[sa.Table, PK]] = frozenset()
        #: (model, state, operation) per row the current flush wrote.
        self.changes: list[tuple[VersionedModel, InstanceState[Any], Operation]] = []
        self.savepoints: list[Snapshot] = []
        #: The specs of the version tables this transaction wrote (for re-stamping).
        self.written_specs: dict[sa.Table, VersionTableSpec] = {}
        #: Free space for plugins; it follows savepoints like the rest of the state.
        self.info: dict[str, Any] = {}
        #: Association version tables this transaction wrote to.
        self.association_touched: set[sa.Table] = set()
        #: id of an ``INSERT ... FROM SELECT`` being run -> the rows its SELECT
        #: returned just before it ran (``associations.read_insert_source``).
        self.insert_sources: dict[int, list[dict[str, Any]]] = {}
        #: Set when the session transaction ended; the object then versions nothing.
        self.closed = False
        #: The parent classes whose versions the write being processed writes.
        self.changed_entities: set[type] = set()
        #: The flush being processed changed rows that triggers version.
        self.native_changes = False
        #: Moves on at every flush and rollback to a savepoint: histories read before
        #: (``read/batch.py``) may be out of date after.
        self.generation = 0
        #: A flush began (before_flush): the next subtransaction is the flush's.
        self.flush_pending = False
        #: The legacy bulk save being versioned (:class:`.bulk.BulkSave`), and its
        #: subtransaction.
        self.bulk: BulkCapture | None = None
        self.bulk_transaction: SessionTransaction | None = None

    @property
    def transaction_id(self) -> int | None:
        """The id of this transaction's row (None until written)."""
        lookup = self._lookup
        if lookup is not None:
            self._lookup = None
            if not self.closed:
                lookup(self)
        return self._transaction_id

    @transaction_id.setter
    def transaction_id(self, value: int | None) -> None:
        self._lookup = None
        self._transaction_id = value

    @property
    def known_transaction_id(self) -> int | None:
        """The id as last known, without asking the database (see :meth:`look_up_later`)."""
        return self._transaction_id

    def look_up_later(self, lookup: Callable[[UnitOfWork], None]) -> None:
        """Learn the transaction id with ``lookup`` (which calls :meth:`adopt_transaction`)
        when it is next read, not now: the database's triggers wrote versions, and
        perhaps the transaction row, but nothing may ask for its id before the commit."""
        self._lookup = lookup

    @property
    def operations(self) -> Operations:
        """What this transaction versioned so far (a read-only view)."""
        return Operations(self.written)

    # -- the transaction row ---------------------------------------------------------

    @property
    def current_transaction(self) -> Any:
        """The transaction object of this unit of work, or None if none was written.

        It is attached to the session on first access (no query is made).
        """
        if self.transaction_id is None:
            return None
        if self.transaction_obj is None:
            session = self.session_ref()
            if session is not None:
                self.transaction_obj = self._attach_transaction(session, self.transaction_id)
        return self.transaction_obj

    def _attach_transaction(self, session: Session, tx_id: int) -> Any:
        cls = self.manager.transaction_cls
        if cls is None:
            return None
        existing = session.identity_map.get(orm_util.identity_key(cls, tx_id))
        if existing is not None:
            return existing
        obj = sa.inspect(cls).class_manager.new_instance()
        for key, value in self.transaction_values.items():
            attributes.set_committed_value(obj, key, value)
        attributes.set_committed_value(obj, "id", tx_id)
        orm.make_transient_to_detached(obj)
        session.add(obj)
        return obj

    def create_transaction(self, session: Session) -> Any:
        """Write this transaction's row now (if not written yet) and return it.

        Useful to give the transaction metadata before the first flush.
        """
        if self.transaction_id is None:
            self.manager.writer.open_transaction(self, session)
        return self.current_transaction

    def written_operation(self, version_table: sa.Table, key: Sequence[Any]) -> Operation | None:
        """The operation of the version this transaction wrote for ``key`` (a tuple of
        the version table's key values without the transaction id), or None."""
        return self.written.get((version_table, tuple(key)))

    def adopt_transaction(self, tx_id: int, values: dict[str, Any], session: Session) -> None:
        """Take note of the transaction row the database wrote (triggers), id ``tx_id``."""
        old = self.transaction_obj
        if old is not None and old in session:
            session.expunge(old)  # moved to a new id by the database
        self.transaction_id = tx_id
        self.transaction_values = values
        self.transaction_obj = None

    def opened(self, tx_id: int, values: Mapping[str, Any]) -> None:
        """Take note that this transaction's row was written, with id ``tx_id``."""
        self.transaction_id = tx_id
        self.transaction_values = dict(values)
        self.transaction_obj = None
        self.pending_values = None

    # -- recording -------------------------------------------------------------------

    def record(self, model: VersionedModel, state: InstanceState[Any], op: Operation) -> None:
        """Note that the current flush wrote ``state`` with ``op`` (from mapper events)."""
        self.changes.append((model, state, op))

    def discard_pending(self) -> None:
        self.changes.clear()

    def make_versions(self, session: Session) -> None:
        """Write the versions of everything flushed since the last call (after a flush)."""
        if self.changes:
            self.manager.writer.write_flush(self, session)

    # -- savepoints ------------------------------------------------------------------

    def savepoint_started(self, transaction: SessionTransaction) -> None:
        self.savepoints.append(
            Snapshot(
                transaction,
                self.transaction_id,
                self.transaction_obj,
                self.transaction_values,
                dict(self.written),
                dict(self.info),
                set(self.association_touched),
                self.born,
            )
        )

    def savepoint_ended(
        self, session: Session, transaction: SessionTransaction, rolled_back: bool
    ) -> None:
        """Forget the savepoint; on rollback, return to the state it started with."""
        for i in range(len(self.savepoints) - 1, -1, -1):
            snapshot = self.savepoints[i]
            if snapshot.transaction is transaction:
                del self.savepoints[i:]
                if rolled_back:
                    self._restore(session, snapshot)
                return

    def _restore(self, session: Session, snapshot: Snapshot) -> None:
        tx_obj = self.transaction_obj
        self.transaction_id = snapshot.transaction_id
        self.transaction_obj = snapshot.transaction_obj
        self.transaction_values = snapshot.transaction_values
        self.written = snapshot.written
        self.info = snapshot.info
        self.association_touched = snapshot.association_touched
        self.born = snapshot.born
        self.changes.clear()
        stale = tx_obj is not None and tx_obj is not self.transaction_obj
        if stale and tx_obj in session:
            # Its row was rolled back with the savepoint.
            session.expunge(tx_obj)
