"""Tamper evidence: a hash chain over the history, checked by ``chronicle verify``.

:class:`TamperEvidencePlugin` adds the ledger table (``transaction_ledger``: one row
per versioning transaction, see :mod:`sqlalchemy_chronicle.capture.ledger`) and, when
each versioning transaction commits, appends the entry that hashes its transaction
row and the version rows it wrote, chained to the entry committed before it::

    from sqlalchemy_chronicle import make_versioned
    from sqlalchemy_chronicle.plugins import TamperEvidencePlugin

    make_versioned(user_cls=None, plugins=[TamperEvidencePlugin()])

``chronicle verify URL`` (or :func:`sqlalchemy_chronicle.verify`) then recomputes
every digest and the chain, and names the first transaction whose history was
altered. The entry is written right before the commit, after the session's last
flush, in the same database transaction: it commits or rolls back with the data.

It costs, per committing transaction, one ``SELECT`` of the transaction row, one
per version table it wrote, a locked read of the ledger's head row, one ``INSERT``
and one ``UPDATE`` (see ``benchmarks/README.md``). The head row lock serialises the
end of concurrent versioning commits.

.. versionadded:: 0.1
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

from ..capture.ledger import build_ledger_table, write_ledger_entry
from ..exc import ConfigurationError
from ..hooks import Plugin

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from ..hooks import ManagerView, UnitOfWorkView
    from ..schema.tables import VersionTableSpec

__all__ = ["TamperEvidencePlugin"]

class TamperEvidencePlugin(Plugin):
    """Chain every versioning transaction into a ledger table (opt-in tamper evidence).

    :param table_name: the ledger table's name; default ``<transaction table>_ledger``.
    """

    def __init__(self, table_name: str | None = None) -> None:
        if table_name is not None and (not isinstance(table_name, str) or not table_name.strip()):
            raise ConfigurationError(
                f"TamperEvidencePlugin(table_name=...) must be a non-empty string or None, "
                f"got {table_name!r}."
            )
        self.table_name = table_name
        #: The ledger table, once the transaction class is built.
        self.ledger: sa.Table | None = None
        self._manager: Any = None
        #: Connection -> the session whose versions it writes, until it commits.
        self._sessions: weakref.WeakKeyDictionary[Connection, weakref.ref[Session]] = (
            weakref.WeakKeyDictionary()
        )

    def after_build_tx_class(self, manager: ManagerView) -> None:
        self._manager = manager
        self.ledger = build_ledger_table(manager.transaction_table, self.table_name)

    # Every write that versions something passes one of these hooks; its connection
    # then gets (once) the listener that writes the ledger entry when it commits.
    def before_flush(self, uow: UnitOfWorkView, session: Session) -> None:
        self._listen(session, uow.connection or session.connection())

    def before_create_version_objects(self, uow: UnitOfWorkView, session: Session) -> None:
        if uow.connection is not None:
            self._listen(session, uow.connection)

    def _listen(self, session: Session, connection: Connection) -> None:
        self._sessions[connection] = weakref.ref(session)
        if not event.contains(connection, "commit", self._on_commit):
            event.listen(connection, "commit", self._on_commit)

    def _on_commit(self, connection: Connection) -> None:
        # The connection's COMMIT is about to be sent: every flush is done, and the
        # transaction is still open for the entry to join it.
        ref = self._sessions.pop(connection, None)
        session = ref() if ref is not None else None
        manager = self._manager
        if session is None or manager is None or self.ledger is None:
            return
        # The open unit of work, found without creating one: keyed by the connection it
        # writes on, or by its session when triggers did the writing.
        units = manager.units_of_work
        uow = units.get(connection) or units.get(session)
        if uow is None:
            return
        tx_id = uow.transaction_id
        if tx_id is None or uow.connection not in (None, connection):
            return  # nothing versioned, or versioned on another connection of the session
        tables = [
            (spec.version, spec.tx.name, spec.end_tx.name if spec.end_tx is not None else None)
            for spec in _written_specs(manager, uow)
        ]
        write_ledger_entry(connection, self.ledger, manager.transaction_table, tx_id, tables)


def _written_specs(manager: Any, uow: Any) -> list[VersionTableSpec]:
    """The specs of every version table ``uow``'s transaction may have written."""
    specs: dict[sa.Table, VersionTableSpec] = dict(uow.written_specs)
    native = manager.native.active
    for table in manager.association_tables:
        spec = manager.association_spec(table)
        if spec is not None and (native or spec.version in uow.association_touched):
            specs[spec.version] = spec
    if native:  # versioned by triggers, which the unit of work does not see
        for cls in manager.version_class_map:
            for spec in manager.versioned_model(cls).specs:
                specs[spec.version] = spec
    return sorted(specs.values(), key=lambda s: s.version.name)
