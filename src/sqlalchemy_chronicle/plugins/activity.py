"""Activity stream: record who did what to which object, tied to its version.

:class:`ActivityPlugin` adds a model ``Activity`` (table ``activity``) next to the
transaction class. An activity is a verb, an *object* it acted on and an optional
*target*, each stored as a class name and an integer id, plus any JSON ``data``.
When the activity is flushed it is stamped with the current versioning transaction
and with the transaction of the version of its object and target that was current
at that moment, so ``activity.object_version`` shows the object as it was::

    from sqlalchemy_chronicle import make_versioned
    from sqlalchemy_chronicle.plugins import ActivityPlugin

    activity_plugin = ActivityPlugin()
    make_versioned(user_cls=None, plugins=[activity_plugin])
    ...                                     # define the models
    sa.orm.configure_mappers()
    Activity = activity_plugin.activity_cls

    article = Article(name="Some article")
    session.add(article)
    session.add(Activity(verb="create", object=article))
    session.commit()

    activity = session.scalars(sa.select(Activity)).one()
    activity.object               # the Article
    activity.object_version       # its ArticleVersion written by that transaction
    activity.transaction          # the Transaction; Transaction.activities goes back

Table ``activity`` (the columns of SQLAlchemy-Continuum's): ``id`` (autoincrementing
BIGINT; INTEGER on SQLite, whose row ids only autoincrement that way), ``verb``,
``transaction_id`` (NOT NULL, indexed, no foreign key, as in Continuum, so that
pruning transactions is not blocked by activities), ``data`` (JSON), ``object_type``,
``object_id``, ``object_tx_id``, ``target_type``, ``target_id``, ``target_tx_id``.

How the references work
    ``object`` and ``target`` are Python properties, not relationships. Setting one
    stores the class name (``object_type``) and the primary key (``object_id``) of any
    mapped object whose primary key is a single integer column; the object itself
    is kept on the activity so that its id can be read when it gets one. Reading it
    looks the class up by name among the mapped classes of the activity's registry
    (the declarative base) and loads the row with ``Session.get`` (no query when the
    object is in the identity map), so it is None once the object is deleted. In a
    query, ``Activity.object == article`` compares the class name and the id
    (:class:`ReferenceComparator`). ``object_version`` and ``target_version`` load
    ``<Class>Version`` by ``(object_id, object_tx_id)`` the same way; they are None
    for unversioned classes. ``actor`` is ``activity.transaction.user`` when the
    manager has a user class, None otherwise.

What a flush does
    A pending activity alone makes the flush open a transaction (the activity needs
    its id). For each pending activity, ``transaction_id`` becomes the current
    transaction and ``object_tx_id``/``target_tx_id`` become

    * the current transaction when it versions the object: it wrote a version of it
      in an earlier flush, or the object is new or dirty (with versioned column
      changes) in this flush. This costs no SQL. For an object deleted by this flush,
      the version before the delete (as in SQLAlchemy-Continuum);
    * otherwise the latest transaction that versioned the object, read with one
      query per version class per flush, whatever the number of activities.

A new object in the same flush
    SQLAlchemy-Continuum requires flushing a new object before creating an activity
    for it. Here a new *versioned* object may be flushed together with its activity:
    its id does not exist before the flush, so one ``UPDATE`` per flush fills in the
    ``object_id``/``target_id`` of such activities right after the versions are
    written. A new object of an *unversioned* class still has to be flushed first;
    otherwise the flush raises :class:`~sqlalchemy_chronicle.VersioningStateError`
    rather than store an activity that points nowhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.ext.hybrid import Comparator, hybrid_property

from ..capture.templates import CHUNK_PARAMS
from ..exc import ConfigurationError, VersioningStateError
from ..hooks import Plugin
from ..schema.models import declarative_base_of, map_class
from ..schema.tables import TX_ID_TYPE
from ..utils import _writes_version

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["ActivityBase", "ActivityPlugin", "ReferenceComparator"]

#: Key of ``UnitOfWork.info`` holding the activities whose object gets its id in this flush.
_DEFERRED = "sqlalchemy_chronicle.activity.deferred"
#: Instance attribute holding the objects given to ``object``/``target``.
_REFS = "_chronicle_activity_refs"
_ROLES = ("object", "target")


def _refs(activity: Any) -> dict[str, Any]:
    refs: dict[str, Any] | None = activity.__dict__.get(_REFS)
    if refs is None:
        refs = {}
        # A plain (not mapped) attribute: it lives as long as the Python object.
        object.__setattr__(activity, _REFS, refs)
    return refs


def _check_integer_key(obj: Any) -> None:
    mapper: orm.Mapper[Any] | None = sa.inspect(type(obj), raiseerr=False)
    if mapper is None:
        raise TypeError(
            f"An activity can refer to mapped objects only, not to {type(obj).__name__}."
        )
    pk = mapper.primary_key
    if len(pk) != 1 or not _is_integer(pk[0].type):
        raise TypeError(
            f"An activity can refer to objects whose primary key is one integer column; "
            f"the key of {type(obj).__name__} is ({', '.join(c.name for c in pk)})."
        )


def _is_integer(type_: sa.types.TypeEngine[Any]) -> bool:
    try:
        return issubclass(type_.python_type, int)
    except NotImplementedError:
        return isinstance(type_, sa.Integer)


def _key_of(obj: Any) -> Any:
    """The primary key value of ``obj``, or None while it has none."""
    state = sa.inspect(obj)
    if state.identity is not None:
        return state.identity[0]
    mapper = state.mapper
    return getattr(obj, mapper.get_property_by_column(mapper.primary_key[0]).key)


def _class_named(activity_cls: type, name: str) -> type:
    mapper: orm.Mapper[Any] = sa.inspect(activity_cls)
    for other in mapper.registry.mappers:
        if other.class_.__name__ == name:
            found: type = other.class_
            return found
    raise LookupError(
        f"{activity_cls.__name__} refers to a class named {name!r}, which is not mapped in "
        f"the registry of {activity_cls.__name__}."
    )


def _session_of(activity: Any, what: str) -> Session:
    session = orm.object_session(activity)
    if session is None:
        raise orm.exc.DetachedInstanceError(
            f"{type(activity).__name__}.{what} needs a session to load from; this "
            f"activity is not in one."
        )
    return session


def _get_reference(activity: Any, role: str) -> Any:
    type_name = getattr(activity, f"{role}_type")
    key = getattr(activity, f"{role}_id")
    ref = _refs(activity).get(role)
    if ref is not None and type(ref).__name__ == type_name and (key is None or _key_of(ref) == key):
        state = sa.inspect(ref)
        # A deleted object is gone, as Session.get() would say once its DELETE ran.
        return None if state.deleted or state.was_deleted else ref
    if type_name is None or key is None:
        return None
    cls = _class_named(type(activity), type_name)
    return _session_of(activity, role).get(cls, key)


def _set_reference(activity: Any, role: str, obj: Any) -> None:
    refs = _refs(activity)
    if obj is None:
        refs.pop(role, None)
        setattr(activity, f"{role}_type", None)
        setattr(activity, f"{role}_id", None)
        setattr(activity, f"{role}_tx_id", None)
        return
    _check_integer_key(obj)
    refs[role] = obj
    setattr(activity, f"{role}_type", type(obj).__name__)
    setattr(activity, f"{role}_id", _key_of(obj))


def _get_version(activity: Any, role: str) -> Any:
    type_name = getattr(activity, f"{role}_type")
    key = getattr(activity, f"{role}_id")
    tx_id = getattr(activity, f"{role}_tx_id")
    if type_name is None or key is None or tx_id is None:
        return None
    cls = _class_named(type(activity), type_name)
    manager = type(activity).__versioning_manager__
    version_cls = manager.version_class_map.get(cls)
    if version_cls is None:
        return None
    tx_name = manager.versioned_model(cls).local_spec.tx.name
    mapper: orm.Mapper[Any] = sa.inspect(version_cls)
    ident = tuple(tx_id if c.name == tx_name else key for c in mapper.primary_key)
    return _session_of(activity, f"{role}_version").get(version_cls, ident)


class ReferenceComparator(Comparator[bool]):
    """``Activity.object`` / ``Activity.target`` in a query: compares the stored class
    name and id with an object's, as ``Activity.object == article``; ``== None``
    matches activities without one. ``is_type(Article)`` matches any Article."""

    def __init__(self, cls: Any, role: str) -> None:
        self._type: Any = getattr(cls, f"{role}_type")
        self._id: Any = getattr(cls, f"{role}_id")
        super().__init__(self._type)

    def __eq__(self, other: Any) -> sa.ColumnElement[bool]:  # type: ignore[override]
        if other is None:
            return self._type.is_(None)  # type: ignore[no-any-return]
        _check_integer_key(other)
        key = _key_of(other)
        if key is None:
            raise VersioningStateError(
                f"{type(other).__name__} has no primary key yet; flush the session before "
                f"comparing activities with it."
            )
        return sa.and_(self._type == type(other).__name__, self._id == key)

    def __ne__(self, other: Any) -> sa.ColumnElement[bool]:  # type: ignore[override]
        if other is None:
            return self._type.is_not(None)  # type: ignore[no-any-return]
        return sa.or_(self._type.is_(None), sa.not_(self.__eq__(other)))

    def is_type(self, cls: type) -> sa.ColumnElement[bool]:
        """Activities whose reference is an instance of mapped class ``cls``."""
        return self._type == cls.__name__  # type: ignore[no-any-return]


class ActivityBase:
    """Base of the mapped activity class built by :class:`ActivityPlugin`.

    Columns: ``id``, ``verb``, ``transaction_id``, ``data`` and, for each of the
    roles ``object`` and ``target``, ``<role>_type``, ``<role>_id`` and
    ``<role>_tx_id``. Relationship: ``transaction`` (backref
    ``Transaction.activities``).
    """

    __versioning_manager__: Any

    if TYPE_CHECKING:
        id: int | None
        verb: str | None
        transaction_id: int | None
        data: Any
        object_type: str | None
        object_id: int | None
        object_tx_id: int | None
        target_type: str | None
        target_id: int | None
        target_tx_id: int | None
        transaction: Any

    @hybrid_property
    def object(self) -> Any:
        """The object acted on: loaded by ``object_type`` and ``object_id``; None once
        it was deleted. In a query, ``Activity.object == article``."""
        return _get_reference(self, "object")

    @object.inplace.setter
    def _object_setter(self, obj: Any) -> None:
        _set_reference(self, "object", obj)

    @object.inplace.comparator
    @classmethod
    def _object_comparator(cls) -> ReferenceComparator:
        return ReferenceComparator(cls, "object")

    @hybrid_property
    def target(self) -> Any:
        """The object the activity was aimed at (e.g. the article a comment went to).
        In a query, ``Activity.target == article``."""
        return _get_reference(self, "target")

    @target.inplace.setter
    def _target_setter(self, obj: Any) -> None:
        _set_reference(self, "target", obj)

    @target.inplace.comparator
    @classmethod
    def _target_comparator(cls) -> ReferenceComparator:
        return ReferenceComparator(cls, "target")

    @property
    def object_version(self) -> Any:
        """The version of ``object`` current when the activity was written, or None."""
        return _get_version(self, "object")

    @property
    def target_version(self) -> Any:
        """The version of ``target`` current when the activity was written, or None."""
        return _get_version(self, "target")

    @property
    def actor(self) -> Any:
        """The user of the activity's transaction (None without a user class)."""
        transaction = self.transaction
        return None if transaction is None else getattr(transaction, "user", None)

    def __repr__(self) -> str:
        parts = [f"id={self.id}", f"verb={self.verb!r}"]
        for role in _ROLES:
            type_name = getattr(self, f"{role}_type")
            if type_name is not None:
                parts.append(f"{role}={type_name}#{getattr(self, f'{role}_id')}")
        return f"<{type(self).__name__} {' '.join(parts)}>"


class _JSONText(sa.types.TypeDecorator[Any]):
    """JSON kept in a text column, as Continuum's ``activity.data`` is on every database
    but PostgreSQL (where it is JSON)."""

    impl = sa.UnicodeText
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else json.loads(value)


# The column types of Continuum's activity table, so that Alembic finds a table that
# Continuum created equal (its BigInteger is INTEGER on SQLite, as TX_ID_TYPE).
_DATA_TYPE = sa.JSON().with_variant(_JSONText(), "sqlite", "mysql", "mariadb")


def _build_activity_table(
    metadata: sa.MetaData, name: str = "activity", schema: str | None = None
) -> sa.Table:
    """The ``activity`` table, with SQLAlchemy-Continuum's columns."""
    columns: list[sa.Column[Any]] = [
        # Ids from the sequence <name>_id_seq named in each INSERT, as in Continuum, whose
        # tables give the column no default (no SERIAL, no AUTO_INCREMENT); the row id on
        # SQLite. See build_transaction_table.
        sa.Column(
            "id", TX_ID_TYPE, sa.Sequence(f"{name}_id_seq", schema=schema),
            primary_key=True, autoincrement=True,
        ),
        sa.Column("verb", sa.Unicode(255)),
        sa.Column("transaction_id", TX_ID_TYPE, nullable=False, index=True),
        sa.Column("data", _DATA_TYPE),
    ]
    for role in _ROLES:
        columns += [
            sa.Column(f"{role}_type", sa.String(255)),
            sa.Column(f"{role}_id", TX_ID_TYPE),
            sa.Column(f"{role}_tx_id", TX_ID_TYPE),
        ]
    return sa.Table(name, metadata, *columns, schema=schema)


class ActivityPlugin(Plugin):
    """Adds the ``Activity`` model and stamps activities with their transactions.

    :param class_name: the name of the activity class built in the models' registry.
    :param table_name: the name of its table.

    After configuration ``plugin.activity_cls`` and ``manager.activity_cls`` are the
    activity class.
    """

    def __init__(self, *, class_name: str = "Activity", table_name: str = "activity") -> None:
        self.class_name = class_name
        self.table_name = table_name
        #: The activity class (None until the models are configured).
        self.activity_cls: Any = None

    def __repr__(self) -> str:
        return f"ActivityPlugin(class_name={self.class_name!r}, table_name={self.table_name!r})"

    # -- building --------------------------------------------------------------------

    def after_build_tx_class(self, manager: Any) -> None:
        """Build the activity class next to the transaction class."""
        self._build(manager)

    def after_build_models(self, manager: Any) -> None:
        """Build the activity class if the manager was given a ready transaction class."""
        if getattr(manager, "activity_cls", None) is None and manager.transaction_cls is not None:
            self._build(manager)

    def _build(self, manager: Any) -> None:
        tx_cls = manager.transaction_cls
        tx_mapper: orm.Mapper[Any] = sa.inspect(tx_cls)
        registry = tx_mapper.registry
        for existing in registry.mappers:
            if existing.class_.__name__ == self.class_name:
                raise ConfigurationError(
                    f"A mapped class named {self.class_name!r} already exists "
                    f"({existing.class_.__module__}); pass "
                    f"ActivityPlugin(class_name=..., table_name=...) other names."
                )
        tx_table = tx_mapper.local_table
        assert isinstance(tx_table, sa.Table)
        table = _build_activity_table(tx_table.metadata, self.table_name, tx_table.schema)
        namespace: dict[str, Any] = {
            "__versioning_manager__": manager,
            "transaction": orm.relationship(
                tx_cls,
                primaryjoin=tx_mapper.primary_key[0] == orm.foreign(table.c.transaction_id),
                backref=orm.backref("activities", order_by=table.c.id),
            ),
        }
        base = declarative_base_of(tx_cls)
        bases = ((base,) if base is not None else ()) + (ActivityBase,)
        cls = map_class(self.class_name, bases, namespace, table, registry, tx_cls.__module__)
        self.activity_cls = cls
        manager.activity_cls = cls

    # -- capture ---------------------------------------------------------------------

    def _pending(self, session: Session) -> list[Any]:
        cls = self.activity_cls
        if cls is None:
            return []
        return [obj for obj in session.new if isinstance(obj, cls)]

    def is_session_modified(self, session: Session) -> bool:
        """True when an activity is pending: it needs a transaction of its own."""
        return bool(self._pending(session))

    def before_flush(self, uow: Any, session: Session) -> None:
        """Stamp the pending activities with the transaction and their versions' ids."""
        uow.info.pop(_DEFERRED, None)
        activities = self._pending(session)
        if not activities:
            return
        if uow.transaction_id is None:
            uow.create_transaction(session)
        tx_id = uow.transaction_id
        transaction = uow.current_transaction
        manager = uow.manager
        # (activity, role) -> (version table spec, key) still to look up
        lookups: dict[Any, list[tuple[Any, str, Any]]] = {}
        deferred: list[tuple[Any, str, Any]] = []
        for activity in activities:
            activity.transaction_id = tx_id
            if transaction is not None:
                activity.transaction = transaction
            for role in _ROLES:
                ref = _refs(activity).get(role)
                type_name = getattr(activity, f"{role}_type")
                if ref is not None and type(ref).__name__ == type_name:
                    key = _key_of(ref)
                    cls: type | None = type(ref)
                    setattr(activity, f"{role}_id", key)
                else:
                    ref = None
                    key = getattr(activity, f"{role}_id")
                    cls = _class_named(type(activity), type_name) if type_name else None
                if cls is None:
                    continue
                versioned = manager.version_class_map.get(cls) is not None
                if key is None:
                    if ref is not None and versioned and ref in session.new:
                        deferred.append((activity, role, ref))
                        setattr(activity, f"{role}_tx_id", tx_id)
                        continue
                    raise VersioningStateError(
                        f"{type(activity).__name__}.{role} is a {cls.__name__} without a "
                        f"primary key; flush the session (session.flush()) after adding the "
                        f"{cls.__name__} and before adding the activity."
                    )
                if not versioned:
                    setattr(activity, f"{role}_tx_id", None)
                    continue
                spec = manager.versioned_model(cls).local_spec
                if self._versioned_now(uow, session, spec, cls, key, ref):
                    setattr(activity, f"{role}_tx_id", tx_id)
                else:
                    lookups.setdefault(spec, []).append((activity, role, key))
        for spec, wanted in lookups.items():
            latest = self._latest_transactions(uow, session, spec, {k for _, _, k in wanted})
            for activity, role, key in wanted:
                setattr(activity, f"{role}_tx_id", latest.get(key))
        if deferred:
            uow.info[_DEFERRED] = deferred

    @staticmethod
    def _versioned_now(
        uow: Any, session: Session, spec: Any, cls: type, key: Any, ref: Any
    ) -> bool:
        """True when the current transaction writes (or wrote) a version of the object."""
        if uow.written_operation(spec.version, (key,)) is not None:
            return True
        obj = ref
        if obj is None:
            obj = session.identity_map.get(orm.util.identity_key(cls, key))
        if obj is None or orm.object_session(obj) is not session or obj in session.deleted:
            # An object deleted by this flush is shown as it was before (its last
            # version), as in SQLAlchemy-Continuum.
            return False
        return _writes_version(obj)

    @staticmethod
    def _latest_transactions(
        uow: Any, session: Session, spec: Any, keys: Iterable[Any]
    ) -> dict[Any, Any]:
        """``{key: max(transaction id)}`` of the versions of ``keys``: one query (per
        :data:`~sqlalchemy_chronicle.capture.templates.CHUNK_PARAMS` keys)."""
        pk = spec.version_pk[0]
        ordered = sorted(keys)
        latest: dict[Any, Any] = {}
        for start in range(0, len(ordered), CHUNK_PARAMS):
            stmt = (
                sa.select(pk, sa.func.max(spec.tx))
                .where(pk.in_(ordered[start : start + CHUNK_PARAMS]))
                .group_by(pk)
            )
            # Native versioning: the triggers wrote the versions, the ORM no connection yet.
            connection = uow.connection or session.connection()
            latest.update((row[0], row[1]) for row in connection.execute(stmt))
        return latest

    def after_create_version_objects(self, uow: Any, session: Session) -> None:
        """Fill in the ids of new objects flushed together with their activities."""
        deferred = uow.info.pop(_DEFERRED, None)
        if not deferred:
            return
        table = sa.inspect(self.activity_cls).local_table
        by_role: dict[str, list[dict[str, Any]]] = {}
        for activity, role, ref in deferred:
            key = _key_of(ref)
            orm.attributes.set_committed_value(activity, f"{role}_id", key)
            by_role.setdefault(role, []).append({"activity_id": activity.id, "key": key})
        for role, params in by_role.items():
            stmt = (
                sa.update(table)
                .where(table.c.id == sa.bindparam("activity_id"))
                .values({f"{role}_id": sa.bindparam("key")})
            )
            uow.connection.execute(stmt, params)

    def transaction_id_changed(self, uow: Any, session: Session, old_id: int, new_id: int) -> None:
        """Move this transaction's activities, and references to it, to its new id."""
        if self.activity_cls is None or uow.connection is None:
            return
        table = sa.inspect(self.activity_cls).local_table
        for column in ("transaction_id", "object_tx_id", "target_tx_id"):
            uow.connection.execute(
                sa.update(table).where(table.c[column] == old_id).values({column: new_id})
            )
        for obj in list(session.identity_map.values()):
            if isinstance(obj, self.activity_cls):
                for column in ("transaction_id", "object_tx_id", "target_tx_id"):
                    if obj.__dict__.get(column) == old_id:
                        orm.attributes.set_committed_value(obj, column, new_id)
