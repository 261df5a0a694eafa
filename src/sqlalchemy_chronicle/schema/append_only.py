"""PostgreSQL: make the history append-only for the application's role.

:func:`make_append_only` puts a guard trigger on every version table, the transaction
table and the tamper-evidence ledger (when there is one), and gives the
application's role ``SELECT``, ``INSERT``, ``UPDATE`` and ``DELETE`` on them but not
``TRUNCATE``, ``TRIGGER`` or ``REFERENCES``. The guard then lets that role do only
what versioning itself does:

* insert rows;
* update or delete rows its own, still open, database transaction wrote (several
  flushes of one transaction fold into one version; a transaction moved to a new id
  moves its rows);
* close a version: set ``end_transaction_id`` of an open version, nothing else;
* on the ledger, move the head row's ``chain`` forward.

Everything else (rewriting or deleting history of earlier transactions, ``TRUNCATE``)
raises ``insufficient_privilege``. Members of the privileged role (by default the
role running :func:`make_append_only`, normally the tables' owner) pass: that is the
documented path for ``vacuum()`` and retention, run connected as that role. The
application's role must not own the tables (an owner can drop the trigger).

Own rows are recognised by their ``xmin``: a row this role can see whose creating
transaction is still in progress was written by its own transaction (or one of its
savepoints), since other transactions' uncommitted rows are invisible.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..exc import ConfigurationError, NotSupportedError
from .tables import INFO_KEY, VersionTableSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = ["GUARD_FUNCTION", "make_append_only", "remove_append_only"]

#: The name of the guard's trigger function (one per schema).
GUARD_FUNCTION = "chronicle_append_only_guard"
_TRIGGER = "chronicle_append_only"

_FUNCTION_BODY = r"""
DECLARE
    current_id numeric;
    candidate numeric;
    own boolean := false;
    changed jsonb;
BEGIN
    IF pg_has_role(current_user, TG_ARGV[0], 'MEMBER') THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'chronicle: % is append-only for role %: TRUNCATE is not allowed',
            TG_TABLE_NAME, current_user USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Rows written by this transaction (or its savepoints): xmin still in progress.
    current_id := pg_current_xact_id()::text::numeric;
    candidate := trunc(current_id / 4294967296) * 4294967296 + OLD.xmin::text::numeric;
    IF candidate > current_id THEN
        candidate := candidate - 4294967296;
    END IF;
    IF candidate > 2 THEN
        own := coalesce(pg_xact_status(candidate::text::xid8) = 'in progress', false);
    END IF;
    IF own THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    IF TG_OP = 'UPDATE' AND TG_ARGV[1] <> '' THEN
        changed := to_jsonb(NEW);
        IF (to_jsonb(OLD) - string_to_array(TG_ARGV[1], ','))
                = (changed - string_to_array(TG_ARGV[1], ','))
            AND (TG_ARGV[2] = '0' OR to_jsonb(OLD) -> TG_ARGV[1] = 'null'::jsonb)
            AND (TG_ARGV[3] = '' OR to_jsonb(OLD) ->> TG_ARGV[3] = '0')
        THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'chronicle: % is append-only for role %: % of a row of an earlier '
        'transaction is not allowed; run maintenance as a member of %',
        TG_TABLE_NAME, current_user, TG_OP, TG_ARGV[0]
        USING ERRCODE = 'insufficient_privilege';
END
"""


def _tables(
    models: Any, transaction_table: str, ledger_table: str | None
) -> list[tuple[sa.Table, tuple[str, str, str]]]:
    """(table, (mutable columns, only from NULL, head-only key column)) for each table."""
    metadata = models if isinstance(models, sa.MetaData) else getattr(models, "metadata", None)
    if not isinstance(metadata, sa.MetaData):
        raise ConfigurationError(
            f"make_append_only(models=...) must be a declarative base or a MetaData, "
            f"got {models!r}."
        )
    specs: dict[Any, VersionTableSpec] = metadata.info.get(INFO_KEY, {})
    if not specs:
        raise ConfigurationError(
            "make_append_only(): the models' metadata has no version tables; call "
            "sqlalchemy.orm.configure_mappers() first."
        )
    result: list[tuple[sa.Table, tuple[str, str, str]]] = []
    for spec in sorted(specs.values(), key=lambda s: s.version.name):
        end = spec.end_tx.name if spec.end_tx is not None else ""
        result.append((spec.version, (end, "1", "")))
    schema = next(iter(specs.values())).version.schema
    for name, rule in (
        (transaction_table, ("", "0", "")),
        (ledger_table or f"{transaction_table}_ledger", ("sequence,chain", "0", "transaction_id")),
    ):
        table = metadata.tables.get(f"{schema}.{name}" if schema else name)
        if table is None:
            table = metadata.tables.get(name)
        if table is not None:
            result.append((table, rule))
        elif name == transaction_table:
            raise ConfigurationError(
                f"make_append_only(): no table {name!r} in the models' metadata; pass "
                f"transaction_table=..."
            )
    return result


def _check(connection: Connection, role: Any) -> None:
    if connection.dialect.name != "postgresql":
        raise NotSupportedError(
            f"make_append_only() needs PostgreSQL; this connection is {connection.dialect.name}."
        )
    if not isinstance(role, str) or not role.strip():
        raise ConfigurationError(f"make_append_only(role=...) must be a role name, got {role!r}.")


def make_append_only(
    connection: Connection,
    models: Any,
    *,
    role: str,
    admin_role: str | None = None,
    transaction_table: str = "transaction",
    ledger_table: str | None = None,
) -> list[str]:
    """Make the history tables of ``models`` append-only for ``role`` (PostgreSQL).

    :param connection: a connection of the tables' owner (the caller commits).
    :param models: the declarative base or MetaData holding the version tables.
    :param role: the application's role.
    :param admin_role: the role whose members may still rewrite history (vacuum,
        retention); default: the current user.
    :returns: the names of the tables protected.
    """
    _check(connection, role)
    quote = connection.dialect.identifier_preparer
    admin = admin_role or connection.execute(sa.text("SELECT current_user")).scalar_one()
    tables = _tables(models, transaction_table, ledger_table)
    schema = tables[0][0].schema
    function = (
        f"{quote.quote_schema(schema)}.{quote.quote(GUARD_FUNCTION)}"
        if schema
        else quote.quote(GUARD_FUNCTION)
    )
    body = _FUNCTION_BODY.replace("%", "%%")  # the driver's placeholders are %s
    connection.exec_driver_sql(
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
        # Pinned like the versioning functions: no object of a schema the caller put
        # first on its search_path can stand in for the catalog's.
        f"SET search_path = pg_catalog, pg_temp AS $chronicle${body}$chronicle$"
    )
    who = quote.quote(role)
    for table, (mutable, from_null, head) in tables:
        name = quote.format_table(table)
        args = ", ".join(_literal(v) for v in (admin, mutable, from_null, head))
        trigger = quote.quote(_TRIGGER)
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger} ON {name}")
        connection.exec_driver_sql(
            f"CREATE TRIGGER {trigger} BEFORE UPDATE OR DELETE ON {name} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}({args})"
        )
        truncate = quote.quote(f"{_TRIGGER}_truncate")
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {truncate} ON {name}")
        connection.exec_driver_sql(
            f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {name} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}({args})"
        )
        connection.exec_driver_sql(f"REVOKE TRUNCATE, TRIGGER, REFERENCES ON {name} FROM {who}")
        connection.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {who}")
    transaction = next(t for t, _ in tables if t.name == transaction_table)
    sequence = f"{transaction.name}_id_seq"
    if sa.inspect(connection).has_sequence(sequence, schema=transaction.schema):
        seq = quote.format_sequence(sa.Sequence(sequence, schema=transaction.schema))
        connection.exec_driver_sql(f"GRANT USAGE, SELECT ON SEQUENCE {seq} TO {who}")
    return [t.name for t, _ in tables]


def remove_append_only(
    connection: Connection,
    models: Any,
    *,
    transaction_table: str = "transaction",
    ledger_table: str | None = None,
) -> None:
    """Drop the guard triggers :func:`make_append_only` created, and the guard function
    once no trigger uses it any more (privileges stay)."""
    _check(connection, "-")
    quote = connection.dialect.identifier_preparer
    tables = _tables(models, transaction_table, ledger_table)
    for table, _ in tables:
        name = quote.format_table(table)
        for trigger in (_TRIGGER, f"{_TRIGGER}_truncate"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote.quote(trigger)} ON {name}")
    schema = tables[0][0].schema
    function = (
        f"{quote.quote_schema(schema)}.{quote.quote(GUARD_FUNCTION)}"
        if schema
        else quote.quote(GUARD_FUNCTION)
    )
    in_use = connection.execute(
        sa.text(
            "SELECT count(*) FROM pg_trigger "
            "WHERE tgfoid = to_regprocedure(:function || '()')"
        ),
        {"function": function},
    ).scalar_one()
    if not in_use:
        connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}()")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
