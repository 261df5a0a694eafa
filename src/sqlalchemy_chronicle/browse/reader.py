"""The history reader: :class:`HistoryBrowser`.

It reads the version tables and the transaction table directly, with SQLAlchemy Core,
so it needs neither a versioning manager nor a session. The tables come from the
database by reflection, or from the application's models
(:meth:`HistoryBrowser.from_models`).
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

from ..exc import (
    ConfigurationError,
    DatabaseUnavailable,
    HistoryNotFound,
    TableNotVersioned,
    TransactionNotFound,
)
from ..schema.tables import INFO_KEY, MOD_COLUMN_INFO_KEY, VersionTableSpec, as_utc_naive
from .records import (
    Change,
    EntityDiff,
    FieldDiff,
    OperationName,
    Page,
    TransactionDetail,
    TransactionSummary,
)

__all__ = ["USER_LABEL_COLUMNS", "HistoryBrowser"]

_OPERATIONS: dict[int, OperationName] = {0: "insert", 1: "update", 2: "delete"}

#: Columns of the user table tried, in order, for a readable user label.
USER_LABEL_COLUMNS = (
    "name", "username", "user_name", "login", "display_name", "full_name", "email",
)

#: Default column names of the version tables (SQLAlchemy-Continuum's).
_TX = "transaction_id"
_END_TX = "end_transaction_id"
_OP = "operation_type"
_SUFFIX = "_version"


@dataclass(frozen=True)
class _VersionTable:
    """One version table as the reader sees it."""

    name: str  # the parent table's name
    table: sa.Table
    key: tuple[sa.Column[Any], ...]  # the parent's key, in the version table
    values: tuple[sa.Column[Any], ...]  # every versioned column, key included
    tx: sa.Column[Any]
    op: sa.Column[Any]


def _aware(moment: Any) -> datetime.datetime | None:
    """A stored ``issued_at`` (naive UTC) as an aware UTC datetime."""
    if not isinstance(moment, datetime.datetime):
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def _coerce(table: str, column: sa.Column[Any], value: Any) -> Any:
    """``value`` for a comparison with ``column``: text from a command line or a URL is
    converted to the column's Python type (``"5"`` -> 5 for an integer key)."""
    if not isinstance(value, str):
        return value
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    if python_type is str:
        return value
    try:
        if python_type is bool:
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "t", "f", "yes", "no"):
                raise ValueError(value)
            return lowered in ("1", "true", "t", "yes")
        if python_type in (int, float, decimal.Decimal, uuid.UUID):
            return python_type(value.strip())
        if python_type is datetime.datetime:
            return datetime.datetime.fromisoformat(value.strip())
        if python_type is datetime.date:
            return datetime.date.fromisoformat(value.strip())
    except (ValueError, TypeError, decimal.InvalidOperation) as error:
        raise ConfigurationError(
            f"{value!r} is not a valid value for {table}.{column.name} "
            f"({python_type.__name__})."
        ) from error
    return value


def _differs(a: Any, b: Any) -> bool:
    try:
        return bool(a != b)
    except Exception:  # values that refuse comparison (e.g. arrays): compare as text
        return repr(a) != repr(b)


def _changed(
    vt: _VersionTable,
    values: dict[str, Any],
    previous: dict[str, Any] | None,
    previous_deleted: bool = False,
) -> tuple[str, ...]:
    keys = {c.key for c in vt.key}
    names = [c.key for c in vt.values if c.key not in keys]
    if previous is None or previous_deleted:  # a first insert, or one after a delete
        return tuple(n for n in names if values[n] is not None)
    return tuple(n for n in names if _differs(values[n], previous[n]))


class HistoryBrowser:
    """Reads the history of a database: transactions, changes and diffs.

    Works from the tables alone: the version tables (``<table>_version``: the parent's
    columns plus ``transaction_id``, ``operation_type`` and, under the validity
    strategy, ``end_transaction_id``; ``*_mod`` flag columns are ignored) and the
    transaction table (``id``, ``issued_at``, optional ``user_id`` and
    ``remote_addr``), whether sqlalchemy-chronicle (ORM capture or PostgreSQL
    triggers) or SQLAlchemy-Continuum wrote them. Nothing is ever written.

    Listings are newest first and paged by transaction id (keyset pagination: each
    page is one indexed query however long the history), never loading a whole
    version table::

        browser = HistoryBrowser(engine)
        page = browser.transactions(table="article", limit=20)
        for tx in page.items:
            print(tx.id, tx.issued_at, tx.user, tx.tables, tx.change_count)
        older = browser.transactions(table="article", before=page.next_before)

        detail = browser.transaction(page.items[0].id)       # every change of it
        history = browser.entity_history("article", 5)      # oldest first
        diff = browser.diff("article", 5, from_tx=3)         # tx 3 against the latest

    ``bind`` is an :class:`~sqlalchemy.engine.Engine` (a connection is taken per
    call) or a :class:`~sqlalchemy.engine.Connection` (used as it is, in its own
    transaction). ``schema`` is where the tables are; ``transaction_table`` the name of
    the transaction table.

    Raises :class:`~sqlalchemy_chronicle.DatabaseUnavailable` when the database cannot
    be reached, :class:`~sqlalchemy_chronicle.HistoryNotFound` when it has no
    transaction table.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        bind: sa.Engine | sa.Connection,
        *,
        schema: str | None = None,
        transaction_table: str = "transaction",
    ) -> None:
        self.bind = bind
        self.schema = schema
        metadata = sa.MetaData(schema=schema)
        with self._connect() as conn:
            inspector = sa.inspect(conn)
            names = inspector.get_table_names(schema=schema)
            if transaction_table not in names:
                raise HistoryNotFound(
                    f"The database {self._where()} has no transaction table "
                    f"{transaction_table!r}: it holds no history written by "
                    f"sqlalchemy-chronicle or SQLAlchemy-Continuum (pass the transaction "
                    f"table's name or the schema if they differ)."
                )
            candidates = [n for n in names if n.endswith(_SUFFIX) and len(n) > len(_SUFFIX)]
            metadata.reflect(conn, only=[transaction_table, *candidates], resolve_fks=True)
        tables: list[_VersionTable] = []
        for name in candidates:
            table = metadata.tables[f"{schema}.{name}" if schema else name]
            if _TX not in table.c or _OP not in table.c:
                continue
            tables.append(self._from_reflected(name[: -len(_SUFFIX)], table))
        tx_key = f"{schema}.{transaction_table}" if schema else transaction_table
        self._setup(metadata.tables[tx_key], tables)

    @classmethod
    def from_models(
        cls,
        base_or_metadata: Any,
        bind: sa.Engine | sa.Connection,
        *,
        transaction_table: str = "transaction",
    ) -> HistoryBrowser:
        """A reader that takes the tables from the application's models.

        ``base_or_metadata`` is the declarative base (or its ``MetaData``) of versioned
        models: the version tables built for them give the values under the models'
        attribute keys (where a column's key differs from its name), the tables whose
        name does not follow ``<table>_version``, and the custom names of the
        transaction and operation columns. The mappers are configured first.
        """
        metadata = base_or_metadata
        if not isinstance(metadata, sa.MetaData):
            metadata = getattr(base_or_metadata, "metadata", None)
            if not isinstance(metadata, sa.MetaData):
                raise ConfigurationError(
                    f"from_models() takes a declarative base or a MetaData, not "
                    f"{base_or_metadata!r}."
                )
        orm.configure_mappers()
        specs = cast("dict[sa.Table, VersionTableSpec]", metadata.info.get(INFO_KEY, {}))
        tables = [
            _VersionTable(
                name=spec.parent.name,
                table=spec.version,
                key=spec.version_pk,
                values=tuple(v for _, v in spec.columns),
                tx=spec.tx,
                op=spec.op,
            )
            for spec in specs.values()
        ]
        candidates = [t for t in metadata.tables.values() if t.name == transaction_table]
        if not candidates:
            raise HistoryNotFound(
                f"The models' metadata has no transaction table {transaction_table!r}; "
                f"pass transaction_table= if the versioning manager names it otherwise."
            )
        browser = cls.__new__(cls)
        browser.bind = bind
        browser.schema = candidates[0].schema
        with browser._connect():
            pass  # fail early, and clearly, when the database cannot be reached
        browser._setup(candidates[0], tables)
        return browser

    # -- set-up ---------------------------------------------------------------------

    @staticmethod
    def _from_reflected(name: str, table: sa.Table) -> _VersionTable:
        tx = table.c[_TX]
        internal = {_TX, _END_TX, _OP}
        names = set(table.c.keys())
        values = tuple(
            c for c in table.c
            if c.name not in internal
            and not (c.name.endswith("_mod") and c.name[: -len("_mod")] in names)
            and MOD_COLUMN_INFO_KEY not in c.info
        )
        key = tuple(c for c in table.primary_key.columns if c is not tx)
        if not key:  # no primary key reflected: the row is its own key
            key = values
        return _VersionTable(name=name, table=table, key=key, values=values, tx=tx,
                             op=table.c[_OP])

    def _setup(self, transaction: sa.Table, tables: Iterable[_VersionTable]) -> None:
        self._transaction = transaction
        self._tables = {t.name: t for t in sorted(tables, key=lambda t: t.name)}
        self._user_table: sa.Table | None = None
        self._user_label: sa.Column[Any] | None = None
        user_id = transaction.c.get("user_id")
        if user_id is not None:
            for fk in user_id.foreign_keys:
                with contextlib.suppress(sa.exc.NoReferencedTableError):
                    target = fk.column.table
                    if not isinstance(target, sa.Table):
                        continue
                    for label in USER_LABEL_COLUMNS:
                        if label in target.c:
                            self._user_table = target
                            self._user_label = target.c[label]
                            break
                    if self._user_table is not None:
                        break

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        if isinstance(self.bind, sa.Connection):
            yield self.bind
            return
        try:
            conn = self.bind.connect()
        except (sa.exc.DBAPIError, sa.exc.InterfaceError) as error:
            raise DatabaseUnavailable(
                f"Cannot connect to the database {self._where()}: "
                f"{str(getattr(error, 'orig', None) or error).strip()}"
            ) from error
        with conn:
            yield conn

    def _where(self) -> str:
        return self.bind.engine.url.render_as_string(hide_password=True)

    def _version_table(self, table: str) -> _VersionTable:
        found = self._tables.get(table)
        if found is None:
            found = next((t for t in self._tables.values() if t.table.name == table), None)
        if found is None:
            known = ", ".join(self._tables) or "none"
            raise TableNotVersioned(
                f"The table {table!r} is not versioned in {self._where()}: it has no version "
                f"table with a transaction_id and an operation_type column. Versioned "
                f"tables: {known}."
            )
        return found

    # -- public API -----------------------------------------------------------------

    def versioned_tables(self) -> list[str]:
        """The names of the parent tables that have a version table, sorted."""
        return list(self._tables)

    def key_columns(self, table: str) -> list[str]:
        """The names (keys) of the columns that identify an entity of ``table``."""
        return [c.key for c in self._version_table(table).key]

    def transactions(
        self,
        *,
        table: str | None = None,
        entity_id: Any = None,
        user: str | int | None = None,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> Page[TransactionSummary]:
        """The transactions that changed versioned rows, newest first, one page.

        Filters: ``table`` (a parent table name), ``entity_id`` (the key of one row of
        ``table``: a value, a tuple for a composite key, or a dict), ``user`` (the
        ``user_id`` or the user's label, e.g. a name), ``since`` (issued at or after)
        and ``until`` (issued before; exclusive). Naive datetimes are taken as UTC.
        ``before`` is the cursor: only transactions with a smaller id, as
        ``Page.next_before`` gives it.
        """
        if limit < 1:
            raise ConfigurationError(f"limit must be at least 1, not {limit!r}.")
        if entity_id is not None and table is None:
            raise ConfigurationError("entity_id needs the table it belongs to (table=...).")
        T = self._transaction
        conds = self._tx_conditions(user, since, until)
        if table is not None:
            vt = self._version_table(table)
            source: sa.FromClause = vt.table
            if conds:  # filters on the transaction table
                source = source.join(T, T.c.id == vt.tx)
                if self._user_table is not None and user is not None:
                    source = source.outerjoin(self._user_table, self._user_join())
                if before is not None:
                    conds.append(T.c.id < before)
            # The cursor goes on each index the query walks (here the version table's
            # transaction index, and the transaction table's key if joined): else the
            # database walks that index from the newest row down to the cursor.
            if before is not None:
                conds.append(vt.tx < before)
            stmt = sa.select(vt.tx).select_from(source).where(*conds)
            if entity_id is not None:
                stmt = stmt.where(*self._key_conditions(vt, entity_id))
            else:
                stmt = stmt.group_by(vt.tx)
            stmt = stmt.order_by(vt.tx.desc()).limit(limit + 1)
        else:
            if not self._tables:
                return Page(items=[], next_before=None)
            if before is not None:
                conds.append(T.c.id < before)
            source = T
            if self._user_table is not None and user is not None:
                source = T.outerjoin(self._user_table, self._user_join())
            touched = sa.or_(
                *(sa.exists().where(vt.tx == T.c.id) for vt in self._tables.values())
            )
            stmt = (
                sa.select(T.c.id).select_from(source).where(touched, *conds)
                .order_by(T.c.id.desc()).limit(limit + 1)
            )
        with self._connect() as conn:
            ids = [row[0] for row in conn.execute(stmt)]
            more = len(ids) > limit
            ids = ids[:limit]
            summaries = self._summaries(conn, ids)
        items = [summaries[i] for i in ids if i in summaries]
        return Page(items=items, next_before=ids[-1] if more else None)

    def transaction(self, tx_id: int) -> TransactionDetail:
        """A transaction and all its changes, ordered by table, then key.

        Raises :class:`~sqlalchemy_chronicle.TransactionNotFound` for an unknown id.
        """
        try:
            tx_id = int(tx_id)
        except (TypeError, ValueError) as error:
            raise ConfigurationError(
                f"A transaction id is a whole number, not {tx_id!r}."
            ) from error
        with self._connect() as conn:
            summary = self._summaries(conn, [tx_id]).get(tx_id)
            if summary is None:
                raise TransactionNotFound(
                    f"There is no transaction {tx_id} in {self._where()}."
                )
            changes: list[Change] = []
            for name in summary.tables:
                vt = self._tables[name]
                found = self._changes_with_previous(conn, vt, _in_transaction(vt, tx_id))
                found.sort(key=lambda c: tuple(_sortable(v) for v in c.key.values()))
                changes.extend(found)
        return TransactionDetail(summary=summary, changes=changes)

    def entity_history(self, table: str, key: Any) -> list[Change]:
        """Every version of one row of ``table``, oldest first.

        ``key`` is the row's key: a value, a tuple (or ``"a,b"`` text) for a composite
        key, or a dict by column. Raises
        :class:`~sqlalchemy_chronicle.TableNotVersioned` for a table without history
        and :class:`~sqlalchemy_chronicle.HistoryNotFound` for a key without versions.
        """
        vt = self._version_table(table)
        stmt = (
            sa.select(*vt.values, vt.tx, vt.op)
            .where(*self._key_conditions(vt, key))
            .order_by(vt.tx)
        )
        with self._connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            raise HistoryNotFound(
                f"{vt.name} {self._key_text(vt, key)} has no version in {self._where()}."
            )
        changes: list[Change] = []
        previous: dict[str, Any] | None = None
        previous_op = None
        n = len(vt.values)
        for row in rows:
            values = {c.key: row[i] for i, c in enumerate(vt.values)}
            changes.append(
                self._change(vt, row[n], row[n + 1], values, previous, previous_op == 2)
            )
            previous, previous_op = values, row[n + 1]
        return changes

    def diff(
        self,
        table: str,
        key: Any,
        *,
        from_tx: int | None = None,
        to_tx: int | None = None,
    ) -> EntityDiff:
        """One row of ``table`` compared at two transactions.

        The state at a transaction is the row's last version written in or before it.
        ``to_tx`` defaults to the row's last version, ``from_tx`` to the version before
        the one ``to_tx`` shows (so with neither, the diff is the last change).
        """
        history = self.entity_history(table, key)

        def state_at(tx: int) -> Change | None:
            found = None
            for change in history:
                if change.transaction_id <= tx:
                    found = change
            return found

        to_change = history[-1] if to_tx is None else state_at(int(to_tx))
        resolved_to = to_change.transaction_id if to_tx is None and to_change else to_tx
        if from_tx is None:
            from_change: Change | None = None
            if to_change is not None:
                index = history.index(to_change)
                from_change = history[index - 1] if index > 0 else None
            resolved_from = from_change.transaction_id if from_change else None
        else:
            from_change = state_at(int(from_tx))
            resolved_from = int(from_tx)

        def values(change: Change | None) -> dict[str, Any]:
            if change is None or change.operation == "delete":
                return {}
            return change.values

        old, new = values(from_change), values(to_change)
        names = [c.key for c in self._version_table(table).values]
        fields = [
            FieldDiff(
                name=n,
                old=old.get(n),
                new=new.get(n),
                changed=_differs(old.get(n), new.get(n)),
            )
            for n in names
        ]
        return EntityDiff(
            table=history[0].table,
            key=history[0].key,
            from_tx=resolved_from,
            to_tx=int(resolved_to) if resolved_to is not None else None,
            fields=fields,
            from_operation=from_change.operation if from_change else None,
            to_operation=to_change.operation if to_change else None,
        )

    # -- queries --------------------------------------------------------------------

    def _user_join(self) -> sa.ColumnElement[bool]:
        assert self._user_table is not None and self._user_label is not None
        fk = next(iter(self._transaction.c.user_id.foreign_keys))
        return self._transaction.c.user_id == fk.column

    def _tx_conditions(
        self,
        user: str | int | None,
        since: datetime.datetime | None,
        until: datetime.datetime | None,
    ) -> list[sa.ColumnElement[bool]]:
        T = self._transaction
        conds: list[sa.ColumnElement[bool]] = []
        if since is not None:
            conds.append(T.c.issued_at >= as_utc_naive(since))
        if until is not None:
            conds.append(T.c.issued_at < as_utc_naive(until))
        if user is not None:
            if "user_id" not in T.c:
                raise ConfigurationError(
                    f"The transaction table {T.name!r} has no user_id column: it cannot be "
                    f"filtered by user."
                )
            matches: list[sa.ColumnElement[bool]] = []
            with contextlib.suppress(ConfigurationError):  # not an id: maybe a name
                matches.append(T.c.user_id == _coerce(T.name, T.c.user_id, str(user)))
            if self._user_label is not None:
                matches.append(self._user_label == str(user))
            conds.append(sa.or_(*matches) if matches else sa.false())
        return conds

    def _key_values(self, vt: _VersionTable, key: Any) -> list[Any]:
        columns = vt.key
        if isinstance(key, Mapping):
            by_name = {**{c.name: c for c in columns}, **{c.key: c for c in columns}}
            unknown = set(key) - set(by_name)
            missing = {c.key for c in columns} - {by_name[k].key for k in key if k in by_name}
            if unknown or missing:
                raise ConfigurationError(
                    f"The key of {vt.name} is ({', '.join(c.key for c in columns)}), "
                    f"not {dict(key)!r}."
                )
            given = {by_name[k].key: v for k, v in key.items()}
            values = [given[c.key] for c in columns]
        elif isinstance(key, tuple | list):
            values = list(key)
        elif isinstance(key, str) and len(columns) > 1:
            values = [part.strip() for part in key.split(",")]
        else:
            values = [key]
        if len(values) != len(columns):
            raise ConfigurationError(
                f"The key of {vt.name} has {len(columns)} column(s) "
                f"({', '.join(c.key for c in columns)}); {key!r} gives {len(values)}."
            )
        return [_coerce(vt.name, c, v) for c, v in zip(columns, values, strict=True)]

    def _key_conditions(self, vt: _VersionTable, key: Any) -> list[sa.ColumnElement[bool]]:
        return [
            c == v for c, v in zip(vt.key, self._key_values(vt, key), strict=True)
        ]

    def _key_text(self, vt: _VersionTable, key: Any) -> str:
        try:
            values = self._key_values(vt, key)
        except ConfigurationError:
            return repr(key)
        return ", ".join(f"{c.key}={v!r}" for c, v in zip(vt.key, values, strict=True))

    def _summaries(
        self, conn: sa.Connection, ids: Sequence[int]
    ) -> dict[int, TransactionSummary]:
        """The summaries of transactions ``ids``: two queries, whatever their number."""
        if not ids:
            return {}
        T = self._transaction
        columns: list[sa.ColumnElement[Any]] = [T.c.id, T.c.issued_at]
        columns.append(T.c.remote_addr if "remote_addr" in T.c else sa.null())
        columns.append(T.c.user_id if "user_id" in T.c else sa.null())
        source: sa.FromClause = T
        if self._user_table is not None and self._user_label is not None:
            columns.append(self._user_label)
            source = T.outerjoin(self._user_table, self._user_join())
        else:
            columns.append(sa.null())
        rows = conn.execute(sa.select(*columns).select_from(source).where(T.c.id.in_(ids)))
        found = {row[0]: row for row in rows}
        tables: dict[int, list[str]] = {i: [] for i in found}
        counts: dict[int, int] = dict.fromkeys(found, 0)
        names = list(self._tables)
        if names and found:
            parts = [
                sa.select(sa.literal(i, sa.Integer).label("t"), vt.tx.label("tx"),
                          sa.func.count().label("n"))
                .where(vt.tx.in_(list(found)))
                .group_by(vt.tx)
                for i, vt in enumerate(self._tables.values())
            ]
            stmt = parts[0] if len(parts) == 1 else sa.union_all(*parts)
            for t, tx, n in conn.execute(stmt):
                tables[tx].append(names[t])
                counts[tx] += n
        result = {}
        for tx_id, row in found.items():
            _, issued_at, remote_addr, user_id, label = row
            if label is not None:
                user: str | None = str(label)
            else:
                user = None if user_id is None else str(user_id)
            result[tx_id] = TransactionSummary(
                id=tx_id,
                issued_at=_aware(issued_at),
                user=user,
                remote_addr=remote_addr,
                tables=tuple(sorted(tables[tx_id])),
                change_count=counts[tx_id],
                user_id=user_id,
            )
        return result

    def _changes_with_previous(
        self,
        conn: sa.Connection,
        vt: _VersionTable,
        where: Callable[[sa.FromClause], sa.ColumnElement[bool]],
    ) -> list[Change]:
        """The version rows of ``vt`` matching ``where(alias)``, each with the version
        before it: one query."""
        v = vt.table.alias("v")
        p = vt.table.alias("p")
        q = vt.table.alias("q")

        def same_key(a: sa.FromClause, b: sa.FromClause) -> list[sa.ColumnElement[bool]]:
            return [a.c[c.key] == b.c[c.key] for c in vt.key]

        previous_tx = (
            sa.select(sa.func.max(q.c[vt.tx.key]))
            .where(*same_key(q, v), q.c[vt.tx.key] < v.c[vt.tx.key])
            .scalar_subquery()
        )
        on = sa.and_(*same_key(p, v), p.c[vt.tx.key] == previous_tx)
        n = len(vt.values)
        stmt = (
            sa.select(
                *(v.c[c.key].label(f"v{i}") for i, c in enumerate(vt.values)),
                v.c[vt.tx.key].label("tx"),
                v.c[vt.op.key].label("op"),
                *(p.c[c.key].label(f"p{i}") for i, c in enumerate(vt.values)),
                p.c[vt.tx.key].label("ptx"),
                p.c[vt.op.key].label("pop"),
            )
            .select_from(v.outerjoin(p, on))
            .where(where(v))
        )
        changes = []
        for row in conn.execute(stmt):
            values = {c.key: row[i] for i, c in enumerate(vt.values)}
            previous = (
                None if row[2 * n + 2] is None
                else {c.key: row[n + 2 + i] for i, c in enumerate(vt.values)}
            )
            changes.append(
                self._change(vt, row[n], row[n + 1], values, previous, row[2 * n + 3] == 2)
            )
        return changes

    def _change(
        self,
        vt: _VersionTable,
        tx: int,
        op: int,
        values: dict[str, Any],
        previous: dict[str, Any] | None,
        previous_deleted: bool = False,
    ) -> Change:
        return Change(
            transaction_id=tx,
            table=vt.name,
            key={c.key: values[c.key] for c in vt.key},
            operation=_OPERATIONS.get(op, "update"),
            values=values,
            previous=previous,
            changed=_changed(vt, values, previous, previous_deleted),
        )


def _in_transaction(
    vt: _VersionTable, tx_id: int
) -> Callable[[sa.FromClause], sa.ColumnElement[bool]]:
    def where(alias: sa.FromClause) -> sa.ColumnElement[bool]:
        return alias.c[vt.tx.key] == tx_id

    return where


def _sortable(value: Any) -> tuple[int, Any]:
    """A sort key that orders None and mixed types without failing."""
    if value is None:
        return (0, "")
    if isinstance(value, int | float | decimal.Decimal):
        return (1, value)
    return (2, str(value))
