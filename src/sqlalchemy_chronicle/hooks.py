"""The plugin hook contract.

A plugin is an object with some of the methods of :class:`Plugin`; subclassing
:class:`Plugin` gives no-op defaults for the rest. The manager calls the hooks
through a :class:`PluginCollection`, which also checks, when a plugin is added,
that every hook-like method it defines is a hook that exists: a ``before_*`` or
``after_*`` method, or one whose name is close to a hook's (``version_row_value``
for ``version_row_values``), that is no hook raises
:class:`~sqlalchemy_chronicle.exc.ConfigurationError` naming the plugin (a typo
would otherwise be a hook that silently never runs).

Hooks receive typed views: :class:`UnitOfWorkView` (the versioning state of the
session transaction being written) and :class:`ManagerView` (the versioning
manager), the parts of those objects a plugin may rely on.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any, Protocol, overload

from .exc import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Column, Table
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Mapper, Session

    from .config import Operation

__all__ = ["HOOK_NAMES", "ManagerView", "Plugin", "PluginCollection", "UnitOfWorkView"]


class ManagerView(Protocol):
    """What a plugin may use of the versioning manager."""

    #: The transaction class (None before configuration).
    transaction_cls: Any
    #: Parent class -> version class, for every versioned class built.
    version_class_map: dict[type, type]

    @property
    def plugins(self) -> PluginCollection: ...

    @property
    def transaction_table(self) -> Table: ...

    def model_for_mapper(self, mapper: Mapper[Any]) -> Any:
        """The versioned model of ``mapper``, or None."""

    def versioned_model(self, cls: type) -> Any:
        """The versioned model of ``cls`` (its version table specs and class)."""

    def unit_of_work(self, session: Session) -> UnitOfWorkView:
        """The unit of work of ``session``'s current transaction."""


class UnitOfWorkView(Protocol):
    """What a plugin may use of the versioning state of one session transaction."""

    @property
    def manager(self) -> ManagerView: ...

    #: The id of this transaction's row, None while it is not written.
    transaction_id: int | None
    #: The connection versions are written on (None before the first write).
    connection: Connection | None
    #: Free space for plugins; restored with the rest when a savepoint rolls back.
    info: dict[str, Any]
    #: The parent classes whose versions the write being processed writes.
    changed_entities: set[type]

    @property
    def current_transaction(self) -> Any:
        """The transaction object, attached to the session (None if not written)."""

    def create_transaction(self, session: Session) -> Any:
        """Write the transaction row now if it is not written yet; return its object."""

    def written_operation(self, version_table: Table, key: Sequence[Any]) -> Operation | None:
        """The operation of the version this transaction wrote for ``key``, or None."""


class Plugin:
    """Base class of plugins: every hook, each a no-op.

    Hooks run inside the user's transaction; an exception raised by a hook aborts
    the flush and so the user's write, as any flush error does.
    """

    def is_session_modified(self, session: Session) -> bool:
        """Return True if ``session`` holds a change this plugin versions.

        A True answer makes the flush open a versioning transaction even when no
        versioned row changed (e.g. a pending activity record).
        """
        return False

    def transaction_args(self, uow: UnitOfWorkView, session: Session) -> dict[str, Any]:
        """Return extra column values for the transaction row about to be written."""
        return {}

    def after_build_tx_class(self, manager: ManagerView) -> None:
        """Called once the transaction class exists (``manager.transaction_cls``)."""

    def after_build_models(self, manager: ManagerView) -> None:
        """Called once all version classes of a configuration pass are built."""

    def after_build_version_table_columns(
        self, table_builder: Any, columns: list[Column[Any]]
    ) -> None:
        """Called with the column list of a version table before the Table is made.

        Append columns to ``columns`` to add them; ``table_builder.parent_table``
        and ``table_builder.options`` describe the table being built.
        """

    def after_version_class_built(self, parent_cls: type, version_cls: type) -> None:
        """Called for each version class right after it is mapped."""

    def before_flush(self, uow: UnitOfWorkView, session: Session) -> None:
        """Called at the start of every flush that has versioned changes."""

    def before_create_version_objects(self, uow: UnitOfWorkView, session: Session) -> None:
        """Called in a flush before its version rows are written."""

    def after_create_version_objects(self, uow: UnitOfWorkView, session: Session) -> None:
        """Called in a flush after its version rows are written."""

    def after_create_version_object(
        self, uow: UnitOfWorkView, parent_obj: Any, version_obj: Any
    ) -> None:
        """Called for each version row written through the object path."""

    def after_construct_changeset(self, version_obj: Any, changeset: dict[str, Any]) -> None:
        """Called with a version's changeset dict; may edit it in place."""

    def version_row_values(
        self, uow: UnitOfWorkView, version_table: Table, operation: int, obj: Any
    ) -> Mapping[str, Any]:
        """Column values (by version column key) for the version row of ``obj``.

        Called while the flush's attribute history is still readable. The values
        replace the copied ones or fill columns the plugin added; rows with equal
        values are written by one statement, so return hashable values.
        """
        return {}

    def bulk_version_row_values(
        self,
        uow: UnitOfWorkView,
        version_table: Table,
        rows: Mapping[tuple[Any, ...], tuple[Operation, frozenset[str]]],
    ) -> Mapping[tuple[Any, ...], Mapping[str, Any]]:
        """Column values (by version column key) for the version rows one bulk or
        ORM-enabled statement writes: :meth:`version_row_values` for rows no session
        object stands for, called once per statement and version table.

        ``rows`` maps the key (primary key values) of each entity versioned to the
        operation of its version row (after folding with this transaction's earlier
        writes) and the keys of the versioned columns the statement gave a value
        (INSERT) or a new value (UPDATE); every versioned column for a DELETE. Return
        the values of the keys that get some; rows with equal values are written by
        one statement, so return hashable values.
        """
        return {}

    def transaction_id_changed(
        self, uow: UnitOfWorkView, session: Session, old_id: int, new_id: int
    ) -> None:
        """The transaction was moved from ``old_id`` to ``new_id``: update your rows.

        A transaction that flushed early and then changed a row another transaction
        versioned in between gets a new id, so that every row's history stays in
        transaction order. Version tables are moved by the library; a plugin that
        stores the transaction id in its own tables moves its rows here, before the old
        transaction row is deleted.
        """

    def transaction_dropped(self, uow: UnitOfWorkView, session: Session, tx_id: int) -> None:
        """The transaction row ``tx_id`` is deleted again: delete your rows of it.

        A flush whose every change needed no version after all (a delete of a row that
        another transaction deleted meanwhile) drops the transaction row written for it.
        A plugin that stored rows for the transaction (metadata, say) deletes them here,
        before the transaction row goes. ``after_create_version_objects`` is not called
        for such a write (there is no transaction left to describe).
        """

    def store_transaction_meta(
        self, uow: UnitOfWorkView, session: Session, meta: Mapping[str, Any]
    ) -> bool:
        """Store ``meta`` (from :func:`versioning_context`) for the current transaction.

        Return True when stored; without a plugin that stores it, metadata is an error.
        """
        return False


#: The names of all hooks a plugin may define.
HOOK_NAMES = frozenset(
    name for name in vars(Plugin) if not name.startswith("_") and callable(getattr(Plugin, name))
)


def _unknown_hook(name: str) -> bool:
    """Whether a method ``name`` looks like a hook but is none."""
    if name in HOOK_NAMES or name.startswith("_"):
        return False
    if name.startswith(("before_", "after_")):
        return True
    return bool(difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.85))


def _check_plugin(plugin: object) -> object:
    if isinstance(plugin, type):
        raise ConfigurationError(
            f"Plugin {plugin.__name__} was given as a class; pass an instance, "
            f"e.g. {plugin.__name__}()."
        )
    for name in dir(plugin):
        if _unknown_hook(name) and callable(getattr(plugin, name, None)):
            close = difflib.get_close_matches(name, HOOK_NAMES, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]}()?" if close else ""
            known = ", ".join(sorted(HOOK_NAMES))
            raise ConfigurationError(
                f"Plugin {type(plugin).__name__} defines {name}(), which is not a "
                f"versioning hook.{hint} Known hooks: {known}."
            )
    return plugin


class PluginCollection(MutableSequence[Any]):
    """An ordered list of plugins that broadcasts hook calls to all of them.

    ``plugins.before_flush(uow, session)`` calls ``before_flush`` on every plugin
    that has it and returns the list of their results; so does any other method
    name that some plugin defines.
    """

    def __init__(self, plugins: Iterable[Any] | None = None) -> None:
        self._plugins: list[Any] = []
        for plugin in plugins or ():
            self.append(plugin)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> PluginCollection: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return PluginCollection(self._plugins[index])
        return self._plugins[index]

    @overload
    def __setitem__(self, index: int, value: Any) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[Any]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        if isinstance(index, slice):
            self._plugins[index] = [_check_plugin(p) for p in value]
        else:
            self._plugins[index] = _check_plugin(value)

    def __delitem__(self, index: int | slice) -> None:
        del self._plugins[index]

    def __len__(self) -> int:
        return len(self._plugins)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._plugins)

    def insert(self, index: int, value: Any) -> None:
        self._plugins.insert(index, _check_plugin(value))

    def __repr__(self) -> str:
        return f"PluginCollection({self._plugins!r})"

    @property
    def plugins(self) -> list[Any]:
        """The plugins, as a new list (SQLAlchemy-Continuum's attribute)."""
        return list(self._plugins)

    def __getattr__(self, name: str) -> Any:
        # A hook, or a method some plugin defines (SQLAlchemy-Continuum broadcasts any
        # name); a name nothing defines stays an AttributeError, so typos show.
        if name.startswith("_") or (
            name not in HOOK_NAMES and not any(hasattr(p, name) for p in self._plugins)
        ):
            raise AttributeError(name)

        def broadcast(*args: Any, **kwargs: Any) -> list[Any]:
            return [
                getattr(plugin, name)(*args, **kwargs)
                for plugin in self._plugins
                if hasattr(plugin, name)
            ]

        return broadcast

    def implementing(self, name: str) -> list[Any]:
        """The plugins that override hook ``name`` (not just inherit the no-op)."""
        base = getattr(Plugin, name)
        return [
            p
            for p in self._plugins
            if getattr(type(p), name, base) is not base and hasattr(p, name)
        ]
