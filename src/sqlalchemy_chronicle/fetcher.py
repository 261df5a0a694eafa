"""SQLAlchemy-Continuum's module path ``fetcher``: ``versioning_manager.fetcher(version)``."""

from .read.version import SubqueryFetcher, ValidityFetcher, VersionFetcher

__all__ = ["SubqueryFetcher", "ValidityFetcher", "VersionFetcher"]
