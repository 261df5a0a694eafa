"""The exceptions of sqlalchemy-chronicle.

Every error the library raises on purpose derives from :class:`ChronicleError`.
Each leaf also derives from the builtin or SQLAlchemy error it specialises, so
generic ``except`` clauses keep working::

    ChronicleError (Exception)
     +-- ConfigurationError (+ sqlalchemy.exc.ArgumentError)
     |    +-- ImproperlyConfigured
     +-- ClassNotVersioned (+ TypeError)
     +-- NotSupportedError (+ NotImplementedError)
     +-- VersioningStateError (+ RuntimeError)
     +-- NoChangesAttribute (+ AttributeError)
     +-- ReverterException (+ ValueError)
     +-- HistoryNotFound (+ LookupError)
     |    +-- TableNotVersioned
     |    +-- TransactionNotFound
     +-- DatabaseUnavailable (+ ConnectionError)

``VersioningError`` is kept as an alias of :class:`ChronicleError` for code written
against SQLAlchemy-Continuum.
"""

from __future__ import annotations

import sqlalchemy.exc as sa_exc

__all__ = [
    "ChronicleError",
    "ClassNotVersioned",
    "ConfigurationError",
    "DatabaseUnavailable",
    "HistoryNotFound",
    "ImproperlyConfigured",
    "NoChangesAttribute",
    "NotSupportedError",
    "ReverterException",
    "TableNotVersioned",
    "TransactionNotFound",
    "VersioningError",
    "VersioningStateError",
]


class ChronicleError(Exception):
    """Root of every error raised by sqlalchemy-chronicle."""


#: SQLAlchemy-Continuum's name for the root error.
VersioningError = ChronicleError


class ConfigurationError(ChronicleError, sa_exc.ArgumentError):
    """A versioning option, a versioned model or a call's arguments are invalid.

    The message names the model and the option at fault. Raised when the models are
    configured (``sqlalchemy.orm.configure_mappers()``) or when the invalid value is
    given, never halfway through a user's write.
    """


class ImproperlyConfigured(ConfigurationError):
    """The versioning set-up cannot be built, e.g. the user class does not exist.

    Kept under SQLAlchemy-Continuum's name.
    """


class ClassNotVersioned(ChronicleError, TypeError):
    """The class or object given is not versioned (it has no versioning manager)."""


class NotSupportedError(ChronicleError, NotImplementedError):
    """The requested feature is recognised but not available (yet) in this release."""


class VersioningStateError(ChronicleError, RuntimeError):
    """The versioning state of a session is not what an operation needs.

    For example, asking for the current transaction of a session that has no
    versioning manager installed.
    """


class NoChangesAttribute(ChronicleError, AttributeError):
    """``Transaction.entity_names`` needs ``TransactionChangesPlugin``, which is not installed."""


class ReverterException(ChronicleError, ValueError):
    """``version.revert(relations=...)`` was asked for a relationship that does not exist.

    Raised before anything is changed. Kept under SQLAlchemy-Continuum's name.
    """


class HistoryNotFound(ChronicleError, LookupError):
    """The history asked for is not in the database, e.g. an entity with no version.

    Raised by the history reader (:mod:`sqlalchemy_chronicle.browse`) and the
    ``chronicle log``/``show``/``diff`` commands; the message names what was looked for.
    """


class TableNotVersioned(HistoryNotFound):
    """The table named has no version table (``<table>_version``) in the database.

    The message lists the versioned tables that were found.
    """


class TransactionNotFound(HistoryNotFound):
    """No row of the transaction table has the id asked for."""


class DatabaseUnavailable(ChronicleError, ConnectionError):
    """The database cannot be reached (wrong URL, server down, missing driver).

    The message names the URL, password hidden, and the driver's own error.
    """
