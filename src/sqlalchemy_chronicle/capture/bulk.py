"""Capture of bulk and ORM-enabled statements executed through a Session.

``session.execute(update(Article).where(...).values(...))``, ``delete(...)``, the
legacy ``Query.update()``/``Query.delete()``, ORM bulk INSERT
(``session.execute(insert(Article), [dicts])``, ``insert(Article).values(...)``),
bulk UPDATE by primary key (``session.execute(update(Article), [dicts])``) and
upserts change rows without the unit of work's mapper events. A ``do_orm_execute``
listener versions them, in the same transaction row as the session's other changes,
by comparing the rows before and after the statement:

1. before the statement, one ``SELECT`` reads the versioned columns of the rows it
   can touch: those its ``WHERE`` matches (so a ``WHERE`` on a column the statement
   itself changes finds the rows as they were), or those named by the primary keys
   it is given (bulk by primary key, inserts, upserts); on PostgreSQL and MariaDB
   ``FOR UPDATE``, so that nobody changes them in between;
2. the statement runs unchanged: its result, ``RETURNING`` rows and
   ``synchronize_session`` work as without versioning;
3. the same rows are read again by key (not for a DELETE), and each row whose
   values changed gets an UPDATE version, each new one an INSERT version, each one
   gone a DELETE version (a copy of its last version): one plan for the writer
   (:mod:`.writer`), written set-based, as a flush's. Rows whose values did not
   change get no version.

An ``UPDATE ... WHERE`` (the common bulk statement) takes a shorter path when the
table keeps one open version per entity (the validity strategy) and its columns
compare in SQL: only the keys of the rows its ``WHERE`` matches are read before it
(locked); afterwards one ``UPDATE`` closes the open versions of those rows whose
values differ from their live row, and one ``INSERT ... SELECT`` from the live table
writes a version for each of them that has no open version left, returning the keys
it wrote. No row's values travel through Python. (A row older than versioning, with
no version at all, gets one even when the statement left it as it was.) Rows this
transaction versioned already take the general path.

Inserts without their keys (database-generated integer keys) find the new rows as
those above the largest key read before the statement that have no version yet.

Statements that cannot be versioned this way raise
:class:`~sqlalchemy_chronicle.exc.NotSupportedError` before they run, naming the
statement: statements on joined-inheritance classes, upserts and ``INSERT ...
SELECT`` without the keys of their rows when the key is not a single integer column.
Statements on tables that are not versioned cost one ``isinstance`` check.

The legacy ``Session.bulk_save_objects()``, ``bulk_insert_mappings()`` and
``bulk_update_mappings()`` go through neither ``Session.execute()`` nor the flush.
Each call runs in a subtransaction of its own; while it is open, :class:`BulkSave`
watches the INSERT and UPDATE statements the call runs on the session's connections:
before each one it reads the rows it names (by the keys in its parameters, locked),
and when the call ends it reads them again and writes their versions in one plan,
as above. Rows inserted without their keys are found as for ``insert()``.

Statements executed on a bare ``Connection`` outside any Session are not seen
(ORM capture lives in the Session); the PostgreSQL trigger backend covers them.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import exc as orm_exc

from .._compat import dml_values, is_upsert
from ..config import Operation
from ..exc import NotSupportedError
from .plan import PK, Plan, TablePlan
from .sql import ARRAYS, key_in, ordered, unindexed
from .templates import OP, TX, chunks, statements_for
from .writer import Writer

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Result
    from sqlalchemy.orm import Mapper, ORMExecuteState

    from ..schema.models import VersionedModel
    from ..schema.tables import VersionTableSpec
    from .unit_of_work import CaptureConfig, UnitOfWork

__all__ = ["BulkSave", "version_statement"]

Rows = dict[PK, tuple[Any, ...]]


def _describe(stmt: Any) -> str:
    kind = type(stmt).__name__.upper()
    table = getattr(stmt, "table", None)
    name = getattr(table, "name", None) or "?"
    return f"{kind} on {name!r}"


class _Target:
    """The versioned table a statement writes, and how its rows are named."""

    def __init__(
        self, spec: VersionTableSpec, mapper: Mapper[Any] | None, model: VersionedModel | None
    ) -> None:
        self.spec = spec
        self.mapper = mapper
        self.model = model
        self.pk = [p for p, _ in spec.pk]
        self.columns = [p for p, _ in spec.columns]
        #: Per key column, the names a parameter dict may give its value under.
        self.key_names: list[tuple[str, ...]] = []
        for column in self.pk:
            names = [column.key, column.name]
            if mapper is not None:
                with contextlib.suppress(orm_exc.UnmappedColumnError):
                    names.insert(0, mapper.get_property_by_column(column).key)
            self.key_names.append(tuple(dict.fromkeys(names)))

    def key_of(self, params: Mapping[Any, Any]) -> PK | None:
        """The key a parameter dict names, or None when it lacks a key column."""
        values = {getattr(k, "key", k): v for k, v in params.items()}
        key = []
        for names in self.key_names:
            for name in names:
                if name in values and values[name] is not None:
                    key.append(values[name])
                    break
            else:
                return None
        return tuple(key)

    def select(self, connection: Connection, where: Any, lock: bool) -> Rows:
        """The versioned values of the rows ``where`` matches, by key."""
        stmt = sa.select(*self.columns)
        if where is not None:
            stmt = stmt.where(where)
        if lock and connection.dialect.name != "sqlite":
            stmt = stmt.with_for_update(of=self.spec.parent)
        return self._rows(connection.execute(stmt))

    def select_keys(self, connection: Connection, keys: Sequence[PK], lock: bool) -> Rows:
        """The versioned values of the rows of ``keys`` that exist."""
        rows: Rows = {}
        for chunk in chunks(ordered(keys), len(self.pk)):
            where = key_in(self.pk, chunk, connection.dialect)
            rows.update(self.select(connection, where, lock))
        return rows

    def _rows(self, result: Iterable[Any]) -> Rows:
        width = len(self.columns)
        positions = [self.columns.index(c) for c in self.pk]
        out: Rows = {}
        for row in result:
            values = tuple(row[:width])
            out[tuple([values[i] for i in positions])] = values
        return out


def _target(manager: CaptureConfig, state: ORMExecuteState) -> _Target | None:
    """The versioned table ``state``'s statement writes (None when not versioned)."""
    stmt: Any = state.statement
    table = getattr(stmt, "table", None)
    if not isinstance(table, sa.Table):
        return None
    mapper = state.bind_mapper if state.is_orm_statement else None
    model = None
    if mapper is not None:
        # An ORM statement's table is an annotated copy; the mapper names the real one.
        table = mapper.local_table
        model = manager.model_for_mapper(mapper)
    if model is None:
        model = manager.model_for_table(table)
    if model is None or model.options.native_versioning:
        return None  # not versioned, or versioned by the database's triggers
    if len(model.key_sources) > 1 or model.local_spec.parent is not table:
        raise NotSupportedError(
            f"Cannot version the bulk statement {_describe(stmt)}: {model.parent.__name__} "
            f"is mapped to several tables (joined inheritance), whose versions must be "
            f"written together. Change the objects through the Session (a flush "
            f"versions them) instead."
        )
    return _Target(model.local_spec, mapper, model)


def _given_keys(target: _Target, state: ORMExecuteState) -> list[PK] | None:
    """The keys of the rows an INSERT or a bulk UPDATE by primary key names (None
    when a row is given without its key)."""
    stmt: Any = state.statement
    rows: list[Mapping[Any, Any]] = []
    params = state.parameters
    if isinstance(params, Mapping):
        rows.append(params)
    elif params:
        rows.extend(params)
    given = dml_values(stmt)
    if given:
        if rows:  # parameters complete the statement's VALUES
            rows = [{**row, **given[0]} for row in rows] if len(given) == 1 else [*given, *rows]
        else:
            rows = list(given)
    if not rows:
        return None
    keys = []
    for row in rows:
        key = target.key_of(row)
        if key is None:
            return None
        keys.append(key)
    return keys


def _integer_key(target: _Target) -> sa.Column[Any] | None:
    if len(target.pk) == 1 and isinstance(target.pk[0].type, sa.Integer):
        return target.pk[0]
    return None


def version_statement(
    manager: CaptureConfig, uow: UnitOfWork, state: ORMExecuteState
) -> Result[Any] | None:
    """Run ``state``'s INSERT, UPDATE or DELETE and version the rows it changed.

    Returns the statement's result, or None (without running it) when the statement
    writes no versioned table.
    """
    target = _target(manager, state)
    if target is None:
        return None
    session = state.session
    stmt: Any = state.statement
    if session.autoflush and state.execution_options.get("autoflush", True):
        # The statement sees the session's pending changes; so must the rows read
        # before it (their versions are written by this flush).
        session.flush()
    mapper = target.mapper
    connection = session.connection(bind_arguments={"mapper": mapper} if mapper else None)
    deleting = state.is_delete
    keys: list[PK] | None = None
    above: Any = None
    if state.is_insert or state.is_executemany:
        keys = _given_keys(target, state)
        if keys is None:
            key_column = _integer_key(target)
            if is_upsert(stmt) or key_column is None:
                raise NotSupportedError(
                    f"Cannot version the bulk statement {_describe(stmt)}: the rows it "
                    f"writes are not given with their primary key "
                    f"({', '.join(c.key for c in target.pk)}), so they cannot be found "
                    f"again. Give every row its key, or add the rows through the Session."
                )
            found = _last_key(connection, target.spec.parent, key_column)
            above = key_column > found if found is not None else sa.true()
            before: Rows = {}
        else:
            before = target.select_keys(connection, keys, lock=True)
    elif _fast_update(target, state, connection):
        locked = _select_keys(connection, target, stmt.whereclause)
        if not any((target.spec.version, key) in uow.written for key in locked):
            result = state.invoke_statement()
            if locked:
                _write_changed(uow, session, connection, target, locked)
            return result
        before = target.select_keys(connection, locked, lock=False)
        keys = list(before)
    else:
        before = target.select(connection, stmt.whereclause, lock=True)
        keys = list(before)
    result = state.invoke_statement()
    if deleting:
        after: Rows = {}
    elif above is not None:
        after = target.select(connection, above, lock=False)
        if after:
            after = _unversioned(connection, target.spec, after)
    else:
        after = target.select_keys(connection, keys or [], lock=False)
    _write(uow, session, connection, target, before, after)
    return result


# -- UPDATE ... WHERE without the rows' values in Python --------------------------------

#: Column types whose values SQL compares as Python does (``IS NOT DISTINCT FROM``).
_COMPARABLE = (
    sa.Integer, sa.Numeric, sa.String, sa.Boolean, sa.Date, sa.DateTime, sa.Time,
    sa.Interval, sa.Uuid, sa.Enum, sa.Float,
)


def _fast_update(target: _Target, state: ORMExecuteState, connection: Connection) -> bool:
    """Whether ``state``'s UPDATE can be versioned by :func:`_write_changed`."""
    spec = target.spec
    if not state.is_update or state.is_executemany or spec.end_tx is None:
        return False
    if len(target.pk) > 1 and connection.dialect.name == "sqlite":
        return False  # keep the row-value IN of composite keys off SQLite's planner
    cached: bool | None = spec.cache.get("bulk_update:comparable")
    if cached is None:
        cached = spec.cache["bulk_update:comparable"] = all(
            isinstance(p.type, _COMPARABLE) and not isinstance(p.type, sa.PickleType)
            for p, _ in spec.columns
        )
    return cached


def _select_keys(connection: Connection, target: _Target, where: Any) -> list[PK]:
    """The keys of the rows ``where`` matches, locked (not on SQLite), in key order."""
    stmt = sa.select(*target.pk).order_by(*target.pk)
    if where is not None:
        stmt = stmt.where(where)
    if connection.dialect.name != "sqlite":
        stmt = stmt.with_for_update(of=target.spec.parent)
    return [tuple(row) for row in connection.execute(stmt).all()]


def _changed_statements(spec: VersionTableSpec, dialect: sa.Dialect) -> tuple[Any, Any, Any]:
    """The close, add and (without ``INSERT ... RETURNING``) find statements of
    :func:`_write_changed`, built once per table and key transport."""
    statements = statements_for(spec, dialect)
    cache_key = f"bulk_update:{dialect.name}:{statements.transport}"
    built: tuple[Any, Any, Any] | None = spec.cache.get(cache_key)
    if built is not None:
        return built
    assert spec.end_tx is not None
    version = spec.version
    tx = sa.bindparam(TX, type_=spec.tx.type)
    same_key = [p == v for p, v in spec.pk]
    same_values = sa.and_(*[p.is_not_distinct_from(v) for p, v in spec.columns])
    differs = sa.exists().where(*same_key, sa.not_(same_values))
    close = (
        sa.update(version)
        .where(
            statements.keys_in(spec.version_pk),
            unindexed(spec.end_tx).is_(None),
            spec.tx < tx,
            differs,
        )
        .values({spec.end_tx: tx})
    )
    still_open = version.alias("chronicle_open")
    is_open = sa.exists().where(
        *[still_open.c[v.key] == p for p, v in spec.pk],
        unindexed(still_open.c[spec.end_tx.key]).is_(None),
    )
    op = sa.bindparam(OP, type_=spec.op.type)
    target = [v for _, v in spec.columns] + [spec.tx, spec.op]
    select = sa.select(*[p for p, _ in spec.columns], tx, op).where(
        statements.keys_in([p for p, _ in spec.pk]), sa.not_(is_open)
    )
    add: Any = sa.insert(version).from_select(target, select)
    find: Any = None
    if dialect.insert_returning:
        add = add.returning(*spec.version_pk)
    else:
        find = sa.select(*spec.version_pk).where(spec.tx == tx, statements.keys_in(spec.version_pk))
    built = spec.cache[cache_key] = (close, add, find)
    return built


def _write_changed(
    uow: UnitOfWork, session: Any, connection: Connection, target: _Target, keys: list[PK]
) -> None:
    """Version the rows of ``keys`` that an UPDATE changed, without reading their values.

    Their open versions hold their values from before the statement (every earlier
    write was versioned); those that differ from the live row now are closed, and
    each row left without an open version gets a new one, copied from the live row.
    """
    spec = target.spec
    statements = statements_for(spec, connection.dialect)
    close, add, find = _changed_statements(spec, connection.dialect)
    writer = Writer(uow, session, connection)
    created = uow.transaction_id is None
    plugins = uow.manager.plugins
    if len(plugins):
        writer.tx_id()
        plugins.before_create_version_objects(uow, session)
    tx_id = writer.tx_id()
    width = len(spec.pk)
    written: list[PK] = []
    # Arrays (PostgreSQL) carry any number of keys in one parameter per key column.
    parts = [keys] if statements.transport == ARRAYS else chunks(keys, width)
    for chunk in parts:
        params = {TX: tx_id, OP: int(Operation.UPDATE), **statements.key_params(chunk)}
        connection.execute(close, params)
        result = connection.execute(add, params)
        if find is not None:
            result = connection.execute(find, params)
        written.extend([tuple(row) for row in result.all()])
    version = spec.version
    if not written:
        if created:  # nothing changed: no transaction row either
            table = uow.manager.transaction_table
            connection.execute(sa.delete(table).where(table.c.id == tx_id))
            uow.transaction_id = None
            uow.transaction_values = {}
        return
    for key in written:
        uow.written[(version, key)] = Operation.UPDATE
    uow.written_specs[version] = spec
    uow.changed_entities = {target.model.parent} if target.model is not None else set()
    if not created:
        plan = TablePlan(spec, new=set(written))
        if Writer._overtaken(connection, [plan], tx_id):
            writer.restamp(tx_id)
            writer.close(spec, written)
    if len(plugins):
        plugins.after_create_version_objects(uow, session)


#: The last value of the sequence of a serial or identity column, or the value before
#: its first one when it has not been used yet; no row when the column has none.
_SEQUENCE_LAST = sa.text(
    "SELECT COALESCE(s.last_value, s.start_value - s.increment_by) FROM pg_sequences s "
    "WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass "
    "= pg_get_serial_sequence(:t, :c)::regclass"
)


def _last_key(connection: Connection, table: sa.Table, column: sa.Column[Any]) -> Any:
    """A value below every key the database will generate for ``column`` next.

    SQLite and MariaDB generate keys above the largest one in the table; a
    PostgreSQL sequence (serial or identity) continues from its own last value,
    whatever keys were given explicitly.
    """
    if connection.dialect.name == "postgresql":
        found = connection.execute(_SEQUENCE_LAST, {"t": table.fullname, "c": column.name}).first()
        if found is not None:
            return found[0]
    return connection.execute(sa.select(sa.func.max(column))).scalar()


def _unversioned(connection: Connection, spec: VersionTableSpec, rows: Rows) -> Rows:
    """``rows`` without those whose entity has a current version: rows another
    transaction added. A key whose last version is a DELETE is free again (SQLite
    hands out the keys of deleted rows again)."""
    vpk = list(spec.version_pk)
    width = len(vpk)
    latest: dict[PK, tuple[Any, Any]] = {}
    for chunk in chunks(ordered(rows), width):
        stmt = sa.select(*vpk, spec.tx, spec.op).where(key_in(vpk, chunk, connection.dialect))
        if spec.end_tx is not None:
            stmt = stmt.where(spec.end_tx.is_(None))
        for row in connection.execute(stmt):
            key = tuple(row[:width])
            if key not in latest or row[width] > latest[key][0]:
                latest[key] = (row[width], row[width + 1])
    live = {key for key, (_, op) in latest.items() if op != Operation.DELETE}
    return {key: values for key, values in rows.items() if key not in live}


def _write(
    uow: UnitOfWork,
    session: Any,
    connection: Connection,
    target: _Target,
    before: Rows,
    after: Rows,
) -> None:
    spec = target.spec
    plan = Plan(uow.written, uow.born)
    names = [v.key for _, v in spec.columns]
    for key, old in before.items():
        new = after.get(key)
        if new is None:
            if plan.add(spec, key, Operation.DELETE) is not None:
                plan[spec.version].values[key] = dict(zip(names, old, strict=True))
        elif new != old:
            plan.add(spec, key, Operation.UPDATE)
    for key in after.keys() - before.keys():
        plan.add(spec, key, Operation.INSERT)
    if not plan or not plan[spec.version].ops:
        return
    uow.changed_entities = {target.model.parent} if target.model is not None else set()
    Writer(uow, session, connection).write(plan, target.mapper)


def _table_target(manager: CaptureConfig, table: Any, stmt: Any) -> _Target | None:
    """The versioned table a Core statement of a bulk save writes (None when not
    versioned or versioned by triggers)."""
    model = manager.model_for_table(table)
    if model is None or model.options.native_versioning:
        return None
    if len(model.key_sources) > 1:
        raise NotSupportedError(
            f"Cannot version the bulk save {_describe(stmt)}: {model.parent.__name__} "
            f"is mapped to several tables (joined inheritance), whose versions must be "
            f"written together. Add or change the objects through the Session (a flush "
            f"versions them) instead."
        )
    return _Target(model.local_spec, sa.inspect(model.parent), model)


def _where_params(stmt: Any, target: _Target) -> list[str] | None:
    """The parameter names an UPDATE's ``WHERE pk = :param`` gives each key column."""
    names: dict[Any, str] = {}
    if stmt.whereclause is None:
        return None
    for element in sa.sql.visitors.iterate(stmt.whereclause):
        if isinstance(element, sa.BinaryExpression) and element.operator is operator.eq:
            left, right = element.left, element.right
            if isinstance(right, sa.Column) and isinstance(left, sa.BindParameter):
                left, right = right, left
            if isinstance(left, sa.Column) and isinstance(right, sa.BindParameter):
                names[left] = right.key
    found = [names.get(column) for column in target.pk]
    return None if None in found else [n for n in found if n is not None]


class _Pending:
    """What one bulk save did to one versioned table so far."""

    def __init__(self, target: _Target, connection: Connection) -> None:
        self.target = target
        self.connection = connection
        #: The rows as they were before the first statement that named them.
        self.before: Rows = {}
        #: Every key a statement named (or the database generated), in order.
        self.keys: dict[PK, None] = {}
        #: Rows inserted without their keys are those above this bound (see
        #: :func:`_last_key`); None while every row came with its key.
        self.above: Any = None


class BulkSave:
    """Versions one ``bulk_save_objects()``/``bulk_*_mappings()`` call.

    :meth:`before_execute` and :meth:`after_execute` are listeners of the session's
    connections while the call's subtransaction is open; :meth:`finish` writes the
    versions when it ends.
    """

    def __init__(self, manager: CaptureConfig, uow: UnitOfWork, session: Any) -> None:
        self.manager = manager
        self.uow = uow
        self.session = session
        self.pending: dict[sa.Table, _Pending] = {}
        #: The connections whose statements are watched.
        self.connections: list[Connection] = []

    def watch(self, connection: Connection) -> None:
        """Listen to the statements run on ``connection`` (until :meth:`unwatch`)."""
        if connection not in self.connections:
            self.connections.append(connection)
            event.listen(connection, "before_execute", self.before_execute)
            event.listen(connection, "after_execute", self.after_execute)

    def unwatch(self) -> None:
        for connection in self.connections:
            if not connection.closed:
                event.remove(connection, "before_execute", self.before_execute)
                event.remove(connection, "after_execute", self.after_execute)
        self.connections.clear()

    def before_execute(
        self, connection: Connection, stmt: Any, multiparams: Any, params: Any, options: Any
    ) -> None:
        rows = list(multiparams or [params])
        if not isinstance(stmt, (sa.Insert, sa.Update)) or not isinstance(stmt.table, sa.Table):
            return
        target = _table_target(self.manager, stmt.table, stmt)
        if target is None:
            return
        pending = self.pending.get(target.spec.version)
        if pending is None:
            pending = self.pending[target.spec.version] = _Pending(target, connection)
        keys: list[PK] = []
        if isinstance(stmt, sa.Update):
            names = _where_params(stmt, target)
            if names is None or any(not all(n in row for n in names) for row in rows):
                raise NotSupportedError(
                    f"Cannot version the bulk save {_describe(stmt)}: its rows are not "
                    f"named by their primary key ({', '.join(c.key for c in target.pk)})."
                )
            keys = [tuple(row[n] for n in names) for row in rows]
        else:
            for row in rows:
                key = target.key_of(row)
                if key is None:
                    if pending.above is None:
                        pending.above = self._above(connection, target, stmt)
                else:
                    keys.append(key)
        new = [key for key in dict.fromkeys(keys) if key not in pending.keys]
        if new:
            pending.before.update(target.select_keys(connection, new, lock=True))
            pending.keys.update(dict.fromkeys(new))

    @staticmethod
    def _above(connection: Connection, target: _Target, stmt: Any) -> Any:
        key_column = _integer_key(target)
        if key_column is None:
            raise NotSupportedError(
                f"Cannot version the bulk save {_describe(stmt)}: the rows it writes are "
                f"not given with their primary key ({', '.join(c.key for c in target.pk)}), "
                f"so they cannot be found again. Give every row its key, or add the rows "
                f"through the Session."
            )
        found = _last_key(connection, target.spec.parent, key_column)
        return key_column > found if found is not None else sa.true()

    def after_execute(
        self,
        connection: Connection,
        stmt: Any,
        multiparams: Any,
        params: Any,
        options: Any,
        result: Any,
    ) -> None:
        if not isinstance(stmt, sa.Insert) or not isinstance(stmt.table, sa.Table):
            return
        target = _table_target(self.manager, stmt.table, stmt)
        if target is None:
            return
        pending = self.pending[target.spec.version]
        if pending.above is None:
            return
        # Keys the database generated and returned (return_defaults=True) are known.
        with contextlib.suppress(sa.exc.InvalidRequestError):
            generated = [tuple(row) for row in result.inserted_primary_key_rows]
            if generated and all(None not in key for key in generated):
                pending.keys.update(dict.fromkeys(generated))

    def finish(self) -> None:
        """Write the versions of what the call changed."""
        for pending in self.pending.values():
            target, connection = pending.target, pending.connection
            after = target.select_keys(connection, list(pending.keys), lock=False)
            if pending.above is not None:
                generated = target.select(connection, pending.above, lock=False)
                generated = {k: v for k, v in generated.items() if k not in pending.keys}
                if generated:
                    after.update(_unversioned(connection, target.spec, generated))
            _write(self.uow, self.session, connection, target, pending.before, after)
