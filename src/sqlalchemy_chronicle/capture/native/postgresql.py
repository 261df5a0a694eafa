"""Native capture on PostgreSQL: triggers write the versions.

With the option ``native_versioning=True`` a versioned table gets three
statement-level triggers (built by :mod:`sqlalchemy_chronicle.schema.triggers`)
that write, for every statement that changes it (ORM flushes, bulk statements, raw
SQL, other programs), the very rows ORM capture would write. The first versioned
write of a database transaction writes its transaction row, through one function
per transaction table, and keeps its id in the transaction-local setting
``chronicle.transaction_id``.

This module is the Python side:

* :class:`NativeCapture` installs the DDL on ``metadata.create_all`` and removes
  it on ``drop_all``, hands the transaction row's values (the versioning context,
  the plugins' ``transaction_args``, metadata) to the database before a
  transaction's first versioned write, and learns the transaction id back so that
  ``uow.current_transaction`` and the plugins see the same row;
* :func:`create_trigger`, :func:`drop_trigger` and :func:`sync_trigger` are the
  SQLAlchemy-Continuum functions, working from the tables found in the database.
"""

from __future__ import annotations

import dataclasses
import json
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, orm
from sqlalchemy.engine import Engine

from ...exc import ConfigurationError, NotSupportedError, TableNotVersioned
from ...schema.tables import MOD_COLUMN_INFO_KEY
from ...schema.triggers import (
    GUC_CONTEXT,
    GUC_META,
    GUC_TRANSACTION_ID,
    CreateRestampFunction,
    CreateTransactionFunction,
    DropAuditFunction,
    DropRestampFunction,
    DropTransactionFunction,
    TriggerSpec,
    create_statements,
    drop_statements,
)
from ..context import current_context
from ..writer import Writer, unstored_meta

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql.ddl import ExecutableDDLElement

    from ...schema.models import VersionedModel
    from ...schema.tables import VersionTableSpec
    from ..unit_of_work import UnitOfWork

__all__ = [
    "NativeCapture",
    "create_trigger",
    "drop_trigger",
    "native_capture_of",
    "sync_trigger",
]

#: Key of ``uow.info`` holding the transaction values handed to the database.
_PUSHED = "sqlalchemy_chronicle.native.pushed"
#: Trigger-versioned table -> its :class:`NativeCapture`. Kept out of ``Table.info``,
#: which Alembic renders into migration files.
_CAPTURES: weakref.WeakKeyDictionary[sa.Table, NativeCapture] = weakref.WeakKeyDictionary()
#: Key of ``Connection.info`` holding (root transaction, values) of the last hand-over.
_CONN_PUSHED = "sqlalchemy_chronicle.native.pushed"

_WRITES = re.compile(r"^\s*(with|insert|update|delete|merge|copy)\b", re.IGNORECASE)

_SET = sa.text(
    "SELECT set_config(:name_context, :context, true), set_config(:name_meta, :meta, true)"
)
_SET_ID = sa.text("SELECT set_config(:name, :value, true)")
_GET_ID = sa.text("SELECT current_setting(:name, true)")


def native_capture_of(table: sa.Table) -> NativeCapture | None:
    """The :class:`NativeCapture` versioning ``table`` by triggers, if any."""
    capture = _CAPTURES.get(table)
    return capture if capture is not None and table in capture.specs else None


def _not_postgresql(model_name: str, dialect: sa.Dialect) -> NotSupportedError:
    return NotSupportedError(
        f"{model_name} has the option native_versioning=True, which needs PostgreSQL "
        f"triggers, but the database is {dialect.name!r}. Remove the option (ORM "
        f"capture works on every database) or use PostgreSQL."
    )


def _json(values: Mapping[str, Any]) -> str:
    return json.dumps(values, default=str, sort_keys=True)


#: What a transaction has handed to the database before anything is sent: nothing.
_NOTHING = (_json({}), _json({}))


def trigger_spec(
    spec: VersionTableSpec,
    transaction_table: sa.Table,
    entity_name: str | None,
    association: bool = False,
) -> TriggerSpec:
    """The :class:`TriggerSpec` of a version table built by the manager."""
    by_key = {v.key: p for p, v in spec.columns}
    mods = tuple(
        (by_key[c.info[MOD_COLUMN_INFO_KEY]].name, c.name)
        for c in spec.version.columns
        if MOD_COLUMN_INFO_KEY in c.info and c.info[MOD_COLUMN_INFO_KEY] in by_key
    )
    return TriggerSpec(
        table=spec.parent,
        version=spec.version,
        columns=tuple((p.name, v.name) for p, v in spec.columns),
        key=tuple((p.name, v.name) for p, v in spec.pk),
        transaction_column=spec.tx.name,
        operation_column=spec.op.name,
        end_transaction_column=spec.end_tx.name if spec.end_tx is not None else None,
        mod_columns=mods,
        transaction_table=transaction_table,
        entity_name=entity_name,
        association=association,
    )


class NativeCapture:
    """The trigger backend of one versioning manager.

    :param manager: the versioning manager (its transaction table and plugins).
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        #: Live table -> its trigger spec, for every table versioned by triggers.
        self.specs: dict[sa.Table, TriggerSpec] = {}
        #: Live table -> the name of the model (for errors).
        self._names: dict[sa.Table, str] = {}
        self._listeners: list[tuple[Any, str, Any]] = []
        self._transaction_tables: set[sa.Table] = set()

    @property
    def active(self) -> bool:
        """Whether any table is versioned by triggers."""
        return bool(self.specs)

    # -- configuration ---------------------------------------------------------------

    def add_model(self, model: VersionedModel) -> None:
        """Version the tables of ``model`` by triggers."""
        transaction_table = self.manager.transaction_table
        plain = {
            spec.parent: trigger_spec(spec, transaction_table, _owner_name(model, spec))
            for spec in model.specs
        }
        for i, spec in enumerate(model.specs):
            table = spec.parent
            current = self.specs.get(table)
            if current is None:
                current = plain[table]
                self._names[table] = _owner_name(model, spec)
                self._listen(table)
            related: dict[sa.Table, tuple[TriggerSpec, tuple[tuple[str, str], ...]]] = {
                r.table: (r, p) for r, p in current.related
            }
            for j, other in enumerate(model.specs):
                if j != i and other.parent not in related:
                    pairs = _key_pairs(model, i, j)
                    related[other.parent] = (plain[other.parent], pairs)
            self.specs[table] = dataclasses.replace(
                current,
                related=tuple(related.values()),
                polymorphic=self._polymorphic(model, i),
            )
        self._listen_transaction_table(transaction_table)

    def _polymorphic(self, model: VersionedModel, index: int) -> Any:
        """How the triggers of ``model``'s ``index``-th table name each row's entity."""
        base = model.mapper.base_mapper
        column = base.polymorphic_on
        if not isinstance(column, sa.Column) or not base.polymorphic_map:
            return None
        position = next(
            (i for i, spec in enumerate(model.specs) if spec.parent is column.table), None
        )
        if position is None:
            return None
        names = tuple(
            sorted(
                (identity, mapper.class_.__name__)
                for identity, mapper in base.polymorphic_map.items()
                if self.manager.model_for_mapper(mapper) is not None
            )
        )
        pairs = _key_pairs(model, index, position)
        return (column.table, pairs, column.name, names)

    def add_association(self, spec: VersionTableSpec, model_name: str) -> None:
        """Version association table ``spec.parent`` by triggers."""
        if spec.parent in self.specs:
            return
        transaction_table = self.manager.transaction_table
        self.specs[spec.parent] = trigger_spec(spec, transaction_table, None, association=True)
        self._names[spec.parent] = model_name
        self._listen(spec.parent)
        self._listen_transaction_table(transaction_table)

    def is_native(self, table: Any) -> bool:
        return table in self.specs

    def _add_listener(self, target: Any, name: str, fn: Any) -> None:
        event.listen(target, name, fn)
        self._listeners.append((target, name, fn))

    def _listen(self, table: sa.Table) -> None:
        _CAPTURES[table] = self

        def after_create(target: sa.Table, connection: Connection, **kw: Any) -> None:
            self.install(connection, target)

        def after_drop(target: sa.Table, connection: Connection, **kw: Any) -> None:
            if connection.dialect.name == "postgresql":
                connection.execute(DropAuditFunction(target))

        self._add_listener(table, "after_create", after_create)
        self._add_listener(table, "after_drop", after_drop)
        metadata = table.metadata
        if not event.contains(metadata, "before_create", self._before_create):
            self._add_listener(metadata, "before_create", self._before_create)

    def _before_create(self, metadata: sa.MetaData, connection: Connection, **kw: Any) -> None:
        """Refuse, before any table is created, to version by triggers elsewhere than
        on PostgreSQL."""
        tables = kw.get("tables") or metadata.tables.values()
        for table in tables:
            if table in self.specs:
                self._check(connection, self._names[table])

    def _listen_transaction_table(self, table: sa.Table) -> None:
        if table in self._transaction_tables:
            return
        self._transaction_tables.add(table)
        if not event.contains(Engine, "before_execute", self.before_execute):
            self._add_listener(Engine, "before_execute", self.before_execute)

        def after_create(target: sa.Table, connection: Connection, **kw: Any) -> None:
            if connection.dialect.name == "postgresql":
                self.install_transaction_function(connection)

        def after_drop(target: sa.Table, connection: Connection, **kw: Any) -> None:
            if connection.dialect.name == "postgresql":
                connection.execute(DropTransactionFunction(target))
                connection.execute(DropRestampFunction(target))

        self._add_listener(table, "after_create", after_create)
        self._add_listener(table, "after_drop", after_drop)

    def uninstall(self) -> None:
        """Remove the DDL listeners and forget the tables."""
        for target, name, fn in self._listeners:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._listeners.clear()
        for table in self.specs:
            if _CAPTURES.get(table) is self:
                del _CAPTURES[table]
        self.specs.clear()
        self._names.clear()
        self._transaction_tables.clear()

    # -- DDL -------------------------------------------------------------------------

    def _plugin_table(self, role: str) -> sa.Table | None:
        for plugin in self.manager.plugins:
            if getattr(plugin, "native_role", None) == role:
                table: sa.Table | None = plugin.table_of(self.manager)
                return table
        return None

    def install_transaction_function(self, connection: Connection) -> None:
        """Create (or replace) the function that gives the transaction id."""
        self._check(connection, "The transaction table")
        args = (
            self.manager.transaction_table,
            self._plugin_table("meta"),
            self._plugin_table("changes"),
        )
        connection.execute(CreateTransactionFunction(*args))
        connection.execute(CreateRestampFunction(*args))

    def create_ddl(self, table: sa.Table) -> list[ExecutableDDLElement]:
        """The DDL :meth:`install_transaction_function` and :meth:`install` run for
        ``table``, as statements (for an Alembic operation, online or ``--sql``)."""
        args = (
            self.manager.transaction_table,
            self._plugin_table("meta"),
            self._plugin_table("changes"),
        )
        return [
            CreateTransactionFunction(*args),
            CreateRestampFunction(*args),
            *create_statements(self._spec(table)),
        ]

    def install(self, connection: Connection, table: sa.Table) -> None:
        """Create (or replace) the function and triggers of versioned ``table``."""
        self._check(connection, self._names.get(table, table.name))
        for statement in create_statements(self._spec(table)):
            connection.execute(statement)

    def _spec(self, table: sa.Table) -> TriggerSpec:
        """The trigger spec of ``table``, knowing whether the transaction function
        records entity names (the plugins' tables are built after the models)."""
        records = self._plugin_table("changes") is not None
        return dataclasses.replace(self.specs[table], records_entities=records)

    def remove(self, connection: Connection, table: sa.Table) -> None:
        """Drop the triggers and function of ``table`` (ORM capture takes over)."""
        for statement in drop_statements(table):
            connection.execute(statement)

    @staticmethod
    def _check(connection: Connection, name: str) -> None:
        if connection.dialect.name != "postgresql":
            raise _not_postgresql(name, connection.dialect)

    # -- the ORM side ----------------------------------------------------------------

    def before_flush(self, uow: UnitOfWork, session: orm.Session) -> None:
        """Hand the transaction row's values to the database before versioned writes.

        Runs only when the flush writes a row of a trigger-versioned table, and sends
        the values only while the transaction has no row yet and they changed since
        they were last sent.
        """
        name = self._flushed_model(session)
        if name is None:
            return
        connection = session.connection()
        self._check(connection, name)
        if uow.known_transaction_id is not None:
            return
        values = Writer(uow, session).transaction_row_values()
        meta = self._meta(uow)
        self._push(connection, values, meta, uow.info)

    def _meta(self, uow: UnitOfWork) -> dict[str, Any]:
        context = current_context()
        if context is None or not context.meta:
            return {}
        if self._plugin_table("meta") is None:
            raise unstored_meta(context.meta)
        return {k: None if v is None else str(v) for k, v in context.meta.items()}

    def _push(
        self,
        connection: Connection,
        values: Mapping[str, Any],
        meta: Mapping[str, Any],
        memory: dict[str, Any],
    ) -> None:
        compared = {k: v for k, v in values.items() if k != "issued_at"}
        pushed = (_json(compared), _json(meta))
        # Nothing to tell (no context, no metadata): nothing is sent, and the row's
        # issued_at is the database's clock (the trigger's default).
        if memory.get(_PUSHED, _NOTHING)[0:2] == pushed:
            return
        connection.execute(
            _SET,
            {
                "name_context": GUC_CONTEXT,
                "context": _json(values),
                "name_meta": GUC_META,
                "meta": _json(meta),
            },
        )
        memory[_PUSHED] = (*pushed, dict(values))
        connection.info[_CONN_PUSHED] = (connection.get_transaction(), pushed)

    def _flushed_model(self, session: orm.Session) -> str | None:
        """The name of a trigger-versioned model the session is about to write."""
        for collection in (session.new, session.dirty, session.deleted):
            for obj in collection:
                mapper = sa.inspect(obj).mapper
                model = self.manager.model_for_mapper(mapper)
                if model is not None and model.options.native_versioning:
                    return str(model.name)
        return None

    def after_flush(self, uow: UnitOfWork, session: orm.Session) -> None:
        """Learn, when it is next read, the id of the transaction row the triggers
        wrote, or moved the transaction to (``chronicle_<transaction>_restamp``): no
        query until something asks for it."""
        connection = uow.connection or session.connection()
        uow.look_up_later(lambda looked_up: self._learn_transaction_id(looked_up, connection))

    def _learn_transaction_id(self, uow: UnitOfWork, connection: Connection) -> None:
        session = uow.session_ref()
        if session is None or connection.closed or not connection.in_transaction():
            return
        value = connection.execute(_GET_ID, {"name": GUC_TRANSACTION_ID}).scalar()
        if not value or int(value) == uow.known_transaction_id:
            return
        if uow.known_transaction_id is None:
            pushed = uow.info.get(_PUSHED)
            values = dict(pushed[2]) if pushed else {}
        else:
            values = uow.transaction_values
        uow.adopt_transaction(int(value), values, session)

    def transaction_opened(self, connection: Connection, tx_id: int) -> None:
        """The ORM wrote the transaction row: the triggers use its id too."""
        if connection.dialect.name == "postgresql":
            connection.execute(_SET_ID, {"name": GUC_TRANSACTION_ID, "value": str(tx_id)})

    # -- Core statements -------------------------------------------------------------

    def before_execute(
        self, conn: Connection, clauseelement: Any, multiparams: Any, params: Any, options: Any
    ) -> None:
        """Hand the versioning context to the database before a Core write."""
        context = current_context()
        if context is None or conn.dialect.name != "postgresql":
            return
        if isinstance(clauseelement, sa.Select) or not _writes(clauseelement):
            return
        root = conn.get_transaction()
        previous = conn.info.get(_CONN_PUSHED)
        if previous is not None and previous[0] is root and root is not None:
            return
        values = dict(context.transaction_values())
        meta = self._meta_of(context)
        memory: dict[str, Any] = {}
        self._push(conn, values, meta, memory)

    def _meta_of(self, context: Any) -> dict[str, Any]:
        if not context.meta or self._plugin_table("meta") is None:
            return {}
        return {k: None if v is None else str(v) for k, v in context.meta.items()}


def _writes(statement: Any) -> bool:
    if isinstance(statement, (sa.Insert, sa.Update, sa.Delete)):
        return True
    if isinstance(statement, str):
        return bool(_WRITES.match(statement))
    if isinstance(statement, sa.TextClause):
        return bool(_WRITES.match(statement.text))
    return False


def _key_pairs(model: VersionedModel, i: int, j: int) -> tuple[tuple[str, str], ...]:
    """(key column of table ``i``, key column of table ``j``) of ``model``, matched by
    their position in the mapper's primary key."""
    specs, positions = model.specs, model.pk_positions
    at_j = {p: col.name for (col, _), p in zip(specs[j].pk, positions[j], strict=True)}
    return tuple((col.name, at_j[p]) for (col, _), p in zip(specs[i].pk, positions[i], strict=True))


def _owner_name(model: VersionedModel, spec: VersionTableSpec) -> str:
    """The name of the class that owns ``spec``'s table in ``model``'s hierarchy."""
    for mapper in model.mapper.iterate_to_root():
        if mapper.local_table is spec.parent:
            return mapper.class_.__name__
    return model.name


# -- SQLAlchemy-Continuum's functions ---------------------------------------------------


def _connection(conn: Any) -> Connection:
    """A Connection from a Connection or a Session."""
    if isinstance(conn, orm.Session):
        return conn.connection()
    return conn  # type: ignore[no-any-return]


def _reflect(
    connection: Connection,
    name: str,
    schema: str | None,
    function: str,
    version_of: str | None = None,
) -> sa.Table:
    """Table ``name`` as the database has it; our error naming it when it does not
    exist (``version_of``: the table it is the version table of)."""
    try:
        return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=connection)
    except sa.exc.NoSuchTableError:
        where = f" in schema {schema!r}" if schema else ""
        if version_of is not None:
            raise TableNotVersioned(
                f"{function}(): table {version_of!r} has no version table {name!r}"
                f"{where} in the database; create it first (an Alembic migration, or "
                f"metadata.create_all())."
            ) from None
        raise ConfigurationError(
            f"{function}(): there is no table {name!r}{where} in the database."
        ) from None


def create_trigger(
    conn: Any,
    table: sa.Table,
    transaction_column_name: str = "transaction_id",
    operation_type_column_name: str = "operation_type",
    version_table_name_format: str = "%s_version",
    excluded_columns: Sequence[str] | None = None,
    use_property_mod_tracking: bool = True,
    end_transaction_column_name: str | None = None,
    *,
    transaction_table_name: str = "transaction",
    schema: str | None = None,
    entity_name: str | None = None,
    version_table_name: str | None = None,
    association: bool | None = None,
) -> None:
    """Create the versioning triggers of ``table``.

    For a table versioned with ``native_versioning=True`` by a configured manager
    (its models are mapped), the triggers are the ones ``metadata.create_all``
    makes, and the other arguments are not used. Otherwise the version table
    (``version_table_name_format % table.name``) and the transaction table are read
    from the database. Every column both tables have is
    versioned except ``excluded_columns``; with ``use_property_mod_tracking``, a
    version column named ``<column>_mod`` is maintained as its flag. The validity
    strategy is used when the version table has ``end_transaction_column_name``
    (default ``end_transaction_id``). ``entity_name`` is the class name recorded in
    ``transaction_changes`` (TransactionChangesPlugin); none is recorded without it.
    ``version_table_name`` names the version table outright (instead of
    ``version_table_name_format``). ``association`` versions ``INSERT`` and
    ``DELETE`` only, as for an association table (default: when ``table`` has no
    primary key). ``conn`` is a Connection or a Session.
    """
    connection = _connection(conn)
    if connection.dialect.name != "postgresql":
        raise _not_postgresql(f"Table {table.name!r}", connection.dialect)
    native = _CAPTURES.get(table)
    if native is not None and table in native.specs:
        native.install_transaction_function(connection)
        native.install(connection, table)
        return
    schema = schema if schema is not None else table.schema
    live = _reflect(connection, table.name, schema, "create_trigger")
    version = _reflect(
        connection,
        version_table_name or version_table_name_format % table.name,
        schema,
        "create_trigger",
        version_of=table.name,
    )
    transaction = _reflect(connection, transaction_table_name, schema, "create_trigger")
    excluded = set(excluded_columns or ())
    columns = tuple(
        (c.name, c.name) for c in live.columns if c.name in version.c and c.name not in excluded
    )
    key_columns = live.primary_key.columns or live.columns
    end = end_transaction_column_name or "end_transaction_id"
    mods: tuple[tuple[str, str], ...] = ()
    if use_property_mod_tracking:
        mods = tuple(
            (name, f"{name}_mod")
            for name, _ in columns
            if f"{name}_mod" in version.c and not live.c[name].primary_key
        )
    inspector = sa.inspect(connection)
    plugin_tables = {
        suffix: _reflect(
            connection, f"{transaction_table_name}_{suffix}", schema, "create_trigger"
        )
        if inspector.has_table(f"{transaction_table_name}_{suffix}", schema=schema)
        else None
        for suffix in ("meta", "changes")
    }
    spec = TriggerSpec(
        table=live,
        version=version,
        columns=columns,
        key=tuple((c.name, c.name) for c in key_columns),
        transaction_column=transaction_column_name,
        operation_column=operation_type_column_name,
        end_transaction_column=end if end in version.c else None,
        mod_columns=mods,
        transaction_table=transaction,
        entity_name=entity_name,
        association=not live.primary_key.columns if association is None else association,
        records_entities=plugin_tables["changes"] is not None,
    )
    args = (transaction, plugin_tables["meta"], plugin_tables["changes"])
    connection.execute(CreateTransactionFunction(*args))
    connection.execute(CreateRestampFunction(*args))
    for statement in create_statements(spec):
        connection.execute(statement)


def drop_trigger(conn: Any, table_name: str, *, schema: str | None = None) -> None:
    """Drop the versioning triggers (ours and SQLAlchemy-Continuum's) and the function
    of table ``table_name``."""
    connection = _connection(conn)
    table = sa.Table(table_name, sa.MetaData(), schema=schema)
    for statement in drop_statements(table):
        connection.execute(statement)


def sync_trigger(
    conn: Any,
    table_name: str,
    *,
    schema: str | None = None,
    version_table_name_format: str = "%s_version",
    **kwargs: Any,
) -> None:
    """Re-create the triggers of the table versioned by ``table_name`` (a version
    table's name), after a migration changed either table.

    Parent columns missing from the version table are excluded; other keyword
    arguments go to :func:`create_trigger`.
    """
    connection = _connection(conn)
    suffix = version_table_name_format.replace("%s", "")
    prefix, _, rest = version_table_name_format.partition("%s")
    parent_name = table_name
    if table_name.startswith(prefix) and table_name.endswith(rest) and (prefix or rest):
        parent_name = table_name[len(prefix) : len(table_name) - len(rest)]
    elif suffix and suffix in table_name:
        parent_name = table_name.replace(suffix, "")
    version = _reflect(connection, table_name, schema, "sync_trigger", version_of=parent_name)
    parent = _reflect(connection, parent_name, schema, "sync_trigger")
    excluded = [c.name for c in parent.columns if c.name not in version.c]
    excluded += kwargs.pop("excluded_columns", None) or ()
    drop_trigger(connection, parent_name, schema=schema)
    create_trigger(
        connection,
        parent,
        version_table_name_format=version_table_name_format,
        excluded_columns=excluded,
        schema=schema,
        **kwargs,
    )
