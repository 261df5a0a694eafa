"""The built-in plugins.

Pass instances to ``make_versioned(plugins=[...])`` (or to a manager). Each plugin
lives in its own module and is imported on first use, so importing this package
imports no optional dependency (Flask, for one).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..hooks import Plugin, PluginCollection

__all__ = [
    "ActivityPlugin",
    "FlaskPlugin",
    "NullDeletePlugin",
    "Plugin",
    "PluginCollection",
    "PropertyModTrackerPlugin",
    "TamperEvidencePlugin",
    "TransactionChangesPlugin",
    "TransactionMetaPlugin",
]

_MODULES = {
    "ActivityPlugin": "activity",
    "FlaskPlugin": "flask",
    "NullDeletePlugin": "null_delete",
    "PropertyModTrackerPlugin": "property_mod_tracker",
    "TamperEvidencePlugin": "tamper_evidence",
    "TransactionChangesPlugin": "transaction_changes",
    "TransactionMetaPlugin": "transaction_meta",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
