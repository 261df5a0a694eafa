"""Builders of version tables and classes, and schema maintenance helpers.

``update_end_tx_column`` and ``update_property_mod_flags`` are here under
SQLAlchemy-Continuum's module name (``sqlalchemy_continuum.schema``).
"""

from .maintenance import update_end_tx_column, update_property_mod_flags

__all__ = ["update_end_tx_column", "update_property_mod_flags"]
