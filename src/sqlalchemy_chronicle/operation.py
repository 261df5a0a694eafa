"""SQLAlchemy-Continuum's module path ``operation``: the operation types of version rows."""

from .capture.unit_of_work import Operations
from .config import Operation

__all__ = ["Operation", "Operations"]
