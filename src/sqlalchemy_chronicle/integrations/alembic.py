"""Alembic support: version tables in ``alembic revision --autogenerate``.

Version tables, association version tables, the transaction table and the tables of
plugins are ordinary :class:`~sqlalchemy.schema.Table` objects in the models'
:class:`~sqlalchemy.schema.MetaData`, but they are built when SQLAlchemy configures the
mappers, not when the models are imported. Give Alembic the metadata through
:func:`versioned_metadata` in ``env.py`` (one line)::

    from myapp.models import Base
    from sqlalchemy_chronicle.integrations.alembic import versioned_metadata

    target_metadata = versioned_metadata(Base.metadata)

:func:`versioned_metadata` configures the mappers, so every table of ours exists
before Alembic compares. Importing this module also registers an autogenerate
comparator that guards against the opposite: when a mapper is still unconfigured
once Alembic compares (models imported after ``env.py`` read the metadata, or
``target_metadata = Base.metadata`` without this module's helper), the comparator
raises :class:`~sqlalchemy_chronicle.exc.ImproperlyConfigured` naming the missing
tables, instead of letting Alembic write a migration that drops them.

The helpers for a migration's ``upgrade()`` (``backfill``, ``update_end_tx_column``,
``update_property_mod_flags``) live in :mod:`sqlalchemy_chronicle.schema` and are
re-exported here. Alembic stays optional: nothing in the core imports this module.

Importing this module also registers three operations for tables versioned with
``native_versioning=True`` (PostgreSQL triggers): ``op.create_version_trigger``,
``op.drop_version_trigger`` and ``op.sync_version_trigger``, each with its reverse
for downgrades and its rendering in autogenerate. A comparator writes them: a create
for a table that is newly versioned by triggers (after its tables are created), a
sync after any change to such a table, its version table or the transaction table
(in a downgrade, after the changes are undone), and a drop, first, for a versioned table
that still has its triggers but is no longer versioned by them::

    op.add_column("article", sa.Column("summary", sa.String(100)))
    op.add_column("article_version", sa.Column("summary", sa.String(100)))
    op.sync_version_trigger("article", entity_name="Article")

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from alembic.autogenerate import comparators, renderers
from alembic.autogenerate.render import render_op
from alembic.operations import Operations, ops
from alembic.operations.ops import MigrateOperation, OpContainer

from ..capture.native.postgresql import create_trigger, native_capture_of, trigger_spec
from ..exc import ConfigurationError, ImproperlyConfigured, NotSupportedError
from ..schema.maintenance import backfill, update_end_tx_column, update_property_mod_flags
from ..schema.tables import registered_spec
from ..schema.triggers import TriggerSpec, drop_statements, trigger_name

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps
    from sqlalchemy.engine import Connection

try:  # Alembic 1.18+: run after Alembic's own comparators, whatever their order
    from alembic.util import DispatchPriority

    _LAST: dict[str, Any] = {"priority": DispatchPriority.LAST}
except ImportError:  # pragma: no cover - older Alembic runs comparators in registration order
    _LAST = {}

__all__ = [
    "CreateVersionTriggerOp",
    "DropVersionTriggerOp",
    "SyncVersionTriggerOp",
    "SyncedTableOps",
    "backfill",
    "update_end_tx_column",
    "update_property_mod_flags",
    "versioned_metadata",
]


def versioned_metadata(metadata: sa.MetaData) -> sa.MetaData:
    """``metadata`` with every version, transaction and plugin table built into it.

    Configures the mappers (``sqlalchemy.orm.configure_mappers()``), which builds the
    tables of every versioned model imported so far, and returns ``metadata`` for
    ``target_metadata`` in Alembic's ``env.py``. Import the models first.
    """
    sa.orm.configure_mappers()
    return metadata


def _metadatas(autogen_context: AutogenContext) -> list[sa.MetaData]:
    target = autogen_context.metadata
    if target is None:
        return []
    if isinstance(target, sa.MetaData):
        return [target]
    return list(target)


@comparators.dispatch_for("schema")
def _require_configured_mappers(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: Any
) -> Any:
    """Refuse to autogenerate while a mapper is unconfigured (its tables are missing)."""
    metadatas = _metadatas(autogen_context)
    before = [set(m.tables) for m in metadatas]
    sa.orm.configure_mappers()
    missing = sorted(
        name for m, known in zip(metadatas, before, strict=True) for name in m.tables
        if name not in known
    )
    if missing:
        raise ImproperlyConfigured(
            "Alembic compared the database with a metadata that lacked the tables "
            f"{', '.join(missing)}: the mappers were not configured yet, so the migration "
            "would have dropped them. In env.py set target_metadata = "
            "versioned_metadata(Base.metadata) (from sqlalchemy_chronicle.integrations."
            "alembic) after importing every model."
        )
    return None


# -- operations on the version triggers of natively versioned tables --------------------

#: The keyword arguments of the operations, with the values they default to (those
#: of :func:`~sqlalchemy_chronicle.dialects.postgresql.create_trigger`).
_OPTION_DEFAULTS: dict[str, Any] = {
    "version_table_name": None,
    "transaction_table_name": "transaction",
    "transaction_column_name": "transaction_id",
    "operation_type_column_name": "operation_type",
    "end_transaction_column_name": None,
    "excluded_columns": None,
    "use_property_mod_tracking": True,
    "entity_name": None,
    "association": None,
}


class _VersionTriggerOp(MigrateOperation):
    """An operation on the version triggers of one table (base class)."""

    #: The name of the ``op.`` method (set by each subclass).
    name = ""

    def __init__(self, table_name: str, *, schema: str | None = None, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTION_DEFAULTS))
        if unknown:
            raise ConfigurationError(
                f"op.{self.name}({table_name!r}): unknown option(s) {', '.join(unknown)}; "
                f"the options are {', '.join(_OPTION_DEFAULTS)}."
            )
        self.table_name = table_name
        self.schema = schema
        #: The options given, those equal to their default left out.
        self.options = {k: v for k, v in options.items() if v != _OPTION_DEFAULTS[k]}

    def _same(self, cls: type[_Op]) -> _Op:
        return cls(self.table_name, schema=self.schema, **self.options)

    def to_diff_tuple(self) -> tuple[Any, ...]:
        return (self.name, self.schema, self.table_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.table_name!r}, schema={self.schema!r})"


_Op = TypeVar("_Op", bound=_VersionTriggerOp)


class CreateVersionTriggerOp(_VersionTriggerOp):
    """``op.create_version_trigger(table_name, schema=None, **options)``.

    Creates (or replaces) the function and triggers that version ``table_name`` on
    PostgreSQL, and the transaction function they call. When ``env.py``'s
    ``target_metadata`` versions the table with ``native_versioning=True`` and the
    database has every column that model versions, the triggers are those
    ``metadata.create_all()`` makes; otherwise they are built from the tables found in
    the database, with ``options`` (the keyword arguments of
    :func:`~sqlalchemy_chronicle.dialects.postgresql.create_trigger`), as an older
    migration needs. Its reverse is :class:`DropVersionTriggerOp`.
    """

    name = "create_version_trigger"

    @classmethod
    def create_version_trigger(
        cls, operations: Operations, table_name: str, *, schema: str | None = None,
        **options: Any,
    ) -> None:
        """Create the version triggers of natively versioned table ``table_name``."""
        operations.invoke(cls(table_name, schema=schema, **options))

    def reverse(self) -> DropVersionTriggerOp:
        return self._same(DropVersionTriggerOp)


class DropVersionTriggerOp(_VersionTriggerOp):
    """``op.drop_version_trigger(table_name, schema=None, **options)``.

    Drops the version triggers and function of ``table_name`` (SQLAlchemy-Continuum's
    trigger too); ORM capture versions it again. ``options`` are only kept for the
    reverse, :class:`CreateVersionTriggerOp`.
    """

    name = "drop_version_trigger"

    @classmethod
    def drop_version_trigger(
        cls, operations: Operations, table_name: str, *, schema: str | None = None,
        **options: Any,
    ) -> None:
        """Drop the version triggers of table ``table_name``."""
        operations.invoke(cls(table_name, schema=schema, **options))

    def reverse(self) -> CreateVersionTriggerOp:
        return self._same(CreateVersionTriggerOp)


class SyncVersionTriggerOp(_VersionTriggerOp):
    """``op.sync_version_trigger(table_name, schema=None, **options)``.

    Re-creates the version triggers of ``table_name`` after a migration changed it or
    its version table (what :class:`CreateVersionTriggerOp` does, run where the
    tables changed). Its reverse is itself: a downgrade syncs again once it has
    undone the changes.
    """

    name = "sync_version_trigger"

    @classmethod
    def sync_version_trigger(
        cls, operations: Operations, table_name: str, *, schema: str | None = None,
        **options: Any,
    ) -> None:
        """Re-create the version triggers of table ``table_name``."""
        operations.invoke(cls(table_name, schema=schema, **options))

    def reverse(self) -> SyncVersionTriggerOp:
        return self._same(SyncVersionTriggerOp)


class SyncedTableOps(OpContainer):
    """Autogenerated changes to natively versioned tables (their tables, version
    tables, the transaction table), followed by a :class:`SyncVersionTriggerOp` for
    each: its reverse undoes the changes and then syncs, so a downgrade leaves working
    triggers too."""

    def __init__(
        self, ops: Sequence[MigrateOperation], syncs: Sequence[SyncVersionTriggerOp]
    ) -> None:
        super().__init__([*ops, *syncs])
        self.syncs = list(syncs)

    def reverse(self) -> SyncedTableOps:
        changes = [op.reverse() for op in reversed(self.ops) if op not in self.syncs]
        return SyncedTableOps(changes, [sync.reverse() for sync in self.syncs])


def _target_table(operations: Operations, op: _VersionTriggerOp) -> sa.Table | None:
    """The natively versioned table named by ``op`` in ``env.py``'s target metadata."""
    target = operations.migration_context.opts.get("target_metadata")
    metadatas = [target] if isinstance(target, sa.MetaData) else list(target or ())
    default = operations.migration_context.dialect.default_schema_name
    for metadata in metadatas:
        for table in metadata.tables.values():
            if (
                table.name == op.table_name
                and (table.schema or default) == (op.schema or default)
                and native_capture_of(table) is not None
            ):
                return table
    return None


def _fits(connection: Connection, table: sa.Table) -> bool:
    """Whether the database's tables have every column the triggers of ``table``
    (as the models version it) use."""
    capture = native_capture_of(table)
    assert capture is not None
    spec = capture.specs[table]
    inspector = sa.inspect(connection)
    for written in (spec, *[related for related, _ in spec.related]):
        needed = {
            written.table: {a for a, _ in written.columns},
            written.version: {v for _, v in written.columns}
            | {m for _, m in written.mod_columns}
            | {written.transaction_column, written.operation_column}
            | ({written.end_transaction_column} if written.end_transaction_column else set()),
        }
        for t, names in needed.items():
            if not inspector.has_table(t.name, schema=t.schema):
                return False
            found = {c["name"] for c in inspector.get_columns(t.name, schema=t.schema)}
            if not names <= found:
                return False
    return True


def _install(operations: Operations, op: _VersionTriggerOp) -> None:
    table = _target_table(operations, op)
    context = operations.migration_context
    if context.dialect.name != "postgresql":
        raise NotSupportedError(
            f"op.{op.name}({op.table_name!r}): version triggers need PostgreSQL; the "
            f"database is {context.dialect.name!r}."
        )
    if table is not None and (context.as_sql or _fits(operations.get_bind(), table)):
        capture = native_capture_of(table)
        assert capture is not None
        for statement in capture.create_ddl(table):
            operations.execute(statement)
        return
    if context.as_sql:
        raise NotSupportedError(
            f"op.{op.name}({op.table_name!r}) in --sql mode needs the table in env.py's "
            "target_metadata, versioned with native_versioning=True: without a database "
            "connection the tables cannot be read."
        )
    options = dict(op.options)
    create_trigger(
        operations.get_bind(),
        sa.Table(op.table_name, sa.MetaData(), schema=op.schema),
        schema=op.schema,
        **options,
    )


def _create_version_trigger(operations: Operations, op: CreateVersionTriggerOp) -> None:
    _install(operations, op)


def _sync_version_trigger(operations: Operations, op: SyncVersionTriggerOp) -> None:
    _install(operations, op)


def _drop_version_trigger(operations: Operations, op: DropVersionTriggerOp) -> None:
    table = sa.Table(op.table_name, sa.MetaData(), schema=op.schema)
    for statement in drop_statements(table):
        operations.execute(statement)


# -- rendering ---------------------------------------------------------------------------


def _render_version_trigger_op(autogen_context: AutogenContext, op: _VersionTriggerOp) -> str:
    prefix = autogen_context.opts.get("alembic_module_prefix") or "op."
    args = [repr(op.table_name)]
    if op.schema is not None:
        args.append(f"schema={op.schema!r}")
    args += [f"{k}={v!r}" for k, v in op.options.items()]
    return f"{prefix}{op.name}({', '.join(args)})"


def _render_synced_table_ops(autogen_context: AutogenContext, op: SyncedTableOps) -> list[str]:
    return [line for inner in op.ops for line in render_op(autogen_context, inner)]


# -- the comparator ----------------------------------------------------------------------

_INSTALLED = sa.text(
    "SELECT 1 FROM pg_catalog.pg_trigger t "
    "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = :schema AND c.relname = :table AND t.tgname = :trigger"
)


def _options(table: sa.Table, spec: TriggerSpec) -> dict[str, Any]:
    """The keyword arguments that make ``create_trigger`` rebuild ``spec`` from the
    database's tables."""
    versioned = {a for a, _ in spec.columns}
    flagged = {a for a, _ in spec.mod_columns}
    version_names = {c.name for c in spec.version.columns}
    options: dict[str, Any] = {
        "version_table_name": (
            spec.version.name if spec.version.name != f"{table.name}_version" else None
        ),
        "transaction_table_name": spec.transaction_table.name,
        "transaction_column_name": spec.transaction_column,
        "operation_type_column_name": spec.operation_column,
        "end_transaction_column_name": (
            spec.end_transaction_column
            if spec.end_transaction_column not in (None, "end_transaction_id")
            else None
        ),
        "excluded_columns": sorted(
            c.name for c in table.columns if c.name not in versioned and c.name in version_names
        ) or None,
        # Without the plugin, no "<column>_mod" version column is a flag.
        "use_property_mod_tracking": bool(flagged) or not any(
            f"{c.name}_mod" in version_names for c in table.columns
        ),
        "entity_name": spec.entity_name,
        "association": True if spec.association and table.primary_key.columns else None,
    }
    return {k: v for k, v in options.items() if v != _OPTION_DEFAULTS[k]}


def _key(schema: str | None, name: str, default: str | None) -> tuple[str | None, str]:
    return (None if schema == default else schema, name)


def _installed(connection: Connection, table: sa.Table, default: str | None) -> bool:
    """Whether ``table`` has its version triggers in the database."""
    found = connection.execute(
        _INSTALLED,
        {
            "schema": table.schema or default,
            "table": table.name,
            "trigger": trigger_name(table.name, "INSERT"),
        },
    ).first()
    return found is not None


def _no_longer_native(
    autogen_context: AutogenContext, connection: Connection, default: str | None
) -> list[MigrateOperation]:
    """A drop of the triggers of each table that the models version by ORM capture
    but that still has its version triggers (``native_versioning`` turned off),
    association tables included.

    The metadata says which tables are versioned (the version table specs registered
    in it); the class each was built for leads to its manager, whose transaction table
    and the class's name give the options that re-create the triggers in a downgrade.
    An association table's spec has no class: its manager is the one that versions it
    (``association_tables``), and it is re-created as an association (no entity name).
    """
    drops: list[MigrateOperation] = []
    for metadata in _metadatas(autogen_context):
        specs = [
            (table, spec)
            for table in metadata.tables.values()
            if (spec := registered_spec(table)) is not None and native_capture_of(table) is None
        ]
        managers = {
            id(manager): manager
            for _, spec in specs
            if spec.mapper is not None
            and (manager := getattr(spec.mapper.class_, "__versioning_manager__", None))
        }
        for table, spec in specs:
            if spec.mapper is None:
                manager = next(
                    (m for m in managers.values() if table in m.association_tables), None
                )
                owner_name = None
            else:
                manager = getattr(spec.mapper.class_, "__versioning_manager__", None)
                owner = next(
                    (m for m in spec.mapper.iterate_to_root() if m.local_table is table),
                    spec.mapper,
                )
                owner_name = owner.class_.__name__
            if manager is None or not _installed(connection, table, default):
                continue
            was = trigger_spec(
                spec, manager.transaction_table, owner_name, association=spec.mapper is None
            )
            schema = _key(table.schema, table.name, default)[0]
            drops.append(DropVersionTriggerOp(table.name, schema=schema, **_options(table, was)))
    return drops


def _compare_version_triggers(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: Any
) -> Any:
    """Create the triggers of a newly natively versioned table, sync those of a
    natively versioned table after a change to it or to its version table, and drop
    those of a table no longer versioned natively."""
    connection = autogen_context.connection
    if connection is None or connection.dialect.name != "postgresql":
        return None
    default = connection.dialect.default_schema_name
    # First in the upgrade (before changes its triggers may not survive), so last in
    # the downgrade: the triggers are created again once the tables are as they were.
    upgrade_ops.ops[:0] = _no_longer_native(autogen_context, connection, default)
    natives = [
        (table, capture.specs[table])
        for metadata in _metadatas(autogen_context)
        for table in metadata.tables.values()
        if (capture := native_capture_of(table)) is not None
    ]
    if not natives:
        return None
    created: set[tuple[str | None, str]] = set()
    changed: dict[tuple[str | None, str], list[int]] = {}
    for i, op in enumerate(upgrade_ops.ops):
        if isinstance(op, ops.CreateTableOp):
            created.add(_key(op.schema, op.table_name, default))
        elif isinstance(op, ops.ModifyTableOps) and not op.is_empty():
            changed.setdefault(_key(op.schema, op.table_name, default), []).append(i)
    creates: list[MigrateOperation] = []
    syncs: list[SyncVersionTriggerOp] = []
    moved: set[int] = set()
    for table, spec in natives:
        key = _key(table.schema, table.name, default)
        op_args = {"schema": key[0], **_options(table, spec)}
        installed = key not in created and _installed(connection, table, default)
        if not installed:
            if key in created or sa.inspect(connection).has_table(table.name, schema=key[0]):
                creates.append(CreateVersionTriggerOp(table.name, **op_args))
            continue
        tables = [
            key,
            _key(spec.version.schema, spec.version.name, default),
            _key(spec.transaction_table.schema, spec.transaction_table.name, default),
        ]
        positions = {i for t in tables for i in changed.get(t, ())}
        if positions:
            moved |= positions
            syncs.append(SyncVersionTriggerOp(table.name, **op_args))
    kept: list[MigrateOperation] = [op for i, op in enumerate(upgrade_ops.ops) if i not in moved]
    if syncs:
        # Where the last of them was: after every table they depend on.
        at = sum(1 for i in range(max(moved)) if i not in moved)
        inner = [upgrade_ops.ops[i] for i in sorted(moved)]
        kept.insert(at, SyncedTableOps(inner, syncs))
    upgrade_ops.ops[:] = kept + creates
    return None


def _register_operations() -> None:
    """Register the Alembic operations of natively versioned tables, the Alembic way.

    ``op.create_version_trigger``, ``op.drop_version_trigger`` and
    ``op.sync_version_trigger`` (``Operations.register_operation`` and
    ``Operations.implementation_for``), their renderers for autogenerate
    (``renderers.dispatch_for``), and the comparator (``comparators.dispatch_for``)
    that emits a create for a newly natively versioned table and a sync after any
    change to one. Runs once, when this module is imported.
    """
    for op_cls in (CreateVersionTriggerOp, DropVersionTriggerOp, SyncVersionTriggerOp):
        Operations.register_operation(op_cls.name)(op_cls)
        renderers.dispatch_for(op_cls)(_render_version_trigger_op)
    Operations.implementation_for(CreateVersionTriggerOp)(_create_version_trigger)
    Operations.implementation_for(SyncVersionTriggerOp)(_sync_version_trigger)
    Operations.implementation_for(DropVersionTriggerOp)(_drop_version_trigger)
    renderers.dispatch_for(SyncedTableOps)(_render_synced_table_ops)
    # After Alembic's own comparators: they fill upgrade_ops first.
    comparators.dispatch_for("schema", **_LAST)(_compare_version_triggers)


_register_operations()
