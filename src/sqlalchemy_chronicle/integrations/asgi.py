"""Record who made each change in ASGI applications (Starlette, FastAPI, ...).

:class:`VersioningMiddleware` runs every HTTP request and WebSocket connection
inside a :func:`~sqlalchemy_chronicle.versioning_context`, so each transaction the
request writes records the request's user and client address::

    from starlette.applications import Starlette
    from sqlalchemy_chronicle.integrations.asgi import VersioningMiddleware

    app = Starlette(routes=...)
    app.add_middleware(VersioningMiddleware, user_id=lambda scope: scope["user"].identity)

It is plain ASGI and imports no framework. ``user_id``, ``remote_addr`` and ``meta``
are callables given the connection's ``scope``; each may be a plain function or a
coroutine function. The default ``remote_addr`` is the client host of the scope
(``scope["client"][0]``). Lifespan and other scope types pass through untouched.

The callables run when the request reaches this middleware, so a user set by an
authentication middleware is visible only if that middleware runs first (is the
outer one). With Starlette's ``add_middleware``, the middleware added *last* runs
first: add :class:`VersioningMiddleware` before the authentication middleware.

Code that the request runs in other tasks or threads sees the context as long as
they copy it, as ``asyncio`` tasks, ``asyncio.to_thread`` and Starlette's
thread pool for sync endpoints do.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from ..capture.context import UNSET, versioning_context

__all__ = [
    "ASGIApp",
    "Receive",
    "Scope",
    "ScopeCallable",
    "Send",
    "VersioningMiddleware",
    "client_host",
]

#: The ASGI connection scope.
Scope = MutableMapping[str, Any]
#: The ASGI ``receive`` callable.
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
#: The ASGI ``send`` callable.
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A callable given the scope, returning a value or an awaitable of it.
ScopeCallable = Callable[[Scope], Any]

_VERSIONED_SCOPES = frozenset({"http", "websocket"})


def client_host(scope: Scope) -> str | None:
    """The client address of ``scope`` (``scope["client"][0]``), or None if unknown."""
    client = scope.get("client")
    if not client:
        return None
    return str(client[0])


async def _resolve(func: ScopeCallable, scope: Scope) -> Any:
    value = func(scope)
    if inspect.isawaitable(value):
        value = await value
    return value


class VersioningMiddleware:
    """ASGI middleware running each request inside a :func:`versioning_context`.

    :param app: the ASGI application to wrap.
    :param user_id: ``callable(scope)`` returning the id of the user making the
        request (None for anonymous). Without it, no user is set (an enclosing
        context's user, if any, stays in force).
    :param remote_addr: ``callable(scope)`` returning the client address; defaults
        to the host of ``scope["client"]``. Pass a callable that reads a trusted
        ``X-Forwarded-For`` header behind a proxy.
    :param meta: ``callable(scope)`` returning a mapping of extra metadata for the
        transaction (stored by ``TransactionMetaPlugin``, which must be installed).

    Each callable may be sync or async.
    """

    def __init__(
        self,
        app: ASGIApp,
        user_id: ScopeCallable | None = None,
        remote_addr: ScopeCallable | None = client_host,
        meta: ScopeCallable | None = None,
    ) -> None:
        self.app = app
        self.user_id = user_id
        self.remote_addr = remote_addr
        self.meta = meta

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request in ``scope`` inside its versioning context."""
        if scope["type"] not in _VERSIONED_SCOPES:
            await self.app(scope, receive, send)
            return
        user_id = UNSET if self.user_id is None else await _resolve(self.user_id, scope)
        remote_addr = (
            UNSET if self.remote_addr is None else await _resolve(self.remote_addr, scope)
        )
        meta: Mapping[str, Any] = {}
        if self.meta is not None:
            meta = await _resolve(self.meta, scope) or {}
        with versioning_context(user_id=user_id, remote_addr=remote_addr, **meta):
            await self.app(scope, receive, send)
