"""Check a database's history: :func:`verify` (and ``chronicle verify URL``).

:func:`verify` reads the version tables, their live tables and the transaction table
of a real database and reports every place where the history breaks an invariant
of the layout, each as a :class:`Violation` naming the version table, the entity's
key and the transaction:

``multiple_open_versions``
    an entity has an open version (``end_transaction_id`` NULL) that is not its last;
``broken_chain``
    a version's ``end_transaction_id`` is not the ``transaction_id`` of the entity's
    next version (or the last version is closed although nothing follows it);
``version_after_delete``
    a version follows a DELETE version without being an INSERT (a re-insert);
``missing_transaction``
    a version's transaction row does not exist;
``missing_version``
    a live row has no open version (its last one, with the subquery strategy);
``live_row_deleted``
    a live row's last version is a DELETE;
``stale_version``
    a live row's last version differs from it in a versioned column;
``deleted_row_open``
    an entity whose live row is gone has a last version that is not a DELETE;
``ledger_*``
    with :class:`~sqlalchemy_chronicle.plugins.TamperEvidencePlugin`, a transaction
    whose recomputed digest differs from its ledger entry (``ledger_digest``), a
    broken hash chain (``ledger_chain``), a transaction missing from the ledger
    (``ledger_missing``); :attr:`VerifyReport.first_altered_transaction` names the
    first transaction, in commit order, whose history was altered.

Association (many-to-many) version tables are checked like the others, keyed by
their columns. Every check is a set-based query per chunk of keys (the first key
column's values, :data:`CHUNK_ROWS` version rows a chunk), so memory stays flat and a
table of millions of rows is read a handful of times. The tables come from the
application's models (``models=`` a declarative base or its metadata) or, without
them, from reflection: every table ``<name>_version`` with a ``transaction_id``
column and a live table ``<name>``.

``fix=True`` repairs, in one database transaction, what is safe to repair: it closes
an open version that is not its entity's last (``end_transaction_id`` = the next
version's transaction), and for a live row with no open version, with a stale one or
with a DELETE as its last version, writes a new version from the live row under a
new transaction row, closing the previous version. :attr:`VerifyReport.fixes` says
what it changed; the rest is reported, never guessed at.

.. versionadded:: 0.1
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..capture.ledger import (
    GENESIS_CHAIN,
    HEAD_TRANSACTION_ID,
    chain_hash,
    raw_columns,
    row_hash,
    transaction_digest,
    write_ledger_entry,
)
from ..capture.transaction_ids import insert_transaction_row
from ..capture.writer import utc_now
from ..config import Operation
from ..exc import ConfigurationError
from ..schema.tables import INFO_KEY, VersionTableSpec, as_utc_naive

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["CHUNK_ROWS", "Fix", "Progress", "VerifyReport", "Violation", "verify"]

#: Version rows per chunk of keys.
CHUNK_ROWS = 50_000
#: Violations listed per check and table; the rest are counted.
MAX_LISTED = 1_000

#: ``progress(table name, chunks done, chunks in total)``, called after each chunk.
Progress = Callable[[str, int, int], None]

_FIXABLE = frozenset(
    {"multiple_open_versions", "missing_version", "live_row_deleted", "stale_version"}
)


@dataclass(frozen=True)
class Violation:
    """One place where the history breaks an invariant."""

    #: What is wrong (see the module documentation for the list).
    check: str
    #: The version table (the ledger table for ``ledger_*`` checks).
    table: str
    #: The entity's key, by column name (None for a whole transaction).
    key: dict[str, Any] | None
    #: The transaction of the version at fault (None when there is none).
    transaction_id: int | None
    #: A sentence for people.
    message: str

    @property
    def fixable(self) -> bool:
        """Whether ``fix=True`` repairs it."""
        return self.check in _FIXABLE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (key values as strings where not plain numbers)."""
        key = None if self.key is None else {k: _plain(v) for k, v in self.key.items()}
        return {
            "check": self.check,
            "table": self.table,
            "key": key,
            "transaction_id": self.transaction_id,
            "message": self.message,
            "fixable": self.fixable,
        }


@dataclass(frozen=True)
class Fix:
    """One repair ``fix=True`` made."""

    table: str
    key: dict[str, Any]
    #: What it did: ``closed`` (an open version) or ``wrote`` (a version).
    action: str
    #: The transaction of the version closed or written.
    transaction_id: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["key"] = {k: _plain(v) for k, v in self.key.items()}
        return data


@dataclass
class VerifyReport:
    """What :func:`verify` found (and, with ``fix=True``, repaired)."""

    violations: list[Violation] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    #: Version table -> its number of version rows.
    tables: dict[str, int] = field(default_factory=dict)
    #: Violations found but not listed (more than the limit per check and table).
    unlisted: int = 0
    #: With a ledger: the first transaction, in commit order, whose history was altered.
    first_altered_transaction: int | None = None
    #: With a ledger: the last entry's (sequence, chain); keep it elsewhere to detect a
    #: rewrite of the whole chain later.
    ledger_head: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        """True when no violation was found."""
        return not self.violations and not self.unlisted

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form of the report."""
        return {
            "ok": self.ok,
            "tables": dict(self.tables),
            "violations": [v.as_dict() for v in self.violations],
            "unlisted_violations": self.unlisted,
            "fixes": [f.as_dict() for f in self.fixes],
            "first_altered_transaction": self.first_altered_transaction,
            "ledger_head": (
                None
                if self.ledger_head is None
                else {"sequence": self.ledger_head[0], "chain": self.ledger_head[1]}
            ),
        }


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str) else str(value)


@dataclass(frozen=True)
class _Target:
    """One version table to check, with its live table."""

    version: sa.Table
    parent: sa.Table | None
    #: (live column, version column) of the entity key, in order.
    key: tuple[tuple[sa.Column[Any] | None, sa.Column[Any]], ...]
    #: (live column, version column) of every versioned column, key included.
    compared: tuple[tuple[sa.Column[Any], sa.Column[Any]], ...]
    tx: sa.Column[Any]
    end: sa.Column[Any] | None
    op: sa.Column[Any]

    @property
    def vkey(self) -> list[sa.Column[Any]]:
        return [v for _, v in self.key]


# -- finding the tables ------------------------------------------------------------------


def _targets_from_specs(specs: Iterable[VersionTableSpec]) -> list[_Target]:
    result = []
    for spec in specs:
        result.append(
            _Target(
                version=spec.version,
                parent=spec.parent,
                key=tuple(spec.pk),
                compared=tuple(spec.columns),
                tx=spec.tx,
                end=spec.end_tx,
                op=spec.op,
            )
        )
    return result


def _metadata_of(models: Any) -> sa.MetaData:
    if isinstance(models, sa.MetaData):
        return models
    metadata = getattr(models, "metadata", None)
    if isinstance(metadata, sa.MetaData):
        return metadata
    raise ConfigurationError(
        f"verify(models=...) must be a declarative base or a MetaData, got {models!r}."
    )


def _reflect_targets(
    connection: Connection,
    schema: str | None,
    suffix: str,
    tx_name: str,
    end_name: str,
    op_name: str,
    only: frozenset[str] | None,
) -> tuple[list[_Target], sa.MetaData]:
    metadata = sa.MetaData()
    inspector = sa.inspect(connection)
    names = set(inspector.get_table_names(schema=schema))
    wanted = sorted(n for n in names if n.endswith(suffix) and n[: -len(suffix)] in names)
    if only is not None:
        wanted = [n for n in wanted if n in only or n[: -len(suffix)] in only]
    targets = []
    for name in wanted:
        columns = {c["name"] for c in inspector.get_columns(name, schema=schema)}
        if tx_name not in columns or op_name not in columns:
            continue
        version = sa.Table(name, metadata, autoload_with=connection, schema=schema)
        parent = sa.Table(name[: -len(suffix)], metadata, autoload_with=connection, schema=schema)
        internal = {tx_name, end_name, op_name}
        vkey = [c for c in version.primary_key.columns if c.name != tx_name]
        if not vkey:
            continue
        compared = tuple(
            (parent.c[c.name], c)
            for c in version.columns
            if c.name not in internal and c.name in parent.c
        )
        key = tuple((parent.c.get(c.name), c) for c in vkey)
        targets.append(
            _Target(
                version=version,
                parent=parent,
                key=key,
                compared=compared,
                tx=version.c[tx_name],
                end=version.c.get(end_name),
                op=version.c[op_name],
            )
        )
    return targets, metadata


# -- the checks --------------------------------------------------------------------------


class _Collector:
    def __init__(self, report: VerifyReport) -> None:
        self.report = report
        self.counts: dict[tuple[str, str], int] = {}
        #: Fixable violations with what the fix needs: (violation, extra).
        self.fixable: list[tuple[Violation, dict[str, Any]]] = []

    def add(self, violation: Violation, **extra: Any) -> None:
        slot = (violation.check, violation.table)
        count = self.counts.get(slot, 0)
        self.counts[slot] = count + 1
        if count >= MAX_LISTED:
            self.report.unlisted += 1
            return
        self.report.violations.append(violation)
        if violation.fixable:
            self.fixable.append((violation, extra))


def _key_text(key: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in key.items())


def _key_dict(target: _Target, values: Sequence[Any]) -> dict[str, Any]:
    return {v.name: value for (_, v), value in zip(target.key, values, strict=True)}


def _chunks(connection: Connection, column: sa.Column[Any], size: int) -> list[tuple[Any, Any]]:
    """Key ranges [lo, hi) of about ``size`` rows each, by ``column``'s values; the
    first is open below, the last open above (rows of the live table outside the
    version table's range fall in them)."""
    bounds: list[Any] = []
    lo = connection.scalar(sa.select(sa.func.min(column)))
    if lo is None:
        return [(None, None)]
    while True:
        hi = connection.scalar(
            sa.select(column).where(column >= lo).order_by(column).offset(size).limit(1)
        )
        if hi is not None and hi == lo:
            hi = connection.scalar(sa.select(sa.func.min(column)).where(column > lo))
        if hi is None:
            break
        bounds.append(hi)
        lo = hi
    edges = [None, *bounds, None]
    return list(itertools.pairwise(edges))


def _in_range(column: Any, lo: Any, hi: Any) -> Any:
    clauses = []
    if lo is not None:
        clauses.append(column >= lo)
    if hi is not None:
        clauses.append(column < hi)
    return sa.and_(sa.true(), *clauses)


def _comparable(column: Any) -> Any:
    """``column`` as something ``IS NOT DISTINCT FROM`` accepts on every database."""
    if isinstance(column.type, sa.JSON):
        return sa.cast(column, sa.Text)
    return column


def _check_chains(
    connection: Connection, target: _Target, lo: Any, hi: Any, out: _Collector
) -> None:
    vkey = target.vkey
    cols: list[Any] = [
        *vkey,
        target.tx.label("tx"),
        target.op.label("op"),
        sa.func.lead(target.tx).over(partition_by=vkey, order_by=target.tx).label("next_tx"),
        sa.func.lag(target.op).over(partition_by=vkey, order_by=target.tx).label("prev_op"),
    ]
    if target.end is not None:
        cols.append(target.end.label("end_tx"))
    sub = sa.select(*cols).where(_in_range(vkey[0], lo, hi)).subquery()
    conditions = [
        sa.and_(sub.c.prev_op == int(Operation.DELETE), sub.c.op != int(Operation.INSERT))
    ]
    if target.end is not None:
        conditions += [
            sa.and_(sub.c.next_tx.is_(None), sub.c.end_tx.is_not(None)),
            sa.and_(sub.c.next_tx.is_not(None), sub.c.end_tx.is_(None)),
            sa.and_(sub.c.next_tx.is_not(None), sub.c.end_tx != sub.c.next_tx),
        ]
    n = len(vkey)
    stmt = sa.select(sub).where(sa.or_(*conditions)).order_by(*list(sub.c)[:n], sub.c.tx)
    name = target.version.name
    for row in connection.execute(stmt):
        key = _key_dict(target, row[:n])
        at = f"{name} {_key_text(key)}"
        tx, op, next_tx, prev_op = row.tx, row.op, row.next_tx, row.prev_op
        if prev_op == int(Operation.DELETE) and op != int(Operation.INSERT):
            out.add(
                Violation(
                    "version_after_delete",
                    name,
                    key,
                    tx,
                    f"{at}: version of transaction {tx} is a "
                    f"{Operation(op).name} after a DELETE, without a re-insert",
                )
            )
        if target.end is None:
            continue
        end = row.end_tx
        if next_tx is not None and end is None:
            out.add(
                Violation(
                    "multiple_open_versions",
                    name,
                    key,
                    tx,
                    f"{at}: version of transaction {tx} is open but transaction "
                    f"{next_tx} wrote a later version",
                ),
                next_tx=next_tx,
            )
        elif next_tx is None and end is not None:
            out.add(
                Violation(
                    "broken_chain",
                    name,
                    key,
                    tx,
                    f"{at}: the last version (transaction {tx}) is closed by "
                    f"transaction {end}, which wrote no version of it",
                )
            )
        elif next_tx is not None and end != next_tx:
            out.add(
                Violation(
                    "broken_chain",
                    name,
                    key,
                    tx,
                    f"{at}: version of transaction {tx} ends at transaction {end} "
                    f"but the next version is of transaction {next_tx}",
                )
            )


def _last_version(target: _Target) -> tuple[Any, Any]:
    """An alias of the version table, and the condition that makes its row the last
    version of its entity (the latest open one, with validity: several open ones are
    the chain check's report). A correlated NOT EXISTS on the primary key: every
    database answers it with an index probe per row."""
    last = target.version.alias("chronicle_last")
    later = target.version.alias("chronicle_later")

    def at(alias: Any, column: sa.Column[Any]) -> Any:
        return alias.corresponding_column(column)

    newer = [at(later, v) == at(last, v) for v in target.vkey]
    newer.append(at(later, target.tx) > at(last, target.tx))
    condition = []
    if target.end is not None:
        condition.append(at(last, target.end).is_(None))
        newer.append(at(later, target.end).is_(None))
    condition.append(~sa.exists().where(*newer))
    return last, sa.and_(*condition)


def _check_live(connection: Connection, target: _Target, lo: Any, hi: Any, out: _Collector) -> None:
    parent = target.parent
    if parent is None or any(p is None for p, _ in target.key):
        return
    name = target.version.name
    last, is_last = _last_version(target)

    def lc(column: sa.Column[Any]) -> Any:
        return last.corresponding_column(column)

    pkey = [p for p, _ in target.key if p is not None]
    # The range on both sides, so that the database reads only the chunk's versions.
    join_on = sa.and_(
        *[p == lc(v) for p, v in target.key if p is not None],
        _in_range(lc(target.vkey[0]), lo, hi),
        is_last,
    )
    # Live rows: their last version, if any.
    tx_col = lc(target.tx)
    op_col = lc(target.op)
    differs = sa.or_(
        sa.false(),
        *[
            sa.not_(_comparable(p).is_not_distinct_from(_comparable(lc(v))))
            for p, v in target.compared
        ],
    )
    stmt = (
        sa.select(*pkey, tx_col.label("tx"), op_col.label("op"))
        .select_from(parent.outerjoin(last, join_on))
        .where(
            _in_range(pkey[0], lo, hi),
            sa.or_(tx_col.is_(None), op_col == int(Operation.DELETE), differs),
        )
        .order_by(*pkey)
    )
    n = len(pkey)
    stale: list[tuple[dict[str, Any], int]] = []
    for row in connection.execute(stmt):
        key = _key_dict(target, row[:n])
        at = f"{name} {_key_text(key)}"
        if row.tx is None:
            out.add(
                Violation(
                    "missing_version",
                    name,
                    key,
                    None,
                    f"{at}: the live row has no "
                    + ("open version" if target.end is not None else "version"),
                )
            )
        elif row.op == int(Operation.DELETE):
            out.add(
                Violation(
                    "live_row_deleted",
                    name,
                    key,
                    row.tx,
                    f"{at}: the live row exists but its last version (transaction "
                    f"{row.tx}) is a DELETE",
                )
            )
        else:
            stale.append((key, row.tx))
    for key, tx in stale:
        at = f"{name} {_key_text(key)}"
        columns = _differing_columns(connection, target, key, tx)
        out.add(
            Violation(
                "stale_version",
                name,
                key,
                tx,
                f"{at}: the last version (transaction {tx}) differs from the live "
                f"row in {', '.join(columns) or 'a column'}",
            )
        )
    # Entities whose live row is gone: the last version must be a DELETE.
    gone = (
        sa.select(*[lc(v) for v in target.vkey], tx_col.label("tx"))
        .where(
            _in_range(lc(target.vkey[0]), lo, hi),
            is_last,
            op_col != int(Operation.DELETE),
            ~sa.exists().where(*[p == lc(v) for p, v in target.key if p is not None]),
        )
        .order_by(*[lc(v) for v in target.vkey])
    )
    for row in connection.execute(gone):
        key = _key_dict(target, row[:n])
        at = f"{name} {_key_text(key)}"
        out.add(
            Violation(
                "deleted_row_open",
                name,
                key,
                row.tx,
                f"{at}: no live row, but the last version (transaction {row.tx}) is not a DELETE",
            )
        )


def _differing_columns(
    connection: Connection, target: _Target, key: Mapping[str, Any], tx: int
) -> list[str]:
    parent = target.parent
    assert parent is not None
    live = connection.execute(
        sa.select(*[p for p, _ in target.compared]).where(
            *[p == key[v.name] for p, v in target.key if p is not None]
        )
    ).first()
    version = connection.execute(
        sa.select(*[v for _, v in target.compared]).where(
            *[v == key[v.name] for _, v in target.key], target.tx == tx
        )
    ).first()
    if live is None or version is None:
        return []
    return [
        p.name
        for (p, _), a, b in zip(target.compared, live, version, strict=True)
        if not _same(a, b)
    ]


def _same(a: Any, b: Any) -> bool:
    if hasattr(a, "tzinfo") and hasattr(b, "tzinfo") and a is not None and b is not None:
        try:
            return bool(as_utc_naive(a) == as_utc_naive(b))
        except (TypeError, AttributeError):
            pass
    return bool(a == b)


def _check_transactions(
    connection: Connection,
    target: _Target,
    transaction: sa.Table,
    lo: Any,
    hi: Any,
    out: _Collector,
) -> None:
    vkey = target.vkey
    stmt = (
        sa.select(*vkey, target.tx.label("tx"))
        .where(
            _in_range(vkey[0], lo, hi),
            ~sa.exists().where(transaction.c.id == target.tx),
        )
        .order_by(*vkey, target.tx)
    )
    name = target.version.name
    for row in connection.execute(stmt):
        key = _key_dict(target, row[: len(vkey)])
        at = f"{name} {_key_text(key)}"
        out.add(
            Violation(
                "missing_transaction",
                name,
                key,
                row.tx,
                f"{at}: the version of transaction {row.tx} has no row in {transaction.name!r}",
            )
        )


# -- the ledger --------------------------------------------------------------------------


def _check_ledger(
    connection: Connection,
    ledger: sa.Table,
    transaction: sa.Table,
    targets: Sequence[_Target],
    report: VerifyReport,
    out: _Collector,
    chunk_rows: int,
    progress: Progress | None,
) -> None:
    name = ledger.name
    altered: dict[int, int] = {}  # transaction id -> its sequence (or 0 when unledgered)
    lc = ledger.c
    first = connection.scalar(
        sa.select(sa.func.min(lc.transaction_id)).where(lc.transaction_id != HEAD_TRANSACTION_ID)
    )
    if first is None:
        return
    # 1. Digests, by ranges of transaction ids.
    ranges = _chunks(connection, transaction.c.id, chunk_rows)
    for i, (lo, hi) in enumerate(ranges, 1):
        entries = {
            int(r.transaction_id): (int(r.sequence), str(r.digest))
            for r in connection.execute(
                sa.select(lc.transaction_id, lc.sequence, lc.digest).where(
                    lc.transaction_id != HEAD_TRANSACTION_ID, _in_range(lc.transaction_id, lo, hi)
                )
            )
        }
        tx_rows: dict[int, Mapping[Any, Any]] = {
            int(r._mapping["id"]): r._mapping
            for r in connection.execute(
                sa.select(*raw_columns(transaction)).where(_in_range(transaction.c.id, lo, hi))
            )
        }
        hashes: dict[int, list[str]] = {}
        for target in targets:
            leave_out = (target.end.name,) if target.end is not None else ()
            tx_name = target.tx.name
            rows = connection.execute(
                sa.select(*raw_columns(target.version, leave_out)).where(
                    _in_range(target.tx, lo, hi)
                )
            )
            for row in rows:
                m = row._mapping
                hashes.setdefault(int(m[tx_name]), []).append(row_hash(target.version.name, m))
        for tx_id in sorted(set(entries) | {t for t in hashes if t >= first}):
            entry = entries.get(tx_id)
            if entry is None:
                altered[tx_id] = 0
                out.add(
                    Violation(
                        "ledger_missing",
                        name,
                        None,
                        tx_id,
                        f"transaction {tx_id} wrote versions but has no entry in {name!r} "
                        f"(added, or its entry removed, after the fact)",
                    )
                )
                continue
            digest = transaction_digest(tx_rows.get(tx_id), hashes.get(tx_id, ()))
            if digest != entry[1]:
                altered[tx_id] = entry[0]
                what = "its row is missing" if tx_id not in tx_rows else "its rows were altered"
                out.add(
                    Violation(
                        "ledger_digest",
                        name,
                        None,
                        tx_id,
                        f"transaction {tx_id} (ledger sequence {entry[0]}): the digest of "
                        f"its transaction row and versions differs from its ledger entry; "
                        f"{what}",
                    )
                )
        if progress is not None:
            progress(name, i, len(ranges))
    # 2. The chain, in commit (sequence) order.
    previous, expected_seq = GENESIS_CHAIN, 1
    last: tuple[int, str] | None = None
    stmt = (
        sa.select(lc.transaction_id, lc.sequence, lc.digest, lc.chain)
        .where(lc.transaction_id != HEAD_TRANSACTION_ID)
        .order_by(lc.sequence)
        .execution_options(yield_per=chunk_rows)
    )
    for row in connection.execute(stmt):
        tx_id, seq = int(row.transaction_id), int(row.sequence)
        if seq != expected_seq:
            altered.setdefault(tx_id, seq)
            out.add(
                Violation(
                    "ledger_chain",
                    name,
                    None,
                    tx_id,
                    f"ledger entries {expected_seq}..{seq - 1} are missing before "
                    f"transaction {tx_id} (sequence {seq})",
                )
            )
        if chain_hash(previous, str(row.digest), tx_id, seq) != row.chain:
            altered.setdefault(tx_id, seq)
            out.add(
                Violation(
                    "ledger_chain",
                    name,
                    None,
                    tx_id,
                    f"transaction {tx_id} (sequence {seq}): its ledger entry does not "
                    f"chain to the entry before it",
                )
            )
        previous, expected_seq, last = str(row.chain), seq + 1, (seq, str(row.chain))
    head = connection.execute(
        sa.select(lc.sequence, lc.chain).where(lc.transaction_id == HEAD_TRANSACTION_ID)
    ).first()
    if last is not None and (head is None or (-int(head[0]), str(head[1])) != last):
        out.add(
            Violation(
                "ledger_chain",
                name,
                None,
                None,
                f"the ledger's head row does not point at its last entry (sequence "
                f"{last[0]}): entries were removed from the end or the head was altered",
            )
        )
    report.ledger_head = last
    if altered:
        # In commit order; transactions missing from the ledger have no place in it and
        # come after the altered entries, by id.
        report.first_altered_transaction = min(
            altered, key=lambda t: (altered[t] or float("inf"), t)
        )


# -- repairs -----------------------------------------------------------------------------


def _apply_fixes(
    connection: Connection,
    targets: Mapping[str, _Target],
    transaction: sa.Table,
    fixable: list[tuple[Violation, dict[str, Any]]],
    report: VerifyReport,
    ledger: sa.Table | None,
    every_target: Sequence[_Target],
) -> None:
    fix_tx: int | None = None

    def new_tx() -> int:
        nonlocal fix_tx
        if fix_tx is None:
            fix_tx = _insert_transaction(connection, transaction)
        return fix_tx

    for violation, extra in fixable:
        target = targets[violation.table]
        key = violation.key or {}
        where_key = [v == key[v.name] for v in target.vkey]
        if violation.check == "multiple_open_versions":
            assert target.end is not None and violation.transaction_id is not None
            next_tx = int(extra["next_tx"])
            connection.execute(
                sa.update(target.version)
                .where(*where_key, target.tx == violation.transaction_id)
                .values({target.end.key: next_tx})
            )
            report.fixes.append(
                Fix(
                    violation.table,
                    key,
                    "closed",
                    violation.transaction_id,
                    f"closed the version of transaction {violation.transaction_id} at "
                    f"transaction {next_tx}",
                )
            )
            continue
        parent = target.parent
        assert parent is not None
        where_live = [p == key[v.name] for p, v in target.key if p is not None]
        if connection.execute(sa.select(sa.literal(1)).where(*where_live)).first() is None:
            continue
        tx_id = new_tx()
        last_op = connection.scalar(
            sa.select(target.op).where(*where_key).order_by(target.tx.desc()).limit(1)
        )
        op = (
            Operation.INSERT
            if last_op is None or last_op == int(Operation.DELETE)
            else Operation.UPDATE
        )
        if target.end is not None:
            connection.execute(
                sa.update(target.version)
                .where(*where_key, target.end.is_(None))
                .values({target.end.key: tx_id})
            )
        # Copied in SQL, so every value (a JSON null, a time zone) is stored as it is.
        copy = sa.select(
            *[p for p, _ in target.compared], sa.literal(tx_id), sa.literal(int(op))
        ).where(*where_live)
        names = [v.name for _, v in target.compared] + [target.tx.name, target.op.name]
        connection.execute(sa.insert(target.version).from_select(names, copy))
        report.fixes.append(
            Fix(
                violation.table,
                key,
                "wrote",
                tx_id,
                f"wrote an {op.name} version from the live row in transaction {tx_id}"
                + (", closing the previous one" if target.end is not None else ""),
            )
        )
    if fix_tx is not None and ledger is not None:
        # The repair is history too: its versions join the chain like any commit's.
        tables = [
            (t.version, t.tx.name, t.end.name if t.end is not None else None) for t in every_target
        ]
        write_ledger_entry(connection, ledger, transaction, fix_tx, tables)


def _insert_transaction(connection: Connection, transaction: sa.Table) -> int:
    """Write the transaction row of a repair; its id."""
    values: dict[str, Any] = {}
    if "issued_at" in transaction.c:
        values["issued_at"] = utc_now()
    column = transaction.c.id
    sequence = f"{transaction.name}_id_seq"
    if (
        not isinstance(column.default, sa.Sequence)
        and connection.dialect.supports_sequences
        and sa.inspect(connection).has_sequence(sequence, schema=transaction.schema)
    ):
        # A reflected table: its ids come from the sequence each INSERT names.
        next_id = sa.Sequence(sequence, schema=transaction.schema).next_value()
        values["id"] = int(connection.execute(sa.select(next_id)).scalar_one())
        connection.execute(sa.insert(transaction), values)
        return int(values["id"])
    return insert_transaction_row(connection, transaction, values)


# -- the entry point ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    models: Any
    tables: frozenset[str] | None
    fix: bool
    schema: str | None
    version_suffix: str
    transaction_table: str
    tx_name: str
    end_name: str
    op_name: str
    ledger_table: str | None
    chunk_rows: int
    progress: Progress | None


def verify(
    bind: Engine | Connection,
    *,
    models: Any = None,
    tables: Iterable[str] | None = None,
    fix: bool = False,
    schema: str | None = None,
    version_suffix: str = "_version",
    transaction_table: str = "transaction",
    transaction_column_name: str = "transaction_id",
    end_transaction_column_name: str = "end_transaction_id",
    operation_type_column_name: str = "operation_type",
    ledger_table: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every versioning invariant of the database at ``bind``; a report.

    :param bind: an Engine, or a Connection (the caller then owns its transaction and
        commits the repairs).
    :param models: a declarative base or MetaData whose version tables to check;
        without it the tables are reflected (``<name><version_suffix>`` beside
        ``<name>``, in ``schema``), with the column names given.
    :param tables: only these version tables (or their live tables), by name.
    :param fix: repair what is safe, in one transaction (see the module docs).
    :param ledger_table: the tamper-evidence ledger; default
        ``<transaction table>_ledger``, checked when it exists (and ``tables`` is not
        given: its digests cover every version table).
    :param chunk_rows: version rows per chunk of keys.
    :param progress: called after each chunk with (table, chunks done, chunks).

    Given an Engine, it reads in one REPEATABLE READ transaction on PostgreSQL and
    MariaDB (one snapshot: concurrent writes cannot show as violations).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigurationError(
            f"verify(chunk_rows=...) must be a positive int, got {chunk_rows!r}."
        )
    if isinstance(tables, str):
        tables = [tables]
    options = _Options(
        models=models,
        tables=None if tables is None else frozenset(tables),
        fix=bool(fix),
        schema=schema,
        version_suffix=version_suffix,
        transaction_table=transaction_table,
        tx_name=transaction_column_name,
        end_name=end_transaction_column_name,
        op_name=operation_type_column_name,
        ledger_table=ledger_table,
        chunk_rows=chunk_rows,
        progress=progress,
    )
    if isinstance(bind, sa.Engine):
        if bind.dialect.name in ("postgresql", "mysql", "mariadb"):
            bind = bind.execution_options(isolation_level="REPEATABLE READ")
        with bind.connect() as connection:
            report = _verify(connection, options)
            if report.fixes:
                connection.commit()
            return report
    if isinstance(bind, sa.Connection):
        return _verify(bind, options)
    raise ConfigurationError(f"verify() needs an Engine or a Connection, got {bind!r}.")


def _verify(connection: Connection, opts: _Options) -> VerifyReport:
    report = VerifyReport()
    ledger: sa.Table | None = None
    ledger_name = opts.ledger_table or f"{opts.transaction_table}_ledger"
    if opts.models is not None:
        metadata = _metadata_of(opts.models)
        specs: dict[Any, VersionTableSpec] = metadata.info.get(INFO_KEY, {})
        targets = _targets_from_specs(specs.values())
        transaction = _find_table(metadata, opts.transaction_table, opts.schema)
        if transaction is None:
            raise ConfigurationError(
                f"verify(models=...): no table {opts.transaction_table!r} in the models' "
                f"metadata; pass transaction_table=..., or call configure_mappers() first."
            )
        ledger = _find_table(metadata, ledger_name, opts.schema)
    else:
        targets, metadata = _reflect_targets(
            connection,
            opts.schema,
            opts.version_suffix,
            opts.tx_name,
            opts.end_name,
            opts.op_name,
            opts.tables,
        )
        names = set(sa.inspect(connection).get_table_names(schema=opts.schema))
        if opts.transaction_table not in names:
            raise ConfigurationError(
                f"verify: the database has no table {opts.transaction_table!r}; pass "
                f"transaction_table=... (or the models) to name the transaction table."
            )
        transaction = sa.Table(
            opts.transaction_table, metadata, autoload_with=connection, schema=opts.schema
        )
        if ledger_name in names:
            ledger = sa.Table(ledger_name, metadata, autoload_with=connection, schema=opts.schema)
    every_target = list(targets)
    if opts.tables is not None:
        wanted = opts.tables
        targets = [
            t
            for t in targets
            if t.version.name in wanted or (t.parent is not None and t.parent.name in wanted)
        ]
        known = {t.version.name for t in targets} | {
            t.parent.name for t in targets if t.parent is not None
        }
        if wanted - known:
            raise ConfigurationError(
                f"verify(tables=...): no versioned table named {', '.join(sorted(wanted - known))}."
            )
    out = _Collector(report)
    for target in targets:
        report.tables[target.version.name] = int(
            connection.scalar(sa.select(sa.func.count()).select_from(target.version)) or 0
        )
        ranges = _chunks(connection, target.vkey[0], opts.chunk_rows)
        for i, (lo, hi) in enumerate(ranges, 1):
            _check_chains(connection, target, lo, hi, out)
            _check_live(connection, target, lo, hi, out)
            _check_transactions(connection, target, transaction, lo, hi, out)
            if opts.progress is not None:
                opts.progress(target.version.name, i, len(ranges))
    if ledger is not None and opts.tables is None:
        _check_ledger(
            connection,
            ledger,
            transaction,
            every_target,
            report,
            out,
            opts.chunk_rows,
            opts.progress,
        )
    if opts.fix and out.fixable:
        by_name = {t.version.name: t for t in targets}
        _apply_fixes(connection, by_name, transaction, out.fixable, report, ledger, every_target)
    return report


def _find_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table | None:
    return metadata.tables.get(f"{schema}.{name}" if schema else name)
