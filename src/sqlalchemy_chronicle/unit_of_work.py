"""SQLAlchemy-Continuum's module path ``unit_of_work``: the per-transaction capture state."""

from .capture.unit_of_work import UnitOfWork

__all__ = ["UnitOfWork"]
