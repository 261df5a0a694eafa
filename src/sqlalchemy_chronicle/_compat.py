"""The few places where no public SQLAlchemy API does what we need.

One function per shim, each commented with why it exists; each has a test.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = [
    "dml_values",
    "engine_on_pool",
    "from_select_names",
    "is_upsert",
    "new_instance",
    "remove_property",
    "session_connections",
]


def new_instance(cls: type) -> Any:
    """An instrumented instance of mapped ``cls`` made without calling ``__init__``.

    Reverting a deleted object re-creates it from a version; its ``__init__`` may
    require arguments we cannot know. ``ClassManager.new_instance`` is what the ORM
    itself uses when loading rows; it is not documented as public.
    """
    return sa.inspect(cls).class_manager.new_instance()


def _key(column: Any) -> Any:
    return getattr(column, "key", column)


def dml_values(stmt: Any) -> list[dict[Any, Any]]:
    """The rows given to an INSERT's ``values()``, as ``{column key: value}``.

    Bulk capture must know the keys of the rows an ``insert(Model).values(...)``
    adds. No public accessor gives them: ``ValuesBase._values`` (one row, values as
    bound parameters) and ``_multi_values`` (several rows) hold them. A value that is
    an SQL expression rather than a bound value is given as that expression: the
    column is given (plugins flag it), its value is known only to the database.
    """
    multi = getattr(stmt, "_multi_values", None) or ()
    rows: list[dict[Any, Any]] = []
    for group in multi:
        for given in group:
            if isinstance(given, dict):
                rows.append({_key(k): v for k, v in given.items()})
    single = getattr(stmt, "_values", None)
    if single:
        row: dict[Any, Any] = {}
        for k, v in single.items():
            row[_key(k)] = v.value if isinstance(v, sa.BindParameter) else v
        rows.append(row)
    return rows


def from_select_names(stmt: Any) -> list[str] | None:
    """The column names of an ``INSERT ... FROM SELECT`` (``insert().from_select(names,
    select)``), in the order of the SELECT's columns; None for another INSERT.

    Versioning such an INSERT into an association table reads the rows its SELECT
    adds; which column each value goes to is known only from the names given to
    ``from_select()``, which SQLAlchemy keeps in ``Insert._select_names`` (the SELECT
    itself is the public ``Insert.select``).
    """
    if getattr(stmt, "select", None) is None:
        return None
    names = getattr(stmt, "_select_names", None)
    return None if names is None else [_key(name) for name in names]


def is_upsert(stmt: Any) -> bool:
    """Whether INSERT ``stmt`` has an ``ON CONFLICT`` / ``ON DUPLICATE KEY`` clause.

    The dialects' ``on_conflict_do_update()``, ``on_conflict_do_nothing()`` and
    ``on_duplicate_key_update()`` all store their clause in ``_post_values_clause``;
    no public attribute tells that an INSERT may update rows instead.
    """
    return getattr(stmt, "_post_values_clause", None) is not None


def session_connections(session: Any) -> list[Any]:
    """The connections ``session``'s current transaction holds.

    Versioning a legacy bulk save (``bulk_insert_mappings()``, ...) watches the
    statements it runs on the session's connections; those begun before it are not
    announced again (``after_begin`` fired long ago) and no public accessor lists
    them. ``SessionTransaction._connections`` maps each bind (and each connection) to
    a tuple whose first item is the connection; the outermost transaction holds them.
    """
    transaction = session.get_transaction()
    while transaction is not None and transaction.parent is not None:
        transaction = transaction.parent
    if transaction is None:
        return []
    found: dict[int, Any] = {}
    for entry in getattr(transaction, "_connections", {}).values():
        found.setdefault(id(entry[0]), entry[0])
    return list(found.values())


def remove_property(mapper: Any, key: str) -> bool:
    """Take the property ``key`` that ``Mapper.add_property()`` gave ``mapper`` off it
    again, and off its subclasses, which inherited it; whether it was there.

    ``remove_versioning()`` takes away the ``versions`` relationship it added;
    SQLAlchemy has ``add_property`` but no public way back. The property leaves the
    mappers' property collections and the class (the attribute goes), and the
    mappers forget what they derived from it. A relationship loaded eagerly keeps its
    entry in the class's instrumentation: statements compiled before (SQLAlchemy
    caches them per mapper) still load it, and would fail without it.
    """
    prop = mapper._props.get(key)
    if prop is None:
        return False
    eager = getattr(prop, "lazy", None) in ("joined", "selectin", "subquery", "immediate", False)
    for each in mapper.self_and_descendants:
        each._props.pop(key, None)
        each._init_properties.pop(key, None)
        manager = each.class_manager
        if key in vars(each.class_):
            # Not delattr(): declarative classes refuse to lose a mapped attribute.
            type.__delattr__(each.class_, key)
        manager.local_attrs.pop(key, None)
        if not eager:
            manager.pop(key, None)
        manager._reset_memoizations()
    for each in mapper.self_and_descendants:
        each._expire_memoizations()
    return True


def engine_on_pool(engine: Any, pool: Any) -> Any:
    """An :class:`~sqlalchemy.engine.Engine` like ``engine`` (same dialect and URL)
    whose connections come from ``pool``.

    MySQL/MariaDB capture reads what other transactions committed on a second
    connection, from a pool of its own (``engine.pool.recreate()``, so that it never
    waits for the user's pool). ``create_engine()`` cannot be given an existing,
    initialized dialect, and building a second one from the URL would lose the
    ``connect_args`` and ``creator`` the pool already holds; the ``Engine``
    constructor takes exactly (pool, dialect, url), but is not documented as public.
    """
    return sa.engine.Engine(pool, engine.dialect, engine.url)
