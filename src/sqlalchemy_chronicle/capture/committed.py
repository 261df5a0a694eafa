"""Reads of what other transactions have committed, beside the session's own (MySQL/MariaDB).

Under REPEATABLE READ (their default), MySQL's and MariaDB's InnoDB show a transaction a
snapshot taken at its first read. To close the previous version of a row, the writer must
know the version open *now*, which a plain read of the snapshot may not show (a version
written by a transaction that committed after the snapshot was taken). A locking read would
show it, but one that finds its rows by the entity's key, a prefix of the version table's
key, also locks the gap before that entity's versions, where the next version of the
neighbouring entity goes: two writers of different rows could then deadlock on the version
table.

So the writer asks a second connection, in autocommit mode: each of its statements reads
what was committed when it started, and locks nothing. When the writer asks, its own
transaction holds the lock of every live row it is versioning (it has just inserted, updated
or deleted them), so no other transaction can commit a version of those rows until this one
ends: what the second connection reads is what the writer then closes, by whole version key,
which locks those rows only.

The second connection does not see what this database transaction wrote, so the writer
reads its own snapshot first and asks the second connection for the keys the snapshot
shows no open version of. The keys of rows a flush inserts skip the snapshot (it shows no
version of them) unless an earlier versioning transaction wrote in the same database
transaction: a Session joined to an outer transaction commits by releasing savepoints, and
the DELETE version of its earlier commit is in this snapshot only (:meth:`CommittedReads.alone`).

The second connection comes from a pool of its own, made from the engine's pool
(:meth:`sqlalchemy.pool.Pool.recreate`: the same creator, size and connect events), and
is returned after each read. Its statements never wait for a lock, so it is never held
for long, and a full application pool cannot keep the writer from getting one. The
second pool goes with the engine's: ``engine.dispose()`` (``await engine.dispose()`` of
an ``AsyncEngine``) closes its connections too, and a process forked with the engine
makes its own, as SQLAlchemy's pools do, never touching its parent's.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

from .._compat import engine_on_pool

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, Row
    from sqlalchemy.pool import Pool

__all__ = ["CommittedReads"]

#: Where a connection keeps (its database transaction, the first versioning transaction
#: that wrote in it): a key of ``connection.info``.
_FIRST = "chronicle_first_transaction"


class CommittedReads:
    """Runs SELECTs on an autocommit connection beside a transaction's own.

    One per versioning manager; it keeps, per connection pool of the application, the
    engine of the second pool, and closes its connections when the application's
    engine is disposed or the manager is uninstalled.
    """

    def __init__(self) -> None:
        #: pool of the application -> (process id, engine of the second pool)
        self._engines: weakref.WeakKeyDictionary[Pool, tuple[int, Engine]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def engine_for(self, connection: Connection) -> Engine:
        """The engine of the second pool made for ``connection``'s pool."""
        main = connection.engine
        pool = main.pool
        found = self._engines.get(pool)
        pid = os.getpid()
        if found is not None and found[0] == pid:
            return found[1]
        with self._lock:
            found = self._engines.get(pool)
            if found is not None and found[0] == pid:
                return found[1]
            # None yet, or one inherited from the parent process: its connections are
            # the parent's, left alone (dropped, not closed).
            side_pool = pool.recreate()
            event.listen(side_pool, "connect", _autocommit(main.dialect))
            engine: Engine = engine_on_pool(main, side_pool)
            self._engines[pool] = (pid, engine)
            event.listen(_root(main), "engine_disposed", self._on_dispose(pool, engine))
        return engine

    def rows(self, connection: Connection, stmt: sa.Select[Any]) -> list[Row[Any]]:
        """The rows of ``stmt`` as committed now, read on a second connection of
        ``connection``'s database."""
        with self.engine_for(connection).connect() as side:
            return list(side.execute(stmt))

    @staticmethod
    def note_transaction(connection: Connection, tx_id: int) -> None:
        """Take note that versioning transaction ``tx_id`` writes in ``connection``'s
        database transaction (kept on the connection, for :meth:`alone`)."""
        root = connection.get_transaction()
        if root is None:
            return
        found = connection.info.get(_FIRST)
        if found is None or found[0]() is not root:
            connection.info[_FIRST] = (weakref.ref(root), tx_id)

    @staticmethod
    def alone(connection: Connection, tx_id: int) -> bool:
        """Whether ``tx_id`` is the first versioning transaction that wrote in
        ``connection``'s database transaction.

        Then this database transaction holds no versions of its own but ``tx_id``'s,
        and what a second connection reads is all there is to find. It is not, when a
        Session joined to an outer transaction commits several times (each commit a
        savepoint): the versions of the earlier commits are in this transaction's
        snapshot only.
        """
        root = connection.get_transaction()
        found = connection.info.get(_FIRST)
        return root is not None and found is not None and found[0]() is root and (
            found[1] == tx_id
        )

    def dispose(self) -> None:
        """Close the connections of every second pool (uninstall).

        Those of asyncio drivers can only be closed inside the event loop: they are
        left to ``await engine.dispose()``.
        """
        with self._lock:
            engines = [engine for _, engine in self._engines.values()]
            self._engines.clear()
        for engine in engines:
            if not engine.dialect.is_async:
                engine.dispose()

    def _on_dispose(self, pool: Pool, side: Engine) -> Any:
        pid = os.getpid()
        done = False

        def disposed(engine: Engine) -> None:
            # The engine keeps this listener: later disposals of it are of later pools.
            nonlocal done
            if done:
                return
            done = True
            with self._lock:
                found = self._engines.get(pool)
                if found is not None and found[1] is side:
                    del self._engines[pool]
            if os.getpid() == pid:
                side.dispose(close=True)

        return disposed


def _root(engine: Engine) -> Engine:
    """The engine whose events an engine's ``execution_options()`` copies share."""
    while isinstance(getattr(engine, "_proxied", None), sa.engine.Engine):
        engine = engine._proxied  # type: ignore[attr-defined]
    return engine


def _autocommit(dialect: sa.Dialect) -> Any:
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")

    return on_connect
