"""The shared shape of plugins that keep a model beside the transaction class."""

from __future__ import annotations

import weakref
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..hooks import Plugin
from ..schema.models import declarative_base_of, map_class
from ..schema.tables import TX_ID_TYPE

__all__ = ["TransactionModelPlugin"]


class TransactionModelPlugin(Plugin):
    """A plugin with one table keyed by ``transaction_id``, mapped beside the
    transaction class (``<Transaction>Changes``, ``<Transaction>Meta``, ...).

    Subclasses give the name suffix, the other columns, the class body and the
    backref on the transaction class. The model is built once per transaction class
    (one plugin instance may serve several managers), and the rows follow the
    transaction when it moves to a new id.
    """

    #: ``changes`` gives ``<Transaction>Changes`` and ``<transaction table>_changes``.
    suffix = ""
    #: The docstring of the mapped class.
    model_doc = ""

    def __init__(self) -> None:
        #: The model of the last configured manager.
        self.model_class: Any = None
        self._models: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()

    def columns(self) -> list[sa.Column[Any]]:
        """The columns besides ``transaction_id``."""
        raise NotImplementedError

    def backref(self) -> Any:
        """The ``backref`` the model's ``transaction`` relationship puts on the class."""
        raise NotImplementedError

    def model_repr(self, obj: Any) -> str:
        """``repr()`` of a model instance."""
        return f"<{type(obj).__name__} transaction_id={obj.transaction_id!r}>"

    def model_built(self, manager: Any, tx_cls: type, model: type) -> None:
        """Called once the model of ``tx_cls`` is mapped."""

    def model_for(self, manager: Any) -> type | None:
        """The model beside ``manager``'s transaction class (built on first use)."""
        tx_cls = manager.transaction_cls
        if tx_cls is None:
            return None
        model = self._models.get(tx_cls)
        if model is None:
            model = self._build(manager, tx_cls)
            self._models[tx_cls] = model
            self.model_built(manager, tx_cls, model)
        self.model_class = model
        return model

    def _build(self, manager: Any, tx_cls: type) -> type:
        tx_mapper: orm.Mapper[Any] = sa.inspect(tx_cls)
        tx_table = manager.transaction_table
        table = sa.Table(
            f"{tx_table.name}_{self.suffix}",
            tx_table.metadata,
            sa.Column("transaction_id", TX_ID_TYPE, primary_key=True, autoincrement=False),
            *self.columns(),
            schema=tx_table.schema,
        )
        plugin = self
        base = declarative_base_of(tx_cls)
        namespace: dict[str, Any] = {
            "__doc__": self.model_doc,
            "__repr__": lambda obj: plugin.model_repr(obj),
            "transaction": orm.relationship(
                tx_cls,
                primaryjoin=tx_mapper.primary_key[0] == orm.foreign(table.c.transaction_id),
                backref=self.backref(),
            ),
        }
        return map_class(
            f"{tx_cls.__name__}{self.suffix.title()}",
            (base,) if base is not None else (),
            namespace,
            table,
            tx_mapper.registry,
            tx_cls.__module__,
        )

    def table_of(self, manager: Any) -> sa.Table | None:
        """The table of the model beside ``manager``'s transaction class, if built."""
        model = self._models.get(manager.transaction_cls)
        return None if model is None else model.__table__  # type: ignore[attr-defined]

    def after_build_tx_class(self, manager: Any) -> None:
        """Build the model beside the transaction class."""
        self.model_for(manager)

    def after_build_models(self, manager: Any) -> None:
        """Build the model now if the transaction class was given ready-made."""
        self.model_for(manager)

    def transaction_dropped(self, uow: Any, session: Any, tx_id: int) -> None:
        """Delete this transaction's rows: its transaction row is deleted again."""
        table = self.table_of(uow.manager)
        if table is not None and uow.connection is not None:
            uow.connection.execute(sa.delete(table).where(table.c.transaction_id == tx_id))

    def transaction_id_changed(self, uow: Any, session: Any, old_id: int, new_id: int) -> None:
        """Move this transaction's rows to its new id."""
        table = self.table_of(uow.manager)
        if table is not None and uow.connection is not None:
            uow.connection.execute(
                sa.update(table)
                .where(table.c.transaction_id == old_id)
                .values(transaction_id=new_id)
            )
