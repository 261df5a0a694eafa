"""The history browser as a Flask blueprint, behind the application's own login.

Register it under a prefix and guard it like any other blueprint, for example with
Flask-Login::

    from flask_login import current_user
    from sqlalchemy_chronicle.web.blueprint import history_blueprint

    history = history_blueprint(engine)

    @history.before_request
    def staff_only():
        if not current_user.is_authenticated:
            return app.login_manager.unauthorized()

    app.register_blueprint(history, url_prefix="/history")

Needs Flask (``pip install 'sqlalchemy-chronicle[flask,web]'``), imported by this
module only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flask

from . import history_pages

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..browse import HistoryBrowser

__all__ = ["history_blueprint"]

#: Every method reaches the pages, which answer 405 to all but GET and HEAD.
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def history_blueprint(
    bind: sa.Engine | HistoryBrowser,
    *,
    name: str = "chronicle_history",
    **options: Any,
) -> flask.Blueprint:
    """A Flask blueprint serving the history browser; register it with a ``url_prefix``.

    ``options`` are those of :func:`~sqlalchemy_chronicle.web.history_pages`
    (``models``, ``schema``, ``transaction_table``, ``title``, ``page_size``).
    """
    pages = history_pages(bind, **options)
    blueprint = flask.Blueprint(name, __name__)

    @blueprint.route("/", defaults={"subpath": ""}, methods=_METHODS)
    @blueprint.route("/<path:subpath>", methods=_METHODS)
    def history(subpath: str) -> flask.Response:
        request = flask.request
        path = "/" + subpath
        # The mount point: the application's root plus the blueprint's prefix.
        prefix = request.path[: len(request.path) - len(path)] if request.path.endswith(path) \
            else request.path.rstrip("/")
        response = pages.handle(
            request.method, path, request.query_string.decode("latin-1"),
            request.script_root + prefix,
        )
        return flask.Response(response.body, status=response.status,
                              headers=list(response.headers))

    return blueprint
