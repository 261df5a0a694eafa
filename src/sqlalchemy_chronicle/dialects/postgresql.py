"""SQLAlchemy-Continuum's module path ``dialects.postgresql``: native versioning triggers.

Native (trigger) versioning is not in this release: these helpers raise
:class:`~sqlalchemy_chronicle.exc.NotSupportedError` naming what to do instead.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ..exc import NotSupportedError

__all__ = ["create_trigger", "drop_trigger", "sync_trigger"]


def _not_supported(name: str) -> NoReturn:
    raise NotSupportedError(
        f"{name}(): native (trigger) versioning is not supported yet by this release; "
        f"versions are written by the ORM, which needs no triggers. Remove the call."
    )


def sync_trigger(session: Any, table_name: str, **kwargs: Any) -> NoReturn:
    """Recreate the versioning trigger of ``table_name`` (not supported yet)."""
    _not_supported("sync_trigger")


def create_trigger(session: Any, table: Any, **kwargs: Any) -> NoReturn:
    """Create the versioning trigger of ``table`` (not supported yet)."""
    _not_supported("create_trigger")


def drop_trigger(session: Any, table_name: str) -> NoReturn:
    """Drop the versioning trigger of ``table_name`` (not supported yet)."""
    _not_supported("drop_trigger")
