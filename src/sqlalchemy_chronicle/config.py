"""Validated versioning options and the enums the rest of the package speaks.

Options come from two places: the manager's defaults (``make_versioned(options=...)``
or ``versioning_manager.options[...] = ...``) and each model's ``__versioned__``
dict. :func:`resolve_options` merges them into a frozen :class:`ClassOptions`,
validating every key and value, so that the builders and the write path never see
an unknown or ill-typed option.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .exc import ConfigurationError

__all__ = [
    "OPTION_DEFAULTS",
    "ClassOptions",
    "IndexLayout",
    "Operation",
    "OptionsDict",
    "Strategy",
    "resolve_options",
    "validate_option",
]


class Operation(enum.IntEnum):
    """The value of a version row's ``operation_type`` column."""

    INSERT = 0
    UPDATE = 1
    DELETE = 2


class Strategy(str, enum.Enum):
    """How version rows are linked to the next version of the same entity.

    ``VALIDITY`` keeps an ``end_transaction_id`` column that closes each version when
    the next one is written: cheap reads, one extra UPDATE per flush.
    ``SUBQUERY`` has no such column and finds neighbours with ordered look-ups.
    """

    VALIDITY = "validity"
    SUBQUERY = "subquery"


class IndexLayout(str, enum.Enum):
    """Which indexes a version table gets besides its primary key.

    ``CONTINUUM`` (the default) creates SQLAlchemy-Continuum's: one on each of
    ``transaction_id``, ``end_transaction_id`` and ``operation_type``, and, unless
    ``create_composite_index`` is False, ``(primary key..., transaction_id DESC)``
    and ``(primary key..., transaction_id, end_transaction_id)``. Tables that
    Continuum created match it, so Alembic's autogenerate sees no difference.

    ``MINIMAL`` keeps only the ``transaction_id`` index (and the indexes copied from
    the parent's ``index=True`` columns). The library's reads of given entities search
    the primary key ``(primary key..., transaction_id)`` either way, and each version
    written or closed updates four indexes fewer: on the benchmark
    (``benchmarks/README.md``) an update or a delete takes 8-22% less time.
    Queries of your own that filter a whole version table on ``end_transaction_id``
    or ``operation_type`` alone (every open version, every deletion) then scan it.
    """

    CONTINUUM = "continuum"
    MINIMAL = "minimal"


#: Every option, with its default. Keys that SQLAlchemy-Continuum itself writes into
#: ``__versioned__`` (``transaction_changes``) or ignores (``class``) are accepted in
#: ``__versioned__`` too but are not options.
OPTION_DEFAULTS: Mapping[str, Any] = {
    "versioning": True,
    "base_classes": None,
    "table_name": "%s_version",
    "exclude": (),
    "include": (),
    "native_versioning": False,
    "create_models": True,
    "create_tables": True,
    "transaction_column_name": "transaction_id",
    "end_transaction_column_name": "end_transaction_id",
    "operation_type_column_name": "operation_type",
    "strategy": Strategy.VALIDITY,
    "use_module_name": False,
    "create_composite_index": True,
    "indexes": IndexLayout.CONTINUUM,
    "schema": None,
    "versions_lazy": "dynamic",
}

_INTERNAL_KEYS = frozenset({"transaction_changes", "class"})


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be True or False, got {value!r}")
    return value


def _identifier(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"must be a non-empty string, got {value!r}")
    return value


def _optional_identifier(name: str, value: Any) -> str | None:
    return None if value is None else _identifier(name, value)


def _table_name(name: str, value: Any) -> str:
    _identifier(name, value)
    if value.count("%s") != 1 or "%" in value.replace("%s", ""):
        raise TypeError(f"must be a format string with exactly one '%s', got {value!r}")
    return str(value)


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value,)  # one name, as SQLAlchemy-Continuum accepts it
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"must be a list of attribute names, got {value!r}")
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"must be a list of attribute names, got {item!r} in it")
    return items


_E = TypeVar("_E", bound=enum.Enum)


def _one_of(choices: type[_E]) -> Callable[[str, Any], _E]:
    """A validator accepting the members of enum ``choices`` or their values."""

    def validate(name: str, value: Any) -> _E:
        try:
            return choices(value)
        except ValueError:
            names = ", ".join(repr(c.value) for c in choices)
            raise TypeError(f"must be one of {names}, got {value!r}") from None

    return validate


def _base_classes(name: str, value: Any) -> tuple[type, ...] | None:
    if value is None:
        return None
    if isinstance(value, type):
        value = (value,)
    if not isinstance(value, tuple | list) or not all(isinstance(c, type) for c in value):
        raise TypeError(f"must be a tuple of classes, got {value!r}")
    return tuple(value)


#: How the parent's ``versions`` relationship loads (its ``lazy=``): ``dynamic`` (a
#: query, SQLAlchemy-Continuum's), ``select`` or ``selectin`` (a list, which
#: ``selectinload()`` and ``await obj.awaitable_attrs.versions`` load), ``write_only``
#: (``obj.versions.select()`` gives the statement to run, e.g. on an AsyncSession).
VERSIONS_LAZY = ("dynamic", "select", "selectin", "write_only")


def _versions_lazy(name: str, value: Any) -> str:
    if value not in VERSIONS_LAZY:
        names = ", ".join(repr(v) for v in VERSIONS_LAZY)
        raise TypeError(f"must be one of {names}, got {value!r}")
    return str(value)


_VALIDATORS: Mapping[str, Callable[[str, Any], Any]] = {
    "versioning": _bool,
    "base_classes": _base_classes,
    "table_name": _table_name,
    "exclude": _names,
    "include": _names,
    "native_versioning": _bool,
    "create_models": _bool,
    "create_tables": _bool,
    "transaction_column_name": _identifier,
    "end_transaction_column_name": _identifier,
    "operation_type_column_name": _identifier,
    "strategy": _one_of(Strategy),
    "use_module_name": _bool,
    "create_composite_index": _bool,
    "indexes": _one_of(IndexLayout),
    "schema": _optional_identifier,
    "versions_lazy": _versions_lazy,
}


def validate_option(owner: str, name: str, value: Any) -> Any:
    """Return ``value`` normalised for option ``name``, or raise ConfigurationError.

    ``owner`` names where the option was given (a model or the manager), for the
    message.
    """
    validator = _VALIDATORS.get(name)
    if validator is None:
        known = ", ".join(sorted(_VALIDATORS))
        raise ConfigurationError(
            f"Unknown versioning option {name!r} in {owner}. Known options: {known}."
        )
    try:
        return validator(name, value)
    except TypeError as err:
        raise ConfigurationError(f"Versioning option {name!r} of {owner} {err}.") from None


class OptionsDict(dict[str, Any]):
    """The manager-level option defaults: a dict that rejects unknown or bad values."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__(OPTION_DEFAULTS)
        if values:
            self.update(values)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, validate_option("the versioning manager options", key, value))

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]


@dataclass(frozen=True)
class ClassOptions:
    """The resolved, validated options of one versioned model."""

    versioning: bool
    base_classes: tuple[type, ...] | None
    table_name: str
    exclude: tuple[str, ...]
    include: tuple[str, ...]
    native_versioning: bool
    create_models: bool
    create_tables: bool
    transaction_column_name: str
    end_transaction_column_name: str
    operation_type_column_name: str
    strategy: Strategy
    use_module_name: bool
    create_composite_index: bool
    indexes: IndexLayout
    schema: str | None
    #: The ``lazy=`` of the parent's ``versions`` relationship (:data:`VERSIONS_LAZY`).
    versions_lazy: str = "dynamic"

    def is_excluded(self, key: str) -> bool:
        """True when attribute ``key`` is left out of the version table."""
        return key in self.exclude and key not in self.include


def resolve_options(
    model_name: str, defaults: Mapping[str, Any], versioned: Mapping[str, Any] | None
) -> ClassOptions:
    """Merge a model's ``__versioned__`` over the manager defaults, validating both."""
    if versioned is None:
        versioned = {}
    if not isinstance(versioned, Mapping):
        raise ConfigurationError(
            f"{model_name}.__versioned__ must be a dict of options, got {versioned!r}."
        )
    values: dict[str, Any] = {}
    for name, default in OPTION_DEFAULTS.items():
        values[name] = validate_option(
            "the versioning manager options", name, defaults.get(name, default)
        )
    for name, value in versioned.items():
        if name in _INTERNAL_KEYS:
            continue
        values[name] = validate_option(f"{model_name}.__versioned__", name, value)
    return ClassOptions(**values)
