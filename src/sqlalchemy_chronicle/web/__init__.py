"""A web history browser: timeline, transactions, entity histories and diffs.

Read-only pages, rendered on the server with Jinja2 (``pip install
'sqlalchemy-chronicle[web]'``), that work without JavaScript and whose URLs can be
shared. They read the history from the tables alone (by reflection), or through the
application's models with ``models=Base``::

    from sqlalchemy_chronicle.web import history_app, history_wsgi_app

    app = history_app(engine)            # ASGI: mount in Starlette / FastAPI
    wsgi = history_wsgi_app(engine)      # WSGI: mount in Flask, Django, ...

or from a shell, on ``http://127.0.0.1:8000/``::

    $ chronicle serve sqlite:///demo.db

Pages:

``/``
    the newest transactions (time, user, remote address, tables, number of
    changes), filtered by ``table``, ``id`` (an entity of that table), ``user``,
    ``since`` and ``until`` (``2026-01-31`` or ``2026-01-31T14:30``, UTC), paged
    with ``before`` (the transaction id the next page starts under).
``/tx/<id>``
    every change of one transaction, field by field.
``/entity/<table>?key=<id>``
    the whole history of one entity (one ``key`` per primary key column) and a
    side-by-side diff of two of its versions (``from``, ``to``: transaction ids;
    by default the last change). Long texts are diffed line by line.

Only GET and HEAD are served (anything else is answered 405), every value is
escaped, and the responses forbid scripts and framing (Content-Security-Policy).
The pages show whatever the history holds to whoever can reach them: mount them
behind the application's own authentication (see docs/web.md).

Importing this package does not import Jinja2; the first rendered page does.

.. versionadded:: 0.1
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ..exc import ConfigurationError
from ._pages import HistoryPages, Response
from .asgi import HistoryASGIApp
from .wsgi import HistoryWSGIApp

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..browse import HistoryBrowser

__all__ = [
    "HistoryASGIApp",
    "HistoryPages",
    "HistoryWSGIApp",
    "Response",
    "history_app",
    "history_pages",
    "history_wsgi_app",
]


def history_pages(
    bind: sa.Engine | HistoryBrowser,
    *,
    models: Any = None,
    schema: str | None = None,
    transaction_table: str = "transaction",
    title: str = "History",
    page_size: int = 50,
) -> HistoryPages:
    """The pages of the history browser, for any server interface.

    :param bind: the engine of the database to show, or a ready
        :class:`~sqlalchemy_chronicle.browse.HistoryBrowser`.
    :param models: the application's declarative base (or its ``MetaData``): read
        through the models (column keys, a readable user) instead of by reflection.
    :param schema: the schema holding the version tables (reflection only).
    :param transaction_table: the name of the transaction table (reflection only).
    :param title: shown in the header of every page.
    :param page_size: transactions per page of the timeline.

    The database is first read on the first request, not here. Raises
    :class:`~sqlalchemy_chronicle.ConfigurationError` if Jinja2 is not installed.
    """
    from ..browse import HistoryBrowser

    if importlib.util.find_spec("jinja2") is None:
        raise ConfigurationError(
            "The web history browser renders its pages with Jinja2, which is not "
            "installed: pip install 'sqlalchemy-chronicle[web]'."
        )

    if isinstance(bind, HistoryBrowser):
        return HistoryPages(bind, title=title, page_size=page_size)

    def build() -> HistoryBrowser:
        if models is not None:
            return HistoryBrowser.from_models(models, bind)
        return HistoryBrowser(bind, schema=schema, transaction_table=transaction_table)

    return HistoryPages(build, title=title, page_size=page_size)


def history_app(
    bind: sa.Engine | HistoryBrowser,
    *,
    models: Any = None,
    schema: str | None = None,
    transaction_table: str = "transaction",
    title: str = "History",
    page_size: int = 50,
) -> HistoryASGIApp:
    """The history browser as an ASGI application; arguments as :func:`history_pages`.

    Mount it behind your authentication, e.g. in Starlette::

        Mount("/history", app=history_app(engine))
    """
    return HistoryASGIApp(history_pages(
        bind, models=models, schema=schema, transaction_table=transaction_table,
        title=title, page_size=page_size,
    ))


def history_wsgi_app(
    bind: sa.Engine | HistoryBrowser,
    *,
    models: Any = None,
    schema: str | None = None,
    transaction_table: str = "transaction",
    title: str = "History",
    page_size: int = 50,
) -> HistoryWSGIApp:
    """The history browser as a WSGI application; arguments as :func:`history_pages`.

    Mount it behind your authentication, e.g. in Flask with werkzeug::

        app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/history": history_wsgi_app(engine)})
    """
    return HistoryWSGIApp(history_pages(
        bind, models=models, schema=schema, transaction_table=transaction_table,
        title=title, page_size=page_size,
    ))
