"""SQLAlchemy-Continuum's ``dialects.postgresql`` module: the native versioning triggers.

A facade: the functions live in :mod:`sqlalchemy_chronicle.capture.native.postgresql`.
"""

from ..capture.native.postgresql import create_trigger, drop_trigger, sync_trigger

__all__ = ["create_trigger", "drop_trigger", "sync_trigger"]
