"""VersioningWSGIMiddleware: WSGI apps record who made each change.

A real Flask application and a plain WSGI application run through werkzeug's test
client; their requests write versioned rows, and each test reads back the
``user_id`` and ``remote_addr`` of the transaction rows they wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.test import Client

from sqlalchemy_chronicle.capture.context import current_context
from sqlalchemy_chronicle.integrations.wsgi import VersioningWSGIMiddleware
from sqlalchemy_chronicle.plugins import TransactionMetaPlugin

WITH_USERS = pytest.mark.versioning(user_cls="User")


def user_from_header(environ: dict[str, Any]) -> int | None:
    value = environ.get("HTTP_X_USER")
    return int(value) if value else None


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


def written_by(db: Any, Article: Any) -> list[tuple[str, Any, Any]]:
    """``(name, user_id, remote_addr)`` of every version, in transaction order."""
    with db.session() as session:
        versions = [v for a in session.scalars(sa.select(Article)) for v in a.versions]
        versions.sort(key=lambda v: v.transaction_id)
        return [(v.name, v.transaction.user_id, v.transaction.remote_addr) for v in versions]


def flask_app(db: Any, Article: Any) -> flask.Flask:
    app = flask.Flask(__name__)

    @app.post("/articles")
    def create() -> dict[str, Any]:
        with db.session() as session:
            article = Article(name=flask.request.args["name"])
            session.add(article)
            session.commit()
            return {"id": article.id}

    return app


@WITH_USERS
def test_flask_requests_record_their_user_and_address(db, Article):
    app = flask_app(db, Article)
    app.wsgi_app = VersioningWSGIMiddleware(app.wsgi_app, user_id=user_from_header)  # type: ignore[method-assign]
    client = app.test_client()

    response = client.post("/articles?name=by+alice", headers={"X-User": "1"},
                           environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert response.status_code == 200
    client.post("/articles?name=by+bob", headers={"X-User": "2"},
                environ_base={"REMOTE_ADDR": "192.0.2.2"})
    client.post("/articles?name=anonymous", environ_base={"REMOTE_ADDR": "192.0.2.3"})

    assert written_by(db, Article) == [
        ("by alice", 1, "192.0.2.1"),
        ("by bob", 2, "192.0.2.2"),
        ("anonymous", None, "192.0.2.3"),
    ]
    assert current_context() is None  # nothing leaked into the client's thread


@WITH_USERS
def test_a_streamed_body_is_written_inside_the_context(db, Article):
    """Rows written while the server pulls the body, after the app returned, are recorded."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Iterator[bytes]:
            for i in range(2):
                with db.session() as session:
                    session.add(Article(name=f"chunk {i}"))
                    session.commit()
                yield b"saved\n"

        return body()

    client = Client(VersioningWSGIMiddleware(
        app,
        user_id=user_from_header,
        remote_addr=lambda environ: environ["HTTP_X_FORWARDED_FOR"].split(",")[0].strip(),
    ))
    response = client.get("/", headers={"X-User": "2", "X-Forwarded-For": "198.51.100.5, 10.0.0.1"})
    assert response.get_data() == b"saved\nsaved\n"
    assert current_context() is None

    assert written_by(db, Article) == [
        ("chunk 0", 2, "198.51.100.5"),
        ("chunk 1", 2, "198.51.100.5"),
    ]


@pytest.mark.versioning(user_cls="User", plugins=[TransactionMetaPlugin()])
def test_meta_callable_stores_request_metadata(db, Article):
    app = flask_app(db, Article)
    app.wsgi_app = VersioningWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        meta=lambda environ: {"path": environ["PATH_INFO"], "agent": environ["HTTP_USER_AGENT"]},
    )
    app.test_client().post("/articles?name=x", headers={"User-Agent": "importer/1.0"})
    with db.session() as session:
        article = session.scalars(sa.select(Article)).one()
        transaction = article.versions[0].transaction
        assert transaction.meta == {"path": "/articles", "agent": "importer/1.0"}
        assert transaction.remote_addr == "127.0.0.1"  # the test client's default


@WITH_USERS
def test_an_application_error_leaves_no_context_behind(db, Article):
    def failing(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise LookupError("no such page")

    client = Client(VersioningWSGIMiddleware(failing, user_id=user_from_header))
    with pytest.raises(LookupError):
        client.get("/", headers={"X-User": "1"})
    assert current_context() is None
