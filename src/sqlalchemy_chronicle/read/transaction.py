"""The base of the transaction class: one row per versioned database transaction.

Transactions are ordinary mapped objects, so history is queried with plain
``select()``\\ s (see ``docs/transactions.md``). :class:`TransactionBase` adds what
SQLAlchemy-Continuum's transaction class offers on top:

* :attr:`TransactionBase.changed_entities`, the versions written by a transaction,
  grouped by version class;
* :attr:`TransactionBase.entity_names`, the names of the classes it changed, read
  from ``TransactionChangesPlugin``'s ``changes`` rows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..exc import NoChangesAttribute

__all__ = ["TransactionBase"]


class TransactionBase:
    """Base of the mapped transaction class (``Transaction``).

    Columns: ``id``, ``issued_at`` (naive UTC), ``remote_addr`` and, with a user
    class, ``user_id`` and the ``user`` relationship. Plugins add ``changes``
    (``TransactionChangesPlugin``), ``meta`` and ``meta_relation``
    (``TransactionMetaPlugin``).
    """

    __versioning_manager__: Any

    @property
    def entity_names(self) -> list[str]:
        """The names of the parent classes this transaction changed (``['Article']``).

        Needs ``TransactionChangesPlugin``; without it, raises
        :class:`~sqlalchemy_chronicle.NoChangesAttribute`.
        """
        try:
            changes = self.changes  # type: ignore[attr-defined]
        except AttributeError:
            raise NoChangesAttribute(
                f"{type(self).__name__}.entity_names needs the 'changes' relationship of "
                f"TransactionChangesPlugin; add TransactionChangesPlugin() to the plugins."
            ) from None
        return [change.entity_name for change in changes]

    @property
    def changed_entities(self) -> dict[type, list[Any]]:
        """``{VersionClass: [versions written by this transaction]}``.

        One query per version class. With ``TransactionChangesPlugin`` only the
        classes named in :attr:`entity_names` appear (and are queried); without it
        every version class appears, with an empty list when it has no version of
        this transaction. A transaction that is not in a session has none.
        """
        session = orm.object_session(self)
        if session is None:
            return {}
        manager = self.__versioning_manager__
        tx_id = self.id  # type: ignore[attr-defined]
        names: set[str] | None = None
        if hasattr(type(self), "changes"):
            names = set(self.entity_names)
        result: dict[type, list[Any]] = {}
        for parent_cls, version_cls in manager.version_class_map.items():
            if names is not None and parent_cls.__name__ not in names:
                continue
            spec = version_cls.__chronicle_model__.local_spec
            tx_col = getattr(version_cls, spec.tx.key)
            stmt = sa.select(version_cls).where(tx_col == tx_id)
            stmt = stmt.order_by(*[getattr(version_cls, c.key) for c in spec.version_pk])
            result[version_cls] = list(session.scalars(stmt))
        return result

    def __repr__(self) -> str:
        fields = []
        for name in ("id", "issued_at", "user"):
            if name == "user" and not hasattr(type(self), "user"):
                continue
            value = getattr(self, name, None)
            fields.append(f"{name}={value}" if isinstance(value, int) else f"{name}={value!r}")
        return f"<{type(self).__name__} {', '.join(fields)}>"
