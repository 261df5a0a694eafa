"""Builders of version tables and classes, and schema maintenance helpers.

``update_end_tx_column`` is here under SQLAlchemy-Continuum's module name
(``sqlalchemy_continuum.schema``).
"""

from .maintenance import update_end_tx_column

__all__ = ["update_end_tx_column"]
