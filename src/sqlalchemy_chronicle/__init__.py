"""sqlalchemy-chronicle: versioning and auditing for SQLAlchemy.

Keep the history of your data: every insert, update and delete of a versioned
model is copied into its version table, grouped by database transaction::

    import sqlalchemy as sa
    from sqlalchemy import orm
    from sqlalchemy_chronicle import make_versioned

    make_versioned(user_cls=None)          # before the models are defined

    class Article(Base):
        __tablename__ = "article"
        __versioned__ = {}
        ...

    orm.configure_mappers()                # builds ArticleVersion and its table

    article.versions[0].name               # the first version
    article.versions[0].revert()           # back to it (the caller commits)

The API and the default tables are those of SQLAlchemy-Continuum, so code written
for it works by changing the import.
"""

from __future__ import annotations

# SQLAlchemy-Continuum imports sqlalchemy.ext.declarative, so code written for it can
# reach ``sa.ext.declarative.declared_attr`` after ``import sqlalchemy as sa``; keep that.
import sqlalchemy.ext.declarative  # noqa: F401

from .capture.context import current_context, versioning_context
from .capture.unit_of_work import UnitOfWork
from .config import IndexLayout, Operation, Strategy
from .exc import (
    ChronicleError,
    ClassNotVersioned,
    ConfigurationError,
    DatabaseUnavailable,
    HistoryNotFound,
    ImproperlyConfigured,
    NoChangesAttribute,
    NotSupportedError,
    ReverterException,
    TableNotVersioned,
    TransactionNotFound,
    VersioningError,
    VersioningStateError,
)
from .hooks import ManagerView, Plugin, PluginCollection, UnitOfWorkView
from .manager import (
    TransactionFactory,
    VersioningManager,
    make_versioned,
    remove_versioning,
    versioning_manager,
)
from .read.transaction import TransactionBase
from .read.verify import VerifyReport, Violation, verify
from .read.version import VersionClassBase
from .utils import (
    changeset,
    count_versions,
    end_tx_column_name,
    get_versioning_manager,
    is_modified,
    is_modified_or_deleted,
    is_session_modified,
    is_versioned,
    parent_class,
    transaction_class,
    tx_column_name,
    vacuum,
    version_class,
    version_table,
    versioned_objects,
)

__version__ = "0.1.0"

__all__ = [
    "ChronicleError",
    "ClassNotVersioned",
    "ConfigurationError",
    "DatabaseUnavailable",
    "HistoryNotFound",
    "ImproperlyConfigured",
    "IndexLayout",
    "ManagerView",
    "NoChangesAttribute",
    "NotSupportedError",
    "Operation",
    "Plugin",
    "PluginCollection",
    "ReverterException",
    "Strategy",
    "TableNotVersioned",
    "TransactionBase",
    "TransactionFactory",
    "TransactionNotFound",
    "UnitOfWork",
    "UnitOfWorkView",
    "VerifyReport",
    "VersionClassBase",
    "VersioningError",
    "VersioningManager",
    "VersioningStateError",
    "Violation",
    "__version__",
    "changeset",
    "count_versions",
    "current_context",
    "end_tx_column_name",
    "get_versioning_manager",
    "is_modified",
    "is_modified_or_deleted",
    "is_session_modified",
    "is_versioned",
    "make_versioned",
    "parent_class",
    "remove_versioning",
    "transaction_class",
    "tx_column_name",
    "vacuum",
    "verify",
    "version_class",
    "version_table",
    "versioned_objects",
    "versioning_context",
    "versioning_manager",
]
