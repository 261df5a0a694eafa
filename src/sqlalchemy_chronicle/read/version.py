"""What a version object can do: navigate its history, describe its change, revert.

Every version class derives from :class:`VersionClassBase`. Navigation queries use
the composite indexes of the version table and run on the session the version was
loaded in; :meth:`VersionClassBase.all_versions` loads a whole history in one query
and links it, so that ``previous``/``next`` need no further query.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from ..config import Operation, Strategy
from ..exc import ConfigurationError, VersioningStateError
from ..schema.relationships import validity_window
from ..schema.tables import as_utc_naive
from .revert import Reverter

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ..schema.models import VersionedModel

__all__ = [
    "SubqueryFetcher",
    "ValidityFetcher",
    "VersionClassBase",
    "VersionFetcher",
    "forget_links",
]

V = TypeVar("V", bound="VersionClassBase")

_UNSET: Any = object()


def forget_links(target: Any, *args: Any) -> None:
    """Drop the ``previous``/``next`` links cached by ``all_versions`` (on expire/refresh).

    A newer version may have been written since; the links are read again on demand.
    """
    if target is None:  # the object was garbage collected already
        return
    target.__dict__.pop("_previous_cache", None)
    target.__dict__.pop("_next_cache", None)


class VersionClassBase:
    """Base of every version class (``ArticleVersion``, ...)."""

    __chronicle_model__: VersionedModel
    __versioning_manager__: Any

    # Filled in by all_versions(link=True); _UNSET means "not known, query".
    _previous_cache: Any = _UNSET
    _next_cache: Any = _UNSET

    # -- helpers ---------------------------------------------------------------------

    @classmethod
    def _spec(cls) -> Any:
        return cls.__chronicle_model__.local_spec

    @classmethod
    def _tx_attr(cls) -> Any:
        return getattr(cls, cls._spec().tx.key)

    @classmethod
    def _pk_criteria(cls, values: Sequence[Any]) -> list[sa.ColumnElement[bool]]:
        return [
            getattr(cls, c.key) == v for c, v in zip(cls._spec().version_pk, values, strict=True)
        ]

    def _pk_values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c.key) for c in self._spec().version_pk)

    @property
    def _transaction_id(self) -> int:
        return int(getattr(self, self._spec().tx.key))

    @property
    def _end_transaction_id(self) -> int | None:
        end = self._spec().end_tx
        return None if end is None else getattr(self, end.key)

    def _session(self) -> orm.Session:
        session = orm.object_session(self)
        if session is None:
            raise VersioningStateError(
                f"{type(self).__name__} is not attached to a session; load it through a "
                f"session (or merge it into one) to navigate its history."
            )
        return session

    @classmethod
    def _pk_values_from(cls, pk: Mapping[str, Any] | Sequence[Any] | Any) -> tuple[Any, ...]:
        cols = cls._spec().version_pk
        if isinstance(pk, Mapping):
            try:
                values = tuple(pk[c.key] for c in cols)
            except KeyError as err:
                keys = ", ".join(repr(c.key) for c in cols)
                raise ConfigurationError(
                    f"{cls.__name__}: the primary key needs the keys {keys}; {pk!r} was given."
                ) from err
        else:
            values = tuple(pk) if isinstance(pk, tuple | list) else (pk,)
        if len(values) != len(cols):
            keys = ", ".join(c.key for c in cols)
            raise ConfigurationError(
                f"{cls.__name__}: the primary key is ({keys}), {len(cols)} value(s); "
                f"{pk!r} was given."
            )
        for column, value in zip(cols, values, strict=True):
            expected = _plain_python_type(column)
            if expected is not None and value is not None and not _fits(value, expected):
                raise ConfigurationError(
                    f"{cls.__name__}: primary key column {column.key!r} holds "
                    f"{expected.__name__} values, not {type(value).__name__} {value!r}."
                )
        return values

    @property
    def _cache_populated(self) -> bool:
        """True when ``previous`` and ``next`` are known without a query (after
        ``all_versions(link=True)``); SQLAlchemy-Continuum's name for it."""
        return self._previous_cache is not _UNSET and self._next_cache is not _UNSET

    # -- navigation ------------------------------------------------------------------

    @property
    def operation(self) -> Operation:
        """The operation of this version as an :class:`Operation`."""
        return Operation(getattr(self, self._spec().op.key))

    @property
    def previous(self: V) -> V | None:
        """The version of the same entity just before this one, or None."""
        if self._previous_cache is not _UNSET:
            return self._previous_cache  # type: ignore[no-any-return]
        cls = type(self)
        tx = cls._tx_attr()
        stmt = sa.select(cls).where(*cls._pk_criteria(self._pk_values()))
        if self._spec().strategy is Strategy.VALIDITY:
            end = getattr(cls, self._spec().end_tx.key)
            stmt = stmt.where(end == self._transaction_id)
        else:
            stmt = stmt.where(tx < self._transaction_id)
        stmt = stmt.order_by(tx.desc()).limit(1)
        return self._session().scalars(stmt).first()

    @property
    def next(self: V) -> V | None:
        """The version of the same entity just after this one, or None."""
        if self._next_cache is not _UNSET:
            return self._next_cache  # type: ignore[no-any-return]
        cls = type(self)
        tx = cls._tx_attr()
        stmt = sa.select(cls).where(*cls._pk_criteria(self._pk_values()))
        if self._spec().strategy is Strategy.VALIDITY:
            end_tx = self._end_transaction_id
            if end_tx is None:
                return None
            stmt = stmt.where(tx == end_tx)
        else:
            stmt = stmt.where(tx > self._transaction_id).order_by(tx).limit(1)
        return self._session().scalars(stmt).first()

    @property
    def index(self) -> int:
        """The 0-based position of this version in its own entity's history."""
        cls = type(self)
        stmt = (
            sa.select(sa.func.count())
            .select_from(cls)
            .where(*cls._pk_criteria(self._pk_values()), cls._tx_attr() < self._transaction_id)
        )
        return int(self._session().scalar(stmt) or 0)

    @property
    def changeset(self) -> dict[str, list[Any]]:
        """``{attribute: [old, new]}`` for every attribute this version changed."""
        previous = self.previous
        mapper = sa.inspect(type(self))
        spec = self._spec()
        internal = {spec.tx.key, spec.op.key}
        if spec.end_tx is not None:
            internal.add(spec.end_tx.key)
        result: dict[str, list[Any]] = {}
        for attr in mapper.column_attrs:
            if attr.key in internal:
                continue
            new = getattr(self, attr.key)
            old = getattr(previous, attr.key) if previous is not None else None
            if old != new:
                result[attr.key] = [old, new]
        manager = self.__versioning_manager__
        if manager is not None and len(manager.plugins):
            manager.plugins.after_construct_changeset(self, result)
        return result

    # -- revert ----------------------------------------------------------------------

    def revert(self, relations: Sequence[str] | None = None) -> Any:
        """Restore the live object (and the relationships named) to this version.

        A version of a deleted object brings the object back; reverting to a DELETE
        version deletes the live object and returns None. ``relations`` names
        relationships of the parent class (dotted paths recurse, e.g.
        ``'tags.category'``); their objects are restored to what they were at this
        version's transaction. An unknown name raises
        :class:`~sqlalchemy_chronicle.exc.ReverterException` before anything changes.
        The change is added to the session; the caller commits.
        """
        return Reverter(self, relations)()

    # -- class-level look-ups --------------------------------------------------------

    @classmethod
    def as_of(cls: type[V], at: int | datetime.datetime) -> sa.Select[Any]:
        """A ``SELECT`` of the table as it was at a transaction: for every entity that
        existed then, its version valid at that transaction.

        ``at`` is a transaction id, or a datetime: the last transaction issued at or
        before it. ``issued_at`` is stored as naive UTC; an aware datetime is converted
        to UTC first, a naive one is taken as UTC. DELETE versions are left out, so an
        entity deleted by then does not appear. Add criteria, ordering, joins and
        loader options as to any ``select()``; it is one query however many entities
        match::

            session.scalars(ArticleVersion.as_of(42).where(ArticleVersion.author == "x"))
        """
        spec = cls._spec()
        point: sa.ColumnElement[Any]
        if isinstance(at, datetime.datetime):
            transaction = cls.__versioning_manager__.transaction_cls
            point = (
                sa.select(sa.func.max(transaction.id))
                .where(transaction.issued_at <= as_utc_naive(at))
                .scalar_subquery()
            )
        elif isinstance(at, int) and not isinstance(at, bool):
            point = sa.literal(at, spec.tx.type)
        else:
            raise ConfigurationError(
                f"{cls.__name__}.as_of() takes a transaction id (int) or a datetime, "
                f"not {type(at).__name__}"
            )
        window = validity_window(spec, point, lambda column: getattr(cls, column.key))
        specs = cls.__chronicle_model__.specs
        if len(specs) > 1:
            # Joined inheritance: an entity whose class changed in a transaction (a Book
            # deleted and an Item of the same key inserted) has an UPDATE in the base
            # table and a DELETE in the subclass's; it is no longer of this class.
            deleted = int(Operation.DELETE)
            window = sa.and_(window, *[s.op != deleted for s in specs])
        return sa.select(cls).where(window)

    @classmethod
    def version_at(
        cls: type[V],
        session: orm.Session,
        pk: Mapping[str, Any] | Sequence[Any] | Any,
        transaction_id: int,
    ) -> V | None:
        """The version of the entity with primary key ``pk`` valid at ``transaction_id``.

        That is the newest version written at or before that transaction (a DELETE
        version if the entity had been deleted by then), or None.
        """
        _check_session(session, cls, "version_at")
        if not isinstance(transaction_id, int) or isinstance(transaction_id, bool):
            raise ConfigurationError(
                f"{cls.__name__}.version_at() takes a transaction id (int), not "
                f"{type(transaction_id).__name__} {transaction_id!r}."
            )
        tx = cls._tx_attr()
        stmt = (
            sa.select(cls)
            .where(*cls._pk_criteria(cls._pk_values_from(pk)), tx <= transaction_id)
            .order_by(tx.desc())
            .limit(1)
        )
        return session.scalars(stmt).first()

    @classmethod
    def all_versions(
        cls: type[V],
        session: orm.Session,
        pk: Mapping[str, Any] | Sequence[Any] | Any,
        limit: int | None = None,
        offset: int = 0,
        desc: bool = True,
        link: bool = True,
    ) -> list[V]:
        """All versions of one entity in one query, newest first unless ``desc=False``.

        With ``link=True`` the versions' ``previous``/``next`` are filled in from the
        list, so walking it needs no further query (except at the ends of a page).
        """
        _check_session(session, cls, "all_versions")
        if limit is not None:
            _check_int(limit, cls, "all_versions", "limit")
        _check_int(offset, cls, "all_versions", "offset")
        tx = cls._tx_attr()
        stmt = (
            sa.select(cls)
            .where(*cls._pk_criteria(cls._pk_values_from(pk)))
            .order_by(tx.desc() if desc else tx)
            .offset(offset)
            .limit(limit)
        )
        versions = list(session.scalars(stmt))
        if link and versions:
            ordered = versions[::-1] if desc else versions
            reached_end = limit is None or len(versions) < limit
            for older, newer in itertools.pairwise(ordered):
                older._next_cache = newer
                newer._previous_cache = older
            if reached_end if desc else offset == 0:
                ordered[0]._previous_cache = None
            if offset == 0 if desc else reached_end:
                ordered[-1]._next_cache = None
        return versions

    @classmethod
    def versions_at(
        cls: type[V],
        session: orm.Session,
        keys: Iterable[Mapping[str, Any] | Sequence[Any] | Any],
        transaction_id: int,
    ) -> dict[tuple[Any, ...], V]:
        """:meth:`version_at` for many entities in one query (per 500 keys):
        ``{primary key tuple: version}`` for each key that had a version by then."""
        from .batch import versions_at

        _check_session(session, cls, "versions_at")
        _check_int(transaction_id, cls, "versions_at", "the transaction id")
        return versions_at(cls, session, keys, transaction_id)

    @classmethod
    def revert_many(cls, session: orm.Session, versions: Iterable[Any]) -> None:
        """Revert many entities at once, each to the version of it in ``versions``: one
        statement per kind of change (update, re-insert, delete) instead of one flush
        of every object. Relationships are not reverted. The caller commits."""
        from .batch import revert_many

        if not isinstance(versions, Iterable) or isinstance(versions, str):
            raise ConfigurationError(
                f"{cls.__name__}.revert_many() takes versions (a list of {cls.__name__}), "
                f"not {type(versions).__name__} {versions!r}."
            )
        revert_many(cls, session, versions)

    # -- async forms -------------------------------------------------------------------

    @classmethod
    async def versions_at_async(
        cls: type[V],
        session: AsyncSession,
        keys: Iterable[Mapping[str, Any] | Sequence[Any] | Any],
        transaction_id: int,
    ) -> dict[tuple[Any, ...], V]:
        """:meth:`versions_at` on an ``AsyncSession``."""
        return await session.run_sync(lambda sync: cls.versions_at(sync, keys, transaction_id))

    @classmethod
    async def version_at_async(
        cls: type[V],
        session: AsyncSession,
        pk: Mapping[str, Any] | Sequence[Any] | Any,
        transaction_id: int,
    ) -> V | None:
        """:meth:`version_at` on an ``AsyncSession``:
        ``await ArticleVersion.version_at_async(session, 1, tx)``."""
        return await session.run_sync(lambda sync: cls.version_at(sync, pk, transaction_id))

    @classmethod
    async def all_versions_async(
        cls: type[V],
        session: AsyncSession,
        pk: Mapping[str, Any] | Sequence[Any] | Any,
        limit: int | None = None,
        offset: int = 0,
        desc: bool = True,
        link: bool = True,
    ) -> list[V]:
        """:meth:`all_versions` on an ``AsyncSession``. With ``link=True`` (the default)
        ``previous``/``next`` of the versions returned need no query, so they can be
        read in async code without awaiting anything."""
        return await session.run_sync(
            lambda sync: cls.all_versions(sync, pk, limit, offset, desc, link)
        )

    @classmethod
    async def revert_many_async(cls, session: AsyncSession, versions: Iterable[Any]) -> None:
        """:meth:`revert_many` on an ``AsyncSession``."""
        await session.run_sync(lambda sync: cls.revert_many(sync, versions))

    async def revert_async(self, relations: Sequence[str] | None = None) -> Any:
        """:meth:`revert` for a version loaded through an ``AsyncSession`` (the queries
        it needs run there); the caller then awaits ``session.commit()``."""
        from sqlalchemy.ext.asyncio import async_object_session

        session = async_object_session(self)
        if session is None:
            self._session()  # raises: not attached to a session
            raise VersioningStateError(
                f"{type(self).__name__} was not loaded through an AsyncSession; call "
                f"revert() instead."
            )
        return await session.run_sync(lambda sync: self.revert(relations))

    def __repr__(self) -> str:
        pk = ", ".join(f"{c.key}={getattr(self, c.key)!r}" for c in self._spec().version_pk)
        return (
            f"<{type(self).__name__} {pk}, transaction_id={self._transaction_id}, "
            f"operation={self.operation.name}>"
        )


class VersionFetcher:
    """SQLAlchemy-Continuum's navigation object (``versioning_manager.fetcher(version)``).

    Navigation lives on the version objects here; a fetcher answers through them, so
    code written against Continuum's fetchers keeps working.
    """

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def previous(self, obj: VersionClassBase) -> Any:
        """The version of the same entity before ``obj``, or None."""
        return obj.previous

    def next(self, obj: VersionClassBase) -> Any:
        """The version of the same entity after ``obj``, or None."""
        return obj.next

    def index(self, obj: VersionClassBase) -> int:
        """The 0-based position of ``obj`` in its entity's history."""
        return obj.index


class SubqueryFetcher(VersionFetcher):
    """The fetcher of classes versioned with the ``subquery`` strategy."""


class ValidityFetcher(VersionFetcher):
    """The fetcher of classes versioned with the ``validity`` strategy."""


def _plain_python_type(column: sa.Column[Any]) -> type | None:
    """``int`` or ``str`` for a column of an integer or string type, else None (a key
    of another type is handed to the database as given)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return None
    return python_type if python_type in (int, str) else None


def _fits(value: Any, expected: type) -> bool:
    """Whether ``value`` can be a key value of a column holding ``expected`` values: an
    integer key takes whole numbers (a float or Decimal too, when whole), not text."""
    if isinstance(value, bool):
        return False
    if expected is int:
        if isinstance(value, numbers.Integral):
            return True
        return isinstance(value, numbers.Real | decimal.Decimal) and float(value).is_integer()
    return isinstance(value, expected)


def _check_int(value: Any, cls: type, function: str, name: str, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(
            f"{cls.__name__}.{function}() takes {name} as an integer >= {minimum}, not "
            f"{type(value).__name__} {value!r}."
        )


def _check_session(session: Any, cls: type, function: str) -> None:
    if not isinstance(session, orm.Session | orm.scoped_session):
        raise ConfigurationError(
            f"{cls.__name__}.{function}() takes a Session first, not "
            f"{type(session).__name__} {session!r}."
        )
