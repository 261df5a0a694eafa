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

Inserts without their keys (database-generated integer keys) find the new rows as
those above the largest key read before the statement that have no version yet.

Statements that cannot be versioned this way raise
:class:`~sqlalchemy_chronicle.exc.NotSupportedError` before they run, naming the
statement: statements on joined-inheritance classes, upserts and ``INSERT ...
SELECT`` without the keys of their rows when the key is not a single integer column.
Statements on tables that are not versioned cost one ``isinstance`` check.

Statements executed on a bare ``Connection`` outside any Session are not seen
(ORM capture lives in the Session); the PostgreSQL trigger backend covers them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import exc as orm_exc

from .._compat import dml_values, is_upsert
from ..config import Operation
from ..exc import NotSupportedError
from .plan import PK, Plan
from .sql import key_in, ordered
from .templates import chunks
from .writer import Writer

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Result
    from sqlalchemy.orm import Mapper, ORMExecuteState

    from ..schema.models import VersionedModel
    from ..schema.tables import VersionTableSpec
    from .unit_of_work import CaptureConfig, UnitOfWork

__all__ = ["version_statement"]

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
