"""VersioningMiddleware: a Starlette app records who made each change.

A real Starlette application runs through its TestClient; its endpoints write
versioned rows, and each test reads back the ``user_id`` and ``remote_addr`` of
the transaction rows those requests wrote.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from sqlalchemy_chronicle import versioning_context
from sqlalchemy_chronicle.integrations.asgi import VersioningMiddleware
from sqlalchemy_chronicle.plugins import TransactionMetaPlugin

WITH_USERS = pytest.mark.versioning(user_cls="User")


class HeaderAuth(AuthenticationBackend):
    """Authenticates the user named by the ``X-User`` header (its id, as text)."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        if name is None:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser(name)


def authenticated_user_id(scope: Any) -> int | None:
    user = scope["user"]
    return int(user.username) if user.is_authenticated else None


@pytest.fixture
def Article(base: Any, db: Any, article_models: Callable[..., Any]) -> Any:
    class User(base):  # type: ignore[misc, valid-type]
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)

    Article = article_models()
    with db.session() as session:
        session.add_all([User(id=1), User(id=2)])
        session.commit()
    return Article


def routes(db: Any, Article: Any) -> list[Any]:
    def create(request: Request) -> JSONResponse:  # sync: Starlette runs it in a thread
        with db.session() as session:
            article = Article(name=request.query_params["name"])
            session.add(article)
            session.commit()
            return JSONResponse({"id": article.id})

    async def rename(request: Request) -> JSONResponse:
        with db.session() as session:
            article = session.get(Article, int(request.path_params["id"]))
            article.name = request.query_params["name"]
            session.commit()
        return JSONResponse({"ok": True})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        name = await websocket.receive_text()
        with db.session() as session:
            session.add(Article(name=name))
            session.commit()
        await websocket.send_text("saved")
        await websocket.close()

    return [
        Route("/articles", create, methods=["POST"]),
        Route("/articles/{id:int}", rename, methods=["PUT"]),
        WebSocketRoute("/ws", socket),
    ]


def written_by(db: Any, Article: Any) -> list[tuple[str, Any, Any]]:
    """``(name, user_id, remote_addr)`` of every version, in transaction order."""
    with db.session() as session:
        versions = [v for a in session.scalars(sa.select(Article)) for v in a.versions]
        versions.sort(key=lambda v: v.transaction_id)
        return [(v.name, v.transaction.user_id, v.transaction.remote_addr) for v in versions]


@WITH_USERS
def test_each_request_records_its_user_and_client_address(db, Article):
    app = Starlette(
        routes=routes(db, Article),
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),  # outer: runs first
            Middleware(VersioningMiddleware, user_id=authenticated_user_id),
        ],
    )
    alice = TestClient(app, client=("192.0.2.1", 50001), headers={"X-User": "1"})
    bob = TestClient(app, client=("192.0.2.2", 50002), headers={"X-User": "2"})
    anonymous = TestClient(app, client=("192.0.2.3", 50003))

    first = alice.post("/articles", params={"name": "by alice"}).json()["id"]
    bob.post("/articles", params={"name": "by bob"})
    assert bob.put(f"/articles/{first}", params={"name": "edited by bob"}).json() == {"ok": True}
    anonymous.post("/articles", params={"name": "by nobody"})

    assert written_by(db, Article) == [
        ("by alice", 1, "192.0.2.1"),
        ("by bob", 2, "192.0.2.2"),
        ("edited by bob", 2, "192.0.2.2"),
        ("by nobody", None, "192.0.2.3"),
    ]


@WITH_USERS
def test_add_middleware_with_async_callables_and_a_websocket(db, Article):
    async def user_from_header(scope: Any) -> int | None:
        for name, value in scope["headers"]:
            if name == b"x-user":
                return int(value)
        return None

    async def forwarded_for(scope: Any) -> str | None:
        headers = dict(scope["headers"])
        return headers.get(b"x-forwarded-for", b"").decode() or None

    app = Starlette(routes=routes(db, Article))
    app.add_middleware(VersioningMiddleware, user_id=user_from_header, remote_addr=forwarded_for)
    client = TestClient(app)

    client.post("/articles", params={"name": "http"},
                headers={"X-User": "2", "X-Forwarded-For": "198.51.100.20"})
    with client.websocket_connect(
        "/ws", headers={"X-User": "1", "X-Forwarded-For": "198.51.100.10"}
    ) as ws:
        ws.send_text("websocket")
        assert ws.receive_text() == "saved"

    assert written_by(db, Article) == [
        ("http", 2, "198.51.100.20"),
        ("websocket", 1, "198.51.100.10"),
    ]


@WITH_USERS
def test_lifespan_passes_through_without_a_context(db, Article):
    """Startup work is not a request: no user callable runs, nothing is recorded."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        with db.session() as session:
            session.add(Article(name="seeded at startup"))
            session.commit()
        yield

    def needs_a_request(scope: Any) -> int:
        return int(dict(scope["headers"])[b"x-user"])  # a lifespan scope has no headers

    app = Starlette(routes=routes(db, Article), lifespan=lifespan)
    app.add_middleware(VersioningMiddleware, user_id=needs_a_request)
    with TestClient(app, client=("192.0.2.9", 1)) as client:
        client.post("/articles", params={"name": "request"}, headers={"X-User": "1"})

    assert written_by(db, Article) == [
        ("seeded at startup", None, None),
        ("request", 1, "192.0.2.9"),
    ]


@WITH_USERS
def test_values_not_given_are_inherited_and_no_remote_addr_can_be_chosen(db, Article):
    app = Starlette(routes=routes(db, Article))
    app.add_middleware(VersioningMiddleware, remote_addr=None)
    client = TestClient(app, client=("192.0.2.4", 1))
    client.post("/articles", params={"name": "plain"})
    assert written_by(db, Article) == [("plain", None, None)]


@pytest.mark.versioning(user_cls="User", plugins=[TransactionMetaPlugin()])
def test_meta_callable_stores_request_metadata(db, Article):
    app = Starlette(routes=routes(db, Article))
    app.add_middleware(
        VersioningMiddleware,
        meta=lambda scope: {"path": scope["path"], "method": scope["method"]},
    )
    TestClient(app).post("/articles", params={"name": "x"})
    with db.session() as session:
        article = session.scalars(sa.select(Article)).one()
        assert article.versions[0].transaction.meta == {"path": "/articles", "method": "POST"}


def test_request_context_inside_an_enclosing_context():
    """An application served inside a context inherits the values the middleware leaves out."""
    seen: list[Any] = []

    async def endpoint(request: Request) -> JSONResponse:
        from sqlalchemy_chronicle.capture.context import current_context

        context = current_context()
        seen.append((context.user_id, context.remote_addr))
        return JSONResponse({})

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(VersioningMiddleware, remote_addr=lambda scope: "10.0.0.1")

    async def serve(scope: Any, receive: Any, send: Any) -> None:
        with versioning_context(user_id=7, remote_addr="unused"):
            await app(scope, receive, send)

    TestClient(serve).get("/")
    assert seen == [(7, "10.0.0.1")]
