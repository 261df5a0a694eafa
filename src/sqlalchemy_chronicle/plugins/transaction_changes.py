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

from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import util as orm_util

from ._transaction_model import TransactionModelPlugin

__all__ = ["TransactionChangesPlugin"]

#: Key of ``uow.info`` holding ``(transaction id, frozenset of recorded names)``.
INFO_KEY = "sqlalchemy_chronicle.transaction_changes"


class TransactionChangesPlugin(TransactionModelPlugin):
    """Keep, per transaction, the names of the versioned classes it changed.

    ``model_class`` is the ``TransactionChanges`` model once the models are
    configured (None before). Each versioned class gets
    ``__versioned__['transaction_changes']`` set to it, as SQLAlchemy-Continuum does
    (on a per-class copy of ``__versioned__``; it is not an option).
    """

    suffix = "changes"
    #: The native (trigger) backend writes this table's rows itself.
    native_role = "changes"
    model_doc = "The name of one entity class changed by one transaction."

    def columns(self) -> list[sa.Column[Any]]:
        return [sa.Column("entity_name", sa.Unicode(255), primary_key=True)]

    def backref(self) -> Any:
        return orm.backref("changes", cascade="all, delete-orphan")

    def model_repr(self, obj: Any) -> str:
        return (
            f"<{type(obj).__name__} transaction_id={obj.transaction_id!r} "
            f"entity_name={obj.entity_name!r}>"
        )

    def after_version_class_built(self, parent_cls: type, version_cls: type) -> None:
        """Point ``parent_cls.__versioned__['transaction_changes']`` at the model."""
        model = self.model_for(parent_cls.__versioning_manager__)  # type: ignore[attr-defined]
        versioned = dict(getattr(parent_cls, "__versioned__", None) or {})
        versioned["transaction_changes"] = model
        parent_cls.__versioned__ = versioned  # type: ignore[attr-defined]

    def transaction_id_changed(self, uow: Any, session: Any, old_id: int, new_id: int) -> None:
        """Move the rows, and the names recorded for them, to the new id."""
        super().transaction_id_changed(uow, session, old_id, new_id)
        recorded_tx, recorded = uow.info.get(INFO_KEY, (None, frozenset()))
        if recorded_tx == old_id:
            uow.info[INFO_KEY] = (new_id, recorded)

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
