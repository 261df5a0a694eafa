"""Reverting an object, and the relationships named, to a version.

:class:`Reverter` first checks every relation path against the classes (so a typo
changes nothing), then restores the object from the version and walks the named
relationships through the version's temporal relationships: related objects are
restored from the versions valid at that transaction, even if they were deleted
since; children that did not exist then are removed (deleted for one-to-many,
unlinked for many-to-many). Nothing is committed: the caller commits (and nothing is
flushed either, except for a change of class, below).

An entity whose class changed since the version (inheritance: a ``Book`` version,
the row an ``Item`` now, or the other way round) cannot be restored by setting
attributes: SQLAlchemy cannot change the class of an object, nor switch one object
for another of a different class in one flush when their tables differ. The row is
changed in place instead (:func:`change_class`): the tables both classes share are
updated, the tables only the live class has lose its row and those only the
version's class has get one, at once, in the session's transaction (after a flush of
what the session holds, the live object's pending changes first). The base
row is never deleted, so nothing that references the entity is touched, and its
history records what a delete and re-insert of the entity would fold into (an
UPDATE of the shared tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from .._compat import new_instance
from ..capture.plan import Plan
from ..capture.writer import Writer
from ..config import Operation
from ..exc import ReverterException, VersioningStateError

__all__ = ["Reverter", "change_class", "check_session_versioned"]

RelationTree = dict[str, "RelationTree"]


def check_session_versioned(session: orm.Session, version_cls: Any, what: str) -> None:
    """Raise :class:`VersioningStateError` when the manager of ``version_cls`` does not
    version ``session``'s writes: reverting ``what`` there would write no history."""
    manager = version_cls.__versioning_manager__
    model = version_cls.__chronicle_model__
    if model.options.native_versioning or manager.versions_session(session):
        return  # captured by the session, or by the database's triggers
    raise VersioningStateError(
        f"Cannot revert {what}: its VersioningManager does not version the writes of "
        f"this session ({type(session).__name__}), so the revert would leave no history. "
        f"Revert it in a session that manager was installed on (make_versioned(session=...))."
    )


def _relation_tree(parent_cls: type, relations: Sequence[str]) -> RelationTree:
    tree: RelationTree = {}
    for path in relations:
        if not isinstance(path, str):
            raise ReverterException(
                f"Could not initialize Reverter: relations of {parent_cls.__name__} are "
                f"relationship names, not {type(path).__name__} {path!r}."
            )
        cls, node = parent_cls, tree
        for name in path.split("."):
            mapper: orm.Mapper[Any] = sa.inspect(cls)
            prop = mapper.relationships.get(name)
            if prop is None or name == "versions":
                raise ReverterException(
                    f"Could not initialize Reverter. Class '{cls.__name__}' does not have "
                    f"relationship '{name}'."
                )
            node = node.setdefault(name, {})
            cls = prop.mapper.class_
    return tree


class Reverter:
    """Restore ``version``'s object and the relationships in ``relations`` (dotted
    paths recurse: ``'tags.category'``)."""

    def __init__(self, version: Any, relations: Sequence[str] | None = None) -> None:
        self.version = version
        model = getattr(type(version), "__chronicle_model__", None)
        if model is None or isinstance(version, type):
            raise ReverterException(
                f"Could not initialize Reverter: it takes a version object, not "
                f"{type(version).__name__} {version!r}."
            )
        if isinstance(relations, str):
            raise ReverterException(
                f"Could not initialize Reverter: relations is a list of relationship names; "
                f"write [{relations!r}], not {relations!r}."
            )
        self.parent_cls: type = model.parent
        self.relations = _relation_tree(self.parent_cls, list(relations or ()))
        self._done: dict[tuple[type, tuple[Any, ...]], Any] = {}

    def __call__(self) -> Any:
        session = self.version._session()
        check_session_versioned(session, type(self.version), repr(self.version))
        return self._revert(session, self.version, self.relations)

    def _revert(self, session: orm.Session, version: Any, tree: RelationTree) -> Any:
        model = version.__chronicle_model__
        key = (model.parent, tuple(getattr(version, c.key) for c in model.local_spec.version_pk))
        if key in self._done:
            return self._done[key]
        parent = version.version_parent
        if version.operation is Operation.DELETE:
            self._done[key] = None
            if parent is not None:
                session.delete(parent)
            return None
        if parent is None:
            parent = new_instance(type(version).__chronicle_model__.parent)
        elif sa.inspect(parent).mapper is not model.mapper:
            parent = change_class(session, parent, version)
        self._done[key] = parent
        parent_attrs = sa.inspect(type(parent)).attrs
        for spec in model.specs:
            for _, column in spec.columns:
                if column.key in parent_attrs:
                    setattr(parent, column.key, getattr(version, column.key))
        session.add(parent)
        for name, subtree in tree.items():
            self._revert_relationship(session, version, parent, name, subtree)
        return parent

    def _restore(self, session: orm.Session, related: Any, tree: RelationTree) -> Any:
        """The live object for ``related`` (a version, or a live object of an unversioned
        class), restored from the version when it is one."""
        if hasattr(type(related), "__chronicle_model__"):
            return self._revert(session, related, tree)
        return related

    def _revert_relationship(
        self, session: orm.Session, version: Any, parent: Any, name: str, tree: RelationTree
    ) -> None:
        prop = sa.inspect(type(parent)).relationships[name]
        if name not in sa.inspect(type(version)).attrs:
            raise ReverterException(
                f"Could not revert relationship '{name}' of {type(parent).__name__}: its "
                f"version class {type(version).__name__} has no such relationship."
            )
        then = getattr(version, name)
        if not prop.uselist:
            setattr(parent, name, None if then is None else self._restore(session, then, tree))
            return
        if prop.lazy == "dynamic":
            then = then.all()
        restored = [r for r in (self._restore(session, v, tree) for v in then) if r is not None]
        current = list(getattr(parent, name)) if sa.inspect(parent).persistent else []
        if prop.secondary is None:
            keep = {id(obj) for obj in restored}
            for child in current:
                if id(child) not in keep:
                    session.delete(child)
        collection = getattr(parent, name)
        if prop.lazy == "dynamic":
            for child in current:
                collection.remove(child)
            for child in restored:
                collection.append(child)
        else:
            setattr(parent, name, restored)


def _version_values(version: Any, spec: Any) -> dict[sa.Column[Any], Any]:
    """``{parent column: value}`` of ``spec``'s table as ``version`` holds it."""
    mapper: orm.Mapper[Any] = sa.inspect(type(version))
    return {p: getattr(version, mapper.get_property_by_column(v).key) for p, v in spec.columns}


def _forget(session: orm.Session, gone: Any) -> None:
    """Expire the loaded relationships of ``session``'s objects that hold ``gone`` (an
    object that left the session): read again, they hold its successor, and a flush
    cannot put ``gone`` back through them."""
    for state in list(session.identity_map.all_states()):
        loaded = state.dict
        stale = []
        for prop in state.mapper.relationships:
            value = loaded.get(prop.key)
            if value is gone or (
                prop.uselist and value is not None and any(v is gone for v in value)
            ):
                stale.append(prop.key)
        if stale:
            session.expire(state.obj(), stale)


def _keys(model: Any, identity: tuple[Any, ...]) -> dict[sa.Table, tuple[Any, ...]]:
    """The key of the entity ``identity`` in each version table of ``model``."""
    return {
        spec.version: tuple([identity[i] for i in positions])
        for spec, positions in zip(model.specs, model.pk_positions, strict=True)
    }


def change_class(session: orm.Session, live: Any, version: Any) -> Any:
    """Turn the entity of ``live`` into one of ``version``'s class, with its values.

    Runs the statements now, in ``session``'s transaction, and versions them as the
    delete of the live entity and the insert of the version's one (see the module's
    docstring); ``live`` leaves the session. Returns the entity loaded again, an
    object of the version's class. Raises :class:`ReverterException` when the two
    classes do not share their base table (concrete inheritance).
    """
    new_model = type(version).__chronicle_model__
    manager = type(version).__versioning_manager__
    live_mapper: orm.Mapper[Any] = sa.inspect(live).mapper
    old_model = manager.model_for_mapper(live_mapper)
    new_tables = [s.parent for s in new_model.specs]
    old_tables = [] if old_model is None else [s.parent for s in old_model.specs]
    if (
        old_model is None
        or live_mapper.concrete
        or new_model.mapper.concrete
        or new_tables[0] is not old_tables[0]
    ):
        raise ReverterException(
            f"Cannot revert {type(live).__name__} to {type(version).__name__}: the entity "
            f"is a {type(live).__name__} now and was a {new_model.name} then, and the two "
            f"classes do not share a versioned base table. Delete the "
            f"{type(live).__name__} and add a {new_model.name} instead."
        )
    session.flush()  # the live object's own pending changes first
    key = sa.inspect(live).identity
    # The live values of the tables that lose the entity, for a row older than
    # versioning (its DELETE version is written from them).
    gone: dict[sa.Table, dict[str, Any]] = {}
    for spec in old_model.specs:
        if spec.parent not in new_tables:
            gone[spec.version] = {
                v.key: getattr(live, live_mapper.get_property_by_column(p).key)
                for p, v in spec.columns
            }
    connection = session.connection(bind_arguments={"mapper": new_model.mapper})
    old_keys = _keys(old_model, key)
    for spec in reversed(old_model.specs):  # the deepest table first
        if spec.parent not in new_tables:
            pairs = zip(spec.pk, old_keys[spec.version], strict=True)
            connection.execute(sa.delete(spec.parent).where(*[p == v for (p, _), v in pairs]))
    for spec in new_model.specs:
        values = _version_values(version, spec)
        where = [p == values[p] for p, _ in spec.pk]
        if spec.parent in old_tables:
            changes = {c: value for c, value in values.items() if not c.primary_key}
            connection.execute(sa.update(spec.parent).where(*where).values(changes))
        else:
            connection.execute(sa.insert(spec.parent).values(values))
    session.expunge(live)
    _forget(session, live)
    if not new_model.options.native_versioning:  # triggers versioned the statements
        uow = manager.unit_of_work(session)
        plans = Plan(uow.written, uow.born)
        for model, op in ((old_model, Operation.DELETE), (new_model, Operation.INSERT)):
            keys = _keys(model, key)
            for spec in model.specs:
                pk = keys[spec.version]
                plans.add(spec, pk, op)
                if spec.version in gone:
                    plans[spec.version].values[pk] = gone[spec.version]
        uow.changed_entities = {old_model.parent, new_model.parent}
        Writer(uow, session).write(plans, new_model.mapper)
    return session.get(new_model.parent, key)
