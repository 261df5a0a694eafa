"""The models every variant defines, each in its own process.

``plain`` maps ``Article`` with no versioning; ``chronicle`` and ``continuum`` call
their library's ``make_versioned(user_cls=None)`` before the model is declared and
``configure_mappers()`` after it, through the library's own import name. Both
libraries build the same tables (``article_version``, ``transaction``).

With ``tags=True`` (the tag workloads) there is also a ``Tag`` model and a
many-to-many ``Article.tags`` through the ``article_tag`` association table, all
versioned (``tag_version``, ``article_tag_version``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

#: variant -> the import name of its versioning library (None: no versioning).
LIBRARIES: dict[str, str | None] = {
    "plain": None,
    "chronicle": "sqlalchemy_chronicle",
    "continuum": "sqlalchemy_continuum",
}


@dataclass
class Models:
    variant: str
    library: ModuleType | None
    metadata: sa.MetaData
    Article: Any
    ArticleVersion: Any
    Transaction: Any
    Tag: Any = None
    TagVersion: Any = None
    article_tag: sa.Table | None = None

    @property
    def versioned(self) -> bool:
        return self.library is not None


def build_models(
    variant: str, tags: bool = False, chronicle_options: dict[str, Any] | None = None
) -> Models:
    """Declare ``Article`` (and ``Tag``) for ``variant`` (call once per process).

    ``chronicle_options`` go to sqlalchemy-chronicle's ``make_versioned(options=...)``.
    """
    name = LIBRARIES[variant]
    library = importlib.import_module(name) if name is not None else None
    if library is not None:
        if variant == "chronicle" and chronicle_options:
            options = dict(chronicle_options)
            plugins = []
            if options.pop("tamper_evidence", False):  # the 'ledger' variant: a plugin
                from sqlalchemy_chronicle.plugins import TamperEvidencePlugin

                plugins.append(TamperEvidencePlugin())
            library.make_versioned(user_cls=None, options=options, plugins=plugins)
        else:
            library.make_versioned(user_cls=None)

    class Base(orm.DeclarativeBase):
        pass

    namespace: dict[str, Any] = {
        "__tablename__": "article",
        "id": sa.Column(sa.Integer, primary_key=True),
        "name": sa.Column(sa.String(200), nullable=False),
        "author": sa.Column(sa.String(100), nullable=False),
        "content": sa.Column(sa.Text, nullable=False),
        "views": sa.Column(sa.Integer, nullable=False),
    }
    tag = article_tag = None
    if tags:
        tag_namespace: dict[str, Any] = {
            "__tablename__": "tag",
            "id": sa.Column(sa.Integer, primary_key=True),
            "name": sa.Column(sa.String(100), nullable=False),
        }
        if library is not None:
            tag_namespace["__versioned__"] = {}
        tag = type("Tag", (Base,), tag_namespace)
        article_tag = sa.Table(
            "article_tag",
            Base.metadata,
            sa.Column("article_id", sa.ForeignKey("article.id"), primary_key=True),
            sa.Column("tag_id", sa.ForeignKey("tag.id"), primary_key=True),
        )
        namespace["tags"] = orm.relationship(tag, secondary=article_tag)
    if library is not None:
        namespace["__versioned__"] = {}
    article = type("Article", (Base,), namespace)
    orm.configure_mappers()
    version = transaction = tag_version = None
    if library is not None:
        version = library.version_class(article)
        transaction = library.transaction_class(article)
        if tag is not None:
            tag_version = library.version_class(tag)
    return Models(variant, library, Base.metadata, article, version, transaction,
                  tag, tag_version, article_tag)
