"""SQLAlchemy-Continuum's module path ``dialects``: database-specific helpers."""
