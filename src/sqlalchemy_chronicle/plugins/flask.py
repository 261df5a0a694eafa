"""Record the Flask-Login user and the request's address on each transaction.

:class:`FlaskPlugin` gives every transaction row written during a Flask request
the id of ``flask_login.current_user`` and ``flask.request.remote_addr``::

    from sqlalchemy_chronicle import make_versioned
    from sqlalchemy_chronicle.plugins import FlaskPlugin

    make_versioned(user_cls="User", plugins=[FlaskPlugin()])

Outside a request, for an anonymous user, or for a user object without ``id``, the
user is None; outside a request the address is None too. Pass
``current_user_id_factory`` and/or ``remote_addr_factory`` (callables taking no
argument) to compute the values another way, e.g. from a proxy header.

Values given to :func:`~sqlalchemy_chronicle.versioning_context` take precedence
over the plugin's. The plugin needs Flask (and Flask-Login for the default user
factory): ``pip install 'sqlalchemy-chronicle[flask]'``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exc import ImproperlyConfigured
from ..hooks import Plugin

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["FlaskPlugin", "fetch_current_user_id", "fetch_remote_addr"]

_INSTALL = "pip install 'sqlalchemy-chronicle[flask]'"


def _require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{what} needs the {module!r} package, which is not installed; "
            f"install it with: {_INSTALL}"
        ) from exc


def fetch_current_user_id() -> Any:
    """The id of Flask-Login's ``current_user`` in this request, else None.

    None outside a request context, for an anonymous user, or when the user object
    (or the login manager) is missing: any ``AttributeError`` counts as no user.
    """
    import flask

    if not flask.has_request_context():
        return None
    # flask_login ships no type information; importlib keeps mypy strict quiet.
    current_user = importlib.import_module("flask_login").current_user
    try:
        return current_user.id
    except AttributeError:
        return None


def fetch_remote_addr() -> str | None:
    """``flask.request.remote_addr`` inside an app and request context, else None."""
    import flask

    if not (flask.has_app_context() and flask.has_request_context()):
        return None
    return flask.request.remote_addr


class FlaskPlugin(Plugin):
    """Stamp transactions with the Flask-Login user id and the client address.

    :param current_user_id_factory: a callable returning the current user's id;
        defaults to :func:`fetch_current_user_id` (Flask-Login's ``current_user``).
    :param remote_addr_factory: a callable returning the client address; defaults
        to :func:`fetch_remote_addr` (``flask.request.remote_addr``).
    :raises ImproperlyConfigured: when Flask is not installed, or Flask-Login is not
        and no ``current_user_id_factory`` was given.

    The user id is stored only when the manager has a user class
    (``make_versioned(user_cls=...)``); without one, the transaction table has no
    ``user_id`` column and the value is left out.
    """

    def __init__(
        self,
        current_user_id_factory: Callable[[], Any] | None = None,
        remote_addr_factory: Callable[[], Any] | None = None,
    ) -> None:
        _require("flask", "FlaskPlugin")
        if current_user_id_factory is None:
            _require("flask_login", "FlaskPlugin's default current_user_id_factory")
        self.current_user_id_factory: Callable[[], Any] = (
            current_user_id_factory or fetch_current_user_id
        )
        self.remote_addr_factory: Callable[[], Any] = remote_addr_factory or fetch_remote_addr

    def transaction_args(self, uow: Any, session: Session) -> dict[str, Any]:
        """``{'user_id': ..., 'remote_addr': ...}`` for the transaction being written."""
        return {
            "user_id": self.current_user_id_factory(),
            "remote_addr": self.remote_addr_factory(),
        }

    def __repr__(self) -> str:
        return (
            f"FlaskPlugin(current_user_id_factory={self.current_user_id_factory!r}, "
            f"remote_addr_factory={self.remote_addr_factory!r})"
        )
