"""SQLAlchemy-Continuum's module path ``table_builder``.

One class builds a version table here; Continuum split it into ``ColumnReflector``
(the column copies) and ``TableBuilder``, so both names refer to it. It is what
``Plugin.after_build_version_table_columns`` hooks receive.
"""

from .schema.tables import TableBuilder

ColumnReflector = TableBuilder

__all__ = ["ColumnReflector", "TableBuilder"]
