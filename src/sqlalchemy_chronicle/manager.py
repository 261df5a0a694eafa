"""The versioning manager: the registry of versioned classes of one configuration.

A :class:`VersioningManager` collects the classes that declare ``__versioned__``,
builds their version tables and classes when SQLAlchemy configures its mappers,
and installs the capture events on a session class or ``sessionmaker``. It can be
uninstalled again. ``make_versioned()`` and the module-level
``versioning_manager`` are the SQLAlchemy-Continuum-compatible facade over the
default instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, orm

from ._compat import remove_property
from .capture import writer
from .capture.committed import CommittedReads
from .capture.native.postgresql import NativeCapture
from .capture.orm import OrmCapture
from .capture.unit_of_work import UnitOfWork, VersionWriter
from .config import ClassOptions, OptionsDict, Strategy, resolve_options
from .exc import ClassNotVersioned, ConfigurationError, ImproperlyConfigured
from .hooks import PluginCollection
from .read.batch import VersionsQuery, forget_batch, note_loaded, note_refreshed
from .read.transaction import TransactionBase
from .read.version import (
    SubqueryFetcher,
    ValidityFetcher,
    VersionClassBase,
    VersionFetcher,
    forget_links,
)
from .schema.models import (
    VersionedModel,
    add_versions_relationship,
    build_transaction_class,
    build_version_class,
    declarative_base_of,
)
from .schema.relationships import build_temporal_relationship
from .schema.tables import VersionTableSpec, build_transaction_table, build_version_table

__all__ = [
    "TransactionFactory",
    "VersioningManager",
    "make_versioned",
    "remove_versioning",
    "versioning_manager",
]


class TransactionFactory:
    """How to build the transaction class (SQLAlchemy-Continuum's name for it).

    Pass an instance as ``VersioningManager(transaction_cls=TransactionFactory(...))``
    or assign it to ``manager.transaction_cls`` before the mappers are configured;
    ``remote_addr=False`` leaves out the ``remote_addr`` column. Calling the factory
    with a manager whose ``declarative_base`` is set builds the transaction class in
    that base's registry now, makes it the manager's ``transaction_cls`` and returns it.
    """

    def __init__(self, remote_addr: bool = True) -> None:
        self.remote_addr = remote_addr

    def __call__(self, manager: VersioningManager) -> type:
        return manager.create_transaction_model(self)

    def __repr__(self) -> str:
        return f"TransactionFactory(remote_addr={self.remote_addr!r})"


class VersioningManager:
    """Builds and tracks the versioning of a set of models.

    :param unit_of_work_cls: the class of per-transaction capture state.
    :param transaction_cls: a ready transaction class to use instead of building one.
    :param user_cls: the user class (or its name in the registry) that transactions
        reference through ``user_id``; None for no user column.
    :param options: default options for every versioned class.
    :param plugins: plugin instances.
    :param transaction_class_name: the name of the transaction class built in the
        models' registry, for applications that have a ``Transaction`` model already.
    :param transaction_table_name: the name of the transaction table.
    """

    def __init__(
        self,
        unit_of_work_cls: type[UnitOfWork] = UnitOfWork,
        transaction_cls: type | TransactionFactory | None = None,
        user_cls: type | str | None = None,
        options: Mapping[str, Any] | None = None,
        plugins: Iterable[Any] | None = None,
        builder: Any = None,
        *,
        transaction_class_name: str = "Transaction",
        transaction_table_name: str = "transaction",
    ) -> None:
        self.uow_class = unit_of_work_cls
        self.builder = builder
        self.user_cls = user_cls
        self.options = options  # the setter validates and wraps
        self._plugins = PluginCollection(plugins)
        self._transaction_factory = TransactionFactory()
        self._given_transaction_cls: type | None = None
        self.transaction_class_name = transaction_class_name
        self.transaction_table_name = transaction_table_name
        self._capture = OrmCapture(self, lambda: bool(self.options["versioning"]))
        #: The trigger backend, for models with ``native_versioning=True`` (PostgreSQL).
        self.native = NativeCapture(self)
        #: The writer of version rows, as units of work call it.
        self.writer: VersionWriter = writer
        #: Reads of what is committed now, on a second connection (MySQL/MariaDB).
        self.committed_reads = CommittedReads()
        self._installed = False
        #: (target, event, listener) of the read side (see :meth:`_listen`).
        self._read_listeners: list[tuple[Any, str, Any]] = []
        #: (mapper, key) of the properties added to versioned classes.
        self._added_properties: list[tuple[orm.Mapper[Any], str]] = []
        self._set_transaction_cls(transaction_cls)
        self.reset()

    # -- state -----------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every built class and table (options, plugins and user class stay)."""
        self.pending_classes: list[type] = []
        self.version_class_map: dict[type, type] = {}
        self.parent_class_map: dict[type, type] = {}
        self.tables: dict[type, sa.Table] = {}
        self.association_tables: set[sa.Table] = set()
        self.association_version_tables: set[sa.Table] = set()
        self.declarative_base: type | None = None
        self.metadata: sa.MetaData | None = None
        self._transaction_cls: Any = self._given_transaction_cls
        self._transaction_table: sa.Table | None = (
            sa.inspect(self._given_transaction_cls).local_table
            if self._given_transaction_cls is not None
            else None
        )
        self._models: dict[type, VersionedModel] = {}
        self._models_by_mapper: dict[orm.Mapper[Any], VersionedModel] = {}
        self._specs: dict[sa.Table, VersionTableSpec] = {}
        self._association_specs: dict[sa.Table, VersionTableSpec] = {}
        self._unversioned: set[type] = set()
        self._building = False
        self.native.uninstall()

    @property
    def options(self) -> OptionsDict:
        """The default options of every versioned class; assigning a dict replaces them
        (each key is validated)."""
        return self._options

    @options.setter
    def options(self, options: Mapping[str, Any] | None) -> None:
        self._options = OptionsDict(options)

    @property
    def transaction_cls(self) -> Any:
        """The transaction class: None until the mappers are configured, unless a ready
        class was given.

        Assign a :class:`TransactionFactory` (SQLAlchemy-Continuum's set-up) or a mapped
        class before ``configure_mappers()``; both are kept across :meth:`reset`.
        """
        return self._transaction_cls

    @transaction_cls.setter
    def transaction_cls(self, value: type | TransactionFactory | None) -> None:
        if value is self._transaction_cls and value is not None:
            return
        self._set_transaction_cls(value)
        self._transaction_cls = self._given_transaction_cls
        self._transaction_table = (
            sa.inspect(value).local_table if self._given_transaction_cls is not None else None
        )

    def _set_transaction_cls(self, value: type | TransactionFactory | None) -> None:
        if value is None or isinstance(value, TransactionFactory):
            self._transaction_factory = value or TransactionFactory()
            self._given_transaction_cls = None
        elif isinstance(value, type) and sa.inspect(value, raiseerr=False) is not None:
            self._given_transaction_cls = value
        else:
            raise ConfigurationError(
                f"transaction_cls must be a TransactionFactory or a mapped class, got {value!r}."
            )

    @property
    def units_of_work(self) -> Mapping[Any, UnitOfWork]:
        """Read-only view of the open units of work (SQLAlchemy-Continuum's name).

        Keyed by the connection each one writes on, or by its session before its first
        write. The state itself lives in each session's ``info``; the view is empty
        whenever no versioned session transaction is open.
        """
        return self._capture.open_units_of_work()

    @property
    def session_connection_map(self) -> Mapping[orm.Session, Any]:
        """Read-only view: session -> the connection its open unit of work writes on."""
        return self._capture.open_session_connections()

    def fetcher(self, obj: Any) -> VersionFetcher:
        """SQLAlchemy-Continuum's navigation object for version ``obj`` (its strategy's)."""
        model = self.versioned_model(obj if isinstance(obj, type) else type(obj))
        subquery = model.options.strategy is Strategy.SUBQUERY
        return (SubqueryFetcher if subquery else ValidityFetcher)(self)

    @property
    def plugins(self) -> PluginCollection:
        """The registered plugins; assigning a list replaces them."""
        return self._plugins

    @plugins.setter
    def plugins(self, plugins: Iterable[Any]) -> None:
        self._plugins = PluginCollection(plugins)

    @property
    def transaction_table(self) -> sa.Table:
        if self._transaction_table is None:
            raise ImproperlyConfigured(
                "The transaction table does not exist yet: call "
                "sqlalchemy.orm.configure_mappers() after the versioned models are defined."
            )
        return self._transaction_table

    def model_for_mapper(self, mapper: orm.Mapper[Any]) -> VersionedModel | None:
        return self._models_by_mapper.get(mapper)

    def model_for_table(self, table: Any) -> VersionedModel | None:
        """The versioned model whose own table is ``table`` (the base class of a
        single-table hierarchy), or None."""
        found: VersionedModel | None = None
        for model in self._models_by_mapper.values():
            if model.local_spec.parent is table and (
                found is None or issubclass(found.parent, model.parent)
            ):
                found = model
        return found

    def association_spec(self, table: Any) -> VersionTableSpec | None:
        """The version table spec of association table ``table``, if it is versioned."""
        return self._association_specs.get(table)

    def versioned_model(self, cls: type) -> VersionedModel:
        """The :class:`VersionedModel` of a parent or version class."""
        self._check_owner(cls, "versioned_model")
        model = getattr(cls, "__chronicle_model__", None)
        if model is None and isinstance(cls, type):
            model = self._models.get(cls)
        if model is None:
            name = cls.__name__ if isinstance(cls, type) else f"{type(cls).__name__} {cls!r}"
            raise ClassNotVersioned(f"{name} is not versioned by this manager.")
        return model

    def _check_owner(self, cls: Any, function: str) -> None:
        """Raise :class:`ClassNotVersioned` when ``cls`` (a class or an object) belongs
        to another manager: this one's options and tables say nothing of it."""
        owner = getattr(cls, "__versioning_manager__", None)
        if owner is not None and owner is not self:
            name = cls.__name__ if isinstance(cls, type) else f"{type(cls).__name__} {cls!r}"
            raise ClassNotVersioned(
                f"{function}(): {name} is versioned by another VersioningManager, not "
                f"this one; ask its own (sqlalchemy_chronicle.get_versioning_manager())."
            )

    def versions_session(self, session: orm.Session) -> bool:
        """Whether this manager versions the writes of ``session`` (it was installed
        on its Session class, ``sessionmaker`` or ``scoped_session``)."""
        return self._capture.versions(session)

    def option(self, model: Any, name: str) -> Any:
        """The value of option ``name`` for ``model`` (``__versioned__`` over defaults)."""
        self._check_owner(model, "option")
        cls = model if isinstance(model, type) else type(model)
        versioned = getattr(cls, "__versioned__", None)
        if versioned is None:
            raise ClassNotVersioned(f"option(): {cls.__name__} has no __versioned__ options.")
        options = (
            self._models[cls].options
            if cls in self._models
            else resolve_options(cls.__name__, self.options, versioned)
        )
        if not isinstance(name, str) or name.startswith("_") or not hasattr(options, name):
            raise ConfigurationError(
                f"option(): {cls.__name__} has no versioning option {name!r}."
            )
        return getattr(options, name)

    def is_excluded_property(self, model: type, key: str) -> bool:
        self._check_owner(model, "is_excluded_property")
        options: ClassOptions = resolve_options(
            model.__name__, self.options, getattr(model, "__versioned__", None)
        )
        return options.is_excluded(key)

    def is_excluded_column(self, model: type, column: sa.Column[Any]) -> bool:
        self._check_owner(model, "is_excluded_column")
        try:
            mapper: orm.Mapper[Any] = sa.inspect(model)
            key = mapper.get_property_by_column(column).key
        except orm.exc.UnmappedColumnError:
            key = column.key
        return self.is_excluded_property(model, key)

    # -- sessions --------------------------------------------------------------------

    def unit_of_work(self, session: orm.Session) -> UnitOfWork:
        """The capture state of ``session``'s current transaction (created if needed)."""
        if not isinstance(session, orm.Session | orm.scoped_session):
            raise ConfigurationError(
                f"unit_of_work() takes a Session, not {type(session).__name__} {session!r}."
            )
        return self._capture.unit_of_work(session)

    def find_unit_of_work(self, session: orm.Session) -> UnitOfWork | None:
        """The capture state of ``session``'s current transaction, or ``None`` when it
        has none yet. Unlike :meth:`unit_of_work` it never creates one, so code that
        only reads (histories, checks) leaves no state behind in the session."""
        return self._capture.find_unit_of_work(session)

    # -- installation ----------------------------------------------------------------

    def install(self, mapper: Any = orm.Mapper, session: Any = orm.Session) -> None:
        """Listen for versioned classes mapped through ``mapper`` and capture the
        writes of sessions of ``session`` (a Session class, a ``sessionmaker`` or a
        ``scoped_session``)."""
        if not self._installed:
            event.listen(mapper, "instrument_class", self._instrument_class)
            event.listen(mapper, "after_configured", self.configure_versioned_classes)
            self._mapper_target = mapper
            self._installed = True
        self._capture.install(session)

    def uninstall(self) -> None:
        """Remove every listener this manager installed, and what it added to the
        versioned classes: the ``versions`` relationships and the history batches'
        listeners (the version classes stay mapped in their registry)."""
        for target, name, fn in self._read_listeners:
            if event.contains(target, name, fn):
                event.remove(target, name, fn)
        self._read_listeners.clear()
        for mapper, key in self._added_properties:
            remove_property(mapper, key)
        self._added_properties.clear()
        if self._installed:
            target = self._mapper_target
            for name, fn in (
                ("instrument_class", self._instrument_class),
                ("after_configured", self.configure_versioned_classes),
            ):
                if event.contains(target, name, fn):
                    event.remove(target, name, fn)
            self._installed = False
        self._capture.uninstall()
        self.native.uninstall()
        self.committed_reads.dispose()

    def _instrument_class(self, mapper: orm.Mapper[Any], cls: type) -> None:
        versioned = getattr(cls, "__versioned__", None)
        if versioned is None:
            return
        if isinstance(versioned, Mapping) and versioned.get("class"):
            return  # SQLAlchemy-Continuum's legacy marker of a class it built itself
        owner = getattr(cls, "__versioning_manager__", None)
        if owner is not None and owner is not self:
            return
        cls.__versioning_manager__ = self  # type: ignore[attr-defined]
        if cls not in self.pending_classes:
            self.pending_classes.append(cls)

    # -- building --------------------------------------------------------------------

    def configure_versioned_classes(self) -> None:
        """Build what the pending versioned classes need (runs after mapper configuration)."""
        if self._building or not self.options["versioning"]:
            return
        # A class whose mappings were thrown away before it was built (its registry
        # disposed, clear_mappers()) has nothing left to version.
        self.pending_classes = [
            c for c in self.pending_classes if sa.inspect(c, raiseerr=False) is not None
        ]
        pending = [
            c for c in self.pending_classes if c not in self._models and c not in self._unversioned
        ]
        if not pending:
            return
        self._building = True
        try:
            self._build(pending)
        finally:
            self._building = False
        orm.configure_mappers()

    def _resolve(self, pending: list[type]) -> list[tuple[type, ClassOptions]]:
        resolved = []
        for cls in sorted(pending, key=lambda c: len(c.__mro__)):
            options = resolve_options(
                cls.__name__, self.options, getattr(cls, "__versioned__", None)
            )
            if not options.versioning or not options.create_tables:
                # No version table means nothing to capture into.
                self._unversioned.add(cls)
                continue
            mapper: orm.Mapper[Any] = sa.inspect(cls)
            mapper_attrs = mapper.attrs
            for option_name in ("exclude", "include"):
                for key in getattr(options, option_name):
                    if key not in mapper_attrs:
                        raise ConfigurationError(
                            f"{cls.__name__}.__versioned__ option {option_name!r} names "
                            f"{key!r}, which is not an attribute of {cls.__name__}."
                        )
            if not mapper.primary_key:
                raise ConfigurationError(
                    f"Versioned model {cls.__name__} has no primary key; a version table needs one."
                )
            resolved.append((cls, options))
        return resolved

    def _resolve_user_cls(self, registry: orm.registry) -> type | None:
        user = self.user_cls
        if user is None or isinstance(user, type):
            return user
        for mapper in registry.mappers:
            if mapper.class_.__name__ == user:
                return mapper.class_
        raise ImproperlyConfigured(
            f"Could not build relationship between {self.transaction_class_name} and "
            f"{user}: no mapped class named {user!r} exists. Pass user_cls=None to "
            f"make_versioned() if transactions need no user, or pass the user class."
        )

    def _build_transaction_class(self, first: type) -> None:
        if self.transaction_cls is not None:
            return
        mapper: orm.Mapper[Any] = sa.inspect(first)
        local_table = mapper.local_table
        if not isinstance(local_table, sa.Table):
            raise ConfigurationError(
                f"Versioned model {first.__name__} is not mapped to a Table; map it to a "
                f"Table to version it."
            )
        self._create_transaction_class(
            self._transaction_factory,
            mapper.registry,
            local_table.metadata,
            declarative_base_of(first),
            first.__module__,
        )

    def create_transaction_model(self, factory: TransactionFactory | None = None) -> type:
        """Build the transaction class in the registry of ``declarative_base`` (unless it
        exists already) and return it; SQLAlchemy-Continuum's way to build it early."""
        if self.transaction_cls is not None:
            return self.transaction_cls  # type: ignore[no-any-return]
        base = self.declarative_base
        registry = getattr(base, "registry", None)
        metadata = getattr(base, "metadata", None)
        if not isinstance(registry, orm.registry) or not isinstance(metadata, sa.MetaData):
            raise ImproperlyConfigured(
                "Cannot build the transaction class: versioning_manager.declarative_base is "
                "not a declarative base. Set it, or let sqlalchemy.orm.configure_mappers() "
                "build the class."
            )
        return self._create_transaction_class(
            factory or self._transaction_factory, registry, metadata, base, base.__module__
        )

    def _create_transaction_class(
        self,
        factory: TransactionFactory,
        registry: orm.registry,
        metadata: sa.MetaData,
        base: type | None,
        module: str,
    ) -> type:
        for existing in registry.mappers:
            if existing.class_.__name__ == self.transaction_class_name:
                raise ConfigurationError(
                    f"A mapped class named {self.transaction_class_name!r} already exists "
                    f"({existing.class_.__module__}); pass "
                    f"VersioningManager(transaction_class_name=...) another name."
                )
        user_cls = self._resolve_user_cls(registry)
        user_pk: sa.Column[Any] | None = None
        if user_cls is not None:
            user_mapper: orm.Mapper[Any] = sa.inspect(user_cls)
            user_pk = user_mapper.primary_key[0]  # type: ignore[assignment]
        table = build_transaction_table(
            metadata,
            name=self.transaction_table_name,
            schema=self.options.get("schema"),
            user_pk=user_pk,
            remote_addr=factory.remote_addr,
        )
        bases = ((base,) if base is not None else ()) + (TransactionBase,)
        cls = build_transaction_class(
            self.transaction_class_name,
            table,
            bases,
            registry,
            manager=self,
            user_cls=user_cls,
            module=module,
        )
        self._transaction_cls = cls
        self._transaction_table = table
        self.declarative_base = base
        self.metadata = metadata
        if len(self.plugins):
            self.plugins.after_build_tx_class(self)
        return cls

    def _tables_of(self, mapper: orm.Mapper[Any]) -> list[tuple[sa.Table, orm.Mapper[Any]]]:
        """The tables ``mapper`` writes, base first, each with the mapper that owns it."""
        result: list[tuple[sa.Table, orm.Mapper[Any]]] = []
        if mapper.concrete:
            table = mapper.local_table
            return [(table, mapper)] if isinstance(table, sa.Table) else []
        for m in reversed(list(mapper.iterate_to_root())):
            table = m.local_table
            if isinstance(table, sa.Table) and all(t is not table for t, _ in result):
                result.append((table, m))
        return result

    def _build(self, pending: list[type]) -> None:
        resolved = self._resolve(pending)
        if not resolved:
            return
        self._build_transaction_class(resolved[0][0])
        options_of = dict(resolved)
        models: list[VersionedModel] = []
        for cls, options in resolved:
            mapper: orm.Mapper[Any] = sa.inspect(cls)
            specs = []
            for table, owner in self._tables_of(mapper):
                spec = self._specs.get(table)
                if spec is None:
                    owner_options = options_of.get(owner.class_, options)
                    spec = build_version_table(
                        table,
                        owner_options,
                        table.metadata,
                        mapper=owner,
                        model_name=owner.class_.__name__,
                        plugins=self.plugins,
                    )
                    self._specs[table] = spec
                specs.append(spec)
            pk_keys = []
            pk_positions = []
            for spec in specs:
                keys, positions = [], []
                for parent_col, _ in spec.pk:
                    prop = mapper.get_property_by_column(parent_col)
                    keys.append(prop.key)
                    positions.append(
                        next(
                            i
                            for i, c in enumerate(mapper.primary_key)
                            if c is parent_col or c in prop.columns
                        )
                    )
                pk_keys.append(tuple(keys))
                pk_positions.append(tuple(positions))
            versioned_keys = frozenset(
                attr.key for attr in mapper.column_attrs if not options.is_excluded(attr.key)
            )
            comparators = {
                attr.key: attr.columns[0].type.compare_values
                for attr in mapper.column_attrs
                if attr.key in versioned_keys
            }
            model = VersionedModel(
                parent=cls,
                mapper=mapper,
                options=options,
                specs=tuple(specs),
                pk_keys=tuple(pk_keys),
                pk_positions=tuple(pk_positions),
                versioned_keys=versioned_keys,
                comparators=comparators,
            )
            self._models[cls] = model
            self._models_by_mapper[mapper] = model
            self.tables[cls] = model.local_spec.version
            models.append(model)

        for model in models:
            if model.options.native_versioning:
                self.native.add_model(model)
            self._build_association_tables(model)
        for model in models:
            options = model.options
            if options.create_models and options.create_tables:
                self._build_version_class(model)
            self._capture.watch_mapper(model.mapper, model)
            for key in model.versioned_keys:
                if (
                    "." not in key
                    and key in model.mapper.attrs
                    and key not in _inherited_keys(model)
                ):
                    self._capture.listen_attribute(getattr(model.parent, key))
        for model in models:
            if model.version_cls is not None:
                self._build_temporal_relationships(model)
        if len(self.plugins):
            self.plugins.after_build_models(self)

    def _build_temporal_relationships(self, model: VersionedModel) -> None:
        """Give the version class of ``model`` the temporal twin of each relationship."""
        version_mapper: orm.Mapper[Any] = sa.inspect(model.version_cls)
        for prop in model.mapper.relationships:
            if prop.key == "versions" or model.options.is_excluded(prop.key):
                continue
            if prop.parent is not model.mapper and prop.parent.class_ in self._models:
                continue  # inherited: the ancestor's version class has it already
            if prop.key in version_mapper.attrs:
                continue
            remote = self._models.get(prop.mapper.class_)
            remote_cls = remote.version_cls if remote is not None else None
            temporal = build_temporal_relationship(
                prop,
                list(model.specs),
                model.local_spec.tx,
                remote_cls,
                list(remote.specs) if remote is not None and remote_cls is not None else [],
                self._association_specs,
            )
            if temporal is not None:
                version_mapper.add_property(prop.key, temporal)

    def _build_association_tables(self, model: VersionedModel) -> None:
        """Version the ``secondary`` table of each many-to-many relationship of ``model``."""
        for rel in model.mapper.relationships:
            table = rel.secondary
            if (
                not isinstance(table, sa.Table)
                or rel.viewonly
                or model.options.is_excluded(rel.key)
                or table in self._association_specs
                or table in self._specs  # mapped by a versioned class of its own
            ):
                continue
            spec = build_version_table(
                table,
                model.options,
                table.metadata,
                model_name=f"{model.name}.{rel.key} (table {table.name!r})",
                association=True,
            )
            self._association_specs[table] = spec
            if model.options.native_versioning:
                self.native.add_association(spec, f"{model.name}.{rel.key}")
            self.association_tables.add(table)
            self.association_version_tables.add(spec.version)
            self._capture.watch_statements()

    def _build_version_class(self, model: VersionedModel) -> None:
        parent = model.parent
        base_version = next(
            (self.version_class_map[b] for b in parent.__mro__[1:] if b in self.version_class_map),
            None,
        )
        options = model.options
        if base_version is not None:
            bases: tuple[type, ...] = (base_version,)
        elif options.base_classes is not None:
            bases = options.base_classes
        else:
            base = declarative_base_of(parent)
            bases = (base,) if base is not None else ()
        if base_version is None:
            bases = (*bases, VersionClassBase)
        version_cls = build_version_class(
            model,
            bases=bases,
            base_version=base_version,
            transaction_cls=self.transaction_cls,
            manager=self,
            registry=model.mapper.registry,
        )
        if base_version is None:
            for name in ("expire", "refresh"):
                self._listen(version_cls, name, forget_links)
        model.version_cls = version_cls
        self.version_class_map[parent] = version_cls
        self.parent_class_map[version_cls] = parent
        dynamic = options.versions_lazy == "dynamic"
        if add_versions_relationship(model, version_cls, VersionsQuery if dynamic else None):
            self._added_properties.append((model.mapper, "versions"))
        if dynamic and base_version is None:
            # The loop over objects reaching their histories batches (read/batch.py).
            # raw: the listeners take the InstanceState, as SQLAlchemy has it (no
            # wrapper call looking up the object, for every object a query loads).
            self._listen(model.mapper, "load", partial(note_loaded, model), raw=True)
            self._listen(model.mapper, "refresh", partial(note_refreshed, model), raw=True)
            self._listen(model.mapper, "expire", forget_batch, raw=True)
        if len(self.plugins):
            self.plugins.after_version_class_built(parent, version_cls)


    def _listen(self, target: Any, name: str, fn: Any, **kw: Any) -> None:
        """Listen (propagated) to a read-side event of a built class, so that
        :meth:`uninstall` can take the listener away again."""
        event.listen(target, name, fn, propagate=True, **kw)
        self._read_listeners.append((target, name, fn))


def _inherited_keys(model: VersionedModel) -> set[str]:
    """Attribute keys a versioned superclass already listens to (propagated)."""
    keys: set[str] = set()
    for base in model.parent.__mro__[1:]:
        chronicle = getattr(base, "__chronicle_model__", None)
        if chronicle is not None:
            keys |= chronicle.versioned_keys
    return keys


#: The default manager, used by :func:`make_versioned` and the module-level helpers.
versioning_manager = VersioningManager()


def make_versioned(
    mapper: Any = orm.Mapper,
    session: Any = orm.Session,
    manager: VersioningManager = versioning_manager,
    plugins: Iterable[Any] | None = None,
    options: Mapping[str, Any] | None = None,
    user_cls: type | str | None = "User",
) -> None:
    """Turn versioning on: call it before the versioned models are defined.

    Then call ``sqlalchemy.orm.configure_mappers()`` once the models exist, before
    ``metadata.create_all()``, so that the version tables are part of the metadata.

    :param mapper: the mapper (class) whose mapped classes are watched.
    :param session: the Session class, ``sessionmaker`` or ``scoped_session`` whose
        flushes are versioned.
    :param manager: the manager to configure (default: ``versioning_manager``).
    :param plugins: plugin instances, replacing the manager's.
    :param options: default options for every versioned class.
    :param user_cls: the user class, or its name, referenced by ``Transaction.user``;
        ``None`` when transactions record no user. The default ``'User'`` must exist.
    """
    _check_manager(manager, "make_versioned")
    if plugins is not None:
        manager.plugins = plugins
    if options is not None:
        manager.options.update(options)
    manager.user_cls = user_cls
    manager.install(mapper=mapper, session=session)


def remove_versioning(
    mapper: Any = orm.Mapper,
    session: Any = orm.Session,
    manager: VersioningManager = versioning_manager,
) -> None:
    """Undo :func:`make_versioned`: remove the listeners, take away what versioning
    added to the versioned classes (their ``versions`` relationship, the history
    batches' listeners, the old values kept on assignment) and forget the built
    classes. The version and transaction classes stay mapped in their registry."""
    _check_manager(manager, "remove_versioning")
    manager.uninstall()
    manager.reset()


def _check_manager(manager: Any, function: str) -> None:
    if not isinstance(manager, VersioningManager):
        raise ConfigurationError(
            f"{function}(manager=...) takes a VersioningManager, not "
            f"{type(manager).__name__} {manager!r}."
        )
