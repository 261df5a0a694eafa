"""Histories of many objects in a constant number of queries.

The loop everybody writes first::

    for article in session.scalars(select(Article)):
        print(article.versions.all())

costs one query per article with a plain dynamic relationship. Here the objects one
query loaded share a :class:`HistoryBatch`; the first ``article.versions.all()`` (or
``list(article.versions)``) among them loads the versions of all of them, in one
query per 500 objects (SQLAlchemy's ``selectin`` batch size), and every other one
is answered from it, as ``selectinload()`` would have.

It is used only where the answer is the one the query would give:

* ``versions`` itself, iterated or ``.all()``: a query derived from it
  (``.filter()``, ``.order_by()``, ``[0]``, ``.count()``, ...) runs as written;
* while the session is in the transaction it loaded the batch in, has not flushed
  or rolled back to a savepoint since, and the object was not expired: a flush may
  have written new versions, and another transaction may have committed some.

:func:`versions_at` looks up the version of many entities valid at one transaction
in one query, the batch form of ``VersionClassBase.version_at()``;
:func:`revert_many` restores many entities to given versions with one statement per
kind of change, the batch form of ``version.revert()``.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import attributes
from sqlalchemy.orm.dynamic import AppenderQuery

from ..capture.sql import key_in, ordered
from ..config import Operation, Strategy
from ..exc import ConfigurationError, ReverterException
from .revert import Reverter, check_session_versioned

if TYPE_CHECKING:
    from sqlalchemy.orm import InstanceState, QueryContext

    from ..schema.models import VersionedModel

__all__ = [
    "BATCH_SIZE",
    "HistoryBatch",
    "VersionsQuery",
    "forget_batch",
    "note_loaded",
    "note_refreshed",
    "revert_many",
    "versions_at",
]

#: Objects whose histories one query loads (SQLAlchemy's selectin loader uses 500).
BATCH_SIZE = 500

#: Where a loaded parent keeps its batch: a key of the instance's ``__dict__`` that is
#: no mapped attribute (SQLAlchemy leaves such keys alone).
_BATCH = "_chronicle_history_batch"


def _generation(manager: Any, session: orm.Session) -> tuple[int, int]:
    """Which unit of work of ``session``'s transaction, and how many flushes and
    rollbacks to a savepoint it saw (the batch is valid while this stays the same)."""
    uow = manager.find_unit_of_work(session)  # a read must not create one (it would leak)
    if uow is None:
        return 0, 0  # the next flush creates one: its id tells the batch is stale
    return id(uow), uow.generation


def _transaction_ref(session: orm.Session) -> weakref.ref[Any] | None:
    transaction = session.get_transaction()
    return None if transaction is None else weakref.ref(transaction)


class HistoryBatch:
    """The parents one query loaded, and their histories once one was asked for."""

    def __init__(self, model: VersionedModel, session: orm.Session) -> None:
        self.model = model
        self.manager = model.version_cls.__versioning_manager__  # type: ignore[union-attr]
        self.session_ref = weakref.ref(session)
        self.transaction = _transaction_ref(session)
        self.generation = _generation(self.manager, session)
        self.members: list[weakref.ref[InstanceState[Any]]] = []
        #: key -> versions in transaction order; None until loaded.
        self.histories: dict[tuple[Any, ...], list[Any]] | None = None
        #: mapper -> the attribute keys of the version table's key (see key_of).
        self._names: dict[orm.Mapper[Any], list[str] | None] = {}

    def valid_for(self, session: orm.Session | None) -> bool:
        if session is None or self.session_ref() is not session or self.transaction is None:
            return False
        current = session.get_transaction()
        return (
            current is not None
            and self.transaction() is current
            and self.generation == _generation(self.manager, session)
        )

    def key_of(self, state: InstanceState[Any]) -> tuple[Any, ...] | None:
        """The version-table key of a parent (None when its key is not loaded, or its
        class does not map the version table's key columns: a concrete subclass, which
        is answered alone)."""
        mapper = state.mapper
        names = self._names[mapper] if mapper in self._names else self._key_names(mapper)
        if names is None:
            return None
        values = state.dict
        try:
            return tuple([values[name] for name in names])
        except KeyError:
            return None

    def _key_names(self, mapper: orm.Mapper[Any]) -> list[str] | None:
        names: list[str] | None
        try:
            names = [mapper.get_property_by_column(p).key for p, _ in self.model.local_spec.pk]
        except orm.exc.UnmappedColumnError:
            names = None
        self._names[mapper] = names
        return names

    def history_of(self, state: InstanceState[Any], session: orm.Session) -> list[Any] | None:
        """The versions of ``state``'s entity (loading every member's on first use)."""
        key = self.key_of(state)
        if key is None:
            return None
        if self.histories is None:
            self.histories = self._load(session)
        history = self.histories.get(key)
        if history is None:  # not a member after all: answer it alone
            return None
        return list(history)

    def _load(self, session: orm.Session) -> dict[tuple[Any, ...], list[Any]]:
        version_cls: Any = self.model.version_cls
        spec = self.model.local_spec
        keys: dict[tuple[Any, ...], None] = {}
        for ref in self.members:
            state = ref()
            if state is not None:
                key = self.key_of(state)
                if key is not None:
                    keys[key] = None
        histories: dict[tuple[Any, ...], list[Any]] = {key: [] for key in keys}
        columns = [getattr(version_cls, v.key) for v in spec.version_pk]
        tx = getattr(version_cls, spec.tx.key)
        dialect = session.get_bind(mapper=self.model.mapper).dialect
        all_keys = ordered(keys)
        for start in range(0, len(all_keys), BATCH_SIZE):
            chunk = all_keys[start : start + BATCH_SIZE]
            stmt = (
                sa.select(version_cls)
                .where(key_in(columns, chunk, dialect))
                .order_by(*columns, tx)
            )
            key_of = operator.attrgetter(*[v.key for v in spec.version_pk])
            single = len(spec.version_pk) == 1
            for version in session.scalars(stmt):
                key = key_of(version)
                histories[(key,) if single else key].append(version)
        return histories


#: mapper -> the model whose ``versions`` relationship its objects have (None: none
#: of ours), for subclasses of the mapper a listener was registered on.
_OWNERS: weakref.WeakKeyDictionary[Any, VersionedModel | None] = weakref.WeakKeyDictionary()


def _owner_model(model: VersionedModel, mapper: Any) -> VersionedModel | None:
    """The model that declared the ``versions`` of ``mapper``'s objects: the base's for
    single- and joined-table subclasses (they inherit it), their own for concrete ones."""
    if mapper in _OWNERS:
        return _OWNERS[mapper]
    owner: VersionedModel | None = None
    prop = mapper.attrs.get("versions")
    if isinstance(prop, orm.RelationshipProperty):
        manager = getattr(model.version_cls, "__versioning_manager__", None)
        found = manager.model_for_mapper(prop.parent) if manager is not None else None
        if found is not None and found.version_cls is prop.mapper.class_:
            owner = found
    _OWNERS[mapper] = owner
    return owner


def note_loaded(model: VersionedModel, state: InstanceState[Any], context: QueryContext) -> None:
    """``load`` listener (``raw=True``) of versioned parent ``model`` (bound with
    ``functools.partial``): the object joins the batch of the query loading it.

    It runs for every versioned object any query loads, so it does little: the batch
    is made once per query and model.
    """
    session = context.session if context is not None else None
    if session is None or model.version_cls is None:
        return
    if state.mapper is not model.mapper:
        found = _owner_model(model, state.mapper)
        if found is None:
            return
        model = found
    version = model.local_spec.version
    batches = context.attributes.get(_BATCH)
    if batches is None:
        batches = context.attributes[_BATCH] = {}
    batch = batches.get(version)
    if batch is None:
        batch = batches[version] = HistoryBatch(model, session)
    batch.members.append(weakref.ref(state))
    state.dict[_BATCH] = batch


def note_refreshed(
    model: VersionedModel, state: InstanceState[Any], context: QueryContext, attrs: Any
) -> None:
    """``refresh`` listener (``raw=True``): an object that a query loads again (it was
    expired, or the query populates existing objects) joins that query's batch, as a
    new one would."""
    state.dict.pop(_BATCH, None)
    if context is not None:  # None: values set by a bulk UPDATE's synchronization
        note_loaded(model, state, context)


def forget_batch(state: InstanceState[Any], *args: Any) -> None:
    """``expire``/``refresh`` listener (``raw=True``): an expired parent leaves its batch."""
    if state is not None:
        state.dict.pop(_BATCH, None)


#: What a deferred :class:`VersionsQuery` answers without building its query.
_DEFERRED_OK = frozenset(
    {"__dict__", "__class__", "_chronicle_complete", "_batched", "all", "instance", "session"}
)


class VersionsQuery(AppenderQuery[Any]):
    """The query class of a dynamic ``versions`` relationship: iterating it, or its
    ``.all()``, answers from the object's :class:`HistoryBatch` when it can.

    Building the query of one object's versions (its criteria cloned from the
    relationship's join) costs more than answering from the batch; for an object in a
    batch it is put off until something other than ``.all()``/iteration needs it.
    """

    def __init__(self, attr: Any, state: InstanceState[Any]) -> None:
        if _BATCH in state.dict:
            object.__getattribute__(self, "__dict__").update(
                instance=state.obj(), attr=attr, _chronicle_deferred=state,
                _chronicle_origin=id(self),
            )
            return
        self._chronicle_build(attr, state)

    def _chronicle_build(self, attr: Any, state: InstanceState[Any]) -> None:
        super().__init__(attr, state)
        # Generative methods copy __dict__ into a new object: only the query the
        # attribute handed out has its own id here.
        self._chronicle_origin = id(self)

    def _chronicle_complete(self) -> None:
        state = self.__dict__.pop("_chronicle_deferred", None)
        if state is not None:
            self._chronicle_build(self.__dict__["attr"], state)

    def __getattribute__(self, name: str) -> Any:
        # Every attribute read of the query comes here: the common case (a built
        # query, or a name the deferred one answers) first, with one look-up.
        if "_chronicle_deferred" in object.__getattribute__(self, "__dict__") and (
            name not in _DEFERRED_OK
        ):
            object.__getattribute__(self, "_chronicle_complete")()
        return object.__getattribute__(self, name)

    def _batched(self) -> list[Any] | None:
        values = object.__getattribute__(self, "__dict__")
        if values.get("_chronicle_origin") != id(self):
            return None
        instance = values["instance"]
        batch: HistoryBatch | None = instance.__dict__.get(_BATCH)
        if batch is None:
            return None
        session = self.session  # flushes pending changes first (autoflush)
        if session is None or not batch.valid_for(session):
            return None
        state = values.get("_chronicle_deferred") or attributes.instance_state(instance)
        return batch.history_of(state, session)

    def all(self) -> list[Any]:
        found = self._batched()
        if found is not None:
            return found
        self._chronicle_complete()
        return super().all()

    def __iter__(self) -> Iterator[Any]:
        found = self._batched()
        if found is not None:
            return iter(found)
        self._chronicle_complete()
        return super().__iter__()


def versions_at(
    version_cls: Any,
    session: orm.Session,
    keys: Iterable[Mapping[str, Any] | Sequence[Any] | Any],
    transaction_id: int,
) -> dict[tuple[Any, ...], Any]:
    """The version of each entity of ``keys`` valid at ``transaction_id``, in one query
    per 500 keys: ``{key tuple: version}``, for the keys that had a version by then.

    Each is what ``version_cls.version_at(session, key, transaction_id)`` returns
    (the newest version written at or before that transaction, a DELETE version if
    the entity had been deleted by then).
    """
    spec = version_cls._spec()
    wanted = list(dict.fromkeys(version_cls._pk_values_from(key) for key in keys))
    columns = [getattr(version_cls, v.key) for v in spec.version_pk]
    tx = getattr(version_cls, spec.tx.key)
    dialect = session.get_bind(mapper=sa.inspect(version_cls)).dialect
    found: dict[tuple[Any, ...], Any] = {}
    for start in range(0, len(wanted), BATCH_SIZE):
        chunk = wanted[start : start + BATCH_SIZE]
        stmt = sa.select(version_cls).where(key_in(columns, chunk, dialect), tx <= transaction_id)
        if spec.strategy is Strategy.VALIDITY and spec.end_tx is not None:
            end = getattr(version_cls, spec.end_tx.key)
            stmt = stmt.where(sa.or_(end > transaction_id, end.is_(None)))
        else:
            newest = sa.orm.aliased(version_cls)
            stmt = stmt.where(
                tx
                == sa.select(sa.func.max(getattr(newest, spec.tx.key)))
                .where(
                    *[getattr(newest, v.key) == getattr(version_cls, v.key)
                      for v in spec.version_pk],
                    getattr(newest, spec.tx.key) <= transaction_id,
                )
                .scalar_subquery()
            )
        for version in session.scalars(stmt):
            key = tuple(getattr(version, v.key) for v in spec.version_pk)
            previous = found.get(key)
            if previous is None or getattr(previous, spec.tx.key) < getattr(version, spec.tx.key):
                found[key] = version
    return found


def revert_many(version_cls: Any, session: orm.Session, versions: Iterable[Any]) -> None:
    """Restore the entities of ``versions`` (versions of ``version_cls``) to them.

    One ``UPDATE ... FROM`` the version table restores the rows that exist, one bulk
    INSERT brings back those deleted since, and one DELETE removes those whose
    version is a DELETE. They run through ``session`` as bulk statements, so they
    are versioned (in the session's transaction) like any other; the objects of
    these entities in the session are expired. Relationships are not reverted (use
    ``version.revert(relations=[...])`` for that); objects of entities deleted here are
    expunged from the session. The caller commits.

    An entity whose class changed since its version (inheritance), or whose
    version's class maps several tables (a joined-inheritance subclass), is restored
    as ``version.revert()`` restores it, one at a time: these statements restore the
    columns of this version class's own table only.
    """
    spec = version_cls._spec()
    model = version_cls.__chronicle_model__
    parent = model.parent
    if not isinstance(session, orm.Session | orm.scoped_session):
        raise ConfigurationError(
            f"{version_cls.__name__}.revert_many() takes a Session first, not "
            f"{type(session).__name__} {session!r}."
        )
    if isinstance(session, orm.scoped_session):
        session = session()
    check_session_versioned(session, version_cls, f"{version_cls.__name__}.revert_many()")
    chosen: dict[tuple[Any, ...], Any] = {}
    for version in versions:
        if not isinstance(version, version_cls):
            raise ReverterException(
                f"{version_cls.__name__}.revert_many() was given {version!r}, which is "
                f"not a {version_cls.__name__}."
            )
        key = version._pk_values()
        if key in chosen and chosen[key] is not version:
            raise ReverterException(
                f"{version_cls.__name__}.revert_many() was given two versions of the "
                f"entity {key!r}; give one version per entity."
            )
        chosen[key] = version
    if not chosen:
        return
    live_pk = [p for p, _ in spec.pk]
    parent_mapper: orm.Mapper[Any] = sa.inspect(parent)
    dialect = session.get_bind(mapper=parent_mapper).dialect
    discriminator = parent_mapper.polymorphic_on
    existing: set[tuple[Any, ...]] = set()
    one_by_one: list[tuple[Any, ...]] = []
    keys = ordered(chosen)
    for start in range(0, len(keys), BATCH_SIZE):
        chunk = keys[start : start + BATCH_SIZE]
        extra = [] if discriminator is None else [discriminator]
        stmt = sa.select(*live_pk, *extra).where(key_in(live_pk, chunk, dialect))
        for row in session.execute(stmt):
            key = tuple(row[: len(live_pk)])
            existing.add(key)
            if discriminator is not None:
                live_cls = parent_mapper.polymorphic_map[row[-1]].class_
                if live_cls is not type(chosen[key]).__chronicle_model__.parent:
                    one_by_one.append(key)
    # An entity whose class changed since its version, or whose version's class maps
    # more tables than this one (joined inheritance): restored as revert() does it.
    joined = [k for k in keys if len(type(chosen[k]).__chronicle_model__.specs) > 1]
    one_by_one += [k for k in joined if k not in one_by_one]
    for key in one_by_one:
        Reverter(chosen.pop(key))()
    keys = [k for k in keys if k in chosen]
    deleting = [k for k in keys if chosen[k].operation is Operation.DELETE and k in existing]
    restoring = [k for k in keys if chosen[k].operation is not Operation.DELETE]
    updating = [k for k in restoring if k in existing]
    adding = [k for k in restoring if k not in existing]
    for start in range(0, len(updating), BATCH_SIZE):
        chunk = updating[start : start + BATCH_SIZE]
        pairs = [(*key, chosen[key]._transaction_id) for key in chunk]
        picked = sa.tuple_(*spec.version_pk, spec.tx).in_(pairs)
        values = {p: v for p, v in spec.columns if p not in live_pk}
        session.execute(
            sa.update(parent)
            .where(*[p == v for p, v in spec.pk], picked)
            .values(values)
            .execution_options(synchronize_session=False)
        )
    if adding:
        mapper = sa.inspect(parent)
        names = [(mapper.get_property_by_column(p).key, v.key) for p, v in spec.columns]
        rows = [{name: getattr(chosen[key], v) for name, v in names} for key in adding]
        session.execute(sa.insert(parent), rows)
    for start in range(0, len(deleting), BATCH_SIZE):
        chunk = deleting[start : start + BATCH_SIZE]
        session.execute(
            sa.delete(parent)
            .where(key_in(live_pk, chunk, dialect))
            .execution_options(synchronize_session=False)
        )
    gone, changed = set(deleting), set(updating)
    for obj in [o for o in session.identity_map.values() if isinstance(o, parent)]:
        identity = sa.inspect(obj).identity
        if identity in gone:
            session.expunge(obj)  # its row is deleted
        elif identity in changed:
            session.expire(obj)
