"""The history browser as a plain ASGI 3 application (no framework needed).

Mount it in Starlette or FastAPI (``Mount("/history", app=...)``,
``app.mount("/history", ...)``): links follow the mount point (``root_path``). Each
request reads the database in a worker thread, so the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._pages import HistoryPages

__all__ = ["HistoryASGIApp"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class HistoryASGIApp:
    """An ASGI application serving :class:`~sqlalchemy_chronicle.web._pages.HistoryPages`.

    Made by :func:`sqlalchemy_chronicle.web.history_app`.
    """

    def __init__(self, pages: HistoryPages) -> None:
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        root = str(scope.get("root_path", ""))
        path = str(scope.get("path", "/"))
        # Starlette keeps the mount prefix in ``path``; plain ASGI servers do not.
        if root and path.startswith(root):
            path = path[len(root):]
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        response = await asyncio.to_thread(
            self.pages.handle, str(scope.get("method", "GET")), path or "/", query, root,
        )
        headers = list(response.headers)
        if scope.get("method") != "HEAD":
            headers.append(("Content-Length", str(len(response.body))))
        await send({
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in headers
            ],
        })
        await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Answer the server's lifespan messages (nothing to start or stop)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
