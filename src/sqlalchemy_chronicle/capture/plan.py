"""What happened, as the writer needs it: per version table, ``{key: Operation}``.

Pure: nothing here reads or writes the database. A source (flush events, a bulk
statement, a trigger backend) reports each change of an entity as ``(version table
spec, key, operation)``; :class:`Plan` folds repeated changes of one entity into
the single operation its version row of this transaction must end up with (an
INSERT followed by an UPDATE is an INSERT, an INSERT followed by a DELETE a DELETE,
...), taking into account what this transaction wrote already (:data:`FOLD`).

The writer (:mod:`.writer`) then turns a :class:`TablePlan` into statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import orm

from ..config import Operation

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.orm import InstanceState

    from ..schema.models import VersionedModel
    from ..schema.tables import VersionTableSpec

__all__ = ["FOLD", "PK", "Plan", "TablePlan", "changed", "plan_flush", "state_key"]

#: The key of an entity: its primary key values, in the version table's key order.
PK = tuple[Any, ...]

#: The fold table: what an operation does when this transaction already wrote a
#: version of the same entity with operation ``before``. ``None`` means "nothing".
FOLD: dict[tuple[Operation, Operation], Operation | None] = {
    (Operation.INSERT, Operation.UPDATE): Operation.INSERT,
    (Operation.INSERT, Operation.DELETE): Operation.DELETE,
    (Operation.INSERT, Operation.INSERT): Operation.INSERT,
    (Operation.UPDATE, Operation.UPDATE): Operation.UPDATE,
    (Operation.UPDATE, Operation.DELETE): Operation.DELETE,
    (Operation.UPDATE, Operation.INSERT): Operation.UPDATE,
    (Operation.DELETE, Operation.INSERT): Operation.UPDATE,
    (Operation.DELETE, Operation.UPDATE): Operation.UPDATE,
    (Operation.DELETE, Operation.DELETE): None,
}


@dataclass
class TablePlan:
    """What one write does to one version table."""

    spec: VersionTableSpec
    #: key -> the operation its version row must end up with.
    ops: dict[PK, Operation] = field(default_factory=dict)
    #: keys with no row of this transaction in the version table yet.
    new: set[PK] = field(default_factory=set)
    #: key -> the session object of the entity (flush only; for per-object hooks).
    states: dict[PK, InstanceState[Any]] = field(default_factory=dict)
    #: key -> the entity's values, for a deleted entity that may have no version yet
    #: (a row older than versioning): its DELETE version is written from them
    #: (from ``states`` when missing here).
    values: dict[PK, Mapping[str, Any]] = field(default_factory=dict)
    #: key -> column values given by plugins (``version_row_values``), as sorted items.
    extras: dict[PK, tuple[tuple[str, Any], ...]] = field(default_factory=dict)
    #: Filled by the writer: fewer previous versions were closed than entities
    #: updated or deleted.
    short: bool = False
    #: Filled by the writer: keys whose previous versions were closed already, and
    #: how many of those had a smaller transaction id.
    closed_keys: set[PK] = field(default_factory=set)
    closed: int = 0


class Plan(dict["sa.Table", TablePlan]):
    """The :class:`TablePlan` of each version table one write touches, by version table.

    ``written`` is what this transaction wrote before: ``(version table, key) ->
    operation``; it is read, never changed (the writer records what it writes).
    """

    def __init__(
        self,
        written: Mapping[tuple[sa.Table, PK], Operation],
        born: AbstractSet[tuple[sa.Table, PK]] = frozenset(),
    ) -> None:
        super().__init__()
        self.written = written
        #: The entities this transaction inserted first (see ``UnitOfWork.born``).
        self.born = born

    def add(self, spec: VersionTableSpec, key: PK, op: Operation) -> Operation | None:
        """Fold ``op`` of the entity ``key`` of ``spec``'s table into the plan; the
        operation its version now has, or None when it needs none."""
        version = spec.version
        plan = self.get(version)
        if plan is None:
            plan = self[version] = TablePlan(spec)
        ops = plan.ops
        before = ops.get(key)
        if before is None:
            before = self.written.get((version, key))
            if before is None:
                ops[key] = op
                plan.new.add(key)
                return op
        folded = FOLD[(before, op)]
        if before is Operation.DELETE and op is Operation.INSERT and (version, key) in self.born:
            # Inserted, deleted and inserted again by this transaction: the entity did
            # not exist before it, so its version is an INSERT.
            folded = Operation.INSERT
        if folded is not None:
            ops[key] = folded
        return folded


def changed(model: VersionedModel, state: InstanceState[Any]) -> bool:
    """Whether a versioned column attribute of ``state`` holds a new value.

    ``committed_state`` has the value each changed attribute had when loaded (the
    attributes keep it: ``active_history``); NO_VALUE means it was not known.
    """
    committed = state.committed_state
    if not committed:
        return False
    current = state.dict
    compare = model.comparators
    for key in committed.keys() & model.versioned_keys:
        old = committed[key]
        if old is orm.NO_VALUE or not compare[key](old, current.get(key)):
            return True
    return False


def state_key(
    state: InstanceState[Any], keys: Sequence[str], positions: Sequence[int], op: Operation
) -> PK:
    """The key of the entity ``state`` in one of its version tables.

    A deleted row is known by its identity key; an inserted or updated one by its
    current values, which hold a new key when the primary key itself changed.
    """
    if op is not Operation.DELETE:
        values = state.dict
        try:
            return tuple([values[k] for k in keys])
        except KeyError:
            pass
    assert state.key is not None
    identity = state.key[1]
    return tuple([identity[i] for i in positions])


#: ``row_values(spec, operation, state)``: the plugin values of one version row.
RowValues = Callable[
    ["VersionTableSpec", Operation, "InstanceState[Any]"], tuple[tuple[str, Any], ...]
]


class NativeFlag(Protocol):
    #: Set when a change of a model versioned by database triggers was seen.
    native_changes: bool


def plan_flush(
    changes: Iterable[tuple[VersionedModel, InstanceState[Any], Operation]],
    written: Mapping[tuple[sa.Table, PK], Operation],
    changed_entities: set[type],
    row_values: RowValues | None = None,
    native: NativeFlag | None = None,
    born: AbstractSet[tuple[sa.Table, PK]] = frozenset(),
) -> Plan:
    """The plan of the rows one flush wrote (``changes``, from mapper events).

    Updates that changed no versioned column are left out, and so are the rows of
    models versioned by triggers (``native_versioning``): ``native.native_changes``
    is set instead. The parent class of each entity that gets a version is added to
    ``changed_entities``; ``row_values`` gives the plugin values of each version row.
    """
    plans = Plan(written, born)
    update = Operation.UPDATE
    for model, state, op in changes:
        if model.options.native_versioning:
            if native is not None:
                native.native_changes = True  # written by the database's triggers
            continue
        if op is update and not changed(model, state):
            continue
        for spec, keys, positions in model.key_sources:
            key = state_key(state, keys, positions, op)
            folded = plans.add(spec, key, op)
            plan = plans[spec.version]
            plan.states[key] = state
            if folded is None:
                continue
            changed_entities.add(model.parent)
            if row_values is not None:
                plan.extras[key] = row_values(spec, folded, state)
    return plans
