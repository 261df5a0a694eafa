"""Trigger DDL for native (PostgreSQL) versioning, as SQL constructs.

Each DDL statement is an :class:`~sqlalchemy.sql.ddl.ExecutableDDLElement`
compiled for PostgreSQL only; every identifier is quoted by the dialect's
preparer, and the statements inside the functions are SQLAlchemy Core constructs
compiled with literal values. Nothing here runs SQL.

Two kinds of functions are made:

* one per transaction table, :func:`transaction_function_name` (``chronicle_transaction_id``):
  it returns the id of the current database transaction's row in the transaction
  table, writing the row first when there is none yet. The id is kept in the
  transaction-local setting ``chronicle.transaction_id``; the row's values come
  from ``chronicle.transaction`` (a JSON object of column values) and its metadata
  from ``chronicle.meta``, which the ORM side sets when it has any.
* one per versioned table (``<table>_audit``), run by three statement-level
  triggers (``AFTER INSERT``/``UPDATE``/``DELETE ... REFERENCING ... TABLE``): one
  statement writes the versions of all the rows the triggering statement changed.

Both pin their ``search_path`` to ``pg_catalog, pg_temp`` and name every table with
its schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.ddl import ExecutableDDLElement
from sqlalchemy.sql.elements import quoted_name
from sqlalchemy.sql.functions import Function

from ..config import Operation, Strategy
from ..exc import NotSupportedError

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import DDLCompiler

__all__ = [
    "GUC_CONTEXT",
    "GUC_META",
    "GUC_TRANSACTION_ID",
    "GUC_WRITTEN",
    "SMALL_STATEMENT_ROWS",
    "TRIGGER_EVENTS",
    "CreateAuditFunction",
    "CreateAuditTrigger",
    "CreateRestampFunction",
    "CreateTransactionFunction",
    "DropAuditFunction",
    "DropAuditTrigger",
    "DropRestampFunction",
    "DropTransactionFunction",
    "TriggerSpec",
    "audit_function_name",
    "create_statements",
    "drop_statements",
    "transaction_function_name",
    "trigger_name",
]

#: Transaction-local settings read by the functions.
GUC_TRANSACTION_ID = "chronicle.transaction_id"
GUC_CONTEXT = "chronicle.transaction"
GUC_META = "chronicle.meta"
#: The version tables the current transaction wrote, one JSON array a line:
#: ``[table, transaction column, end transaction column]``.
GUC_WRITTEN = "chronicle.written"

#: A statement changing at most this many rows is versioned by static SQL, whose plans
#: PL/pgSQL keeps; a larger one by the same statements planned for its sizes (EXECUTE).
SMALL_STATEMENT_ROWS = 100

#: The events each versioned table gets a trigger for (association tables: no UPDATE).
TRIGGER_EVENTS = ("INSERT", "UPDATE", "DELETE")

#: The name SQLAlchemy-Continuum gives its (row-level) trigger; dropped too.
CONTINUUM_TRIGGER = "%s_trigger"


def transaction_function_name(transaction_table: sa.Table) -> str:
    """The name of the function returning the current transaction's id."""
    return f"chronicle_{transaction_table.name}_id"


def restamp_function_name(transaction_table: sa.Table) -> str:
    """The name of the function moving the current transaction to a new, larger id."""
    return f"chronicle_{transaction_table.name}_restamp"


def audit_function_name(table_name: str) -> str:
    """The name of the function writing the versions of table ``table_name``."""
    return f"{table_name}_audit"


def trigger_name(table_name: str, event: str) -> str:
    """The name of the trigger on ``table_name`` for ``event`` (INSERT, UPDATE, DELETE)."""
    return f"{table_name}_{event.lower()}_trigger"


@dataclass(frozen=True, eq=False)
class TriggerSpec:
    """What the triggers of one versioned table write, by column name."""

    #: The live table the triggers are on.
    table: sa.Table
    #: The version table they write.
    version: sa.Table
    #: (live column name, version column name) of every versioned column.
    columns: tuple[tuple[str, str], ...]
    #: (live column name, version column name) of the key, in order.
    key: tuple[tuple[str, str], ...]
    transaction_column: str
    operation_column: str
    #: None unless the validity strategy maintains it.
    end_transaction_column: str | None
    #: (live column name, flag column name) of the ``*_mod`` flags (may be empty).
    mod_columns: tuple[tuple[str, str], ...]
    #: The transaction table whose function gives the transaction id.
    transaction_table: sa.Table
    #: The entity name recorded in the changes table (None: record nothing).
    entity_name: str | None = None
    #: An association table: no UPDATE trigger (the ORM never updates one).
    association: bool = False
    #: The other tables of the same entities (joined inheritance): an update versions
    #: them too, each with (this table's key column, its key column) pairs.
    related: tuple[tuple[TriggerSpec, tuple[tuple[str, str], ...]], ...] = ()
    #: Polymorphic entity names: (the table holding the discriminator, (this table's
    #: key column, its key column) pairs, the discriminator column, {value: name}).
    polymorphic: (
        tuple[sa.Table, tuple[tuple[str, str], ...], str, tuple[tuple[Any, str], ...]] | None
    ) = None
    #: Whether the transaction function records the entity names of each statement
    #: (there is a ``transaction_changes`` table): the audit function then calls it
    #: for every write, else only for a transaction's first.
    records_entities: bool = True

    @property
    def events(self) -> tuple[str, ...]:
        return ("INSERT", "DELETE") if self.association else TRIGGER_EVENTS

    @property
    def strategy(self) -> Strategy:
        return Strategy.SUBQUERY if self.end_transaction_column is None else Strategy.VALIDITY


# -- helpers --------------------------------------------------------------------------


def _require_postgresql(compiler: Any, what: str) -> NoReturn:
    raise NotSupportedError(
        f"{what}: native versioning (triggers) needs PostgreSQL; the database is "
        f"{compiler.dialect.name!r}. Remove the option 'native_versioning' to version "
        f"with the ORM on this database."
    )


def _schema_of(table: sa.Table, compiler: Any) -> str:
    return table.schema or _default_schema(compiler)


def _default_schema(compiler: Any) -> str:
    """The schema of tables named without one: the connection's, or PostgreSQL's
    ``public`` when the dialect never connected (Alembic's ``--sql`` mode)."""
    return compiler.dialect.default_schema_name or "public"


def _qualified_function(compiler: Any, table: sa.Table, name: str) -> str:
    preparer = compiler.preparer
    schema = _schema_of(table, compiler)
    quoted = preparer.quote(name)
    return f"{preparer.quote_schema(schema)}.{quoted}" if schema else quoted


def _qualified_table(compiler: Any, table: sa.Table) -> str:
    preparer = compiler.preparer
    schema = _schema_of(table, compiler)
    if table.schema is None and schema:
        return f"{preparer.quote_schema(schema)}.{preparer.quote(table.name)}"
    return str(preparer.format_table(table))


def _pinned(table: sa.Table, compiler: Any) -> Any:
    """``table`` as a lightweight table named with its schema (given or default)."""
    schema = _schema_of(table, compiler)
    return sa.table(table.name, *[sa.column(c.name, c.type) for c in table.columns], schema=schema)


def _sql(compiler: Any, stmt: Any) -> str:
    return str(stmt.compile(dialect=compiler.dialect, compile_kwargs={"literal_binds": True}))


def _literal(compiler: Any, value: str) -> str:
    return str(compiler.sql_compiler.render_literal_value(value, sa.String()))


def _dollar_quoted(body: str) -> str:
    tag = "chronicle"
    while f"${tag}$" in body:
        tag += "_"
    return f"${tag}$\n{body}\n${tag}$"


def _comparable(column: Any) -> Any:
    """``column`` in a form that has an equality operator (``json`` has none)."""
    if isinstance(column.type, sa.JSON) and not isinstance(column.type, postgresql.JSONB):
        return sa.cast(column, sa.Text)
    return column


def _transaction_function(compiler: Any, transaction_table: sa.Table) -> Any:
    """A factory of calls of the transaction function, named with its schema."""
    name = quoted_name(transaction_function_name(transaction_table), True)
    schema = _schema_of(transaction_table, compiler)
    packages = (quoted_name(schema, True),) if schema else ()

    def call(*args: Any) -> Any:
        return Function(name, *args, type_=sa.BigInteger, packagenames=packages)

    return call


# -- the transaction function ------------------------------------------------------------


class CreateTransactionFunction(ExecutableDDLElement):
    """``CREATE OR REPLACE FUNCTION chronicle_<transaction>_id(entities text[])``.

    :param transaction_table: the transaction table.
    :param meta_table: the ``transaction_meta`` table, if metadata is stored.
    :param changes_table: the ``transaction_changes`` table, if changed entities are.
    """

    def __init__(
        self,
        transaction_table: sa.Table,
        meta_table: sa.Table | None = None,
        changes_table: sa.Table | None = None,
    ) -> None:
        self.transaction_table = transaction_table
        self.meta_table = meta_table
        self.changes_table = changes_table


class DropTransactionFunction(ExecutableDDLElement):
    """``DROP FUNCTION IF EXISTS chronicle_<transaction>_id(text)``."""

    def __init__(self, transaction_table: sa.Table) -> None:
        self.transaction_table = transaction_table


def _next_id(compiler: Any, table: sa.Table, sequence: sa.Sequence) -> Any:
    """``nextval('schema.sequence')``: named with its schema (the search_path is pinned).

    A sequence without a schema lives where SQLAlchemy creates it, in the default
    schema, even for a table in another schema (``MetaData(schema=...)``)."""
    preparer = compiler.preparer
    schema = sequence.schema or _default_schema(compiler)
    name = preparer.quote(sequence.name)
    if schema:
        name = f"{preparer.quote_schema(schema)}.{name}"
    return sa.func.nextval(sa.literal(name, sa.Text))


def _transaction_insert(compiler: Any, table: sa.Table) -> str:
    """``INSERT INTO transaction (...) SELECT ... FROM json_populate_record(...)``."""
    target = _pinned(table, compiler)
    row_type: Any = sa.literal_column(f"NULL::{_qualified_table(compiler, table)}")
    context = sa.cast(
        sa.func.nullif(sa.func.current_setting(GUC_CONTEXT, sa.true()), ""), postgresql.JSON
    )
    record = sa.func.json_populate_record(row_type, context).table_valued(
        *[sa.column(c.name, c.type) for c in table.columns], name="chronicle_values"
    )
    id_column = table.c.get("id")
    targets: list[Any] = []
    values: list[Any] = []
    for column in table.columns:
        value: Any = record.c[column.name]
        if column is id_column:
            if not isinstance(column.default, sa.Sequence):
                continue  # the server default gives it
            # Perhaps no server default (SQLAlchemy-Continuum's tables): take the
            # value from the sequence, as the ORM does.
            value = _next_id(compiler, table, column.default)
        elif column.name == "issued_at":
            value = sa.func.coalesce(value, sa.func.timezone("UTC", sa.func.now()))
        targets.append(target.c[column.name])
        values.append(value)
    insert = sa.insert(target).from_select(targets, sa.select(*values).select_from(record))
    returned = target.c[id_column.name if id_column is not None else "id"]
    return f"{_sql(compiler, insert.returning(returned))} INTO chronicle_id"


@compiles(CreateTransactionFunction)
def _create_transaction_function_default(
    element: CreateTransactionFunction, compiler: Any, **kw: Any
) -> str:
    _require_postgresql(compiler, f"Transaction table {element.transaction_table.name!r}")


@compiles(CreateTransactionFunction, "postgresql")
def _create_transaction_function(
    element: CreateTransactionFunction, compiler: DDLCompiler, **kw: Any
) -> str:
    table = element.transaction_table
    preparer = compiler.preparer
    guc_id = _literal(compiler, GUC_TRANSACTION_ID)
    lines = [
        "DECLARE chronicle_id bigint;",
        "BEGIN",
        f"  chronicle_id := NULLIF(current_setting({guc_id}, true), '')::bigint;",
        "  IF chronicle_id IS NULL THEN",
        f"    {_transaction_insert(compiler, table)};",
    ]
    if element.meta_table is not None:
        meta = element.meta_table
        lines.append(
            f"    INSERT INTO {_qualified_table(compiler, meta)} "
            f"({preparer.quote('transaction_id')}, {preparer.quote('key')}, "
            f"{preparer.quote('value')}) SELECT chronicle_id, chronicle_meta.key, "
            f"chronicle_meta.value FROM json_each_text(NULLIF(current_setting("
            f"{_literal(compiler, GUC_META)}, true), '')::json) AS chronicle_meta;"
        )
    lines += [
        f"    PERFORM set_config({guc_id}, chronicle_id::text, true);",
        "  END IF;",
    ]
    if element.changes_table is not None:
        changes = element.changes_table
        lines += [
            "  IF entities IS NOT NULL THEN",
            f"    INSERT INTO {_qualified_table(compiler, changes)} "
            f"({preparer.quote('transaction_id')}, {preparer.quote('entity_name')}) "
            f"SELECT chronicle_id, chronicle_name FROM unnest(entities) AS chronicle_name "
            f"ON CONFLICT DO NOTHING;",
            "  END IF;",
        ]
    lines += ["  RETURN chronicle_id;", "END;"]
    name = _qualified_function(compiler, table, transaction_function_name(table))
    return (
        f"CREATE OR REPLACE FUNCTION {name}(entities text[]) RETURNS bigint LANGUAGE plpgsql "
        f"VOLATILE SET search_path = pg_catalog, pg_temp AS "
        f"{_dollar_quoted(chr(10).join(lines))}"
    )


@compiles(DropTransactionFunction, "postgresql")
def _drop_transaction_function(
    element: DropTransactionFunction, compiler: DDLCompiler, **kw: Any
) -> str:
    table = element.transaction_table
    name = _qualified_function(compiler, table, transaction_function_name(table))
    return f"DROP FUNCTION IF EXISTS {name}(text[])"


class CreateRestampFunction(CreateTransactionFunction):
    """``CREATE OR REPLACE FUNCTION chronicle_<transaction>_restamp()``.

    It moves the current transaction, and every version and plugin row it wrote, to
    a new transaction id: an audit function calls it when a transaction that took
    its id earlier meets a version written by a newer transaction, so that every
    row's history stays in transaction order (as ``UnitOfWork._restamp`` does).
    """


class DropRestampFunction(DropTransactionFunction):
    """``DROP FUNCTION IF EXISTS chronicle_<transaction>_restamp()``."""


@compiles(CreateRestampFunction, "postgresql")
def _create_restamp_function(
    element: CreateRestampFunction, compiler: DDLCompiler, **kw: Any
) -> str:
    table = element.transaction_table
    target = _pinned(table, compiler)
    id_column = table.c.id
    copied = [c for c in table.columns if c is not id_column]
    targets = [target.c[c.name] for c in copied]
    values: list[Any] = [target.c[c.name] for c in copied]
    if isinstance(id_column.default, sa.Sequence):
        targets.append(target.c.id)
        values.append(_next_id(compiler, table, id_column.default))
    copy = (
        sa.insert(target)
        .from_select(
            targets,
            sa.select(*values).where(target.c.id == sa.literal_column("chronicle_old")),
        )
        .returning(target.c.id)
    )
    guc_id = _literal(compiler, GUC_TRANSACTION_ID)
    guc_written = _literal(compiler, GUC_WRITTEN)
    move = (
        "'UPDATE ' || (chronicle_entry->>0)::regclass::text || ' SET ' || "
        "quote_ident(chronicle_entry->>{i}) || ' = $1 WHERE ' || "
        "quote_ident(chronicle_entry->>{i}) || ' = $2'"
    )
    lines = [
        "DECLARE chronicle_old bigint; chronicle_new bigint; chronicle_entry json;",
        "BEGIN",
        f"  chronicle_old := NULLIF(current_setting({guc_id}, true), '')::bigint;",
        "  IF chronicle_old IS NULL THEN RETURN NULL; END IF;",
        f"  {_sql(compiler, copy)} INTO chronicle_new;",
        "  FOR chronicle_entry IN SELECT chronicle_line::json FROM unnest(string_to_array("
        f"rtrim(current_setting({guc_written}, true), chr(10)), chr(10))) AS chronicle_line LOOP",
        f"    EXECUTE {move.format(i=1)} USING chronicle_new, chronicle_old;",
        "    IF chronicle_entry->>2 IS NOT NULL THEN",
        f"      EXECUTE {move.format(i=2)} USING chronicle_new, chronicle_old;",
        "    END IF;",
        "  END LOOP;",
    ]
    for plugin_table in (element.meta_table, element.changes_table):
        if plugin_table is not None:
            moved = _pinned(plugin_table, compiler)
            lines.append(
                "  "
                + _sql(
                    compiler,
                    sa.update(moved)
                    .where(moved.c.transaction_id == sa.literal_column("chronicle_old"))
                    .values(transaction_id=sa.literal_column("chronicle_new")),
                )
                + ";"
            )
    delete = sa.delete(target).where(target.c.id == sa.literal_column("chronicle_old"))
    lines += [
        f"  {_sql(compiler, delete)};",
        f"  PERFORM set_config({guc_id}, chronicle_new::text, true);",
        "  RETURN chronicle_new;",
        "END;",
    ]
    name = _qualified_function(compiler, table, restamp_function_name(table))
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS bigint LANGUAGE plpgsql VOLATILE "
        f"SET search_path = pg_catalog, pg_temp AS {_dollar_quoted(chr(10).join(lines))}"
    )


@compiles(DropRestampFunction, "postgresql")
def _drop_restamp_function(element: DropRestampFunction, compiler: DDLCompiler, **kw: Any) -> str:
    table = element.transaction_table
    name = _qualified_function(compiler, table, restamp_function_name(table))
    return f"DROP FUNCTION IF EXISTS {name}()"


def _newer_exists(spec: TriggerSpec, event: str, compiler: Any, current: Any) -> Any:
    """``EXISTS``: a row about to be versioned has a version by a transaction newer than
    ``current`` (this transaction's id, taken earlier): then it moves to a new id."""
    return _key_exists(
        spec,
        event,
        compiler,
        lambda t, version: version.c[t.transaction_column] > current,
        other_tables=False,
    )


def _key_exists(
    spec: TriggerSpec, event: str, compiler: Any, where: Any, *, other_tables: bool = True
) -> Any:
    """``EXISTS``: a version (in ``spec``'s version table or, for an update and unless
    not ``other_tables``, in one of its other tables') of a row of the triggering statement
    for which ``where`` (called with the spec and the version table) holds."""
    source = _live(spec.table, "chronicle_old" if event == "DELETE" else "chronicle_new")
    tables: list[tuple[TriggerSpec, list[tuple[str, str]]]] = [(spec, list(spec.key))]
    if event == "UPDATE" and other_tables:
        for related, pairs in spec.related:
            version_of = dict(related.key)
            tables.append((related, [(a, version_of[b]) for a, b in pairs]))
    probes = []
    for written, key in tables:
        version = _pinned(written.version, compiler)
        probes.append(
            sa.exists(
                sa.select(sa.literal(1))
                .select_from(source)
                .join(version, sa.and_(*[version.c[v] == source.c[a] for a, v in key]))
                .where(where(written, version))
            )
        )
    return sa.or_(*probes)


def _this_transaction_exists(spec: TriggerSpec, event: str, compiler: Any, current: Any) -> Any:
    """``EXISTS``: a row of the triggering statement has a version by this transaction
    (``current``), which the statement folds into."""
    return _key_exists(
        spec, event, compiler, lambda t, version: version.c[t.transaction_column] == current
    )


def _open_exists(spec: TriggerSpec, compiler: Any) -> Any:
    """``EXISTS``: an inserted row has an open version (a re-insert): it is closed."""
    return _key_exists(
        spec,
        "INSERT",
        compiler,
        lambda t, version: version.c[t.end_transaction_column].is_(None),
    )


def _restamp_function(spec: TriggerSpec, compiler: Any) -> str:
    return _qualified_function(
        compiler, spec.transaction_table, restamp_function_name(spec.transaction_table)
    )


def _read_current(compiler: Any) -> str:
    """The plpgsql line loading this transaction's id (NULL: none yet)."""
    guc_id = _literal(compiler, GUC_TRANSACTION_ID)
    return f"chronicle_current := NULLIF(current_setting({guc_id}, true), '')::bigint;"


def _written_entry(written: TriggerSpec, compiler: Any) -> str:
    """The line of ``chronicle.written`` naming ``written``'s version table (a literal)."""
    return _literal(
        compiler,
        json.dumps(
            [
                _qualified_table(compiler, written.version),
                written.transaction_column,
                written.end_transaction_column,
            ]
        ),
    )


def _read_written(compiler: Any) -> str:
    """The plpgsql line loading ``chronicle.written`` into ``chronicle_written``."""
    guc = _literal(compiler, GUC_WRITTEN)
    return f"  chronicle_written := COALESCE(current_setting({guc}, true), '');"


def _was_written(spec: TriggerSpec, compiler: Any) -> str:
    """A plpgsql condition: this transaction wrote versions into one of the version
    tables ``spec``'s triggers write (only then can there be rows to fold into)."""
    tables = (spec, *[related for related, _ in spec.related])
    return " OR ".join(
        f"strpos(chronicle_written, {_written_entry(t, compiler)}) > 0" for t in tables
    )


def _written_entries(spec: TriggerSpec, compiler: Any) -> list[str]:
    """plpgsql lines noting in ``chronicle.written`` the version tables written."""
    guc = _literal(compiler, GUC_WRITTEN)
    lines = []
    for written in (spec, *[related for related, _ in spec.related]):
        entry = _written_entry(written, compiler)
        lines += [
            f"  IF strpos(chronicle_written, {entry}) = 0 THEN",
            f"    chronicle_written := chronicle_written || {entry} || chr(10);",
            f"    PERFORM set_config({guc}, chronicle_written, true);",
            "  END IF;",
        ]
    return lines


# -- the audit functions and triggers ----------------------------------------------------


class CreateAuditFunction(ExecutableDDLElement):
    """``CREATE OR REPLACE FUNCTION <table>_audit()`` writing ``spec``'s versions."""

    def __init__(self, spec: TriggerSpec) -> None:
        self.spec = spec


class DropAuditFunction(ExecutableDDLElement):
    """``DROP FUNCTION IF EXISTS <table>_audit()``."""

    def __init__(self, table: sa.Table) -> None:
        self.table = table


class CreateAuditTrigger(ExecutableDDLElement):
    """``CREATE TRIGGER <table>_<event>_trigger AFTER <event> ... FOR EACH STATEMENT``."""

    def __init__(self, table: sa.Table, event: str) -> None:
        self.table = table
        self.event = event


class DropAuditTrigger(ExecutableDDLElement):
    """``DROP TRIGGER IF EXISTS <name> ON <table>``."""

    def __init__(self, table: sa.Table, name: str) -> None:
        self.table = table
        self.name = name


def _live(table: sa.Table, name: str) -> Any:
    """A transition table (or other source) with the columns of ``table``."""
    return sa.table(name, *[sa.column(c.name, c.type) for c in table.columns])


def _entity_names(spec: TriggerSpec, source: Any, compiler: Any) -> tuple[Any, Any]:
    """The expression of each changed row's entity name (None: constant), and the
    join (or None) it needs."""
    if spec.polymorphic is None:
        return None, None
    table, pairs, column, names = spec.polymorphic
    if table is spec.table:
        discriminator, joined = source.c[column], None
    else:
        base = _pinned(table, compiler).alias("chronicle_base")
        discriminator = base.c[column]
        joined = (base, sa.and_(*[base.c[b] == source.c[a] for a, b in pairs]))
    whens = [(discriminator == value, name) for value, name in names]
    return sa.case(*whens, else_=spec.entity_name), joined


def _write_parts(
    spec: TriggerSpec,
    changed: Any,
    tx_id: Any,
    op: Operation,
    compiler: Any,
    suffix: str,
    fold: bool = True,
    close: bool = True,
) -> tuple[list[Any], Any]:
    """The ``WITH`` parts folding into and closing ``spec``'s versions of the
    ``changed`` rows, and the ``INSERT`` of the rest. Without ``fold`` (no version of
    this transaction can exist yet) only the closing and the ``INSERT``; without
    ``close`` (none of the rows has an open version) no closing."""
    version = _pinned(spec.version, compiler)
    vtx = version.c[spec.transaction_column]
    vop = version.c[spec.operation_column]
    key_pairs = [(v, a) for a, v in spec.key]  # (version column, live column)
    match = sa.and_(*[version.c[v] == changed.c[a] for v, a in key_pairs])
    mods = spec.mod_columns
    # Rows this transaction wrote already take the new values (one version per row per
    # transaction), their operation folded as the ORM folds it.
    if op is Operation.DELETE:
        fold_values: dict[Any, Any] = {vop: int(Operation.DELETE)}
    else:
        fold_values = {version.c[v]: changed.c[a] for a, v in spec.columns}
        fold_values[vop] = sa.case(
            (vop == int(Operation.INSERT), int(Operation.INSERT)), else_=int(Operation.UPDATE)
        )
    for _, m in mods:
        fold_values[version.c[m]] = sa.or_(version.c[m], changed.c[m])
    folded = (
        sa.update(version)
        .where(vtx == tx_id, match)
        .values(fold_values)
        .returning(*[version.c[v] for v, _ in key_pairs])
        .cte(f"chronicle_folded{suffix}")
    )
    parts = [folded] if fold else []
    if spec.end_transaction_column is not None and close:
        end = version.c[spec.end_transaction_column]
        closed = (
            sa.update(version)
            .where(match, end.is_(None), vtx < tx_id)
            .values({end: tx_id})
            .cte(f"chronicle_closed{suffix}")
        )
        parts.append(closed)
    targets = [version.c[v] for _, v in spec.columns] + [vtx, vop]
    exprs: list[Any] = [changed.c[a] for a, _ in spec.columns]
    exprs += [tx_id, sa.literal(int(op), sa.SmallInteger)]
    for _, m in mods:
        targets.append(version.c[m])
        exprs.append(changed.c[m])
    not_folded = ~sa.exists(
        sa.select(sa.literal(1))
        .select_from(folded)
        .where(*[folded.c[v] == changed.c[a] for v, a in key_pairs])
    )
    rows = sa.select(*exprs).select_from(changed)
    if fold:
        rows = rows.where(not_folded)
    return parts, sa.insert(version).from_select(targets, rows)


def _version_block(spec: TriggerSpec, event: str, compiler: Any) -> list[str]:
    """The plpgsql lines writing the versions of a triggering ``event``: when a row
    changed, the transaction id (written or moved first if need be), then one
    statement for all the rows."""
    live = [a for a, _ in spec.columns]
    new = _live(spec.table, "chronicle_new")
    old = _live(spec.table, "chronicle_old")
    key_live = [a for a, _ in spec.key]
    mods = spec.mod_columns
    source = old if event == "DELETE" else new

    if event == "INSERT":
        op = Operation.INSERT
        flags = [new.c[a].is_not(None).label(m) for a, m in mods]
        changed_select = sa.select(*[new.c[a] for a in live], *flags)
    elif event == "DELETE":
        op = Operation.DELETE
        flags = [sa.true().label(m) for _, m in mods]
        changed_select = sa.select(*[old.c[a] for a in live], *flags)
    else:
        op = Operation.UPDATE
        joined = new.outerjoin(old, sa.and_(*[old.c[a] == new.c[a] for a in key_live]))
        differs = [
            _comparable(old.c[a]).is_distinct_from(_comparable(new.c[a]))
            for a in live
            if a not in key_live
        ]
        flags = [
            _comparable(old.c[a]).is_distinct_from(_comparable(new.c[a])).label(m) for a, m in mods
        ]
        changed_select = (
            sa.select(*[new.c[a] for a in live], *flags)
            .select_from(joined)
            .where(sa.or_(old.c[key_live[0]].is_(None), *differs))
        )
    name_expr, name_join = _entity_names(spec, source, compiler)
    if name_expr is not None:
        changed_select = changed_select.add_columns(name_expr.label("chronicle_entity"))
        if name_join is not None:
            changed_select = changed_select.outerjoin(*name_join)
    changed = changed_select.cte("chronicle_changed")

    if name_expr is not None:
        named = changed_select.subquery("chronicle_named")
        entities: Any = sa.select(
            sa.func.array_agg(sa.distinct(named.c.chronicle_entity))
        ).scalar_subquery()
    elif spec.entity_name:
        entities = sa.literal_column(
            f"ARRAY[{_literal(compiler, spec.entity_name)}]", postgresql.ARRAY(sa.Text)
        )
    else:
        entities = sa.null()
    transaction_id = _transaction_function(compiler, spec.transaction_table)

    def statement(fold: bool, tx_id: Any, close: bool = True) -> str:
        ctes: list[Any] = [changed]
        parts, insert = _write_parts(spec, changed, tx_id, op, compiler, "", fold, close)
        ctes += parts
        if op is Operation.UPDATE:
            # The other tables of these entities get a version too, as the ORM writes
            # one per table of the entity: from their live rows, no column flagged.
            for i, (related, pairs) in enumerate(spec.related):
                other = _pinned(related.table, compiler).alias(f"chronicle_live_{i}")
                related_changed = (
                    sa.select(
                        *[other.c[a] for a, _ in related.columns],
                        *[sa.false().label(m) for _, m in related.mod_columns],
                    )
                    .select_from(other)
                    .join(changed, sa.and_(*[other.c[b] == changed.c[a] for a, b in pairs]))
                    .cte(f"chronicle_changed_{i}")
                )
                related_parts, related_insert = _write_parts(
                    related, related_changed, tx_id, op, compiler, f"_{i}", fold
                )
                ctes += [
                    related_changed, *related_parts, related_insert.cte(f"chronicle_added_{i}")
                ]
        return _sql(compiler, insert.add_cte(*ctes))

    def executed(stmt: Any) -> str:
        """``stmt`` as the string literal of a plpgsql ``EXECUTE``."""
        return _literal(compiler, stmt if isinstance(stmt, str) else _sql(compiler, stmt))

    restamp = _restamp_function(spec, compiler)
    written = _was_written(spec, compiler)
    # A small statement (an ORM flush sends one per row for updates and deletes) runs
    # static SQL: PL/pgSQL keeps its plans, made for statements of at most
    # SMALL_STATEMENT_ROWS rows, so each looks the versions up by key. What each
    # costs is mostly its executor's start-up (a table and its indexes opened per
    # node), so one SELECT answers every question first, each by key (EXISTS stops
    # at the first row): did a row change, does one have a version newer than this
    # transaction (then it moves to a new id), did this transaction version one of
    # them already (only then the statement folds into it: an UPDATE more), has a
    # new row an open version (only then it is closed: an UPDATE more). Then one
    # statement writes, without the parts that cannot apply; the transaction id is
    # read from the setting, the function called only for the first write or to
    # record the entity names.
    tx_static: Any = sa.literal_column("chronicle_tx", sa.BigInteger)
    current: Any = sa.literal_column("chronicle_current", sa.BigInteger)
    known = current.is_not(None)
    questions = [
        sa.exists(changed_select),
        sa.and_(known, _newer_exists(spec, event, compiler, current)),
        sa.and_(known, _this_transaction_exists(spec, event, compiler, current)),
    ]
    # Only inserted rows can have no open version (first inserts, inserted links):
    # updated and deleted rows have one, closed by the statement.
    probe_open = event == "INSERT" and spec.end_transaction_column is not None
    if probe_open:
        questions.append(_open_exists(spec, compiler))
    answers = "chronicle_found, chronicle_newer, chronicle_fold"
    answers += ", chronicle_open" if probe_open else ""

    def writes(close: bool) -> list[str]:
        return [
            "        IF chronicle_fold THEN",
            f"          {statement(True, tx_static, close)};",
            "        ELSE",
            f"          {statement(False, tx_static, close)};",
            "        END IF;",
        ]

    if spec.records_entities and (spec.entity_name or name_expr is not None):
        tx_lines = [f"        chronicle_tx := {_sql(compiler, transaction_id(entities))};"]
    else:
        tx_lines = [
            "        chronicle_tx := chronicle_current;",
            "        IF chronicle_tx IS NULL THEN",
            f"          chronicle_tx := {_sql(compiler, transaction_id(entities))};",
            "        END IF;",
        ]
    if probe_open:
        write_lines = [
            "        IF chronicle_open THEN",
            *["  " + line for line in writes(True)],
            "        ELSE",
            *["  " + line for line in writes(False)],
            "        END IF;",
        ]
    else:
        write_lines = writes(True)
    small = [
        f"      {_read_current(compiler)}",
        f"      {_sql(compiler, sa.select(*questions))} INTO {answers};",
        "      IF chronicle_found THEN",
        "        IF chronicle_newer THEN",
        # The versions this transaction wrote move with it: chronicle_fold holds.
        f"          chronicle_current := {restamp}();",
        "        END IF;",
        *tx_lines,
        *write_lines,
        "      END IF;",
    ]
    # A larger one (a bulk UPDATE of 100,000 rows) runs the same statements through
    # EXECUTE: each is planned for this call, knowing the sizes of the transition
    # tables and the transaction id ($1), as a plan kept from small statements
    # would not be fit for it (and the other way round).
    parameter: Any = sa.literal_column("$1", sa.BigInteger)
    if name_expr is not None:
        entities_line = [
            f"        EXECUTE {executed(sa.select(entities))} INTO chronicle_entities;"
        ]
        entities = sa.literal_column("chronicle_entities", postgresql.ARRAY(sa.Text))
    else:
        entities_line = []
    big = [
        f"      EXECUTE {executed(sa.select(sa.exists(changed_select)))} INTO chronicle_found;",
        "      IF chronicle_found THEN",
        f"        {_read_current(compiler)}",
        "        IF chronicle_current IS NOT NULL THEN",
        f"          EXECUTE {executed(sa.select(_newer_exists(spec, event, compiler, parameter)))}"
        " INTO chronicle_found USING chronicle_current;",
        "          IF chronicle_found THEN",
        f"            PERFORM {restamp}();",
        "          END IF;",
        "        END IF;",
        *entities_line,
        f"        chronicle_tx := {_sql(compiler, transaction_id(entities))};",
        f"        IF {written} THEN",
        f"          EXECUTE {executed(statement(True, parameter))} USING chronicle_tx;",
        "        ELSE",
        f"          EXECUTE {executed(statement(False, parameter))} USING chronicle_tx;",
        "        END IF;",
        "      END IF;",
    ]
    source_rows = sa.select(sa.literal(1)).select_from(source).offset(SMALL_STATEMENT_ROWS)
    return [
        f"    IF NOT {_sql(compiler, sa.exists(source_rows))} THEN",
        *small,
        "    ELSE",
        *big,
        "    END IF;",
    ]


@compiles(CreateAuditFunction)
def _create_audit_function_default(element: CreateAuditFunction, compiler: Any, **kw: Any) -> str:
    _require_postgresql(compiler, f"Table {element.spec.table.name!r}")


@compiles(CreateAuditFunction, "postgresql")
def _create_audit_function(element: CreateAuditFunction, compiler: DDLCompiler, **kw: Any) -> str:
    spec = element.spec
    lines = [
        "DECLARE chronicle_current bigint; chronicle_tx bigint; chronicle_written text;",
        "  chronicle_found boolean; chronicle_newer boolean; chronicle_fold boolean;",
        "  chronicle_open boolean; chronicle_entities text[];",
        "BEGIN",
        _read_written(compiler),
    ]
    for i, event in enumerate(spec.events):
        keyword = "IF" if i == 0 else "ELSIF"
        lines.append(f"  {keyword} TG_OP = {_literal(compiler, event)} THEN")
        lines += _version_block(spec, event, compiler)
    lines.append("  END IF;")
    lines += _written_entries(spec, compiler)
    lines += ["  RETURN NULL;", "END;"]
    name = _qualified_function(compiler, spec.table, audit_function_name(spec.table.name))
    # The static statements keep one generic plan each (PostgreSQL 12+), made on their
    # first run, for a small statement: left to choose, PostgreSQL went on planning
    # them on every call whenever the statistics made a custom plan look cheaper
    # (a version table written by one transaction, for instance). EXECUTE plans each
    # large statement for its own sizes whatever this setting.
    version = getattr(compiler.dialect, "server_version_info", None)
    plans = " SET plan_cache_mode = force_generic_plan" if not version or version >= (12,) else ""
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql "
        f"SET search_path = pg_catalog, pg_temp{plans} "
        f"AS {_dollar_quoted(chr(10).join(lines))}"
    )


@compiles(DropAuditFunction, "postgresql")
def _drop_audit_function(element: DropAuditFunction, compiler: DDLCompiler, **kw: Any) -> str:
    name = _qualified_function(compiler, element.table, audit_function_name(element.table.name))
    return f"DROP FUNCTION IF EXISTS {name}()"


@compiles(CreateAuditTrigger, "postgresql")
def _create_audit_trigger(element: CreateAuditTrigger, compiler: DDLCompiler, **kw: Any) -> str:
    table, event = element.table, element.event
    preparer = compiler.preparer
    referencing = {
        "INSERT": "NEW TABLE AS chronicle_new",
        "UPDATE": "OLD TABLE AS chronicle_old NEW TABLE AS chronicle_new",
        "DELETE": "OLD TABLE AS chronicle_old",
    }[event]
    function = _qualified_function(compiler, table, audit_function_name(table.name))
    return (
        f"CREATE TRIGGER {preparer.quote(trigger_name(table.name, event))} AFTER {event} "
        f"ON {_qualified_table(compiler, table)} REFERENCING {referencing} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )


@compiles(DropAuditTrigger, "postgresql")
def _drop_audit_trigger(element: DropAuditTrigger, compiler: DDLCompiler, **kw: Any) -> str:
    return (
        f"DROP TRIGGER IF EXISTS {compiler.preparer.quote(element.name)} "
        f"ON {_qualified_table(compiler, element.table)}"
    )


def create_statements(spec: TriggerSpec) -> list[ExecutableDDLElement]:
    """The DDL creating ``spec``'s function and triggers (after dropping old ones)."""
    return [
        *drop_statements(spec.table, functions=False),
        CreateAuditFunction(spec),
        *[CreateAuditTrigger(spec.table, event) for event in spec.events],
    ]


def drop_statements(table: sa.Table, functions: bool = True) -> list[ExecutableDDLElement]:
    """The DDL dropping the triggers (ours and SQLAlchemy-Continuum's) of ``table``."""
    names = [trigger_name(table.name, e) for e in TRIGGER_EVENTS]
    names.append(CONTINUUM_TRIGGER % table.name)
    statements: list[ExecutableDDLElement] = [DropAuditTrigger(table, n) for n in names]
    if functions:
        statements.append(DropAuditFunction(table))
    return statements
