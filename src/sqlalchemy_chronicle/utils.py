"""Helpers over versioned classes and objects (SQLAlchemy-Continuum's ``utils``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import attributes
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql import visitors

from .config import Operation
from .exc import ClassNotVersioned, ConfigurationError
from .manager import VersioningManager
from .schema.tables import registered_spec

_NO_LOAD = orm.PassiveFlag.PASSIVE_NO_INITIALIZE

__all__ = [
    "adapt_columns",
    "changeset",
    "count_versions",
    "end_tx_column_name",
    "get_versioning_manager",
    "is_internal_column",
    "is_modified",
    "is_modified_or_deleted",
    "is_session_modified",
    "is_versioned",
    "option",
    "parent_class",
    "transaction_class",
    "tx_column_name",
    "vacuum",
    "version_class",
    "version_obj",
    "version_table",
    "versioned_column_properties",
    "versioned_objects",
]


def _class_of(obj_or_class: Any) -> type:
    if isinstance(obj_or_class, AliasedClass):
        return sa.inspect(obj_or_class).class_  # type: ignore[no-any-return]
    if isinstance(obj_or_class, type):
        return obj_or_class
    return type(obj_or_class)


def _describe(value: Any) -> str:
    if isinstance(value, type):
        return f"the class {value.__name__}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _mapped_object(value: Any, function: str) -> None:
    """Raise :class:`ConfigurationError` unless ``value`` is an instance of a mapped class."""
    if isinstance(value, type) or not isinstance(
        sa.inspect(value, raiseerr=False), orm.InstanceState
    ):
        raise ConfigurationError(f"{function}() takes a mapped object, not {_describe(value)}.")


def _session(value: Any, function: str) -> None:
    if not isinstance(value, (orm.Session, orm.scoped_session)):
        raise ConfigurationError(f"{function}() takes a Session, not {_describe(value)}.")


def get_versioning_manager(obj_or_class: Any) -> VersioningManager:
    """The manager versioning a class, instance, version class or aliased class."""
    if isinstance(obj_or_class, str):
        raise ClassNotVersioned(obj_or_class)
    cls = _class_of(obj_or_class)
    manager = getattr(cls, "__versioning_manager__", None)
    if manager is None:
        raise ClassNotVersioned(cls.__name__)
    return manager  # type: ignore[no-any-return]


def _configured(manager: VersioningManager) -> VersioningManager:
    if any(c not in manager.version_class_map for c in manager.pending_classes):
        orm.configure_mappers()
    return manager


def version_class(model: Any) -> Any:
    """The version class of ``model``; ``model`` itself if versioning is off for it."""
    manager = _configured(get_versioning_manager(model))
    cls = _class_of(model)
    return manager.version_class_map.get(cls, cls)


def parent_class(version_cls: Any) -> Any:
    """The parent (versioned) class of a version class.

    Raises ``KeyError`` when given a parent class, as SQLAlchemy-Continuum does.
    """
    manager = _configured(get_versioning_manager(version_cls))
    return manager.parent_class_map[_class_of(version_cls)]


def transaction_class(cls: Any) -> Any:
    """The transaction class of the manager of a parent or version class."""
    return _configured(get_versioning_manager(cls)).transaction_cls


def _parent_of(obj_or_class: Any) -> type:
    cls = _class_of(obj_or_class)
    manager = get_versioning_manager(cls)
    return manager.parent_class_map.get(cls, cls)


def option(obj_or_class: Any, name: str) -> Any:
    """The value of versioning option ``name`` for a parent or version class or object."""
    parent = _parent_of(obj_or_class)
    return get_versioning_manager(parent).option(parent, name)


def tx_column_name(obj_or_class: Any) -> str:
    """The name of the transaction id column of the version table."""
    return option(obj_or_class, "transaction_column_name")  # type: ignore[no-any-return]


def end_tx_column_name(obj_or_class: Any) -> str:
    """The name of the end transaction id column of the version table."""
    return option(obj_or_class, "end_transaction_column_name")  # type: ignore[no-any-return]


def is_internal_column(model: Any, column_name: str) -> bool:
    """True for the transaction, end transaction and operation type columns."""
    return column_name in (
        option(model, "transaction_column_name"),
        option(model, "end_transaction_column_name"),
        option(model, "operation_type_column_name"),
    )


def is_versioned(obj_or_class: Any) -> bool:
    """True when the class has ``__versioned__`` and its ``versioning`` option is on."""
    cls = _class_of(obj_or_class)
    if getattr(cls, "__versioned__", None) is None:
        return False
    manager = getattr(cls, "__versioning_manager__", None)
    if manager is None:
        return False
    return bool(manager.option(cls, "versioning"))


def versioned_column_properties(obj_or_class: Any) -> list[orm.ColumnProperty[Any]]:
    """The column properties of a versioned class that its version table stores."""
    cls = _class_of(obj_or_class)
    manager = get_versioning_manager(cls)
    mapper: orm.Mapper[Any] = sa.inspect(cls)
    return [
        prop
        for prop in mapper.column_attrs
        if manager.option(cls, "versioning") is not False
        and not manager.is_excluded_property(cls, prop.key)
    ]


def _changed_relationships(obj: Any, cls: type, *, many_to_one_only: bool) -> bool:
    """Whether a relationship of ``obj`` whose local columns are versioned has a
    pending change (only many-to-one ones, whose change is a column change, if asked)."""
    manager = get_versioning_manager(cls)
    mapper: orm.Mapper[Any] = sa.inspect(cls)
    for rel in mapper.relationships:
        if rel.key == "versions" or (many_to_one_only and rel.direction is not orm.MANYTOONE):
            continue
        local_keys = [
            mapper.get_property_by_column(c).key
            for c in rel.local_columns
            if c in mapper.columns.values()
        ]
        if not local_keys or all(manager.is_excluded_property(cls, k) for k in local_keys):
            continue
        if attributes.get_history(obj, rel.key, _NO_LOAD).has_changes():
            return True
    return False


def _changed_columns(obj: Any, cls: type) -> bool:
    return any(
        attributes.get_history(obj, prop.key, _NO_LOAD).has_changes()
        for prop in versioned_column_properties(cls)
    )


def _writes_version(obj: Any) -> bool:
    """True when flushing ``obj`` writes a version of it: it is new or pending delete,
    or a versioned column (or a many-to-one relationship setting one) changed.

    Unlike :func:`is_modified`, a change of a collection alone (``article.tags``)
    does not count: it versions the other side or the association table, not ``obj``.
    """
    cls = type(obj)
    if not is_versioned(cls):
        return False
    session = orm.object_session(obj)
    if session is not None and (obj in session.deleted or obj in session.new):
        return True
    return _changed_columns(obj, cls) or _changed_relationships(obj, cls, many_to_one_only=True)


def is_modified(obj: Any) -> bool:
    """True when a versioned attribute of ``obj`` has a pending change.

    As in SQLAlchemy-Continuum, that includes a relationship whose local columns are
    versioned, collections too: ``article.tags.append(tag)`` makes ``article``
    modified, although the flush versions the association row and not ``article``
    (it does not count for the version of ``article`` itself).
    """
    _mapped_object(obj, "is_modified")
    cls = type(obj)
    if not is_versioned(cls):
        return False
    return _changed_columns(obj, cls) or _changed_relationships(obj, cls, many_to_one_only=False)


def is_modified_or_deleted(obj: Any) -> bool:
    """:func:`is_modified`, or ``obj`` is pending insert or delete in its session."""
    _mapped_object(obj, "is_modified_or_deleted")
    session = orm.object_session(obj)
    if session is not None and (obj in session.deleted or obj in session.new):
        return is_versioned(obj)
    return is_modified(obj)


def versioned_objects(session: orm.Session) -> Iterator[Any]:
    """The versioned objects of ``session`` that are new, dirty or deleted."""
    _session(session, "versioned_objects")
    return (
        obj for obj in (*session.new, *session.dirty, *session.deleted) if is_versioned(obj)
    )


def is_session_modified(session: orm.Session) -> bool:
    """True when a versioned object of ``session`` is new, deleted or
    :func:`is_modified` (a relationship change included, as in SQLAlchemy-Continuum)."""
    _session(session, "is_session_modified")
    return any(is_modified_or_deleted(obj) for obj in versioned_objects(session))


def changeset(obj: Any) -> dict[str, list[Any]]:
    """The pending change of a live object, as ``{attribute: [new, old]}``.

    Note the order, the reverse of ``Version.changeset`` (as in SQLAlchemy-Continuum).
    Attributes whose new value is falsy are left out. For an object pending deletion,
    each non-key column that holds a value gives ``[None, value]``.
    """
    _mapped_object(obj, "changeset")
    data: dict[str, list[Any]] = {}
    session = orm.object_session(obj)
    mapper = sa.inspect(type(obj))
    if session is not None and obj in session.deleted:
        # Reading expired attributes must not autoflush the pending DELETE first.
        with session.no_autoflush:
            for prop in mapper.column_attrs:
                if any(c.primary_key for c in prop.columns):
                    continue
                value = getattr(obj, prop.key)
                if value is not None:
                    data[prop.key] = [None, value]
        return data
    for prop in mapper.attrs:
        history = attributes.get_history(obj, prop.key, _NO_LOAD)
        if not history.has_changes():
            continue
        new = history.added[0] if history.added else None
        old = history.deleted[0] if history.deleted else None
        if new:
            data[prop.key] = [new, old]
    return data


def _version_spec(cls: type) -> Any:
    return get_versioning_manager(cls).versioned_model(cls).local_spec


def count_versions(obj: Any) -> int:
    """How many versions ``obj`` has (0 for an object never flushed)."""
    _mapped_object(obj, "count_versions")
    state = sa.inspect(obj)
    session = orm.object_session(obj)
    if state.key is None or session is None:
        return 0
    cls = _parent_of(obj)
    model = get_versioning_manager(cls).versioned_model(cls)
    spec = model.local_spec
    identity = state.key[1]
    positions = model.pk_positions[model.specs.index(spec)]
    criteria = [c == identity[i] for c, i in zip(spec.version_pk, positions, strict=True)]
    with session.no_autoflush:
        return int(
            session.scalar(sa.select(sa.func.count()).select_from(spec.version).where(*criteria))
            or 0
        )


def version_obj(session: orm.Session, parent_obj: Any) -> Any:
    """The version of ``parent_obj`` written by ``session``'s current transaction, or None."""
    _session(session, "version_obj")
    manager = get_versioning_manager(parent_obj)
    uow = manager.find_unit_of_work(session)
    if uow is None or uow.transaction_id is None:
        return None
    version_cls = version_class(type(parent_obj))
    spec = _version_spec(type(parent_obj))
    key = sa.inspect(parent_obj).identity
    if key is None:
        return None
    criteria = [getattr(version_cls, c.key) == v for c, v in zip(spec.version_pk, key, strict=True)]
    return session.scalars(
        sa.select(version_cls).where(
            *criteria, getattr(version_cls, spec.tx.key) == uow.transaction_id
        )
    ).first()


def adapt_columns(expr: Any) -> Any:
    """``expr`` with each column of a versioned table replaced by the same column of
    its version table (for building queries over version tables)."""

    def replace(element: Any, **kw: Any) -> Any:
        if isinstance(element, sa.Column) and isinstance(element.table, sa.Table):
            spec = registered_spec(element.table)
            if spec is not None:
                return next((c for c in spec.version.c if c.name == element.name), None)
        return None

    return visitors.replacement_traverse(expr, {}, replace)


def version_table(table: sa.Table) -> sa.Table:
    """The version table of ``table`` (honours the ``table_name`` option and schemas)."""
    if not isinstance(table, sa.Table):
        raise ConfigurationError(f"version_table() takes a Table, not {_describe(table)}.")
    spec = registered_spec(table)
    if spec is not None:
        return spec.version
    name = f"{table.schema}.{table.name}_version" if table.schema else f"{table.name}_version"
    return table.metadata.tables[name]


def vacuum(session: orm.Session, model: type, yield_per: int = 1000) -> int:
    """Delete the versions of ``model`` that changed nothing; return how many.

    An UPDATE version whose versioned values equal those of the version before it
    (of the same entity, keyed by its whole primary key) carries no information; it
    is deleted and, under the validity strategy, the version before it takes over
    its ``end_transaction_id`` so the chain stays unbroken. INSERT and DELETE
    versions, and the version after a DELETE, are always kept. The caller commits.
    """
    _session(session, "vacuum")
    if not isinstance(yield_per, int) or isinstance(yield_per, bool) or yield_per < 1:
        raise ConfigurationError(
            f"vacuum() takes yield_per as an integer >= 1, not {_describe(yield_per)}."
        )
    if not isinstance(model, type):
        raise ConfigurationError(f"vacuum() takes a versioned model class, not {_describe(model)}.")
    manager = get_versioning_manager(model)
    parent = manager.parent_class_map.get(model)
    if parent is not None:
        raise ConfigurationError(
            f"vacuum() takes a versioned model class; {model.__name__} is the version class "
            f"of {parent.__name__}, pass {parent.__name__}."
        )
    version_cls = version_class(model)
    spec = _version_spec(model)
    data_keys = [v.key for _, v in spec.columns if not v.primary_key]
    pk_keys = [c.key for c in spec.version_pk]
    tx_attr = getattr(version_cls, spec.tx.key)
    stmt = (
        sa.select(version_cls)
        .order_by(*[getattr(version_cls, k) for k in pk_keys], tx_attr)
        .execution_options(yield_per=yield_per)
    )
    removed = 0
    kept: Any = None
    kept_key: tuple[Any, ...] | None = None
    with session.no_autoflush:
        versions = list(session.scalars(stmt))
    for version in versions:
        key = tuple(getattr(version, k) for k in pk_keys)
        op = getattr(version, spec.op.key)
        if (
            kept is not None
            and key == kept_key
            and op == Operation.UPDATE
            and getattr(kept, spec.op.key) != Operation.DELETE
            and all(getattr(kept, k) == getattr(version, k) for k in data_keys)
        ):
            if spec.end_tx is not None:
                setattr(kept, spec.end_tx.key, getattr(version, spec.end_tx.key))
            session.delete(version)
            removed += 1
            continue
        kept, kept_key = version, key
    return removed
