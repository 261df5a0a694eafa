"""The few places where no public SQLAlchemy API does what we need.

One function per shim, each commented with why it exists; each has a test.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = ["new_instance"]


def new_instance(cls: type) -> Any:
    """An instrumented instance of mapped ``cls`` made without calling ``__init__``.

    Reverting a deleted object re-creates it from a version; its ``__init__`` may
    require arguments we cannot know. ``ClassManager.new_instance`` is what the ORM
    itself uses when loading rows; it is not documented as public.
    """
    return sa.inspect(cls).class_manager.new_instance()
