"""Pure builders of the version tables and the transaction table.

Given a parent :class:`~sqlalchemy.schema.Table` and the resolved options of the
model mapped to it, :func:`build_version_table` returns the version table together
with a :class:`VersionTableSpec`: the column-to-column map that the write path
and the readers use. Nothing here executes SQL.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement

from ..config import ClassOptions, IndexLayout, Strategy
from ..exc import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper

    from ..hooks import PluginCollection

__all__ = [
    "MOD_COLUMN_INFO_KEY",
    "TX_ID_TYPE",
    "IdDefaultFromSequence",
    "TableBuilder",
    "VersionTableSpec",
    "as_utc_naive",
    "build_transaction_table",
    "build_version_table",
    "registered_spec",
]

#: The type of transaction ids: BIGINT, but INTEGER on SQLite so that the id
#: autoincrements there (SQLite only autoincrements an ``INTEGER PRIMARY KEY``).
TX_ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Key of ``MetaData.info`` under which the version table specs built into that
#: metadata are registered, by parent table. Never ``Table.info``: Alembic renders that
#: into migration files, and a spec is not Python source.
INFO_KEY = "sqlalchemy_chronicle"

#: Key of ``Column.info`` that marks a ``*_mod`` flag column of a version table; its
#: value is the attribute key of the column it tracks.
MOD_COLUMN_INFO_KEY = "sqlalchemy_chronicle.mod_of"


def _registry(metadata: sa.MetaData) -> dict[sa.Table, VersionTableSpec]:
    registry: dict[sa.Table, VersionTableSpec] = metadata.info.setdefault(INFO_KEY, {})
    return registry


def registered_spec(table: sa.Table) -> VersionTableSpec | None:
    """The spec of the version table built for parent (or association) ``table``."""
    return _registry(table.metadata).get(table)


@dataclass(frozen=True, eq=False)
class VersionTableSpec:
    """How one parent table maps onto its version table."""

    parent: sa.Table
    version: sa.Table
    #: (parent column, version column) for every versioned column, primary key included.
    columns: tuple[tuple[sa.Column[Any], sa.Column[Any]], ...]
    #: (parent column, version column) for the parent's primary key, in order.
    pk: tuple[tuple[sa.Column[Any], sa.Column[Any]], ...]
    tx: sa.Column[Any]
    end_tx: sa.Column[Any] | None
    op: sa.Column[Any]
    strategy: Strategy
    #: What the write path built for this table and reuses (its prepared statements).
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The mapper of the versioned class the table was built for (None for an
    #: association table): the way from the metadata to the class and its manager.
    mapper: Mapper[Any] | None = field(default=None, repr=False)

    @property
    def version_pk(self) -> tuple[sa.Column[Any], ...]:
        """The version table's copy of the parent key (without the transaction column)."""
        return tuple(v for _, v in self.pk)


class TableBuilder:
    """Builds one version table; handed to ``after_build_version_table_columns`` hooks."""

    def __init__(
        self,
        parent_table: sa.Table,
        options: ClassOptions,
        mapper: Mapper[Any] | None = None,
        model_name: str | None = None,
        association: bool = False,
    ) -> None:
        self.parent_table = parent_table
        self.options = options
        self.mapper = mapper
        self.model_name = model_name or parent_table.name
        #: True for the ``secondary`` table of a many-to-many relationship: every column
        #: is versioned, and a table without a primary key is keyed by all its columns.
        self.association = association

    @property
    def table_name(self) -> str:
        return self.options.table_name % self.parent_table.name

    def _property_key(self, column: sa.Column[Any]) -> str:
        """The attribute name of ``column``: that of the mapper owning the table or, for
        a column that only a single-table subclass maps (e.g. a ``declared_attr`` on the
        subclass), that subclass's."""
        if self.mapper is not None:
            for mapper in self.mapper.self_and_descendants:
                if mapper.local_table is not self.parent_table and mapper is not self.mapper:
                    continue  # a subclass with a table of its own does not map this one
                try:
                    return mapper.get_property_by_column(column).key
                except orm.exc.UnmappedColumnError:
                    continue
        return column.key

    def versioned_columns(self) -> list[tuple[str, sa.Column[Any]]]:
        """(property key, parent column) for each parent column that is versioned."""
        if self.association:
            return [(column.key, column) for column in self.parent_table.columns]
        result = []
        for column in self.parent_table.columns:
            key = self._property_key(column)
            if not column.primary_key and self.options.is_excluded(key):
                continue
            result.append((key, column))
        return result

    def is_key(self, column: sa.Column[Any]) -> bool:
        """Whether ``column`` is part of the key that identifies a row of the parent."""
        if self.association and not self.parent_table.primary_key.columns:
            return True
        return bool(column.primary_key)

    def copy_column(self, key: str, column: sa.Column[Any]) -> sa.Column[Any]:
        """A plain copy of ``column`` for the version table.

        Defaults, ``onupdate``, identity, computed expressions, uniqueness and foreign
        keys are dropped: a version row stores the values, it does not make them.
        """
        return sa.Column(
            column.name,
            column.type,
            key=key,
            primary_key=self.is_key(column),
            nullable=not self.is_key(column),
            # Only a key column could autoincrement; saying so on the others makes
            # Alembic repeat it in every alter_column (and warn outside MySQL).
            autoincrement=False if self.is_key(column) else "auto",
            index=bool(column.index) or None,
            comment=column.comment,
        )

    def build(
        self, metadata: sa.MetaData, plugins: PluginCollection | None = None
    ) -> VersionTableSpec:
        options = self.options
        if not self.parent_table.primary_key.columns and not self.association:
            raise ConfigurationError(
                f"Versioned model {self.model_name} has no primary key; a version table "
                f"needs one to key its rows."
            )
        pairs = [
            (column, self.copy_column(key, column)) for key, column in self.versioned_columns()
        ]
        names = {v.name for _, v in pairs}
        internal = [options.transaction_column_name, options.operation_type_column_name]
        if options.strategy is Strategy.VALIDITY:
            internal.append(options.end_transaction_column_name)
        for name in internal:
            if name in names:
                raise ConfigurationError(
                    f"Versioned model {self.model_name} has a column named {name!r}, which "
                    f"the version table needs for itself; set the option "
                    f"'transaction_column_name', 'end_transaction_column_name' or "
                    f"'operation_type_column_name' to another name."
                )
        tx = sa.Column(
            options.transaction_column_name,
            TX_ID_TYPE,
            primary_key=True,
            index=True,
            autoincrement=False,
        )
        # MINIMAL: no index on the end and the operation; each would be updated by every
        # version written or closed, for reads that the primary key serves.
        continuum = options.indexes is IndexLayout.CONTINUUM
        end_tx = (
            sa.Column(
                options.end_transaction_column_name, TX_ID_TYPE, nullable=True, index=continuum
            )
            if options.strategy is Strategy.VALIDITY
            else None
        )
        op = sa.Column(
            options.operation_type_column_name, sa.SmallInteger, nullable=False, index=continuum
        )
        columns: list[sa.Column[Any]] = [v for _, v in pairs]
        columns += [c for c in (tx, end_tx, op) if c is not None]
        if plugins is not None and not self.association:
            plugins.after_build_version_table_columns(self, columns)
        schema = options.schema if options.schema is not None else self.parent_table.schema
        version = sa.Table(
            self.table_name,
            metadata,
            *columns,
            schema=schema,
        )
        pk = tuple((p, v) for p, v in pairs if self.is_key(p))
        if continuum and options.create_composite_index:
            pk_cols = [v for _, v in pk]
            sa.Index(f"ix_{version.name}_pk_transaction_id", *pk_cols, tx.desc())
            if end_tx is not None:
                sa.Index(f"ix_{version.name}_pk_validity", *pk_cols, tx, end_tx)
        spec = VersionTableSpec(
            parent=self.parent_table,
            version=version,
            columns=tuple(pairs),
            pk=pk,
            tx=tx,
            end_tx=end_tx,
            op=op,
            strategy=options.strategy,
            mapper=self.mapper,
        )
        _registry(self.parent_table.metadata)[self.parent_table] = spec
        return spec


def build_version_table(
    parent_table: sa.Table,
    options: ClassOptions,
    metadata: sa.MetaData,
    *,
    mapper: Mapper[Any] | None = None,
    model_name: str | None = None,
    plugins: PluginCollection | None = None,
    association: bool = False,
) -> VersionTableSpec:
    """Build the version table of ``parent_table`` into ``metadata``."""
    builder = TableBuilder(parent_table, options, mapper, model_name, association=association)
    return builder.build(metadata, plugins)


def as_utc_naive(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` as ``issued_at`` stores time: naive UTC (SQLAlchemy-Continuum 2.0's
    convention). An aware datetime is converted to UTC; a naive one is taken as UTC
    already, whatever the local time zone (``TZ``) of the process."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def build_transaction_table(
    metadata: sa.MetaData,
    *,
    name: str = "transaction",
    schema: str | None = None,
    user_pk: sa.Column[Any] | None = None,
    remote_addr: bool = True,
    extra_columns: Sequence[sa.Column[Any]] = (),
) -> sa.Table:
    """Build the transaction table: one row per database transaction that versioned data."""
    # Ids come from the sequence <name>_id_seq, named in each INSERT, as in
    # SQLAlchemy-Continuum, whose tables give the column no default of its own (no SERIAL,
    # no AUTO_INCREMENT): so the tables it created take our rows unchanged. Databases
    # without sequences ignore it (SQLite: rowid). Tables an earlier sqlalchemy-chronicle
    # created have the same sequence on PostgreSQL (BIGSERIAL names it so); on MariaDB
    # they have AUTO_INCREMENT and no sequence, which the write path detects
    # (capture/transaction_ids.py).
    sequence = sa.Sequence(f"{name}_id_seq", schema=schema)
    columns: list[sa.Column[Any]] = [
        sa.Column("id", TX_ID_TYPE, sequence, primary_key=True, autoincrement=True),
        # Naive UTC (see as_utc_naive), written by the capture from Python's clock.
        sa.Column("issued_at", sa.DateTime),
    ]
    if remote_addr:
        columns.append(sa.Column("remote_addr", sa.String(50)))
    if user_pk is not None:
        columns.append(sa.Column("user_id", user_pk.type, sa.ForeignKey(user_pk), index=True))
    columns.extend(extra_columns)
    table = sa.Table(name, metadata, *columns, schema=schema)
    # On PostgreSQL the column also takes its default from the sequence, as the BIGSERIAL
    # of earlier versions did: SQL that inserts transaction rows itself (triggers, a
    # hand-written INSERT) needs no id. Alembic ignores server defaults of an
    # autoincrementing primary key on PostgreSQL, so autogenerate still finds Continuum's
    # tables (no default) equal. Not on MariaDB: Alembic would report the default there,
    # against Continuum's tables, when compare_server_default is on.
    sa.event.listen(
        table, "after_create", IdDefaultFromSequence("id").execute_if(dialect="postgresql")
    )
    return table


class IdDefaultFromSequence(ExecutableDDLElement):
    """``ALTER TABLE ... SET DEFAULT nextval(...)``: the column ``column_name`` of the
    table just created (``after_create``) takes its default from its ``Sequence``."""

    def __init__(self, column_name: str) -> None:
        self.column_name = column_name


@compiles(IdDefaultFromSequence, "postgresql")
def _compile_id_default(element: IdDefaultFromSequence, compiler: Any, **kw: Any) -> str:
    table = element.target  # the table being created
    assert isinstance(table, sa.Table)
    column = table.c[element.column_name]
    assert isinstance(column.default, sa.Sequence)
    preparer = compiler.preparer
    next_value = compiler.sql_compiler.process(column.default.next_value())
    return (
        f"ALTER TABLE {preparer.format_table(column.table)} "
        f"ALTER COLUMN {preparer.format_column(column)} SET DEFAULT {next_value}"
    )
