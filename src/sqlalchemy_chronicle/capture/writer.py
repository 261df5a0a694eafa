"""The writer: the only code that writes version rows (and the transaction row).

Every source feeds it: flush events (:mod:`.orm`), Core statements on association
tables (:mod:`.associations`) and ORM bulk statements (:mod:`.bulk`). A source
describes what happened as a :class:`~.plan.Plan` (or, for association rows, as
keys and rows); :class:`Writer` runs the statements of :mod:`.templates` for it, on
the session's connection, inside the user's transaction, and records what it wrote
in the :class:`~.unit_of_work.UnitOfWork`.

Writing is set-based. For each write, per version table, it runs at most:

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

Each statement carries the keys of up to :data:`~.templates.CHUNK_PARAMS`
parameters, so the number of statements does not grow with the number of rows until
a write changes thousands of them.

Under concurrency a transaction that took its id early may find that a newer one
versioned the same entity first; it then moves everything it wrote to a new id
(:meth:`Writer.restamp`), so that every history stays in transaction order.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..config import Operation
from ..exc import ConfigurationError
from .context import current_context
from .plan import PK, Plan, TablePlan, plan_flush
from .sql import key_in, ordered, table_name, through_primary_key
from .templates import OP, TX, WriteStatements, chunks, extra_param, statements_for
from .transaction_ids import insert_transaction_row

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import InstanceState, Mapper, Session

    from ..schema.tables import VersionTableSpec
    from .unit_of_work import UnitOfWork

__all__ = ["Writer", "open_transaction", "unstored_meta", "utc_now", "write_flush"]


def utc_now() -> datetime.datetime:
    """The current time as a naive UTC datetime (the ``issued_at`` convention)."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def unstored_meta(meta: Mapping[str, Any]) -> ConfigurationError:
    keys = ", ".join(sorted(meta))
    return ConfigurationError(
        f"versioning_context() was given metadata ({keys}) but no plugin stores "
        f"transaction metadata; add TransactionMetaPlugin() to the plugins."
    )


def write_flush(uow: UnitOfWork, session: Session) -> None:
    """Write the versions of the rows the last flush wrote (``uow.changes``)."""
    changes = uow.changes
    mapper = changes[0][0].mapper
    uow.changed_entities = set()
    row_plugins = uow.manager.plugins.implementing("version_row_values")
    w = Writer(uow, session)
    row_values = w.row_values_of(row_plugins) if row_plugins else None
    uow.native_changes = False
    plans = plan_flush(changes, uow.written, uow.changed_entities, row_values, uow, uow.born)
    changes.clear()
    if uow.native_changes:
        uow.manager.native.after_flush(uow, session)
    if plans:
        w.write(plans, mapper)


def open_transaction(uow: UnitOfWork, session: Session) -> None:
    """Write the transaction row of ``uow`` now, if it is not written yet."""
    Writer(uow, session).tx_id()


#: The dialect names of MySQL and MariaDB.
_MYSQL = ("mysql", "mariadb")


class Writer:
    """Writes the versions of one change set of ``uow``'s transaction."""

    def __init__(
        self, uow: UnitOfWork, session: Session | None = None, connection: Connection | None = None
    ) -> None:
        self.uow = uow
        if session is None:
            session = uow.session_ref()
            if session is None:  # pragma: no cover - the session owns its unit of work
                raise RuntimeError("the session of this unit of work is gone")
        self.session = session
        if connection is not None and uow.connection is None:
            uow.connection = connection
        self._connection = connection

    # -- the connection and the transaction row ---------------------------------------

    def connection_for(self, mapper: Mapper[Any] | None) -> Connection:
        """The connection to write on: the unit of work's, taken on first use."""
        uow = self.uow
        if uow.connection is None:
            args = {"mapper": mapper} if mapper is not None else None
            if args is None and uow.manager.transaction_cls is not None:
                args = {"mapper": sa.inspect(uow.manager.transaction_cls)}
            uow.connection = self.session.connection(bind_arguments=args)
        return self._connection or uow.connection

    @property
    def connection(self) -> Connection:
        return self.connection_for(None)

    def tx_id(self) -> int:
        """This transaction's id, writing its row now if it is not written yet."""
        uow = self.uow
        if uow.transaction_id is not None:
            return uow.transaction_id
        values = uow.pending_values
        if values is None:
            values = self.transaction_row_values()
        # The values as parameters: the compiled INSERT is found in the cache.
        table = uow.manager.transaction_table
        return self._opened(insert_transaction_row(self.connection, table, values), values)

    def transaction_row_values(self) -> dict[str, Any]:
        """The column values of this transaction's row (plugins, the context)."""
        uow, session = self.uow, self.session
        values: dict[str, Any] = {"issued_at": utc_now()}
        plugins = uow.manager.plugins
        if len(plugins):
            for args in plugins.transaction_args(uow, session):
                values.update(args or {})
        table = uow.manager.transaction_table
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
                raise unstored_meta(context.meta)
        return values

    def _opened(self, tx_id: int, values: dict[str, Any]) -> int:
        uow = self.uow
        uow.opened(tx_id, values)
        if uow.connection is not None and uow.connection.dialect.name in _MYSQL:
            uow.manager.committed_reads.note_transaction(uow.connection, tx_id)
        native = uow.manager.native
        if native.active and uow.connection is not None:
            native.transaction_opened(uow.connection, tx_id)
        context = current_context()
        if context is not None and context.meta:
            plugins = uow.manager.plugins
            stored = (
                plugins.store_transaction_meta(uow, self.session, context.meta)
                if len(plugins)
                else []
            )
            if not any(stored):
                raise unstored_meta(context.meta)
        return tx_id

    def row_values_of(
        self, plugins: list[Any]
    ) -> Callable[[VersionTableSpec, Operation, InstanceState[Any]], tuple[tuple[str, Any], ...]]:
        """The plugin values (``version_row_values``) of one version row, as sorted items."""
        uow = self.uow

        def row_values(
            spec: VersionTableSpec, op: Operation, state: InstanceState[Any]
        ) -> tuple[tuple[str, Any], ...]:
            values: dict[str, Any] = {}
            for plugin in plugins:
                values.update(plugin.version_row_values(uow, spec.version, op, state.obj()))
            columns = spec.version.c
            return tuple(sorted((k, v) for k, v in values.items() if k in columns))

        return row_values

    # -- a plan ----------------------------------------------------------------------

    def write(self, plans: Plan, mapper: Mapper[Any] | None = None) -> None:
        """Write the versions ``plans`` describe, re-stamp if overtaken, run the hooks."""
        uow, session = self.uow, self.session
        connection = self.connection_for(mapper)
        created = uow.transaction_id is None
        plugins = uow.manager.plugins
        if len(plugins):
            self.tx_id()
            plugins.before_create_version_objects(uow, session)
        elif created:
            # No hook wants the row before the versions: the first version statement
            # that can writes it too (PostgreSQL), saving a round trip per transaction.
            uow.pending_values = self.transaction_row_values()
        try:
            for plan in plans.values():
                self._write(connection, plan)
        finally:
            uow.pending_values = None
        if uow.transaction_id is None:  # no statement ran: nothing was versioned
            return
        tx_id = uow.transaction_id
        if not created:
            suspects = [p for p in plans.values() if p.short or p.spec.end_tx is None]
            if suspects and self._overtaken(connection, suspects, tx_id):
                tx_id = self.restamp(tx_id)
                for plan in plans.values():
                    if plan.spec.end_tx is not None and plan.new:
                        # All of them: a version written by the newer transaction is
                        # still open, whether or not this write closed the rest.
                        self.close(plan.spec, plan.new)
        if created and not uow.written:
            # Every change turned out to need no version (deletes of rows another
            # transaction had deleted already): the transaction row goes too.
            self.drop_transaction(connection, tx_id)
            return
        if len(plugins):
            object_plugins = plugins.implementing("after_create_version_object")
            if object_plugins:
                self._call_object_hooks(connection, plans, tx_id, object_plugins)
            plugins.after_create_version_objects(uow, session)

    def drop_transaction(self, connection: Connection, tx_id: int) -> None:
        """Delete the transaction row ``tx_id`` this write created and that nothing
        needed after all, with what plugins stored for it (``transaction_dropped``;
        ``after_create_version_objects`` is not called for it)."""
        uow = self.uow
        plugins = uow.manager.plugins
        if len(plugins):
            plugins.transaction_dropped(uow, self.session, tx_id)
        table = uow.manager.transaction_table
        connection.execute(sa.delete(table).where(table.c.id == tx_id))
        uow.transaction_id = None
        uow.transaction_values = {}

    def _call_object_hooks(
        self, connection: Connection, plans: Plan, tx_id: int, plugins: list[Any]
    ) -> None:
        """Hand each version written by this flush, as an object, to ``plugins``.

        Only plugins written for the object-per-version hook need this; it loads the
        versions in one query per version class and writes back what the hooks
        changed, in a private session on the same connection.
        """
        uow = self.uow
        private = orm.Session(bind=connection, autoflush=False)
        try:
            for plan in plans.values():
                by_class: dict[type, dict[PK, InstanceState[Any]]] = {}
                for key, state in plan.states.items():
                    model = uow.manager.model_for_mapper(state.mapper)
                    if (
                        model is None
                        or model.version_cls is None
                        or model.local_spec is not plan.spec
                    ):
                        continue
                    if (plan.spec.version, key) in uow.written:
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
                                plugin.after_create_version_object(uow, parent, version)
            private.flush()
        finally:
            private.close()

    def _overtaken(self, connection: Connection, plans: list[TablePlan], tx_id: int) -> bool:
        """Whether a transaction with a larger id versioned one of these entities.

        This transaction took its id at an earlier write (or before this write locked
        its rows). Another one may have versioned a row in between and committed before
        this write could lock it; writing under the old id would put this version
        before that one in the history.
        """
        # MySQL/MariaDB read a snapshot under REPEATABLE READ, which may not show the
        # versions committed since; a locking read would, but through the
        # transaction_id index it waits for the uncommitted versions of any newer
        # writer, of any entity (a deadlock when that writer waits for this one's rows).
        # What is committed now, read on a second connection, is exact: this
        # transaction holds the live rows, so a newer writer of them has committed.
        committed = connection.dialect.name in _MYSQL
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
                if committed:
                    probe = through_primary_key(probe, spec.version)
                    if self.uow.manager.committed_reads.rows(connection, probe):
                        return True
                elif connection.execute(probe).first() is not None:
                    return True
        return False

    def restamp(self, old_id: int) -> int:
        """Move this transaction and everything it wrote to a new, larger id.

        The row locks held now keep every entity this transaction versioned from being
        versioned by anyone else, so an id taken now orders all of its history.
        """
        uow, session, connection = self.uow, self.session, self.connection
        table = uow.manager.transaction_table
        values = dict(uow.transaction_values)
        new_id = insert_transaction_row(connection, table, values)
        specs = {spec.version: spec for spec in uow.written_specs.values()}
        for parent in uow.manager.association_tables:
            spec = uow.manager.association_spec(parent)
            if spec is not None and spec.version in uow.association_touched:
                specs[spec.version] = spec
        by_key = connection.dialect.name in _MYSQL
        for spec in specs.values():
            if by_key:
                self._restamp_by_key(connection, spec, spec.tx, old_id, new_id)
                if spec.end_tx is not None:
                    self._restamp_by_key(connection, spec, spec.end_tx, old_id, new_id)
                continue
            connection.execute(
                sa.update(spec.version).where(spec.tx == old_id).values({spec.tx: new_id})
            )
            if spec.end_tx is not None:
                connection.execute(
                    sa.update(spec.version)
                    .where(spec.end_tx == old_id)
                    .values({spec.end_tx: new_id})
                )
        plugins = uow.manager.plugins
        if len(plugins):
            plugins.transaction_id_changed(uow, session, old_id, new_id)
        connection.execute(sa.delete(table).where(table.c.id == old_id))
        old_obj = uow.transaction_obj
        if old_obj is not None and old_obj in session:
            session.expunge(old_obj)
        uow.transaction_id = new_id
        uow.transaction_obj = None
        return new_id

    @staticmethod
    def _restamp_by_key(
        connection: Connection,
        spec: VersionTableSpec,
        column: sa.Column[Any],
        old_id: int,
        new_id: int,
    ) -> None:
        """MySQL/MariaDB: set ``column`` from ``old_id`` to ``new_id`` in the rows that
        have it, by their whole key. Only this transaction writes its own id, so a plain
        (snapshot) read finds all of them; an UPDATE through the index of ``column``
        would gap-lock where other transactions insert their versions."""
        columns = [*spec.version_pk, spec.tx]
        rows = [tuple(r) for r in connection.execute(
            sa.select(*columns).where(column == old_id)
        )]
        for chunk in chunks(ordered(rows), len(columns)):
            connection.execute(
                through_primary_key(sa.update(spec.version), spec.version)
                .where(_exact(columns, chunk, connection))
                .values({column: new_id})
            )

    def _counts(
        self,
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
        values = self.uow.pending_values
        if values is None:
            return statements.counts(connection, stmt, keys, self.tx_id(), extra, **params)[1]
        opening = build(names, (self.uow.manager.transaction_table, tuple(values)))
        assert opening is not None
        tx_id, counts = statements.counts(
            connection, stmt, keys, None, extra, (opening, values), **params
        )
        self._opened(tx_id, values)
        return counts

    def _write(self, connection: Connection, plan: TablePlan) -> None:
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
        written = self.uow.written
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
        self.uow.written_specs[version] = spec
        born = [(version, k) for k in new if plan.ops[k] is Operation.INSERT]
        if born:
            self.uow.born = self.uow.born.union(born)

        if replace:
            self._replace(connection, statements, replace)

        # MySQL/MariaDB: what is committed of the inserted keys, read before their new
        # versions are written (a read that meets them, uncommitted, costs three times
        # as much); this transaction's lock of their live rows keeps it exact.
        looked_up = (
            self._committed_of_inserts(connection, plan)
            if spec.end_tx is not None and new and connection.dialect.name in _MYSQL
            else None
        )

        if from_last_version:
            already_deleted = self._write_deletes(connection, plan, from_last_version)
            for key in already_deleted:
                plan.new.discard(key)
                del written[(version, key)]

        for (op, extra), keys in from_live.items():
            counts = None
            if plan.new.issuperset(keys):
                # PostgreSQL: close the previous versions in the same statement.
                build = statements.close_and_from_live
                counts = self._counts(connection, statements, build, keys, extra, **{OP: int(op)})
            if counts is None:
                stmt = statements.from_live(tuple(k for k, _ in extra))
                statements.run(connection, stmt, keys, self.tx_id(), extra, **{OP: int(op)})
            else:
                plan.closed += counts[0]
                plan.closed_keys.update(keys)

        for extra, keys in mark_deleted.items():
            self._mark_deleted(connection, statements, keys, extra)

        if spec.end_tx is not None and plan.new:
            rest = plan.new - plan.closed_keys if plan.closed_keys else plan.new
            closed = plan.closed
            if rest:
                closed += self.close(spec, rest, looked_up)
            # An updated or deleted entity must have had an open version; fewer closed
            # means rows older than versioning, or a newer transaction got there first.
            ops, insert = plan.ops, Operation.INSERT
            expected = sum([ops[key] is not insert for key in plan.new])
            plan.short = closed < expected

    def _write_deletes(
        self, connection: Connection, plan: TablePlan, keys_all: list[PK]
    ) -> set[PK]:
        """Write DELETE versions as copies of each entity's last version.

        The row is gone from the live table by now; its last version holds its last
        values (every write to it was versioned). Entities with no version at all
        (rows older than versioning) are written from the values the plan holds.
        Entities whose last version is a DELETE already (another transaction deleted
        the row first, so this DELETE matched nothing) get no version: their keys are
        returned.
        """
        spec = plan.spec
        vpk = spec.version_pk
        width = len(vpk)
        statements = statements_for(spec, connection.dialect)
        written = 0
        keys_left = keys_all
        settled: set[PK] = set()
        if spec.end_tx is not None and connection.dialect.name in _MYSQL:
            # The keys not settled there have no open version, committed or this
            # transaction's: there is nothing to copy.
            written, settled = self._copy_by_version_key(connection, plan, keys_all)
            keys_left = []
        groups: dict[Any, list[PK]] = {}
        if not plan.extras:
            if keys_left:
                groups[()] = keys_left
        else:
            for key in keys_left:
                groups.setdefault(plan.extras.get(key, ()), []).append(key)
        for extra, group in groups.items():
            build = statements.close_and_copy_last
            counts = self._counts(connection, statements, build, group, extra)
            if counts is None:
                stmt = statements.copy_last(tuple(k for k, _ in extra))
                written += statements.run(connection, stmt, group, self.tx_id(), extra)
            else:
                written += counts[0]
                plan.closed += counts[1]
                plan.closed_keys.update(group)
        if written >= len(keys_all):
            return set()
        tx_id = self.tx_id()
        found: set[PK] = set()
        for keys in chunks(keys_all, width):
            mine = sa.select(*vpk).where(spec.tx == tx_id, key_in(vpk, keys, connection.dialect))
            rows = connection.execute(mine)
            found.update(tuple(row) for row in rows)
        missing = [key for key in keys_all if key not in found]
        known: set[PK] = {key for key in missing if key in settled}
        for keys in chunks(missing, width):
            versioned = sa.select(*vpk).distinct().where(key_in(vpk, keys, connection.dialect))
            rows = connection.execute(versioned)
            known.update(tuple(row) for row in rows)
        rows_to_add = []
        for key in missing:
            if key in known:
                continue
            values = plan.values.get(key)
            if values is None:
                values = plan.states[key].dict
            row = {v.key: values.get(v.key) for _, v in spec.columns}
            row.update({c.key: value for c, value in zip(vpk, key, strict=True)})
            row[spec.tx.key] = tx_id
            row[spec.op.key] = int(Operation.DELETE)
            row.update(plan.extras.get(key, ()))
            rows_to_add.append(row)
        if rows_to_add:
            connection.execute(sa.insert(spec.version), rows_to_add)
        return known

    def _copy_by_version_key(
        self, connection: Connection, plan: TablePlan, keys: list[PK]
    ) -> tuple[int, set[PK]]:
        """MySQL/MariaDB: write DELETE versions of ``keys`` as copies of their open
        versions, and close those, all by whole version keys.

        Read by the entity's key, a prefix of the version table's key, the copy (a
        locking read in an ``INSERT ... SELECT``) would take next-key locks covering the
        gap before the entity's versions, where the neighbouring entity's next version
        goes. The open versions are found and closed by :meth:`_settle_by_version_key`,
        then copied through the primary key. An open version that is a DELETE (another
        transaction deleted the row first) is neither copied nor closed; one newer than
        this transaction is copied, not closed (it re-stamps).

        Returns how many versions it wrote, and the keys that have an open version
        (copied or not).
        """
        spec = plan.spec
        tx_id = self.tx_id()
        width = len(spec.version_pk)
        delete = int(Operation.DELETE)
        settled, closed = self._settle_by_version_key(connection, spec, keys, close_deletes=False)
        plan.closed += closed
        plan.closed_keys.update(settled)
        copy = {key: tx for key, (tx, op) in settled.items() if op != delete}
        statements = statements_for(spec, connection.dialect)
        groups: dict[Any, list[PK]] = {}
        for key in copy:
            groups.setdefault(plan.extras.get(key, ()) if plan.extras else (), []).append(key)
        written = 0
        for extra, group in groups.items():
            names = tuple(k for k, _ in extra)
            params = {TX: tx_id, **{extra_param(k): v for k, v in extra}}
            rows = ordered([(*key, copy[key]) for key in group])
            for chunk in chunks(rows, width + 1):

                def among(
                    columns: Sequence[sa.ColumnElement[Any]], chunk: Sequence[PK] = chunk
                ) -> sa.ColumnElement[bool]:
                    return _exact(columns, chunk, connection)

                stmt = statements.copy_versions(names, among)
                stmt = stmt.execution_options(preserve_rowcount=True)
                written += max(connection.execute(stmt, params).rowcount, 0)
        return written, set(settled)

    # -- single statements (association rows, re-stamping) ----------------------------

    def close(
        self,
        spec: VersionTableSpec,
        keys: Sequence[PK] | set[PK],
        looked_up: tuple[set[PK], list[tuple[Any, ...]]] | None = None,
    ) -> int:
        """Close the open previous versions of ``keys``; how many it closed.

        ``looked_up`` (MySQL/MariaDB): keys whose open versions were read already
        among what is committed now, and those versions
        (:meth:`_committed_of_inserts`).
        """
        connection = self.connection
        keys = ordered(keys)
        if connection.dialect.name in _MYSQL:
            _, closed = self._settle_by_version_key(
                connection, spec, keys, close_deletes=True, looked_up=looked_up
            )
            return closed
        statements = statements_for(spec, connection.dialect)
        assert statements.close is not None
        return statements.run(connection, statements.close, keys, self.tx_id())

    def _committed_of_inserts(
        self, connection: Connection, plan: TablePlan
    ) -> tuple[set[PK], list[tuple[Any, ...]]] | None:
        """MySQL/MariaDB: the keys ``plan`` inserts whose previous versions are to be
        found among what is committed now only (:meth:`close`), and those open
        versions; None when this database transaction's snapshot must be read too."""
        ops, insert = plan.ops, Operation.INSERT
        inserted = {key for key in plan.new if ops[key] is insert}
        if not inserted or not self.uow.manager.committed_reads.alone(connection, self.tx_id()):
            return None
        found = self._open_versions(connection, plan.spec, ordered(inserted), committed=True)
        return inserted, found

    def _settle_by_version_key(
        self,
        connection: Connection,
        spec: VersionTableSpec,
        keys: Sequence[PK],
        *,
        close_deletes: bool,
        looked_up: tuple[set[PK], list[tuple[Any, ...]]] | None = None,
    ) -> tuple[dict[PK, tuple[Any, Any]], int]:
        """MySQL/MariaDB: find the version of each of ``keys`` open now, and close it,
        locking no gap.

        Under REPEATABLE READ a statement that finds its rows by a prefix of the version
        table's key (the entity's key, without ``transaction_id``) takes next-key locks:
        they cover the gap where the next version of the neighbouring entity goes, so
        two writers of different rows can deadlock on the version table. The open
        versions are found first by a plain (snapshot, lock-free) read, then closed by
        ``(key..., transaction_id)``, which locks those rows only. A version the snapshot
        shows open may have been closed since by a writer that committed after the
        snapshot was taken: the chain is then followed from it, by whole keys too
        (:meth:`_follow`), to the version open now. Keys the snapshot shows no open
        version of (new entities, entities whose versions were all committed after the
        snapshot) are looked up among what is committed now, on a second connection
        (:mod:`.committed`), and closed the same way. The keys of ``looked_up`` skip
        both reads: it holds what the second one found of them already
        (:meth:`_committed_of_inserts`). Versions newer than this transaction are not closed
        (the caller re-stamps), nor, unless ``close_deletes``, DELETE versions (a
        deleted entity deleted again).

        Returns, per entity key with an open version, ``(transaction_id,
        operation_type)`` of the version open now or closed here, and how many
        versions it closed. Keys left out have no open version: nothing to close.
        """
        assert spec.end_tx is not None
        tx_id = self.tx_id()
        delete = int(Operation.DELETE)

        def closable(tx: Any, op: Any) -> bool:
            return bool(tx < tx_id and (close_deletes or op != delete))

        unseen: set[PK] = looked_up[0].intersection(keys) if looked_up else set()
        seen = [key for key in keys if key not in unseen] if unseen else keys
        found = self._open_versions(connection, spec, seen, committed=False) if seen else []
        settled, closed = self._settle_rows(connection, spec, found, closable)
        rest = [key for key in seen if key not in settled]
        width = len(spec.version_pk)
        found = [row for row in looked_up[1] if row[:width] in unseen] if looked_up else []
        if rest:
            found.extend(self._open_versions(connection, spec, rest, committed=True))
        if found:
            more, more_closed = self._settle_rows(connection, spec, found, closable)
            settled.update(more)
            closed += more_closed
        return settled, closed

    def _settle_rows(
        self,
        connection: Connection,
        spec: VersionTableSpec,
        found: Sequence[tuple[Any, ...]],
        closable: Callable[[Any, Any], bool],
    ) -> tuple[dict[PK, tuple[Any, Any]], int]:
        """Close the versions ``found`` open (``(key..., transaction_id,
        operation_type)``) that are ``closable``, following the chains of those closed
        meanwhile (:meth:`_settle_by_version_key`)."""
        if not found:
            return {}, 0
        width = len(spec.version_pk)
        found = ordered(found)
        attempt = [row[: width + 1] for row in found if closable(row[width], row[width + 1])]
        closed = self._close_rows(connection, spec, attempt)
        if closed == len(found):
            return {tuple(row[:width]): (row[width], row[width + 1]) for row in found}, closed
        # Closed meanwhile, newer than this transaction, or a DELETE kept open.
        stops = self._follow(connection, spec, [row[: width + 1] for row in found], self.tx_id())
        more = [
            (*key, tx) for key, (tx, end, op) in stops.items() if end is None and closable(tx, op)
        ]
        closed += self._close_rows(connection, spec, ordered(more))
        return {key: (tx, op) for key, (tx, _, op) in stops.items()}, closed

    def _open_versions(
        self, connection: Connection, spec: VersionTableSpec, keys: Sequence[PK], *,
        committed: bool,
    ) -> list[tuple[Any, ...]]:
        """``(key..., transaction_id, operation_type)`` of the open versions of
        ``keys`` other than this transaction's, by reads that lock nothing
        (MySQL/MariaDB): in this transaction's snapshot, or, if ``committed``, as
        committed now (:mod:`.committed`)."""
        assert spec.end_tx is not None
        tx_id = self.tx_id()
        vpk = list(spec.version_pk)
        committed_reads = self.uow.manager.committed_reads
        found: list[tuple[Any, ...]] = []
        for chunk in chunks(keys, len(vpk)):
            # Through the primary key: given a hundred keys and several candidate
            # indexes, MariaDB's range optimizer alone takes 2 ms, 0.4 ms with the hint.
            probe = through_primary_key(sa.select(*vpk, spec.tx, spec.op), spec.version).where(
                key_in(vpk, chunk, connection.dialect),
                spec.end_tx.is_(None),
                spec.tx != tx_id,
            )
            if committed:
                found.extend(tuple(row) for row in committed_reads.rows(connection, probe))
            else:
                found.extend(tuple(row) for row in connection.execute(probe))
        return found

    def _close_rows(
        self, connection: Connection, spec: VersionTableSpec, rows: Sequence[PK]
    ) -> int:
        """MySQL/MariaDB: close the versions ``rows`` (whole keys, in order) that are
        still open, through the primary key; how many it closed."""
        assert spec.end_tx is not None
        if not rows:
            return 0
        tx_id = self.tx_id()
        closed = 0
        columns = [*spec.version_pk, spec.tx]
        for chunk in chunks(rows, len(columns)):
            stmt = (
                through_primary_key(sa.update(spec.version), spec.version)
                .where(_exact(columns, chunk, connection), spec.end_tx.is_(None))
                .values({spec.end_tx: tx_id})
            )
            closed += max(connection.execute(stmt).rowcount, 0)
        return closed

    @staticmethod
    def _follow(
        connection: Connection, spec: VersionTableSpec, rows: Sequence[PK], tx_id: int
    ) -> dict[PK, tuple[Any, Any, Any]]:
        """MySQL/MariaDB: from the versions ``rows`` (whole keys), follow each chain
        (``end_transaction_id`` to the next version's key) to the version open now, or to
        the one this transaction closed. Each step is a locking read by whole keys
        through the primary key: it sees what writers committed after the snapshot,
        and locks the rows it reads and no gap.

        Returns, per entity key, ``(transaction_id, end_transaction_id,
        operation_type)`` of that version; a key whose chain led to a row that is not
        there (a version deleted by retention) is left out, for a prefix read.
        """
        assert spec.end_tx is not None
        vpk = list(spec.version_pk)
        width = len(vpk)
        columns = [*vpk, spec.tx]
        stops: dict[PK, tuple[Any, Any, Any]] = {}
        seen: set[PK] = set()
        pending = ordered(rows)
        while pending:
            got: dict[PK, tuple[Any, ...]] = {}
            for chunk in chunks(pending, width + 1):
                read = through_primary_key(
                    sa.select(*columns, spec.end_tx, spec.op)
                    .where(_exact(columns, chunk, connection))
                    .with_for_update(),
                    spec.version,
                )
                got.update((tuple(r[: width + 1]), tuple(r)) for r in connection.execute(read))
            following: list[PK] = []
            for row in pending:
                key = tuple(row[:width])
                current = got.get(tuple(row))
                seen.add(tuple(row))
                if current is None:
                    continue
                end = current[width + 1]
                if end is None or end == tx_id:
                    stops[key] = (current[width], end, current[width + 2])
                elif (*key, end) in seen:  # pragma: no cover - a chain that loops
                    continue
                else:
                    following.append((*key, end))
            pending = ordered(following)
        return stops

    def replace(self, spec: VersionTableSpec, keys: Sequence[PK]) -> None:
        """Delete the versions this transaction wrote for ``keys`` (to write them anew)."""
        if keys:
            connection = self.connection
            self._replace(connection, statements_for(spec, connection.dialect), keys)

    def _replace(
        self, connection: Connection, statements: WriteStatements, keys: Sequence[PK]
    ) -> None:
        tx_id = self.tx_id()
        if connection.dialect.name not in _MYSQL:
            statements.run(connection, statements.replace, keys, tx_id)
            return
        # MySQL/MariaDB: by the whole key, through the primary key. MariaDB would find
        # the rows through the transaction_id index otherwise (even given whole keys),
        # and lock the gap after this transaction's id there, where every newer
        # transaction inserts its versions.
        spec = statements.spec
        columns = [*spec.version_pk, spec.tx]
        rows = ordered([(*key, tx_id) for key in keys])
        for chunk in chunks(rows, len(columns)):
            connection.execute(
                _delete_by_primary_key(spec.version).where(_exact(columns, chunk, connection))
            )

    def mark_deleted(self, spec: VersionTableSpec, keys: Sequence[PK]) -> None:
        """Turn the versions this transaction wrote for ``keys`` into DELETEs."""
        if keys:
            connection = self.connection
            self._mark_deleted(connection, statements_for(spec, connection.dialect), keys, ())

    def _mark_deleted(
        self,
        connection: Connection,
        statements: WriteStatements,
        keys: Sequence[PK],
        extra: tuple[tuple[str, Any], ...],
    ) -> None:
        tx_id = self.tx_id()
        if connection.dialect.name not in _MYSQL:
            mark = statements.mark_deleted(tuple(k for k, _ in extra))
            statements.run(connection, mark, keys, tx_id, extra)
            return
        # MySQL/MariaDB: by the whole key, through the primary key (see _replace).
        spec = statements.spec
        values: dict[Any, Any] = {spec.op: int(Operation.DELETE)}
        values.update((spec.version.c[key], value) for key, value in extra)
        columns = [*spec.version_pk, spec.tx]
        rows = ordered([(*key, tx_id) for key in keys])
        for chunk in chunks(rows, len(columns)):
            connection.execute(
                through_primary_key(sa.update(spec.version), spec.version)
                .where(_exact(columns, chunk, connection))
                .values(values)
            )

    def from_live(self, spec: VersionTableSpec, keys: Sequence[PK], op: Operation) -> None:
        """Copy the live rows of ``keys`` into versions with operation ``op``."""
        if keys:
            statements = statements_for(spec, self.connection.dialect)
            stmt = statements.from_live(())
            statements.run(self.connection, stmt, keys, self.tx_id(), (), **{OP: int(op)})

    def insert_rows(
        self, spec: VersionTableSpec, rows: Sequence[Mapping[str, Any]], op: Operation
    ) -> None:
        """Write versions with operation ``op`` from ``rows`` (version column values)."""
        if rows:
            tx_id = self.tx_id()
            values = [{**row, spec.tx.key: tx_id, spec.op.key: int(op)} for row in rows]
            self.connection.execute(sa.insert(spec.version), values)


def _exact(
    columns: Sequence[sa.ColumnElement[Any]], rows: Sequence[PK], connection: Connection
) -> sa.ColumnElement[bool]:
    """``columns`` (a whole primary key) among ``rows``, for MySQL/MariaDB, which look up
    each row by the key (a one-row tuple ``IN`` would scan the whole index there)."""
    if len(rows) == 1:
        return sa.and_(*[c == v for c, v in zip(columns, rows[0], strict=True)])
    return key_in(columns, rows, connection.dialect)


def _delete_by_primary_key(table: sa.Table) -> sa.Delete:
    """A DELETE from ``table`` that MySQL/MariaDB run through the primary key. Only the
    multi-table form takes an index hint there: ``DELETE t FROM t FORCE INDEX (PRIMARY)
    WHERE ...``."""
    return through_primary_key(sa.delete(table).prefix_with(table_name(table)), table)
