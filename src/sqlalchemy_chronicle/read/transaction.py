"""The base of the transaction class: one row per versioned database transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

__all__ = ["TransactionBase"]


class TransactionBase:
    """Base of the mapped transaction class (``Transaction``).

    Columns: ``id``, ``issued_at`` (naive UTC), ``remote_addr`` and, with a user
    class, ``user_id`` and the ``user`` relationship.
    """

    __versioning_manager__: Any

    @property
    def changed_entities(self) -> dict[type, list[Any]]:
        """``{VersionClass: [versions written by this transaction]}``, one query per class."""
        session = orm.object_session(self)
        if session is None:
            return {}
        manager = self.__versioning_manager__
        tx_id = self.id  # type: ignore[attr-defined]
        result: dict[type, list[Any]] = {}
        names = None
        if hasattr(self, "changes"):
            names = {c.entity_name for c in self.changes}
        for version_cls in manager.version_class_map.values():
            if names is not None and version_cls.__name__ not in names:
                continue
            spec = version_cls.__chronicle_model__.local_spec
            tx_col = getattr(version_cls, spec.tx.key)
            result[version_cls] = list(
                session.scalars(sa.select(version_cls).where(tx_col == tx_id))
            )
        return result

    def __repr__(self) -> str:
        fields = []
        for name in ("id", "issued_at", "user"):
            if name == "user" and not hasattr(type(self), "user"):
                continue
            value = getattr(self, name, None)
            fields.append(f"{name}={value}" if isinstance(value, int) else f"{name}={value!r}")
        return f"<{type(self).__name__} {', '.join(fields)}>"
