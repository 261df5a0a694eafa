"""Builders of version tables and classes, and schema maintenance helpers.

``update_end_tx_column`` and ``update_property_mod_flags`` are here under
SQLAlchemy-Continuum's module name (``sqlalchemy_continuum.schema``), with ``backfill``
beside them (docs/migrations.md shows each in a migration), and, for PostgreSQL,
``make_append_only``/``remove_append_only`` (docs/append-only.md).
"""

from .append_only import make_append_only, remove_append_only
from .maintenance import backfill, update_end_tx_column, update_property_mod_flags

__all__ = [
    "backfill",
    "make_append_only",
    "remove_append_only",
    "update_end_tx_column",
    "update_property_mod_flags",
]
