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

import weakref
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.associationproxy import association_proxy

from ..hooks import Plugin
from ..schema.models import declarative_base_of, map_class
from ..schema.tables import TX_ID_TYPE

__all__ = ["TransactionMetaPlugin"]


def _meta_repr(self: Any) -> str:
    return (
        f"<{type(self).__name__} transaction_id={self.transaction_id!r} "
        f"key={self.key!r} value={self.value!r}>"
    )


class TransactionMetaPlugin(Plugin):
    """Store ``{key: value}`` metadata per transaction (``Transaction.meta``).

    ``model_class`` is the ``TransactionMeta`` model once the models are configured
    (None before); the manager also exposes it as ``transaction_meta_cls``.
    """

    def __init__(self) -> None:
        #: The ``TransactionMeta`` model of the last configured manager.
        self.model_class: Any = None
        self._models: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()

    # -- building --------------------------------------------------------------------

    def _model_for(self, manager: Any) -> type | None:
        tx_cls = manager.transaction_cls
        if tx_cls is None:
            return None
        model = self._models.get(tx_cls)
        if model is None:
            model = self._build(manager, tx_cls)
            self._models[tx_cls] = model
        self.model_class = model
        manager.transaction_meta_cls = model
        return model

    @staticmethod
    def _build(manager: Any, tx_cls: type) -> type:
        tx_mapper: orm.Mapper[Any] = sa.inspect(tx_cls)
        tx_table = manager.transaction_table
        tx_id = tx_mapper.primary_key[0]
        table = sa.Table(
            f"{tx_table.name}_meta",
            tx_table.metadata,
            sa.Column("transaction_id", TX_ID_TYPE, primary_key=True, autoincrement=False),
            sa.Column("key", sa.Unicode(255), primary_key=True),
            sa.Column("value", sa.UnicodeText),
            schema=tx_table.schema,
        )
        base = declarative_base_of(tx_cls)
        namespace: dict[str, Any] = {
            "__doc__": "One key/value pair of metadata of one transaction.",
            "__repr__": _meta_repr,
            "transaction": orm.relationship(
                tx_cls,
                primaryjoin=tx_id == orm.foreign(table.c.transaction_id),
                backref=orm.backref(
                    "meta_relation",
                    collection_class=orm.attribute_keyed_dict("key"),
                    cascade="all, delete-orphan",
                ),
            ),
        }
        model = map_class(
            f"{tx_cls.__name__}Meta",
            (base,) if base is not None else (),
            namespace,
            table,
            tx_mapper.registry,
            tx_cls.__module__,
        )

        def create(key: str, value: Any) -> Any:
            return model(key=key, value=value)

        proxy = association_proxy("meta_relation", "value", creator=create)
        tx_cls.meta = proxy  # type: ignore[attr-defined]
        return model

    def after_build_tx_class(self, manager: Any) -> None:
        """Build ``TransactionMeta`` beside the transaction class."""
        self._model_for(manager)

    def after_build_models(self, manager: Any) -> None:
        """Build the model now if the transaction class was given ready-made."""
        self._model_for(manager)

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
