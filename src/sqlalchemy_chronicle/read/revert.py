"""Reverting an object, and the relationships named, to a version.

:class:`Reverter` first checks every relation path against the classes (so a typo
changes nothing), then restores the object from the version and walks the named
relationships through the version's temporal relationships: related objects are
restored from the versions valid at that transaction, even if they were deleted
since; children that did not exist then are removed (deleted for one-to-many,
unlinked for many-to-many). Nothing is flushed or committed: the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from .._compat import new_instance
from ..config import Operation
from ..exc import ReverterException

__all__ = ["Reverter"]

RelationTree = dict[str, "RelationTree"]


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
        return self._revert(self.version._session(), self.version, self.relations)

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
