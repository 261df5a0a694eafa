"""Pure builders of the version classes, the transaction class and their links.

The manager calls these with everything they need (the parent mapper, the
resolved options, the base classes to use); they map new classes and return a
:class:`VersionedModel` describing one versioned class. No SQL runs here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..config import ClassOptions, Strategy
from ..exc import ConfigurationError
from .tables import VersionTableSpec

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper

__all__ = [
    "VersionedModel",
    "build_transaction_class",
    "build_version_class",
    "declarative_base_of",
    "map_class",
    "version_class_name",
]


@dataclass(eq=False)
class VersionedModel:
    """Everything the write path and the readers need to know about one versioned class."""

    parent: type
    mapper: Mapper[Any]
    options: ClassOptions
    #: One spec per table the parent mapper writes, the base table first.
    specs: tuple[VersionTableSpec, ...]
    #: For each spec, the parent property key of each of its primary key columns.
    pk_keys: tuple[tuple[str, ...], ...]
    #: For each spec, the position of each of its key columns in the identity key.
    pk_positions: tuple[tuple[int, ...], ...]
    #: Property keys of the versioned column attributes (what makes an update count).
    versioned_keys: frozenset[str]
    #: Per versioned key, the function telling whether two values are equal.
    comparators: dict[str, Any]
    version_cls: type | None = None
    #: The spec of the table the version class maps (the parent's local table).
    local_spec: VersionTableSpec = field(init=False)
    #: ``(spec, pk_keys, pk_positions)`` of each table, for the write path's loop.
    key_sources: tuple[tuple[VersionTableSpec, tuple[str, ...], tuple[int, ...]], ...] = field(
        init=False
    )

    def __post_init__(self) -> None:
        local = self.mapper.local_table
        self.local_spec = next((s for s in self.specs if s.parent is local), self.specs[-1])
        self.key_sources = tuple(zip(self.specs, self.pk_keys, self.pk_positions, strict=True))

    @property
    def strategy(self) -> Strategy:
        return self.options.strategy

    @property
    def name(self) -> str:
        return self.parent.__name__


def declarative_base_of(cls: type) -> type | None:
    """The declarative base class ``cls`` was declared from, or None if mapped imperatively."""
    for base in cls.__mro__[1:]:
        attrs = vars(base)
        if (
            "registry" in attrs
            and "metadata" in attrs
            and isinstance(attrs["registry"], orm.registry)
        ):
            return base
    return None


def version_class_name(parent: type, options: ClassOptions) -> str:
    """``ArticleVersion``, or ``TestsModelsArticleVersion`` with ``use_module_name``."""
    if options.use_module_name:
        return f"{parent.__module__.title().replace('.', '')}{parent.__name__}Version"
    return f"{parent.__name__}Version"


def map_class(
    name: str,
    bases: tuple[type, ...],
    namespace: dict[str, Any],
    table: sa.Table | None,
    registry: orm.registry,
    module: str,
) -> type:
    """Create class ``name`` mapped to ``table``: declaratively when one of ``bases`` is a
    declarative base (or a class mapped from one), imperatively in ``registry`` otherwise.

    ``table=None`` maps the class onto its mapped base's table (single-table inheritance).
    """
    namespace = {"__module__": module, **namespace}
    declarative = any(declarative_base_of(b) is not None or "registry" in vars(b) for b in bases)
    if declarative:
        if table is not None:
            namespace["__table__"] = table
        return type(name, bases, namespace)
    properties = {
        k: namespace.pop(k) for k in list(namespace) if isinstance(namespace[k], orm.MapperProperty)
    }
    mapper_args = namespace.pop("__mapper_args__", {})
    inherits = next((b for b in bases if sa.inspect(b, raiseerr=False) is not None), None)
    cls = type(name, bases, namespace)
    if table is not None:
        cls.__table__ = table  # type: ignore[attr-defined]
    registry.map_imperatively(cls, table, properties=properties, inherits=inherits, **mapper_args)
    return cls


def _pk_join(
    parent_pk: tuple[tuple[sa.Column[Any], sa.Column[Any]], ...],
) -> sa.ColumnElement[bool]:
    return sa.and_(*[p == orm.foreign(v) for p, v in parent_pk])


def _links(
    model: VersionedModel, spec: VersionTableSpec, transaction_cls: type | None
) -> dict[str, Any]:
    """``version_parent`` and ``transaction``, the relationships of a root version class."""
    links: dict[str, Any] = {
        "version_parent": orm.relationship(
            model.parent, primaryjoin=_pk_join(spec.pk), viewonly=True, uselist=False
        )
    }
    if transaction_cls is not None:
        tx_mapper: orm.Mapper[Any] = sa.inspect(transaction_cls)
        tx_id = tx_mapper.primary_key[0]
        links["transaction"] = orm.relationship(
            transaction_cls, primaryjoin=tx_id == orm.foreign(spec.tx), viewonly=True, uselist=False
        )
    return links


def build_version_class(
    model: VersionedModel,
    *,
    bases: tuple[type, ...],
    transaction_cls: type | None,
    manager: Any,
    registry: orm.registry,
    base_version: type | None = None,
) -> type:
    """Map the version class of ``model``.

    A root class maps its version table; a subclass of a versioned class (given as
    ``base_version``, the version class of its nearest versioned ancestor) follows the
    parent's inheritance: single-table (no table of its own), joined (its own version
    table, joined on key and transaction) or concrete.
    """
    spec = model.local_spec
    mapper = model.mapper
    namespace: dict[str, Any] = {"__versioning_manager__": manager, "__chronicle_model__": model}
    mapper_args: dict[str, Any] = {}
    table: sa.Table | None = spec.version
    if mapper.polymorphic_identity is not None:
        mapper_args["polymorphic_identity"] = mapper.polymorphic_identity
    if base_version is None or mapper.concrete:
        namespace.update(_links(model, spec, transaction_cls))
        discriminator = mapper.polymorphic_on
        copy = next((v for p, v in spec.columns if p is discriminator), None)
        if copy is not None and not mapper.concrete:
            mapper_args["polymorphic_on"] = copy
        if mapper.concrete:
            mapper_args["concrete"] = True
    else:
        base_model: VersionedModel = base_version.__chronicle_model__  # type: ignore[attr-defined]
        base_spec = base_model.local_spec
        if base_spec is spec:
            table = None  # single-table inheritance: the base version table holds the rows
        else:
            mapper_args["inherit_condition"] = sa.and_(
                *[b == v for (_, b), (_, v) in zip(base_spec.pk, spec.pk, strict=True)],
                base_spec.tx == spec.tx,
            )
            base_mapper: orm.Mapper[Any] = sa.inspect(base_version)
            for column in spec.version.columns:
                inherited = base_mapper.column_attrs.get(column.key)
                if inherited is not None:
                    # The same attribute stored in both tables (key, transaction, ...).
                    namespace[column.key] = orm.column_property(*inherited.columns, column)
    if mapper_args:
        namespace["__mapper_args__"] = mapper_args
    return map_class(
        version_class_name(model.parent, model.options),
        bases,
        namespace,
        table,
        registry,
        model.parent.__module__,
    )


def _is_history(prop: Any) -> bool:
    return isinstance(prop, orm.RelationshipProperty) and hasattr(
        prop.mapper.class_, "__chronicle_model__"
    )


def add_versions_relationship(
    model: VersionedModel, version_cls: type, query_class: type | None = None
) -> bool:
    """Give the parent class its ``versions`` relationship, ordered by transaction: a
    dynamic query unless the ``versions_lazy`` option says otherwise. Whether it added
    one (not when the class inherits its ancestor's)."""
    mapper = model.mapper
    inherited = mapper.inherits is not None and not mapper.concrete
    if inherited and "versions" in mapper.attrs:
        return False  # a versioned ancestor's ``versions`` returns this class's versions too
    ours = any(
        _is_history(m.attrs.get("versions")) for m in mapper.iterate_to_root() if m is not mapper
    )
    if mapper.concrete and ours:
        pass  # the ancestor's ``versions`` is ours; a concrete class gets its own
    elif "versions" in mapper.attrs or "versions" in vars(model.parent):
        raise ConfigurationError(
            f"Versioned model {model.name} already has an attribute named 'versions'; "
            f"rename it, as the versioning extension needs that name for the history."
        )
    spec = model.local_spec
    mapper.add_property(
        "versions",
        orm.relationship(
            version_cls,
            primaryjoin=_pk_join(spec.pk),
            order_by=spec.tx,
            lazy=model.options.versions_lazy,  # type: ignore[arg-type]
            viewonly=True,
            query_class=query_class,
        ),
    )
    return True


def build_transaction_class(
    name: str,
    table: sa.Table,
    bases: tuple[type, ...],
    registry: orm.registry,
    *,
    manager: Any,
    user_cls: type | None,
    module: str,
) -> type:
    """Map the transaction class onto ``table``; adds ``user`` when a user class is given."""
    namespace: dict[str, Any] = {"__versioning_manager__": manager}
    if user_cls is not None:
        namespace["user"] = orm.relationship(
            user_cls,
            primaryjoin=sa.inspect(user_cls).primary_key[0] == orm.foreign(table.c.user_id),
        )
    return map_class(name, bases, namespace, table, registry, module)
