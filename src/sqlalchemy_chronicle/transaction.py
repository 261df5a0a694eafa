"""SQLAlchemy-Continuum's module path ``transaction``: the transaction class and its factory."""

from .manager import TransactionFactory
from .read.transaction import TransactionBase

__all__ = ["TransactionBase", "TransactionFactory"]
