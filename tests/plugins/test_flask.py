"""FlaskPlugin: a Flask + Flask-Login app records who made each change.

A real Flask application with Flask-Login runs through its test client: users log
in, requests write versioned rows, and each test reads back the ``user_id`` and
``remote_addr`` of the transaction rows.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import flask
import flask_login
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from sqlalchemy_chronicle import versioning_context
from sqlalchemy_chronicle.exc import ConfigurationError, ImproperlyConfigured
from sqlalchemy_chronicle.plugins import FlaskPlugin


def written_by(db: Any, Article: Any) -> list[tuple[str, Any, Any]]:
    """``(name, user_id, remote_addr)`` of every version, in transaction order."""
    with db.session() as session:
        versions = [v for a in session.scalars(sa.select(Article)) for v in a.versions]
        versions.sort(key=lambda v: v.transaction_id)
        return [(v.name, v.transaction.user_id, v.transaction.remote_addr) for v in versions]


@pytest.fixture
def models(base: Any, db: Any, article_models: Callable[..., Any]) -> tuple[Any, Any]:
    """``(User, Article)``; users 1 (alice) and 2 (bob) exist."""

    class User(flask_login.UserMixin, base):  # type: ignore[misc, valid-type]
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50))

    Article = article_models()
    with db.session() as session:
        session.add_all([User(id=1, name="alice"), User(id=2, name="bob")])
        session.commit()
    return User, Article


def make_app(db: Any, User: Any, Article: Any) -> flask.Flask:
    """An app with Flask-Login: ``POST /login/<id>``, ``POST /articles?name=...``."""
    app = flask.Flask(__name__)
    app.secret_key = "test"
    login_manager = flask_login.LoginManager(app)

    @login_manager.user_loader
    def load_user(user_id: str) -> Any:
        with db.session() as session:
            return session.get(User, int(user_id))

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> str:
        flask_login.login_user(load_user(str(user_id)))
        return "ok"

    @app.post("/articles")
    def create() -> str:
        with db.session() as session:
            session.add(Article(name=flask.request.args["name"]))
            if "as" in flask.request.args:
                with versioning_context(user_id=int(flask.request.args["as"])):
                    session.commit()
            else:
                session.commit()
        return "saved"

    return app


@pytest.mark.versioning(user_cls="User", plugins=[FlaskPlugin()])
def test_logged_in_users_and_client_addresses_are_recorded(db, models):
    User, Article = models
    app = make_app(db, User, Article)
    alice = app.test_client()
    alice.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    bob = app.test_client()
    bob.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    anonymous = app.test_client()
    anonymous.environ_base["REMOTE_ADDR"] = "192.0.2.3"

    assert alice.post("/login/1").text == "ok"
    assert bob.post("/login/2").text == "ok"
    assert alice.post("/articles?name=by+alice").text == "saved"
    bob.post("/articles?name=by+bob")
    anonymous.post("/articles?name=anonymous")
    bob.post("/articles?name=bob+as+alice&as=1")  # an explicit context wins
    with app.app_context(), db.session() as session:  # an app context is not a request
        session.add(Article(name="app context"))
        session.commit()
    with db.session() as session:  # nor is a script
        session.add(Article(name="script"))
        session.commit()

    assert written_by(db, Article) == [
        ("by alice", 1, "192.0.2.1"),
        ("by bob", 2, "192.0.2.2"),
        ("anonymous", None, "192.0.2.3"),
        ("bob as alice", 1, "192.0.2.2"),
        ("app context", None, None),
        ("script", None, None),
    ]
    with db.session() as session:
        article = session.scalars(sa.select(Article).where(Article.name == "by alice")).one()
        assert article.versions[0].transaction.user.name == "alice"


def request_user_id() -> Any:
    return flask.g.get("user_id") if flask.has_app_context() else None


def real_ip() -> Any:
    return flask.request.headers.get("X-Real-IP") if flask.has_request_context() else "cli"


@pytest.mark.versioning(
    user_cls="User",
    plugins=[FlaskPlugin(current_user_id_factory=request_user_id, remote_addr_factory=real_ip)],
)
def test_factories_replace_the_defaults(db, models):
    User, Article = models
    app = make_app(db, User, Article)

    @app.before_request
    def api_key() -> None:
        if flask.request.headers.get("X-Api-Key") == "bob-key":
            flask.g.user_id = 2

    client = app.test_client()
    client.post("/articles?name=api", headers={"X-Api-Key": "bob-key", "X-Real-IP": "203.0.113.7"})
    client.post("/articles?name=no+key", headers={"X-Real-IP": "203.0.113.8"})
    with db.session() as session:
        session.add(Article(name="script"))
        session.commit()

    assert written_by(db, Article) == [
        ("api", 2, "203.0.113.7"),
        ("no key", None, "203.0.113.8"),
        ("script", None, "cli"),
    ]


@pytest.mark.versioning(plugins=[FlaskPlugin()])
def test_without_a_user_class_only_the_address_is_recorded(db, article_models):
    Article = article_models()
    app = flask.Flask(__name__)

    @app.post("/articles")
    def create() -> str:
        with db.session() as session:
            session.add(Article(name="x"))
            session.commit()
        return "saved"

    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "192.0.2.50"
    assert client.post("/articles").text == "saved"  # no login manager: no user, no error
    assert [r["remote_addr"] for r in db.rows("transaction")] == ["192.0.2.50"]
    assert "user_id" not in db.rows("transaction")[0]


def test_without_flask_the_plugin_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flask", None)  # makes `import flask` fail
    with pytest.raises(ImproperlyConfigured) as err:
        FlaskPlugin()
    assert "sqlalchemy-chronicle[flask]" in str(err.value)
    assert isinstance(err.value, ConfigurationError)


def test_without_flask_login_a_user_factory_is_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "flask_login", None)
    with pytest.raises(ImproperlyConfigured) as err:
        FlaskPlugin()
    assert "flask_login" in str(err.value)
    assert "sqlalchemy-chronicle[flask]" in str(err.value)
    plugin = FlaskPlugin(current_user_id_factory=lambda: 5)
    assert plugin.transaction_args(None, None) == {"user_id": 5, "remote_addr": None}
