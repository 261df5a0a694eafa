"""SQLAlchemy-Continuum's module path ``reverter``: what ``version.revert()`` uses."""

from .exc import ReverterException
from .read.revert import Reverter

__all__ = ["Reverter", "ReverterException"]
