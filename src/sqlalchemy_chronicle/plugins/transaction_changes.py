"""Record which entity classes each transaction changed.

:class:`TransactionChangesPlugin` adds the ``transaction_changes`` table, one row
per (transaction, changed class), and the model ``TransactionChanges`` mapped to
it::

    from sqlalchemy_chronicle import make_versioned
    from sqlalchemy_chronicle.plugins import TransactionChangesPlugin

    make_versioned(plugins=[TransactionChangesPlugin()])
    ...
    tx.changes          # [<TransactionChanges transaction_id=3 entity_name='Article'>]
    tx.entity_names     # ['Article']
    tx.changed_entities # {ArticleVersion: [...]}: only the classes named above are queried

The table has no foreign key to ``transaction`` (as in SQLAlchemy-Continuum); the
``TransactionChanges.transaction`` relationship and its ``Transaction.changes``
backref join on ``transaction_id`` explicitly. Deleting a transaction through the
ORM deletes its ``changes`` rows too.

The rows are written after each flush that wrote versions: one multi-row
``INSERT`` for the class names this transaction had not recorded yet, on the
connection the versions are written on. The names already recorded are kept in
the unit of work's ``info``, so a rolled-back savepoint forgets the names it
recorded, together with their rows.

With a renamed transaction class (``VersioningManager(transaction_class_name=
"AuditTransaction")``) the model is named ``AuditTransactionChanges``; the table is
named after the transaction table (``transaction_changes`` by default).
"""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import util as orm_util

from ..hooks import Plugin
from ..schema.models import declarative_base_of, map_class
from ..schema.tables import TX_ID_TYPE

__all__ = ["TransactionChangesPlugin"]

#: Key of ``uow.info`` holding ``(transaction id, frozenset of recorded names)``.
INFO_KEY = "sqlalchemy_chronicle.transaction_changes"


def _changes_repr(self: Any) -> str:
    return (
        f"<{type(self).__name__} transaction_id={self.transaction_id!r} "
        f"entity_name={self.entity_name!r}>"
    )


class TransactionChangesPlugin(Plugin):
    """Keep, per transaction, the names of the versioned classes it changed.

    ``model_class`` is the ``TransactionChanges`` model once the models are
    configured (None before). Each versioned class gets
    ``__versioned__['transaction_changes']`` set to it, as SQLAlchemy-Continuum does
    (on a per-class copy of ``__versioned__``; it is not an option).
    """

    def __init__(self) -> None:
        #: The ``TransactionChanges`` model of the last configured manager.
        self.model_class: Any = None
        # transaction class -> its TransactionChanges model (one plugin instance may
        # serve several managers, one after the other or side by side).
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
        return model

    @staticmethod
    def _build(manager: Any, tx_cls: type) -> type:
        tx_mapper: orm.Mapper[Any] = sa.inspect(tx_cls)
        tx_table = manager.transaction_table
        tx_id = tx_mapper.primary_key[0]
        table = sa.Table(
            f"{tx_table.name}_changes",
            tx_table.metadata,
            sa.Column("transaction_id", TX_ID_TYPE, primary_key=True, autoincrement=False),
            sa.Column("entity_name", sa.Unicode(255), primary_key=True),
            schema=tx_table.schema,
        )
        base = declarative_base_of(tx_cls)
        namespace: dict[str, Any] = {
            "__doc__": "The name of one entity class changed by one transaction.",
            "__repr__": _changes_repr,
            "transaction": orm.relationship(
                tx_cls,
                primaryjoin=tx_id == orm.foreign(table.c.transaction_id),
                backref=orm.backref("changes", cascade="all, delete-orphan"),
            ),
        }
        return map_class(
            f"{tx_cls.__name__}Changes",
            (base,) if base is not None else (),
            namespace,
            table,
            tx_mapper.registry,
            tx_cls.__module__,
        )

    def after_build_tx_class(self, manager: Any) -> None:
        """Build ``TransactionChanges`` beside the transaction class."""
        self._model_for(manager)

    def after_version_class_built(self, parent_cls: type, version_cls: type) -> None:
        """Point ``parent_cls.__versioned__['transaction_changes']`` at the model."""
        model = self._model_for(parent_cls.__versioning_manager__)  # type: ignore[attr-defined]
        versioned = dict(getattr(parent_cls, "__versioned__", None) or {})
        versioned["transaction_changes"] = model
        parent_cls.__versioned__ = versioned  # type: ignore[attr-defined]

    def after_build_models(self, manager: Any) -> None:
        """Build the model now if the transaction class was given ready-made."""
        self._model_for(manager)

    # -- writing ---------------------------------------------------------------------

    def after_create_version_objects(self, uow: Any, session: orm.Session) -> None:
        """Insert the class names this flush versioned that the transaction lacks."""
        tx_id = uow.transaction_id
        connection = uow.connection
        model = self._models.get(uow.manager.transaction_cls)
        if tx_id is None or connection is None or model is None:
            return
        recorded_tx, recorded = uow.info.get(INFO_KEY, (None, frozenset()))
        if recorded_tx != tx_id:
            recorded = frozenset()
        names = {cls.__name__ for cls in uow.changed_entities} - recorded
        if not names:
            return
        table: sa.Table = model.__table__  # type: ignore[attr-defined]
        connection.execute(
            sa.insert(table).values(
                [{"transaction_id": tx_id, "entity_name": name} for name in sorted(names)]
            )
        )
        # Replace, never mutate: savepoints keep a shallow copy of ``uow.info``.
        uow.info[INFO_KEY] = (tx_id, recorded | names)
        tx = session.identity_map.get(orm_util.identity_key(uow.manager.transaction_cls, tx_id))
        if tx is not None and "changes" in tx.__dict__:
            session.expire(tx, ["changes"])
