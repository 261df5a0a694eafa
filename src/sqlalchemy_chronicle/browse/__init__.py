"""Read a database's history without the application: transactions, changes, diffs.

:class:`HistoryBrowser` reads the version tables and the transaction table that
sqlalchemy-chronicle (ORM capture or PostgreSQL triggers) or SQLAlchemy-Continuum
wrote, by reflection or from the application's models, and returns plain frozen
records (:class:`TransactionSummary`, :class:`TransactionDetail`, :class:`Change`,
:class:`EntityDiff`, :class:`FieldDiff`). It never writes. The ``chronicle
log``/``show``/``diff`` commands and the web history browser are built on it::

    import sqlalchemy as sa
    from sqlalchemy_chronicle.browse import HistoryBrowser

    browser = HistoryBrowser(sa.create_engine("postgresql+psycopg://localhost/app"))
    browser.versioned_tables()                 # ['article', 'tag']
    page = browser.transactions(table="article", limit=20)
    detail = browser.transaction(page.items[0].id)
    diff = browser.diff("article", 5)          # its last change, field by field

.. versionadded:: 0.1
"""

from __future__ import annotations

from .reader import USER_LABEL_COLUMNS, HistoryBrowser
from .records import (
    Change,
    EntityDiff,
    FieldDiff,
    OperationName,
    Page,
    TransactionDetail,
    TransactionSummary,
)

__all__ = [
    "USER_LABEL_COLUMNS",
    "Change",
    "EntityDiff",
    "FieldDiff",
    "HistoryBrowser",
    "OperationName",
    "Page",
    "TransactionDetail",
    "TransactionSummary",
]
