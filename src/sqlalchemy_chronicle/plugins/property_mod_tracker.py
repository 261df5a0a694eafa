"""Record, per version, which columns the change touched.

:class:`PropertyModTrackerPlugin` gives each versioned column ``name`` of a model's
version table a companion ``name_mod`` column (``BOOLEAN NOT NULL DEFAULT false``)
that is true when the version changed that column::

    from sqlalchemy_chronicle import make_versioned
    from sqlalchemy_chronicle.plugins import PropertyModTrackerPlugin

    make_versioned(user_cls=None, plugins=[PropertyModTrackerPlugin()])
    ...
    renamed = session.scalars(
        select(ArticleVersion).where(ArticleVersion.name_mod)
    ).all()

The flags of a version are:

* INSERT: true for the columns the new object was given a value for (attributes
  set before the flush; columns left to their defaults stay false);
* UPDATE: true for the columns whose value changed;
* DELETE: all true.

Rows written by bulk and ORM-enabled statements (``session.execute(update(...))``,
``insert(...)``, ``delete(...)``, upserts, ``bulk_*_mappings()``) get the same
flags: the columns the statement gave a value (INSERT) or a new value (UPDATE).

Several flushes in one database transaction write one version row; its flags are
the OR of the flags of each flush, so a column changed by the first flush and left
alone by the second stays flagged. A rolled-back savepoint forgets the flags of the
flushes it undid.

The flags are written by the same set-based statements as the version rows: rows
whose flags are equal share one ``INSERT ... SELECT``, so a flush that changes the
same columns of many rows costs as many statements as without the plugin.

The ``*_mod`` keys never appear in :attr:`~.VersionClassBase.changeset`. To add the
columns to existing history, see :func:`sqlalchemy_chronicle.schema.update_property_mod_flags`.

.. versionadded:: 0.1
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import attributes

from ..config import Operation
from ..exc import ConfigurationError
from ..hooks import Plugin
from ..schema.tables import MOD_COLUMN_INFO_KEY

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["MOD_COLUMN_INFO_KEY", "PropertyModTrackerPlugin"]


# Key of ``uow.info`` holding {(version table, identity): frozenset of mod keys set}.
_MEMORY_KEY = "sqlalchemy_chronicle.property_mod_tracker"

_NO_LOAD = orm.PassiveFlag.PASSIVE_NO_INITIALIZE

_Tracked = tuple[tuple[str, str], ...]


class PropertyModTrackerPlugin(Plugin):
    """Add a ``<column><suffix>`` boolean to version tables, true where a version
    changed that column.

    :param column_suffix: suffix of the flag columns' names and keys (``'_mod'``).
    """

    def __init__(self, column_suffix: str = "_mod") -> None:
        if not isinstance(column_suffix, str) or not column_suffix:
            raise ConfigurationError(
                f"PropertyModTrackerPlugin(column_suffix={column_suffix!r}): give a "
                f"non-empty string such as '_mod'."
            )
        self.column_suffix = column_suffix
        self._tracked: weakref.WeakKeyDictionary[sa.Table, _Tracked] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return f"PropertyModTrackerPlugin(column_suffix={self.column_suffix!r})"

    # -- schema ----------------------------------------------------------------------

    def after_build_version_table_columns(
        self, table_builder: Any, columns: list[sa.Column[Any]]
    ) -> None:
        """Append one flag column per versioned non-key column of a model's table."""
        if getattr(table_builder, "mapper", None) is None:
            return  # not the table of a mapped model (an association table)
        names = {c.name for c in columns}
        for key, column in table_builder.versioned_columns():
            if column.primary_key or column.name not in names:
                continue
            name = column.name + self.column_suffix
            if name in names:
                raise ConfigurationError(
                    f"Versioned model {table_builder.model_name} has a column named "
                    f"{name!r}, which PropertyModTrackerPlugin needs for the flag of "
                    f"{column.name!r}; pass another column_suffix to the plugin."
                )
            columns.append(
                sa.Column(
                    name,
                    sa.Boolean,
                    key=key + self.column_suffix,
                    nullable=False,
                    default=False,
                    server_default=sa.false(),
                    info={MOD_COLUMN_INFO_KEY: key},
                )
            )

    def tracked_columns(self, version_table: sa.Table) -> _Tracked:
        """``(attribute key, flag column key)`` of each flag column of ``version_table``."""
        tracked = self._tracked.get(version_table)
        if tracked is None:
            tracked = self._tracked[version_table] = tuple(
                (c.info[MOD_COLUMN_INFO_KEY], c.key)
                for c in version_table.columns
                if MOD_COLUMN_INFO_KEY in c.info
            )
        return tracked

    # -- writing ---------------------------------------------------------------------

    def before_flush(self, uow: Any, session: Session) -> None:
        # The memory is copied once per flush and then updated in place: a savepoint
        # snapshot of ``uow.info`` (a shallow copy) taken between two flushes keeps
        # the dict as it was, so rolling the savepoint back restores the flags too.
        memory = uow.info.get(_MEMORY_KEY)
        if memory is not None:
            uow.info[_MEMORY_KEY] = dict(memory)

    def version_row_values(
        self, uow: Any, version_table: sa.Table, operation: int, obj: Any
    ) -> Mapping[str, Any]:
        """The flags of ``obj``'s version row, ORed with earlier flushes' flags."""
        tracked = self.tracked_columns(version_table)
        if not tracked:
            return {}
        state = sa.inspect(obj)
        if operation == Operation.DELETE:
            assert state.identity is not None
            identity = tuple(state.identity)
            changed = frozenset(mod_key for _, mod_key in tracked)
        else:
            identity = tuple(state.mapper.primary_key_from_instance(obj))
            attrs = state.mapper.attrs
            changed = frozenset(
                mod_key
                for key, mod_key in tracked
                if key in attrs and attributes.get_history(obj, key, _NO_LOAD).has_changes()
            )
        return self._remember(uow, version_table, identity, changed, tracked)

    def bulk_version_row_values(
        self,
        uow: Any,
        version_table: sa.Table,
        rows: Mapping[tuple[Any, ...], tuple[Operation, frozenset[str]]],
    ) -> Mapping[tuple[Any, ...], Mapping[str, Any]]:
        """The flags of the version rows of one bulk statement, ORed with earlier
        writes' flags: the columns it gave (INSERT) or changed (UPDATE), all of them
        for a DELETE."""
        tracked = self.tracked_columns(version_table)
        if not tracked:
            return {}
        # A copy, as for a flush: a savepoint taken before keeps the flags it saw.
        memory = uow.info.get(_MEMORY_KEY)
        if memory is not None:
            uow.info[_MEMORY_KEY] = dict(memory)
        every = frozenset(mod_key for _, mod_key in tracked)
        values = {}
        for key, (operation, changed) in rows.items():
            if operation == Operation.DELETE:
                flagged = every
            else:
                flagged = frozenset(mod_key for name, mod_key in tracked if name in changed)
            values[key] = self._remember(uow, version_table, key, flagged, tracked)
        return values

    @staticmethod
    def _remember(
        uow: Any,
        version_table: sa.Table,
        identity: tuple[Any, ...],
        changed: frozenset[str],
        tracked: _Tracked,
    ) -> dict[str, bool]:
        """The flags ``changed`` ORed with those this transaction set before for the
        entity ``identity``; remembered for the next write."""
        memory: dict[tuple[sa.Table, tuple[Any, ...]], frozenset[str]] | None = uow.info.get(
            _MEMORY_KEY
        )
        if memory is None:
            memory = uow.info[_MEMORY_KEY] = {}
        flags = memory.get((version_table, identity), frozenset()) | changed
        memory[(version_table, identity)] = flags
        return {mod_key: mod_key in flags for _, mod_key in tracked}

    # -- reading ---------------------------------------------------------------------

    def after_construct_changeset(self, version_obj: Any, changeset: dict[str, Any]) -> None:
        """Leave the flag columns out of ``changeset``."""
        mapper = sa.inspect(type(version_obj))
        for prop in mapper.column_attrs:
            if prop.key in changeset and any(
                MOD_COLUMN_INFO_KEY in getattr(c, "info", {}) for c in prop.columns
            ):
                del changeset[prop.key]
