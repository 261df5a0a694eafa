"""SQLAlchemy-Continuum's module path ``model_builder``.

``ModelBuilder`` names the builder of version classes. Continuum's builder is a class
with internal methods; here it is a function, called by the manager when the mappers
are configured. Use ``version_class(Model)`` to get a built class.
"""

from .schema.models import build_version_class

ModelBuilder = build_version_class

__all__ = ["ModelBuilder"]
