"""Alembic support: version tables in ``alembic revision --autogenerate``.

Version tables, association version tables, the transaction table and the tables of
plugins are ordinary :class:`~sqlalchemy.schema.Table` objects in the models'
:class:`~sqlalchemy.schema.MetaData`, but they are built when SQLAlchemy configures the
mappers, not when the models are imported. Give Alembic the metadata through
:func:`versioned_metadata` in ``env.py`` (one line)::

    from myapp.models import Base
    from sqlalchemy_chronicle.integrations.alembic import versioned_metadata

    target_metadata = versioned_metadata(Base.metadata)

:func:`versioned_metadata` configures the mappers, so every table of ours exists
before Alembic compares. Importing this module also registers an autogenerate
comparator that guards against the opposite: when a mapper is still unconfigured
once Alembic compares (models imported after ``env.py`` read the metadata, or
``target_metadata = Base.metadata`` without this module's helper), the comparator
raises :class:`~sqlalchemy_chronicle.exc.ImproperlyConfigured` naming the missing
tables, instead of letting Alembic write a migration that drops them.

The helpers for a migration's ``upgrade()`` (``backfill``, ``update_end_tx_column``,
``update_property_mod_flags``) live in :mod:`sqlalchemy_chronicle.schema` and are
re-exported here. Alembic stays optional: nothing in the core imports this module.

Operations for natively versioned tables (create, drop and sync the version
triggers) belong here too; they are registered by :func:`_register_operations`
with ``Operations.register_operation`` once native versioning lands.

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.autogenerate import comparators

from ..exc import ImproperlyConfigured
from ..schema.maintenance import backfill, update_end_tx_column, update_property_mod_flags

if TYPE_CHECKING:
    from alembic.autogenerate.api import AutogenContext
    from alembic.operations.ops import UpgradeOps

__all__ = [
    "backfill",
    "update_end_tx_column",
    "update_property_mod_flags",
    "versioned_metadata",
]


def versioned_metadata(metadata: sa.MetaData) -> sa.MetaData:
    """``metadata`` with every version, transaction and plugin table built into it.

    Configures the mappers (``sqlalchemy.orm.configure_mappers()``), which builds the
    tables of every versioned model imported so far, and returns ``metadata`` for
    ``target_metadata`` in Alembic's ``env.py``. Import the models first.
    """
    sa.orm.configure_mappers()
    return metadata


def _metadatas(autogen_context: AutogenContext) -> list[sa.MetaData]:
    target = autogen_context.metadata
    if target is None:
        return []
    if isinstance(target, sa.MetaData):
        return [target]
    return list(target)


@comparators.dispatch_for("schema")
def _require_configured_mappers(
    autogen_context: AutogenContext, upgrade_ops: UpgradeOps, schemas: Any
) -> Any:
    """Refuse to autogenerate while a mapper is unconfigured (its tables are missing)."""
    metadatas = _metadatas(autogen_context)
    before = [set(m.tables) for m in metadatas]
    sa.orm.configure_mappers()
    missing = sorted(
        name for m, known in zip(metadatas, before, strict=True) for name in m.tables
        if name not in known
    )
    if missing:
        raise ImproperlyConfigured(
            "Alembic compared the database with a metadata that lacked the tables "
            f"{', '.join(missing)}: the mappers were not configured yet, so the migration "
            "would have dropped them. In env.py set target_metadata = "
            "versioned_metadata(Base.metadata) (from sqlalchemy_chronicle.integrations."
            "alembic) after importing every model."
        )
    return None


def _register_operations() -> None:
    """Register the Alembic operations of natively versioned tables.

    The seam for ``create_version_trigger`` / ``drop_version_trigger`` /
    ``sync_version_trigger`` (``Operations.register_operation``, each with a
    ``reverse()`` and a renderer) and for the comparator that emits a sync after any
    change to a natively versioned table. Nothing to register until native
    versioning exists.
    """


_register_operations()
