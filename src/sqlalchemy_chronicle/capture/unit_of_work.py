"""Per-session-transaction capture state and the set-based version writer.

A :class:`UnitOfWork` lives in ``session.info`` for as long as the session's
outermost transaction; it is created by the first flush that needs it and dropped
when that transaction ends (commit, rollback or close). Savepoints snapshot it,
and a rolled-back savepoint restores the snapshot. Nothing is kept anywhere else,
so sessions in other threads or tasks never see each other's state.

Writing versions is set-based. For each flush, per version table, it runs at most:

* one ``DELETE`` of rows this transaction already wrote for entities changed again
  (several flushes fold into one version row),
* one ``INSERT ... SELECT`` from the live table for inserted and updated rows,
* one ``INSERT ... SELECT`` from the version table for deleted rows (their last
  version, re-stamped as a DELETE),
* one ``UPDATE`` turning this transaction's row into a DELETE when an entity it
  inserted or updated is deleted,
* one ``UPDATE`` closing the previous versions (validity strategy).

On PostgreSQL the closing ``UPDATE`` is part of the ``INSERT`` it goes with (a
data-modifying ``WITH``); for deleted rows its ``RETURNING`` feeds the copy of the
last versions, which are then found once. When no plugin needs the transaction row
before the versions, the first of these statements in a transaction writes that row
too, so a flush of one model is one statement.

Each statement carries the keys of up to :data:`CHUNK_PARAMS` parameters, so the
number of statements does not grow with the number of rows until a flush changes
thousands of them.
"""

from __future__ import annotations

import datetime
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import attributes
from sqlalchemy.orm import util as orm_util

from ..config import Operation
from ..exc import ConfigurationError
from .context import current_context
from .sql import key_in, ordered
from .statements import CHUNK_PARAMS, OP, WriteStatements, chunks, statements_for
from .transaction_ids import insert_transaction_row

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import InstanceState, Mapper, Session, SessionTransaction

    from ..hooks import PluginCollection
    from ..schema.models import VersionedModel
    from ..schema.tables import VersionTableSpec
    from .native.postgresql import NativeCapture


__all__ = ["CHUNK_PARAMS", "CaptureConfig", "Operations", "UnitOfWork"]

PK = tuple[Any, ...]


class CaptureConfig(Protocol):
    """What the write path needs from the versioning manager."""

    plugins: PluginCollection
    association_tables: set[sa.Table]
    #: The trigger backend (PostgreSQL), for models with ``native_versioning``.
    native: NativeCapture

    @property
    def transaction_table(self) -> sa.Table: ...

    @property
    def transaction_cls(self) -> Any: ...

    def model_for_mapper(self, mapper: Mapper[Any]) -> VersionedModel | None: ...

    def association_spec(self, table: Any) -> VersionTableSpec | None: ...


def _unstored_meta(meta: Mapping[str, Any]) -> ConfigurationError:
    keys = ", ".join(sorted(meta))
    return ConfigurationError(
        f"versioning_context() was given metadata ({keys}) but no plugin stores "
        f"transaction metadata; add TransactionMetaPlugin() to the plugins."
    )


def utc_now() -> datetime.datetime:
    """The current time as a naive UTC datetime (the ``issued_at`` convention)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@dataclass
class _TablePlan:
    """What one flush does to one version table."""

    spec: VersionTableSpec
    #: key -> the operation its version row must end up with.
    ops: dict[PK, Operation] = field(default_factory=dict)
    #: keys with no row of this transaction in the version table yet.
    new: set[PK] = field(default_factory=set)
    states: dict[PK, InstanceState[Any]] = field(default_factory=dict)
    #: Fewer previous versions were closed than entities updated or deleted.
    short: bool = False
    #: key -> column values given by plugins (``version_row_values``), as sorted items.
    extras: dict[PK, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    #: Keys whose previous versions were closed already by this flush, and how many
    #: of those had a smaller transaction id.
    closed_keys: set[PK] = field(default_factory=set)
    closed: int = 0


# The fold table: what an operation does when this transaction already wrote a
# version of the same entity with operation ``before``. ``None`` means "nothing".
_FOLD: dict[tuple[Operation, Operation], Operation | None] = {
    (Operation.INSERT, Operation.UPDATE): Operation.INSERT,
    (Operation.INSERT, Operation.DELETE): Operation.DELETE,
    (Operation.INSERT, Operation.INSERT): Operation.INSERT,
    (Operation.UPDATE, Operation.UPDATE): Operation.UPDATE,
    (Operation.UPDATE, Operation.DELETE): Operation.DELETE,
    (Operation.UPDATE, Operation.INSERT): Operation.UPDATE,
    (Operation.DELETE, Operation.INSERT): Operation.UPDATE,
    (Operation.DELETE, Operation.UPDATE): Operation.UPDATE,
    (Operation.DELETE, Operation.DELETE): None,
}


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
        self._session_ref = weakref.ref(session)
        self._transaction_values: dict[str, Any] = {}
        self.transaction_id: int | None = None
        #: The values of a transaction row that the next version statement writes.
        self._pending_values: dict[str, Any] | None = None
        self._transaction_obj: Any = None
        self._connection: Connection | None = None
        #: (version table, key) -> the operation of the row this transaction wrote.
        self._written: dict[tuple[sa.Table, PK], Operation] = {}
        #: (model, state, operation) per row the current flush wrote.
        self._changes: list[tuple[VersionedModel, InstanceState[Any], Operation]] = []
        self._savepoints: list[tuple[SessionTransaction, tuple[Any, ...]]] = []
        #: The specs of the version tables this transaction wrote (for re-stamping).
        self._written_specs: dict[sa.Table, VersionTableSpec] = {}
        #: Free space for plugins; it follows savepoints like the rest of the state.
        self.info: dict[str, Any] = {}
        #: Association version tables this transaction wrote to.
        self._association_touched: set[sa.Table] = set()
        #: Set when the session transaction ended; the object then versions nothing.
        self.closed = False
        #: The parent classes whose versions the flush being processed writes.
        self.changed_entities: set[type] = set()
        #: The flush being processed changed rows that triggers version.
        self._native_changes = False

    @property
    def operations(self) -> Operations:
        """What this transaction versioned so far (a read-only view)."""
        return Operations(self._written)

    @property
    def connection(self) -> Connection | None:
        """The connection versions are written on (None before the first write)."""
        return self._connection

    # -- the transaction row ---------------------------------------------------------

    @property
    def current_transaction(self) -> Any:
        """The transaction object of this unit of work, or None if none was written.

        It is attached to the session on first access (no query is made).
        """
        if self.transaction_id is None:
            return None
        if self._transaction_obj is None:
            session = self._session_ref()
            if session is not None:
                self._transaction_obj = self._attach_transaction(session, self.transaction_id)
        return self._transaction_obj

    def _attach_transaction(self, session: Session, tx_id: int) -> Any:
        cls = self.manager.transaction_cls
        if cls is None:
            return None
        existing = session.identity_map.get(orm_util.identity_key(cls, tx_id))
        if existing is not None:
            return existing
        obj = sa.inspect(cls).class_manager.new_instance()
        for key, value in self._transaction_values.items():
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
            self._ensure_transaction(session, self._connection_for(session, None))
        return self.current_transaction

    def _connection_for(self, session: Session, mapper: Mapper[Any] | None) -> Connection:
        if self._connection is None:
            args = {"mapper": mapper} if mapper is not None else None
            if args is None and self.manager.transaction_cls is not None:
                args = {"mapper": sa.inspect(self.manager.transaction_cls)}
            self._connection = session.connection(bind_arguments=args)
        return self._connection

    def _ensure_transaction(self, session: Session, connection: Connection) -> int:
        if self.transaction_id is not None:
            return self.transaction_id
        values = self._pending_values
        if values is None:
            values = self._transaction_row_values(session)
        # The values as parameters: the compiled INSERT is found in the cache.
        table = self.manager.transaction_table
        return self._opened(session, insert_transaction_row(connection, table, values), values)

    def _transaction_row_values(self, session: Session) -> dict[str, Any]:
        """The column values of this transaction's row (plugins, the context)."""
        values: dict[str, Any] = {"issued_at": utc_now()}
        plugins = self.manager.plugins
        if len(plugins):
            for args in plugins.transaction_args(self, session):
                values.update(args or {})
        table = self.manager.transaction_table
        values = {k: v for k, v in values.items() if k in table.c}
        context = current_context()
        if context is not None:
            for name, value in context.transaction_values().items():
                if name not in table.c:
                    hint = (
                        "make_versioned(user_cls=...)"
                        if name == "user_id"
                        else ("a transaction class with that column")
                    )
                    raise ConfigurationError(
                        f"versioning_context({name}=...) was given, but the table "
                        f"{table.name!r} has no column {name!r}; configure {hint}."
                    )
                values[name] = value
            if context.meta and not plugins.implementing("store_transaction_meta"):
                raise _unstored_meta(context.meta)
        return values

    @property
    def transaction_values(self) -> dict[str, Any]:
        """The column values of this transaction's row (empty before it is written)."""
        return dict(self._transaction_values)

    def adopt_transaction(self, tx_id: int, values: dict[str, Any], session: Session) -> None:
        """Take note of the transaction row the database wrote (triggers), id ``tx_id``."""
        old = self._transaction_obj
        if old is not None and old in session:
            session.expunge(old)  # moved to a new id by the database
        self.transaction_id = tx_id
        self._transaction_values = values
        self._transaction_obj = None

    def _opened(self, session: Session, tx_id: int, values: dict[str, Any]) -> int:
        """Take note that this transaction's row was written, with id ``tx_id``."""
        self.transaction_id = tx_id
        self._transaction_values = values
        self._transaction_obj = None
        self._pending_values = None
        native = self.manager.native
        if native.active and self._connection is not None:
            native.transaction_opened(self._connection, tx_id)
        context = current_context()
        if context is not None and context.meta:
            plugins = self.manager.plugins
            stored = (
                plugins.store_transaction_meta(self, session, context.meta) if len(plugins) else []
            )
            if not any(stored):
                raise _unstored_meta(context.meta)
        return tx_id

    def association_transaction(self, connection: Connection) -> int:
        """The transaction id for versioning an association table write on ``connection``."""
        if self._connection is None:
            self._connection = connection
        session = self._session_ref()
        if session is None:  # pragma: no cover - the session owns this object
            raise RuntimeError("the session of this unit of work is gone")
        return self._ensure_transaction(session, connection)

    def association_touched(self, version_table: sa.Table) -> bool:
        return version_table in self._association_touched

    def mark_association_touched(self, version_table: sa.Table) -> None:
        self._association_touched.add(version_table)

    def written_operation(self, version_table: sa.Table, key: Sequence[Any]) -> Operation | None:
        """The operation of the version this transaction wrote for ``key`` (a tuple of
        the version table's key values without the transaction id), or None."""
        return self._written.get((version_table, tuple(key)))

    # -- recording -------------------------------------------------------------------

    def record(self, model: VersionedModel, state: InstanceState[Any], op: Operation) -> None:
        """Note that the current flush wrote ``state`` with ``op`` (from mapper events)."""
        self._changes.append((model, state, op))

    def discard_pending(self) -> None:
        self._changes.clear()

    # -- savepoints ------------------------------------------------------------------

    def _snapshot(self) -> tuple[Any, ...]:
        return (
            self.transaction_id,
            self._transaction_obj,
            self._transaction_values,
            dict(self._written),
            dict(self.info),
            set(self._association_touched),
        )

    def savepoint_started(self, transaction: SessionTransaction) -> None:
        self._savepoints.append((transaction, self._snapshot()))

    def savepoint_ended(
        self, session: Session, transaction: SessionTransaction, rolled_back: bool
    ) -> None:
        """Forget the savepoint; on rollback, return to the state it started with."""
        for i in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[i][0] is transaction:
                snapshot = self._savepoints[i][1]
                del self._savepoints[i:]
                if rolled_back:
                    tx_obj = self._transaction_obj
                    (
                        self.transaction_id,
                        self._transaction_obj,
                        self._transaction_values,
                        self._written,
                        self.info,
                        self._association_touched,
                    ) = snapshot
                    self._changes.clear()
                    stale = tx_obj is not None and tx_obj is not self._transaction_obj
                    if stale and tx_obj in session:
                        # Its row was rolled back with the savepoint.
                        session.expunge(tx_obj)
                return

    # -- writing versions ------------------------------------------------------------

    @staticmethod
    def _changed(model: VersionedModel, state: InstanceState[Any]) -> bool:
        """Whether a versioned column attribute of ``state`` holds a new value.

        ``committed_state`` has the value each changed attribute had when loaded (the
        attributes keep it: ``active_history``); NO_VALUE means it was not known.
        """
        committed = state.committed_state
        if not committed:
            return False
        current = state.dict
        compare = model.comparators
        for key in committed.keys() & model.versioned_keys:
            old = committed[key]
            if old is orm.NO_VALUE or not compare[key](old, current.get(key)):
                return True
        return False

    @staticmethod
    def _key(
        state: InstanceState[Any], keys: Sequence[str], positions: Sequence[int], op: Operation
    ) -> PK:
        # A deleted row is known by its identity key; an inserted or updated one by its
        # current values, which hold a new key when the primary key itself changed.
        if op is not Operation.DELETE:
            values = state.dict
            try:
                return tuple([values[k] for k in keys])
            except KeyError:
                pass
        assert state.key is not None
        identity = state.key[1]
        return tuple([identity[i] for i in positions])

    def _plan(self) -> dict[sa.Table, _TablePlan]:
        plans: dict[sa.Table, _TablePlan] = {}
        row_plugins = self.manager.plugins.implementing("version_row_values")
        written = self._written
        changed_entities = self.changed_entities
        changed = self._changed
        key_of = self._key
        update = Operation.UPDATE
        for model, state, op in self._changes:
            if model.options.native_versioning:
                self._native_changes = True  # written by the database's triggers
                continue
            if op is update and not changed(model, state):
                continue
            for spec, keys, positions in model.key_sources:
                version = spec.version
                plan = plans.get(version)
                if plan is None:
                    plan = plans[version] = _TablePlan(spec)
                key = key_of(state, keys, positions, op)
                ops = plan.ops
                before = ops.get(key)
                if before is None:
                    before = written.get((version, key))
                plan.states[key] = state
                if before is None:
                    ops[key] = op
                    plan.new.add(key)
                else:
                    folded = _FOLD[(before, op)]
                    if folded is None:
                        continue
                    ops[key] = folded
                changed_entities.add(model.parent)
                if row_plugins:
                    plan.extras[key] = self._row_values(row_plugins, spec, ops[key], state)
        return plans

    def _row_values(
        self, plugins: list[Any], spec: VersionTableSpec, op: Operation, state: InstanceState[Any]
    ) -> tuple[tuple[str, Any], ...]:
        values: dict[str, Any] = {}
        for plugin in plugins:
            values.update(plugin.version_row_values(self, spec.version, op, state.obj()))
        columns = spec.version.c
        return tuple(sorted((k, v) for k, v in values.items() if k in columns))

    def make_versions(self, session: Session) -> None:
        """Write the versions of everything flushed since the last call (after a flush)."""
        if not self._changes:
            return
        mapper = self._changes[0][0].mapper
        self.changed_entities = set()
        self._native_changes = False
        plans = self._plan()
        self._changes.clear()
        if self._native_changes:
            self.manager.native.after_flush(self, session)
        if not plans:
            return
        connection = self._connection_for(session, mapper)
        created = self.transaction_id is None
        plugins = self.manager.plugins
        if len(plugins):
            self._ensure_transaction(session, connection)
            plugins.before_create_version_objects(self, session)
        elif created:
            # No hook wants the row before the versions: the first version statement
            # that can writes it too (PostgreSQL), saving a round trip per transaction.
            self._pending_values = self._transaction_row_values(session)
        try:
            for plan in plans.values():
                self._write(session, connection, plan)
        finally:
            self._pending_values = None
        if self.transaction_id is None:  # no statement ran: nothing was versioned
            return
        tx_id = self.transaction_id
        if not created:
            suspects = [p for p in plans.values() if p.short or p.spec.end_tx is None]
            if suspects and self._overtaken(connection, suspects, tx_id):
                tx_id = self._restamp(session, connection, tx_id)
                for plan in plans.values():
                    if plan.spec.end_tx is not None and plan.new:
                        # All of them: a version written by the newer transaction is
                        # still open, whether or not this flush closed the rest.
                        self._close(connection, plan, tx_id, plan.new)
        if created and not self._written:
            # Every change turned out to need no version (deletes of rows another
            # transaction had deleted already): the transaction row goes too.
            table = self.manager.transaction_table
            connection.execute(sa.delete(table).where(table.c.id == tx_id))
            self.transaction_id = None
            self._transaction_values = {}
            return
        if len(plugins):
            object_plugins = plugins.implementing("after_create_version_object")
            if object_plugins:
                self._call_object_hooks(connection, plans, tx_id, object_plugins)
            plugins.after_create_version_objects(self, session)

    def _call_object_hooks(
        self,
        connection: Connection,
        plans: dict[sa.Table, _TablePlan],
        tx_id: int,
        plugins: list[Any],
    ) -> None:
        """Hand each version written by this flush, as an object, to ``plugins``.

        Only plugins written for the object-per-version hook need this; it loads the
        versions in one query per version class and writes back what the hooks
        changed, in a private session on the same connection.
        """
        private = orm.Session(bind=connection, autoflush=False)
        try:
            for plan in plans.values():
                by_class: dict[type, dict[PK, InstanceState[Any]]] = {}
                for key, state in plan.states.items():
                    model = self.manager.model_for_mapper(state.mapper)
                    if (
                        model is None
                        or model.version_cls is None
                        or model.local_spec is not plan.spec
                    ):
                        continue
                    if (plan.spec.version, key) in self._written:
                        by_class.setdefault(model.version_cls, {})[key] = state
                for version_cls, states in by_class.items():
                    spec = plan.spec
                    vpk = [getattr(version_cls, c.key) for c in spec.version_pk]
                    keys = list(states)
                    for chunk in chunks(keys, len(vpk)):
                        stmt: sa.Select[Any] = sa.select(version_cls).where(
                            getattr(version_cls, spec.tx.key) == tx_id,
                            key_in(vpk, chunk, connection.dialect),
                        )
                        for version in private.scalars(stmt):
                            key = tuple(getattr(version, c.key) for c in spec.version_pk)
                            parent = states[key].obj()
                            for plugin in plugins:
                                plugin.after_create_version_object(self, parent, version)
            private.flush()
        finally:
            private.close()

    @staticmethod
    def _overtaken(connection: Connection, plans: list[_TablePlan], tx_id: int) -> bool:
        """Whether a transaction with a larger id versioned one of these entities.

        This transaction took its id at an earlier flush (or before this flush locked its
        rows). Another one may have versioned a row in between and committed before
        this flush could lock it; writing under the old id would put this version
        before that one in the history.
        """
        # MySQL/MariaDB read a snapshot under REPEATABLE READ; a locking read sees the
        # versions committed since, as the UPDATEs of this flush saw their rows.
        locking = connection.dialect.name in ("mysql", "mariadb")
        for plan in plans:
            spec = plan.spec
            vpk = spec.version_pk
            for keys in chunks(ordered(plan.new), len(vpk)):
                probe = (
                    sa.select(sa.literal(1))
                    .select_from(spec.version)
                    .where(key_in(vpk, keys, connection.dialect), spec.tx > tx_id)
                    .limit(1)
                )
                if locking:
                    probe = probe.with_for_update(read=True)
                if connection.execute(probe).first() is not None:
                    return True
        return False

    def _restamp(self, session: Session, connection: Connection, old_id: int) -> int:
        """Move this transaction and everything it wrote to a new, larger id.

        The row locks held now keep every entity this transaction versioned from being
        versioned by anyone else, so an id taken now orders all of its history.
        """
        table = self.manager.transaction_table
        values = dict(self._transaction_values)
        new_id = insert_transaction_row(connection, table, values)
        specs = {spec.version: spec for spec in self._written_specs.values()}
        for table in self.manager.association_tables:
            spec = self.manager.association_spec(table)
            if spec is not None and spec.version in self._association_touched:
                specs[spec.version] = spec
        for spec in specs.values():
            connection.execute(
                sa.update(spec.version).where(spec.tx == old_id).values({spec.tx: new_id})
            )
            if spec.end_tx is not None:
                connection.execute(
                    sa.update(spec.version)
                    .where(spec.end_tx == old_id)
                    .values({spec.end_tx: new_id})
                )
        plugins = self.manager.plugins
        if len(plugins):
            plugins.transaction_id_changed(self, session, old_id, new_id)
        connection.execute(sa.delete(table).where(table.c.id == old_id))
        old_obj = self._transaction_obj
        if old_obj is not None and old_obj in session:
            session.expunge(old_obj)
        self.transaction_id = new_id
        self._transaction_obj = None
        return new_id

    def _tx_id(self, session: Session, connection: Connection) -> int:
        """This transaction's id, writing its row now if it is still pending."""
        if self.transaction_id is not None:
            return self.transaction_id
        return self._ensure_transaction(session, connection)

    def _counts(
        self,
        session: Session,
        connection: Connection,
        statements: WriteStatements,
        build: Callable[..., sa.Select[Any] | None],
        keys: Sequence[PK],
        extra: tuple[tuple[str, Any], ...],
        **params: Any,
    ) -> tuple[int, ...] | None:
        """Run the combined statement ``build(plugin columns[, opening])`` of
        ``statements`` for ``keys``; while this transaction's row is pending, the
        statement writes it too. None when the database has no such statement."""
        names = tuple(k for k, _ in extra)
        stmt = build(names)
        if stmt is None:
            return None
        values = self._pending_values
        if values is None:
            tx_id = self._tx_id(session, connection)
            return statements.counts(connection, stmt, keys, tx_id, extra, **params)[1]
        opening = build(names, (self.manager.transaction_table, tuple(values)))
        assert opening is not None
        tx_id, counts = statements.counts(
            connection, stmt, keys, None, extra, (opening, values), **params
        )
        self._opened(session, tx_id, values)
        return counts

    def _write(self, session: Session, connection: Connection, plan: _TablePlan) -> None:
        spec = plan.spec
        version = spec.version
        statements = statements_for(spec, connection.dialect)
        extras = plan.extras
        no_extras: tuple[tuple[str, Any], ...] = ()
        replace: list[PK] = []
        from_live: dict[tuple[Operation, Any], list[PK]] = {}
        from_last_version: list[PK] = []
        mark_deleted: dict[Any, list[PK]] = {}
        new = plan.new
        written = self._written
        delete = Operation.DELETE
        for key, op in plan.ops.items():
            extra = extras.get(key, no_extras) if extras else no_extras
            if key in new:
                if op is delete:
                    from_last_version.append(key)
                else:
                    from_live.setdefault((op, extra), []).append(key)
            elif op is delete:
                mark_deleted.setdefault(extra, []).append(key)
            else:
                replace.append(key)
                from_live.setdefault((op, extra), []).append(key)
            written[(version, key)] = op
        self._written_specs[version] = spec

        if replace:
            tx_id = self._tx_id(session, connection)
            statements.run(connection, statements.replace, replace, tx_id)

        if from_last_version:
            already_deleted = self._write_deletes(session, connection, plan, from_last_version)
            for key in already_deleted:
                plan.new.discard(key)
                del self._written[(version, key)]

        for (op, extra), keys in from_live.items():
            counts = None
            if plan.new.issuperset(keys):
                # PostgreSQL: close the previous versions in the same statement.
                build = statements.close_and_from_live
                counts = self._counts(
                    session, connection, statements, build, keys, extra, **{OP: int(op)}
                )
            if counts is None:
                stmt = statements.from_live(tuple(k for k, _ in extra))
                tx_id = self._tx_id(session, connection)
                statements.run(connection, stmt, keys, tx_id, extra, **{OP: int(op)})
            else:
                plan.closed += counts[0]
                plan.closed_keys.update(keys)

        for extra, keys in mark_deleted.items():
            mark = statements.mark_deleted(tuple(k for k, _ in extra))
            statements.run(connection, mark, keys, self._tx_id(session, connection), extra)

        if spec.end_tx is not None and plan.new:
            rest = plan.new - plan.closed_keys if plan.closed_keys else plan.new
            closed = plan.closed
            if rest:
                tx_id = self._tx_id(session, connection)
                closed += self._close(connection, plan, tx_id, rest)
            # An updated or deleted entity must have had an open version; fewer closed
            # means rows older than versioning, or a newer transaction got there first.
            ops, insert = plan.ops, Operation.INSERT
            expected = sum([ops[key] is not insert for key in plan.new])
            plan.short = closed < expected

    @staticmethod
    def _close(connection: Connection, plan: _TablePlan, tx_id: int, keys: set[PK]) -> int:
        """Close the open previous versions of ``keys`` (entities first versioned now)."""
        statements = statements_for(plan.spec, connection.dialect)
        assert statements.close is not None
        return statements.run(connection, statements.close, ordered(keys), tx_id)

    def _write_deletes(
        self, session: Session, connection: Connection, plan: _TablePlan, keys_all: list[PK]
    ) -> set[PK]:
        """Write DELETE versions as copies of each entity's last version.

        The row is gone from the live table by now; its last version holds its last
        values (every write to it was versioned). Entities with no version at all
        (rows older than versioning) are written from the values the session holds.
        Entities whose last version is a DELETE already (another transaction deleted
        the row first, so this DELETE matched nothing) get no version: their keys are
        returned.
        """
        spec = plan.spec
        version = spec.version
        vpk = spec.version_pk
        width = len(vpk)
        statements = statements_for(spec, connection.dialect)
        groups: dict[Any, list[PK]] = {}
        if not plan.extras:
            groups[()] = keys_all
        else:
            for key in keys_all:
                groups.setdefault(plan.extras.get(key, ()), []).append(key)
        written = 0
        for extra, group in groups.items():
            build = statements.close_and_copy_last
            counts = self._counts(session, connection, statements, build, group, extra)
            if counts is None:
                stmt = statements.copy_last(tuple(k for k, _ in extra))
                tx_id = self._tx_id(session, connection)
                written += statements.run(connection, stmt, group, tx_id, extra)
            else:
                written += counts[0]
                plan.closed += counts[1]
                plan.closed_keys.update(group)
        if written >= len(keys_all):
            return set()
        tx_id = self._tx_id(session, connection)
        found: set[PK] = set()
        for keys in chunks(keys_all, width):
            mine = sa.select(*vpk).where(spec.tx == tx_id, key_in(vpk, keys, connection.dialect))
            rows = connection.execute(mine)
            found.update(tuple(row) for row in rows)
        missing = [key for key in keys_all if key not in found]
        known: set[PK] = set()
        for keys in chunks(missing, width):
            versioned = sa.select(*vpk).distinct().where(key_in(vpk, keys, connection.dialect))
            rows = connection.execute(versioned)
            known.update(tuple(row) for row in rows)
        rows_to_add = []
        for key in missing:
            if key in known:
                continue
            state = plan.states[key]
            row = {v.key: state.dict.get(v.key) for _, v in spec.columns}
            row.update({c.key: value for c, value in zip(vpk, key, strict=True)})
            row[spec.tx.key] = tx_id
            row[spec.op.key] = int(Operation.DELETE)
            row.update(plan.extras.get(key, ()))
            rows_to_add.append(row)
        if rows_to_add:
            connection.execute(sa.insert(version), rows_to_add)
        return known
