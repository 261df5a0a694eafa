"""Key/value metadata on transactions.

:class:`TransactionMetaPlugin` adds the ``transaction_meta`` table
(``transaction_id``, ``key``, ``value``), the model ``TransactionMeta`` mapped to
it, and two attributes on the transaction class:

* ``Transaction.meta_relation``: the ``TransactionMeta`` rows, as a dict keyed by
  ``key``;
* ``Transaction.meta``: a plain ``{key: value}`` view of them that can be assigned
  and edited.

Set metadata explicitly, as with SQLAlchemy-Continuum::

    uow = versioning_manager.unit_of_work(session)
    tx = uow.create_transaction(session)
    tx.meta = {"ticket": "T-42"}
    session.commit()                      # writes the transaction_meta rows

or let :func:`~sqlalchemy_chronicle.versioning_context` do it: every keyword that
is not ``user_id`` or ``remote_addr`` is stored as metadata of each transaction
written inside the block (one ``INSERT`` when the transaction row is written)::

    with versioning_context(user_id=5, reason="import"):
        session.commit()
    tx.meta                               # {'reason': 'import'}

Values are text: the context's values are stored as ``str(value)`` (None stays
NULL). Without this plugin, metadata given to ``versioning_context`` raises
:class:`~sqlalchemy_chronicle.ConfigurationError` rather than being lost.

The manager gets ``manager.transaction_meta_cls``, the plugin ``model_class``.
With a renamed transaction class (``VersioningManager(transaction_class_name=
"AuditTransaction")``) the model is named ``AuditTransactionMeta``; the table is
named after the transaction table (``transaction_meta`` by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.associationproxy import association_proxy

from ._transaction_model import TransactionModelPlugin

__all__ = ["TransactionMetaPlugin"]


class TransactionMetaPlugin(TransactionModelPlugin):
    """Store ``{key: value}`` metadata per transaction (``Transaction.meta``).

    ``model_class`` is the ``TransactionMeta`` model once the models are configured
    (None before); the manager also exposes it as ``transaction_meta_cls``.
    """

    suffix = "meta"
    #: The native (trigger) backend writes this table's rows itself.
    native_role = "meta"
    model_doc = "One key/value pair of metadata of one transaction."

    def columns(self) -> list[sa.Column[Any]]:
        return [
            sa.Column("key", sa.Unicode(255), primary_key=True),
            sa.Column("value", sa.UnicodeText),
        ]

    def backref(self) -> Any:
        return orm.backref(
            "meta_relation",
            collection_class=orm.attribute_keyed_dict("key"),
            cascade="all, delete-orphan",
        )

    def model_repr(self, obj: Any) -> str:
        return (
            f"<{type(obj).__name__} transaction_id={obj.transaction_id!r} "
            f"key={obj.key!r} value={obj.value!r}>"
        )

    def model_built(self, manager: Any, tx_cls: type, model: type) -> None:
        def create(key: str, value: Any) -> Any:
            return model(key=key, value=value)

        tx_cls.meta = association_proxy(  # type: ignore[attr-defined]
            "meta_relation", "value", creator=create
        )

    def model_for(self, manager: Any) -> type | None:
        model = super().model_for(manager)
        if model is not None:
            manager.transaction_meta_cls = model
        return model

    # -- writing ---------------------------------------------------------------------

    def store_transaction_meta(
        self, uow: Any, session: orm.Session, meta: Mapping[str, Any]
    ) -> bool:
        """Insert ``meta`` for the transaction just written, in one statement."""
        model = self._models.get(uow.manager.transaction_cls)
        connection = uow.connection
        if model is None or connection is None or uow.transaction_id is None:
            return False
        if meta:
            table: sa.Table = model.__table__  # type: ignore[attr-defined]
            rows = [
                {
                    "transaction_id": uow.transaction_id,
                    "key": key,
                    "value": None if value is None else str(value),
                }
                for key, value in sorted(meta.items())
            ]
            connection.execute(sa.insert(table).values(rows))
        return True
