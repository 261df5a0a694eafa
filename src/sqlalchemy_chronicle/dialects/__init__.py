"""SQLAlchemy-Continuum's ``dialects`` package (facade)."""
