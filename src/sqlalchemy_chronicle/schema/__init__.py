"""Builders of version tables and classes, and schema maintenance helpers."""
