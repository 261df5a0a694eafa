"""ORM capture: session and mapper events that feed the unit of work.

Mapper events (``after_insert``/``after_update``/``after_delete``) note which rows a
flush wrote; ``after_flush`` then writes their versions, set-based, on the flush's
own connection, inside the user's transaction. Session transaction events keep the
unit of work in step with commits, rollbacks and savepoints.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, orm
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import instrumentation, scoped_session

from .._compat import session_connections
from ..config import Operation
from ..exc import NotSupportedError
from .associations import (
    read_insert_source,
    version_association_delete,
    version_association_insert,
)
from .bulk import BulkSave, version_statement
from .unit_of_work import BulkCapture, CaptureConfig, UnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.engine import Result
    from sqlalchemy.orm import Mapper, ORMExecuteState, Session, SessionTransaction

    from ..schema.models import VersionedModel
    from ..schema.tables import VersionTableSpec

__all__ = ["OrmCapture"]

_counter = itertools.count(1)


class OrmCapture:
    """The event listeners of one versioning manager."""

    def __init__(self, manager: CaptureConfig, enabled: Any) -> None:
        self.manager = manager
        #: A zero-argument callable telling whether versioning is on (the global option).
        self._enabled = enabled
        self.info_key = f"sqlalchemy_chronicle.uow.{next(_counter)}"
        self._session_targets: list[Any] = []
        self._mapper_listeners: list[tuple[Any, str, Any]] = []
        #: The attribute implementations :meth:`listen_attribute` made keep their old
        #: values, and whether they did before.
        self._active_history: list[tuple[Any, bool]] = []
        #: Whether Core statements are watched (some association table is versioned).
        self._watching_statements = False
        #: The sessions holding a unit of work: an index for the read-only views below,
        #: the state itself stays in ``session.info``.
        self._open_sessions: weakref.WeakSet[Session] = weakref.WeakSet()

    # -- unit of work access ---------------------------------------------------------

    def unit_of_work(self, session: Session) -> UnitOfWork:
        """The unit of work of ``session``'s current transaction, created on demand."""
        if isinstance(session, scoped_session):
            session = session()  # the state belongs to the session it proxies
        uow: UnitOfWork | None = session.info.get(self.info_key)
        if uow is None:
            factory = getattr(self.manager, "uow_class", UnitOfWork)
            uow = session.info[self.info_key] = factory(self.manager, session)
            self._open_sessions.add(session)
        return uow

    def find_unit_of_work(self, session: Session) -> UnitOfWork | None:
        """The unit of work of ``session``'s current transaction if it has one (never
        creates one: a reader must not leave state behind)."""
        if isinstance(session, scoped_session):
            session = session()
        uow: UnitOfWork | None = session.info.get(self.info_key)
        return uow

    def _open(self) -> list[tuple[Session, UnitOfWork]]:
        result = []
        for session in list(self._open_sessions):
            uow: UnitOfWork | None = session.info.get(self.info_key)
            # A unit of work asked for outside a transaction holds nothing yet; the
            # transaction that begins next uses it and drops it when it ends.
            if uow is not None and not uow.closed and session.in_transaction():
                result.append((session, uow))
        return result

    def open_units_of_work(self) -> Mapping[Any, UnitOfWork]:
        """A read-only snapshot of the open units of work, keyed by the connection each
        writes on (by its session before its first write)."""
        return MappingProxyType(
            {uow.connection if uow.connection is not None else s: uow for s, uow in self._open()}
        )

    def open_session_connections(self) -> Mapping[Session, Connection]:
        """A read-only snapshot: session -> the connection its open unit of work writes on."""
        return MappingProxyType(
            {s: uow.connection for s, uow in self._open() if uow.connection is not None}
        )

    # -- installation ----------------------------------------------------------------

    _SESSION_EVENTS = (
        "before_flush",
        "after_flush",
        "after_begin",
        "after_transaction_create",
        "after_rollback",
        "after_transaction_end",
        "do_orm_execute",
    )
    _ENGINE_EVENTS = ("before_execute", "after_execute")

    def install(self, session_target: Any) -> None:
        for name in self._SESSION_EVENTS:
            event.listen(session_target, name, getattr(self, name))
        self._session_targets.append(session_target)

    def versions(self, session: Session) -> bool:
        """Whether the flushes of ``session`` are captured (it is of a Session class,
        ``sessionmaker`` or ``scoped_session`` this capture was installed on)."""
        for target in self._session_targets:
            if target is session:
                return True
            if isinstance(target, orm.scoped_session):
                target = target.session_factory
            if isinstance(target, orm.sessionmaker):
                target = target.class_
            if isinstance(target, type) and isinstance(session, target):
                return True
        return False

    def watch_statements(self) -> None:
        """Listen to every Core statement, for association tables.

        Only installed once an association table is versioned: a statement listener
        on ``Engine`` puts every execution of every engine through the event path.
        """
        for name in self._ENGINE_EVENTS:
            if not event.contains(Engine, name, getattr(self, name)):
                # retval: before_execute hands the statement back itself, so that
                # SQLAlchemy calls it without a wrapper (it runs for every statement).
                retval = name == "before_execute"
                event.listen(Engine, name, getattr(self, name), retval=retval)
        self._watching_statements = True

    def uninstall(self) -> None:
        self._watching_statements = False
        for name in self._ENGINE_EVENTS:
            if event.contains(Engine, name, getattr(self, name)):
                event.remove(Engine, name, getattr(self, name))
        for target in self._session_targets:
            for name in self._SESSION_EVENTS:
                if event.contains(target, name, getattr(self, name)):
                    event.remove(target, name, getattr(self, name))
        self._session_targets.clear()
        for target, name, fn in self._mapper_listeners:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._mapper_listeners.clear()
        for impl, before in reversed(self._active_history):
            impl.active_history = before
        self._active_history.clear()

    def watch_mapper(self, mapper: Mapper[Any], model: VersionedModel) -> None:
        """Record the rows ``mapper`` writes as changes of ``model``."""
        key = self.info_key

        def make(op: Operation) -> Any:
            def listener(mapper: Mapper[Any], connection: Any, state: Any) -> None:
                session = state.session
                if session is None:
                    return
                uow = session.info.get(key)
                if uow is not None:
                    uow.record(model, state, op)

            return listener

        for name, op in (
            ("after_insert", Operation.INSERT),
            ("after_update", Operation.UPDATE),
            ("after_delete", Operation.DELETE),
        ):
            fn = make(op)
            # raw and retval: SQLAlchemy calls the listener itself, with the state,
            # instead of through a wrapper (a call less per row flushed; the return
            # value of an after_* event is not used).
            event.listen(mapper, name, fn, raw=True, retval=True)
            self._mapper_listeners.append((mapper, name, fn))

    def listen_attribute(self, attribute: Any) -> None:
        """Make ``attribute`` keep its old value on change, so no-op updates are seen.

        This is the ``active_history`` flag that a ``set`` listener registered with
        ``active_history=True`` would turn on, set on the attribute of the class and of
        its mapped subclasses (subclasses mapped later copy it), without a listener
        called on every assignment.
        """
        manager = instrumentation.manager_of_class(attribute.class_)
        key = attribute.key
        for class_manager in (manager, *manager.subclass_managers(True)):  # type: ignore[no-untyped-call]
            # A concrete subclass maps its own columns; the ones it does not have are
            # proxies there (ConcreteInheritedProperty), with no history to keep.
            if key in class_manager and isinstance(
                class_manager.mapper.attrs.get(key), orm.ColumnProperty
            ):
                impl = class_manager[key].impl
                self._active_history.append((impl, impl.active_history))
                impl.active_history = True

    # -- session events --------------------------------------------------------------

    def before_flush(self, session: Session, flush_context: Any, instances: Any) -> None:
        if not self._enabled():
            return
        uow = self.unit_of_work(session)
        uow.discard_pending()
        uow.flush_pending = True  # the subtransaction that begins next is the flush's
        plugins = self.manager.plugins
        if len(plugins):
            if any(plugins.is_session_modified(session)):
                uow.create_transaction(session)
            plugins.before_flush(uow, session)
        native = self.manager.native
        if native.active:
            native.before_flush(uow, session)

    def after_flush(self, session: Session, flush_context: Any) -> None:
        uow: UnitOfWork | None = session.info.get(self.info_key)
        if uow is not None:
            uow.generation += 1  # histories read before may be out of date now
        if uow is not None and self._enabled():
            uow.make_versions(session)

    def do_orm_execute(self, state: ORMExecuteState) -> Result[Any] | None:
        """Version what a bulk INSERT, UPDATE or DELETE statement changes (:mod:`.bulk`)."""
        if state.is_select or not (state.is_update or state.is_delete or state.is_insert):
            return None
        if not self._enabled() or state.execution_options.get(self.info_key) is False:
            return None
        return version_statement(self.manager, self.unit_of_work(state.session), state)

    def after_begin(self, session: Session, transaction: Any, connection: Connection) -> None:
        bulk_uow: UnitOfWork | None = session.info.get(self.info_key)
        if bulk_uow is not None and bulk_uow.bulk is not None:
            bulk_uow.bulk.watch(connection)  # a connection a legacy bulk save began
        # Core statements on this connection (association tables) find the unit of
        # work in its execution options. They belong to this Connection object, not to
        # the pooled DBAPI connection, and the unit of work is marked closed at the end.
        # Without versioned association tables nothing reads them: skip the work.
        if not self._watching_statements:
            return
        uow = self.unit_of_work(session)
        connection.execution_options(**{self.info_key: uow})

    def _association_write(
        self, statement: Any, kind: type, execution_options: Any
    ) -> tuple[UnitOfWork, VersionTableSpec] | None:
        """The unit of work and association table spec a Core statement versions into."""
        if not isinstance(statement, kind):
            return None
        # Most statements (the ORM's own INSERTs, one per row on SQLite) write tables
        # that are not association tables: that is all this asks of them.
        table = statement.table  # type: ignore[attr-defined]
        if table not in self.manager.association_tables:
            return None
        uow: UnitOfWork | None = execution_options.get(self.info_key)
        if uow is None or uow.closed or not self._enabled():
            return None
        spec = self.manager.association_spec(table)
        if spec is None or self.manager.native.is_native(table):
            return None  # not versioned, or versioned by triggers
        return (uow, spec)

    def before_execute(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
    ) -> tuple[Any, Any, Any]:
        update = self._association_write(clauseelement, sa.Update, execution_options)
        if update is not None:
            table = clauseelement.table
            raise NotSupportedError(
                f"Cannot version this UPDATE of association table {table.name!r}: it "
                f"changes links in place, which its version table records as a removal "
                f"and an addition. DELETE the old rows and INSERT the new ones (or change "
                f"the relationship's collection) instead."
            )
        target = self._association_write(clauseelement, sa.Delete, execution_options)
        if target is not None:
            uow, spec = target
            version_association_delete(uow, conn, spec, clauseelement, multiparams or [params])
            return clauseelement, multiparams, params
        target = self._association_write(clauseelement, sa.Insert, execution_options)
        if target is not None:
            uow, _ = target
            source = read_insert_source(conn, clauseelement, multiparams or [params])
            if source is not None:  # INSERT ... FROM SELECT: what it adds, read first
                uow.insert_sources[id(clauseelement)] = source
            else:  # left by a statement of the same id that failed
                uow.insert_sources.pop(id(clauseelement), None)
        return clauseelement, multiparams, params

    def after_execute(
        self,
        conn: Connection,
        clauseelement: Any,
        multiparams: Any,
        params: Any,
        execution_options: Any,
        result: Any,
    ) -> None:
        target = self._association_write(clauseelement, sa.Insert, execution_options)
        if target is not None:
            uow, spec = target
            source = uow.insert_sources.pop(id(clauseelement), None)
            version_association_insert(
                uow, conn, spec, clauseelement, multiparams or [params], result, source
            )

    def _drop(self, session: Session) -> None:
        uow: UnitOfWork | None = session.info.pop(self.info_key, None)
        self._open_sessions.discard(session)
        if uow is not None:
            uow.closed = True
            self._end_bulk(uow)

    def after_transaction_create(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.nested:
            self.unit_of_work(session).savepoint_started(transaction)
        elif transaction.parent is not None and self._enabled():
            # A subtransaction is the flush's, or that of a legacy bulk save
            # (bulk_save_objects(), bulk_insert_mappings(), bulk_update_mappings()),
            # which goes through neither the flush nor Session.execute().
            uow = self.unit_of_work(session)
            if uow.flush_pending:
                uow.flush_pending = False
            elif uow.bulk is None:
                bulk = uow.bulk = BulkSave(self.manager, uow, session)
                uow.bulk_transaction = transaction
                for connection in session_connections(session):
                    bulk.watch(connection)

    @staticmethod
    def _end_bulk(uow: UnitOfWork) -> BulkCapture | None:
        bulk, uow.bulk, uow.bulk_transaction = uow.bulk, None, None
        if bulk is not None:
            bulk.unwatch()
        return bulk

    def after_rollback(self, session: Session) -> None:
        # Fired right after a real ROLLBACK (or ROLLBACK TO SAVEPOINT), before the
        # transaction objects are closed: the innermost savepoint still open is the
        # one rolled back; with none open, the whole transaction was.
        uow: UnitOfWork | None = session.info.get(self.info_key)
        if uow is None:
            return
        uow.generation += 1  # the whole transaction (below) or a savepoint
        self._end_bulk(uow)  # a bulk save that failed: its rows are rolled back too
        savepoint = session.get_nested_transaction()
        if savepoint is None:
            self._drop(session)
        else:
            uow.savepoint_ended(session, savepoint, rolled_back=True)

    def after_transaction_end(self, session: Session, transaction: SessionTransaction) -> None:
        bulk_uow: UnitOfWork | None = session.info.get(self.info_key)
        if bulk_uow is not None and bulk_uow.bulk_transaction is transaction:
            bulk = self._end_bulk(bulk_uow)
            if bulk is not None and session.in_transaction():  # committed: a rollback ends it
                bulk.finish()
            return
        if transaction.parent is None:
            self._drop(session)
        elif transaction.nested:
            uow: UnitOfWork | None = session.info.get(self.info_key)
            if uow is not None:
                uow.savepoint_ended(session, transaction, rolled_back=False)
