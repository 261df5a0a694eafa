"""SQLAlchemy-Continuum's module path ``relationship_builder``.

``RelationshipBuilder`` names the builder of a version class's temporal relationships.
Continuum's builder is a class; here it is a function, called by the manager when the
mappers are configured.
"""

from .schema.relationships import build_temporal_relationship

RelationshipBuilder = build_temporal_relationship

__all__ = ["RelationshipBuilder"]
