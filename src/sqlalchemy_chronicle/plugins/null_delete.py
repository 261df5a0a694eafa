"""Store NULL, not the last values, in the version row of a deleted object.

By default the DELETE version of an object repeats its last values, so its
:attr:`~.VersionClassBase.changeset` is empty. With :class:`NullDeletePlugin` every
versioned column of a DELETE version is NULL, except the primary key (the row must
still say which object it was) and the discriminator of a polymorphic class (the row
must still load as its class), and the changeset shows each value going away::

    from sqlalchemy_chronicle import make_versioned
    from sqlalchemy_chronicle.plugins import NullDeletePlugin

    make_versioned(user_cls=None, plugins=[NullDeletePlugin()])
    ...
    session.delete(article)
    session.commit()
    article_version = ...  # the DELETE version
    article_version.changeset  # {'name': ['Some article', None], ...}

The columns of the transaction, the operation and the validity end, and columns
that other plugins add (such as ``*_mod`` flags), are left as they are.

.. versionadded:: 0.1
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from ..config import Operation
from ..hooks import Plugin

__all__ = ["NullDeletePlugin"]


class NullDeletePlugin(Plugin):
    """Write NULL into the versioned columns of DELETE versions, except the primary key
    and the polymorphic discriminator."""

    def __init__(self) -> None:
        self._nulls: weakref.WeakKeyDictionary[sa.Table, Mapping[str, None]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return "NullDeletePlugin()"

    def version_row_values(
        self, uow: Any, version_table: sa.Table, operation: int, obj: Any
    ) -> Mapping[str, Any]:
        """``{column key: None}`` for the versioned non-key columns of a DELETE row."""
        if operation != Operation.DELETE:
            return {}
        nulls = self._nulls.get(version_table)
        if nulls is None:
            nulls = self._nulls[version_table] = self._null_values(uow, version_table, obj)
        return nulls

    def bulk_version_row_values(
        self,
        uow: Any,
        version_table: sa.Table,
        rows: Mapping[tuple[Any, ...], tuple[Operation, frozenset[str]]],
    ) -> Mapping[tuple[Any, ...], Mapping[str, Any]]:
        """The NULLs of the DELETE versions a bulk statement (``delete(Model)``) writes."""
        deleted = [key for key, (operation, _) in rows.items() if operation == Operation.DELETE]
        if not deleted:
            return {}
        nulls = self._nulls.get(version_table)
        if nulls is None:
            manager = uow.manager
            model = next(
                (
                    model
                    for model in map(manager.versioned_model, manager.version_class_map)
                    if any(spec.version is version_table for spec in model.specs)
                ),
                None,
            )
            if model is None:
                return {}
            nulls = self._nulls[version_table] = self._nulls_of(model, version_table)
        return dict.fromkeys(deleted, nulls)

    @staticmethod
    def _null_values(uow: Any, version_table: sa.Table, obj: Any) -> Mapping[str, None]:
        model = uow.manager.model_for_mapper(sa.inspect(obj).mapper)
        if model is None:
            return {}
        return NullDeletePlugin._nulls_of(model, version_table)

    @staticmethod
    def _nulls_of(model: Any, version_table: sa.Table) -> Mapping[str, None]:
        # The discriminator of a polymorphic class is kept: without it the version
        # row could not be loaded as a version object.
        discriminator = model.mapper.polymorphic_on
        for spec in model.specs:
            if spec.version is version_table:
                return {
                    version.key: None
                    for parent, version in spec.columns
                    if not parent.primary_key
                    and not (discriminator is not None and discriminator.shares_lineage(parent))
                }
        return {}
