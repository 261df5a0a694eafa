"""``python -m sqlalchemy_chronicle`` and the ``chronicle`` console script."""

from __future__ import annotations

import sys

from .integrations.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
