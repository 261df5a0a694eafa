"""Record who made each change in WSGI applications (Flask, Django, Pyramid, ...).

:class:`VersioningWSGIMiddleware` runs every request inside a
:func:`~sqlalchemy_chronicle.versioning_context`, so each transaction the request
writes records the request's user and client address::

    from sqlalchemy_chronicle.integrations.wsgi import VersioningWSGIMiddleware

    app.wsgi_app = VersioningWSGIMiddleware(
        app.wsgi_app, user_id=lambda environ: environ.get("REMOTE_USER")
    )

It imports no framework. ``user_id``, ``remote_addr`` and ``meta`` are callables
given the request's WSGI ``environ``; the default ``remote_addr`` is
``environ["REMOTE_ADDR"]``.

The context covers the whole response, including a streamed body the server pulls
after the application returned: the request runs in its own copy of the
:mod:`contextvars` context, entered again for each chunk, so the values never leak
into the server's thread between requests.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..capture.context import UNSET, versioning_context

__all__ = [
    "EnvironCallable",
    "StartResponse",
    "VersioningWSGIMiddleware",
    "WSGIApp",
    "WSGIEnviron",
    "remote_addr_of",
]

#: The WSGI ``environ`` dict.
WSGIEnviron = dict[str, Any]
#: The WSGI ``start_response`` callable.
StartResponse = Callable[..., Any]
#: A WSGI application.
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
#: A callable given the ``environ``, returning a value.
EnvironCallable = Callable[[WSGIEnviron], Any]


def remote_addr_of(environ: WSGIEnviron) -> str | None:
    """The client address of the request (``environ["REMOTE_ADDR"]``), or None."""
    value = environ.get("REMOTE_ADDR")
    return str(value) if value else None


class _InContext:
    """The application's response iterable, iterated and closed inside ``context``."""

    def __init__(
        self, context: contextvars.Context, result: Iterable[bytes], leave: Callable[[], None]
    ) -> None:
        self._context = context
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._leave = leave

    def __iter__(self) -> _InContext:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._result)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        """Close the application's iterable (PEP 3333), then leave the context."""
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                self._context.run(close)
        finally:
            self._context.run(self._leave)


class VersioningWSGIMiddleware:
    """WSGI middleware running each request inside a :func:`versioning_context`.

    :param app: the WSGI application to wrap.
    :param user_id: ``callable(environ)`` returning the id of the user making the
        request (None for anonymous). Without it, no user is set.
    :param remote_addr: ``callable(environ)`` returning the client address; defaults
        to ``environ["REMOTE_ADDR"]``. Behind a proxy, pass a callable that reads a
        trusted ``X-Forwarded-For`` (``environ["HTTP_X_FORWARDED_FOR"]``).
    :param meta: ``callable(environ)`` returning a mapping of extra metadata for the
        transaction (stored by ``TransactionMetaPlugin``, which must be installed).
    """

    def __init__(
        self,
        app: WSGIApp,
        user_id: EnvironCallable | None = None,
        remote_addr: EnvironCallable | None = remote_addr_of,
        meta: EnvironCallable | None = None,
    ) -> None:
        self.app = app
        self.user_id = user_id
        self.remote_addr = remote_addr
        self.meta = meta

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """Run the request in its own copy of the context, with the versioning values set."""
        context = contextvars.copy_context()
        return context.run(self._start, context, environ, start_response)

    def _start(
        self, context: contextvars.Context, environ: WSGIEnviron, start_response: StartResponse
    ) -> Iterable[bytes]:
        user_id = UNSET if self.user_id is None else self.user_id(environ)
        remote_addr = UNSET if self.remote_addr is None else self.remote_addr(environ)
        meta: Mapping[str, Any] = {} if self.meta is None else (self.meta(environ) or {})
        versioning = versioning_context(user_id=user_id, remote_addr=remote_addr, **meta)
        versioning.__enter__()
        try:
            result = self.app(environ, start_response)
        except BaseException:
            versioning.__exit__(None, None, None)
            raise
        return _InContext(context, result, lambda: versioning.__exit__(None, None, None))
