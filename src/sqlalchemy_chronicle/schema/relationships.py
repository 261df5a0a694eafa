"""Temporal relationships of version classes.

For every relationship of a versioned class, its version class gets a view-only
relationship of the same name whose join picks, on the other side, the rows as
they were at the version's transaction:

* a related versioned class is joined through its version table, keeping the
  version valid at ``self.transaction_id`` (``transaction_id <= t`` and
  ``end_transaction_id`` after ``t`` or open) that is not a DELETE;
* a many-to-many ``secondary`` table is joined through its version table, with the
  same window;
* a related class that is not versioned is joined as it is now.

They are real SQLAlchemy relationships. Under the validity strategy the window is a
plain range on ``transaction_id``/``end_transaction_id``, so ``selectinload`` and
``joinedload`` work; under the subquery strategy it is a correlated ``max()``, fine
for lazy loading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.sql import visitors

from ..config import Operation

if TYPE_CHECKING:
    from .tables import VersionTableSpec

__all__ = ["build_temporal_relationship", "validity_window"]


def validity_window(
    spec: VersionTableSpec,
    at: sa.ColumnElement[Any],
    wrap: Callable[[Any], Any] = lambda c: c,
    *,
    trust_end_tx: bool = True,
) -> sa.ColumnElement[bool]:
    """The rows of ``spec.version`` valid at transaction ``at`` that are not DELETEs.

    ``wrap`` maps each column of ``spec.version`` to the expression to use for it (an
    alias's column, or the column annotated ``remote()``). With ``end_transaction_id``
    (validity strategy) the window is ``transaction_id <= at < end_transaction_id``;
    without it (subquery strategy), or with ``trust_end_tx=False``, each entity's
    newest version at ``at``.
    """
    tx, op = wrap(spec.tx), wrap(spec.op)
    if spec.end_tx is not None and trust_end_tx:
        end = wrap(spec.end_tx)
        window = sa.and_(tx <= at, sa.or_(end > at, end.is_(None)))
    else:
        older = spec.version.alias(f"chronicle_{spec.version.name}_at")
        newest = (
            sa.select(sa.func.max(older.c[spec.tx.key]))
            .where(
                *[older.c[v.key] == wrap(v) for _, v in spec.pk],
                older.c[spec.tx.key] <= at,
            )
            .scalar_subquery()
        )
        window = tx == newest
    return sa.and_(window, op != int(Operation.DELETE))


def _column_map(specs: list[VersionTableSpec]) -> dict[sa.Column[Any], sa.Column[Any]]:
    return {p: v for spec in specs for p, v in spec.columns}


def _reflect(
    clause: sa.ColumnElement[Any],
    replace: Callable[[sa.Column[Any]], Any],
) -> sa.ColumnElement[Any]:
    def visit(element: Any, **kw: Any) -> Any:
        if isinstance(element, sa.Column):
            return replace(element)
        return None

    return visitors.replacement_traverse(clause, {}, visit)  # type: ignore[no-any-return]


def build_temporal_relationship(
    prop: orm.RelationshipProperty[Any],
    local_specs: list[VersionTableSpec],
    local_tx: sa.Column[Any],
    remote_version_cls: type | None,
    remote_specs: list[VersionTableSpec],
    association: Mapping[sa.Table, VersionTableSpec],
) -> orm.RelationshipProperty[Any] | None:
    """The temporal twin of ``prop`` for a version class, or None if it cannot be built.

    ``local_specs`` are the version tables of the class owning ``prop``;
    ``remote_version_cls``/``remote_specs`` those of the related class (None/[] when
    it is not versioned); ``association`` maps versioned ``secondary`` tables.
    """
    local_map = _column_map(local_specs)
    remote_map = _column_map(remote_specs)
    remote_side = {c for c in prop.remote_side}
    secondary = prop.secondary
    missing: list[sa.Column[Any]] = []

    if secondary is None:
        foreign_remote = prop.direction is orm.ONETOMANY

        def replace(column: sa.Column[Any]) -> Any:
            if column in remote_side:
                if remote_version_cls is None:
                    target = column
                elif column in remote_map:
                    target = remote_map[column]
                else:
                    missing.append(column)
                    return column
                target = orm.remote(target)
                return orm.foreign(target) if foreign_remote else target
            if column in local_map:
                target = local_map[column]
                return target if foreign_remote else orm.foreign(target)
            missing.append(column)
            return column

        join = _reflect(prop.primaryjoin, replace)
        if missing:
            return None
        criteria = [join]
        if remote_version_cls is not None:
            remote_spec = remote_specs[0]
            criteria.append(validity_window(remote_spec, local_tx, orm.remote))
        target_cls: Any = remote_version_cls if remote_version_cls is not None else prop.mapper
        order_by = _order_by(prop, remote_map if remote_version_cls is not None else None)
        return orm.relationship(
            target_cls,
            primaryjoin=sa.and_(*criteria),
            viewonly=True,
            uselist=prop.uselist,
            lazy="dynamic" if prop.lazy == "dynamic" else "select",
            order_by=order_by,
            sync_backref=False,
        )

    assoc_spec = association.get(secondary) if isinstance(secondary, sa.Table) else None
    if assoc_spec is None or prop.secondaryjoin is None:
        return None
    assoc_map = dict(assoc_spec.columns)

    def replace_primary(column: sa.Column[Any]) -> Any:
        if column in assoc_map:
            return orm.foreign(assoc_map[column])
        if column in local_map:
            return local_map[column]
        missing.append(column)
        return column

    primaryjoin = _reflect(prop.primaryjoin, replace_primary)
    # Not end_transaction_id: SQLAlchemy-Continuum never fills it in association version
    # tables, so in a database it wrote a link removed since is still open (and closed
    # only later, by the first change this library writes for that link).
    primary = [primaryjoin, validity_window(assoc_spec, local_tx, trust_end_tx=False)]
    if remote_version_cls is None:

        def replace_live(column: sa.Column[Any]) -> Any:
            return orm.foreign(assoc_map[column]) if column in assoc_map else column

        secondary_table: Any = assoc_spec.version
        secondaryjoin = _reflect(prop.secondaryjoin, replace_live)
    else:
        # The related versions valid at self's transaction are picked inside the
        # secondary join (an alias of their version table, reachable from the
        # primary join), then joined to the target on key and transaction.
        remote_spec = remote_specs[0]
        picked = remote_spec.version.alias(f"chronicle_{remote_spec.version.name}")
        alias_map = {p: picked.c[v.key] for p, v in remote_spec.columns}

        def replace_secondary(column: sa.Column[Any]) -> Any:
            if column in assoc_map:
                return assoc_map[column]
            if column in alias_map:
                return alias_map[column]
            missing.append(column)
            return column

        secondary_table = sa.join(
            assoc_spec.version, picked, _reflect(prop.secondaryjoin, replace_secondary)
        )
        primary.append(validity_window(remote_spec, local_tx, lambda c: picked.c[c.key]))
        secondaryjoin = sa.and_(
            *[v == orm.foreign(picked.c[v.key]) for _, v in remote_spec.pk],
            remote_spec.tx == orm.foreign(picked.c[remote_spec.tx.key]),
        )
    if missing:
        return None
    return orm.relationship(
        remote_version_cls if remote_version_cls is not None else prop.mapper,
        secondary=secondary_table,
        primaryjoin=sa.and_(*primary),
        secondaryjoin=secondaryjoin,
        viewonly=True,
        uselist=prop.uselist,
        lazy="dynamic" if prop.lazy == "dynamic" else "select",
        order_by=_order_by(prop, remote_map if remote_version_cls is not None else None),
        sync_backref=False,
    )


def _order_by(
    prop: orm.RelationshipProperty[Any], remote_map: dict[sa.Column[Any], sa.Column[Any]] | None
) -> Any:
    order_by = prop.order_by
    if not order_by:
        return False
    if remote_map is None:
        return list(order_by)
    reflected = []
    for clause in order_by:
        reflected.append(_reflect(clause, lambda c: remote_map.get(c, c)))
    return reflected
