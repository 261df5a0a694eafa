"""The history browser as a plain WSGI application (Flask, Django, wsgiref, ...).

Mount it under a prefix with werkzeug's ``DispatcherMiddleware`` (or any WSGI
router): links follow the mount point (``SCRIPT_NAME``). ``chronicle serve`` runs it
on the standard library's ``wsgiref`` server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ._pages import HistoryPages

__all__ = ["HistoryWSGIApp"]

StartResponse = Callable[..., Any]


def _wsgi_text(value: str) -> str:
    """A WSGI environ string (bytes as latin-1) decoded as the UTF-8 it was sent as."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class HistoryWSGIApp:
    """A WSGI application serving :class:`~sqlalchemy_chronicle.web._pages.HistoryPages`.

    Made by :func:`sqlalchemy_chronicle.web.history_wsgi_app`.
    """

    def __init__(self, pages: HistoryPages) -> None:
        self.pages = pages

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = self.pages.handle(
            str(environ.get("REQUEST_METHOD", "GET")),
            _wsgi_text(str(environ.get("PATH_INFO", ""))) or "/",
            str(environ.get("QUERY_STRING", "")),
            _wsgi_text(str(environ.get("SCRIPT_NAME", ""))),
        )
        headers = list(response.headers)
        if environ.get("REQUEST_METHOD") != "HEAD":
            headers.append(("Content-Length", str(len(response.body))))
        start_response(f"{response.status} {_REASONS.get(response.status, '')}".rstrip(), headers)
        return [response.body]


_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    500: "Internal Server Error", 503: "Service Unavailable",
}
