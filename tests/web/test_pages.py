"""The history browser's pages through its ASGI and WSGI forms, on every database.

Each app is mounted under ``/history`` in a real framework (Starlette for ASGI,
Flask with werkzeug's DispatcherMiddleware for WSGI) and read through that
framework's test client: status codes, the text and links on the pages, escaping
of hostile values, filters and paging, and that nothing but GET and HEAD is served.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask import request as flask_request
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client

from sqlalchemy_chronicle.exc import ConfigurationError
from sqlalchemy_chronicle.web import history_app, history_wsgi_app

from .history import ATTRIBUTE, BOB, SCRIPT, History, write_history
from .html import Page

pytestmark = pytest.mark.versioning(user_cls="User")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def page(self) -> Page:
        return Page(self.body.decode("utf-8"))


Get = Callable[..., Reply]


@pytest.fixture(params=["asgi", "wsgi"])
def make_client(request: pytest.FixtureRequest, db: Any) -> Callable[..., Get]:
    """``make_client(**history_app kwargs)`` -> ``get(url, method="GET")``; the app is
    mounted at /history."""

    def make(**kwargs: Any) -> Get:
        if request.param == "asgi":
            app = Starlette(routes=[Mount("/history", app=history_app(db.engine, **kwargs))])
            client = TestClient(app)

            def get(url: str, method: str = "GET") -> Reply:
                r = client.request(method, url)
                return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()},
                             r.content)
        else:
            flask_app = Flask(__name__)
            flask_app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
                flask_app.wsgi_app, {"/history": history_wsgi_app(db.engine, **kwargs)}
            )
            wsgi_client = Client(flask_app)

            def get(url: str, method: str = "GET") -> Reply:
                r = wsgi_client.open(url, method=method)
                return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()},
                             r.get_data())

        return get

    return make


@pytest.fixture
def history(base: Any, db: Any) -> History:
    return write_history(base, db)


@pytest.fixture
def get(make_client: Callable[..., Get], history: History) -> Get:
    return make_client()


def test_timeline_lists_transactions_newest_first(get, history):
    t1, t2, t3, t4 = history.txs
    reply = get("/history/")
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    rows = reply.page.rows("timeline")
    assert rows[0] == ["Tx", "Time", "User", "Remote address", "Tables", "Changes"]
    body = [[r[0], r[2], r[3], r[4], r[5]] for r in rows[1:]]
    assert body == [
        [f"#{t4}", "alice", "192.0.2.1", "article", "1"],
        [f"#{t3}", "—", ATTRIBUTE[:40], "article", "1"],
        [f"#{t2}", BOB, "198.51.100.7", "article", "1"],
        [f"#{t1}", "alice", "192.0.2.1", "article tag", "3"],
    ]
    assert all(r[1].endswith(" UTC") for r in rows[1:])
    # Links stay under the mount point.
    assert reply.page.link(f"#{t2}") == f"/history/tx/{t2}"
    assert reply.page.link("tag") == "/history/?table=tag"


def test_timeline_filters(get, history):
    t1, t2, t3, t4 = history.txs

    def txs(url: str) -> list[str]:
        reply = get(url)
        assert reply.status == 200, reply.page.text
        return [row[0] for row in reply.page.rows("timeline")[1:]] if "timeline" in \
            reply.page.tables else []

    assert txs("/history/?table=tag") == [f"#{t1}"]
    assert txs("/history/?table=article&id=2") == [f"#{t3}", f"#{t1}"]
    assert txs("/history/?user=alice") == [f"#{t4}", f"#{t1}"]
    assert txs("/history/?user=2") == [f"#{t2}"]
    assert txs("/history/?since=2000-01-01&until=2999-12-31") == [
        f"#{t4}", f"#{t3}", f"#{t2}", f"#{t1}"
    ]
    assert txs("/history/?until=2000-01-01") == []
    empty = get("/history/?user=nobody").page
    assert "No transactions match these filters." in empty.text
    # The form shows the filters in force, and a way to clear them.
    page = get("/history/?table=article&id=2").page
    assert 'value="2"' in page.html and "<option value=\"article\" selected>" in page.html
    assert page.link("Clear") == "/history/"
    assert page.link("history of article 2") == "/history/entity/article?key=2"


def test_timeline_bad_filters_are_explained(get, history):
    reply = get("/history/?since=yesterday")
    assert reply.status == 400
    assert "'since' must be a date (2026-01-31) or a date and time" in reply.page.text
    reply = get("/history/?id=1")
    assert reply.status == 400
    assert "An entity id filters the history of one table: choose the table." in reply.page.text
    reply = get("/history/?table=nope")
    assert reply.status == 404
    assert "The table 'nope' is not versioned in this database." in reply.page.text
    assert get("/history/?before=x").status == 400


def test_timeline_pages_with_a_keyset_cursor(make_client, history):
    t1, t2, t3, t4 = history.txs
    get = make_client(page_size=3)
    first = get("/history/?user=&table=article").page
    assert [r[0] for r in first.rows("timeline")[1:]] == [f"#{t4}", f"#{t3}", f"#{t2}"]
    older = first.link("Older →")
    assert older == f"/history/?table=article&before={t2}"
    second = get(older).page
    assert [r[0] for r in second.rows("timeline")[1:]] == [f"#{t1}"]
    assert "Older →" not in second.text
    assert second.link("← Newest") == "/history/?table=article"
    with pytest.raises(ConfigurationError, match="page_size=0"):
        make_client(page_size=0)


def test_transaction_page_shows_each_change(get, history):
    t1, t2, t3, _t4 = history.txs
    reply = get(f"/history/tx/{t2}")
    assert reply.status == 200
    page = reply.page
    assert f"Transaction #{t2}" in page.text
    assert f"User\n{BOB}" in page.text and "Remote address\n198.51.100.7" in page.text
    assert "update article 1" in page.text
    rows = {r[0]: r[1:] for r in page.rows("fields")[1:]}
    assert rows["title"] == ["Hello", "Hello, world"]
    assert rows["status"] == ["draft", "draft"]
    assert page.link("article 1") == f"/history/entity/article?key=1&to={t2}"
    # The changed fields are marked for the eye (and for the stylesheet).
    assert page.html.count('class="changed"') == 2

    first = get(f"/history/tx/{t1}").page
    assert [line for line in first.text.splitlines() if line.startswith("insert")] == [
        "insert article 1", "insert article 2", "insert tag 1",
    ]
    deleted = get(f"/history/tx/{t3}").page
    assert "delete article 2" in deleted.text


def test_missing_transactions_and_pages_are_404(get, history):
    reply = get("/history/tx/999999")
    assert reply.status == 404
    assert "There is no transaction 999999" in reply.page.text
    assert get("/history/tx/abc").status == 400
    assert get("/history/nowhere").status == 404
    assert get("/history/entity/nope?key=1").status == 404
    missing = get("/history/entity/article?key=77")
    assert missing.status == 404 and "has no version" in missing.page.text
    assert get("/history/entity/article").status == 400
    bad_key = get("/history/entity/article?key=abc")
    assert bad_key.status == 400
    assert "'abc' is not a valid value for article.id" in bad_key.page.text


def test_entity_page_history_and_default_diff(get, history):
    t1, t2, _t3, t4 = history.txs
    reply = get("/history/entity/article?key=1")
    assert reply.status == 200
    page = reply.page
    assert [[r[0], r[2], r[3], r[4]] for r in page.rows("history")[1:]] == [
        [f"#{t4}", "alice", "update", "status"],
        [f"#{t2}", BOB, "update", "title body"],
        [f"#{t1}", "alice", "insert", "title body status"],
    ]
    assert all(r[1].endswith(" UTC") for r in page.rows("history")[1:])
    # By default: the last change, status draft -> published.
    diff = {r[0]: r[1:] for r in page.rows("sidebyside")[1:]}
    assert page.rows("sidebyside")[0] == ["Field", f"Transaction #{t2}", f"Transaction #{t4}"]
    assert diff["status changed"] == ["draft", "published"]
    assert diff["title"] == ["Hello, world", "Hello, world"]


def test_entity_diff_of_two_versions_with_a_line_diff(get, history):
    t1, _t2, t3, t4 = history.txs
    page = get(f"/history/entity/article?key=1&from={t1}&to={t4}").page
    diff = {r[0]: r[1:] for r in page.rows("sidebyside")[1:] if r and r[0]}
    assert diff["title changed"] == ["Hello", "Hello, world"]
    assert diff["status changed"] == ["draft", "published"]
    # The body is long text: diffed line by line, side by side, line numbers kept.
    lines = page.rows("lines")
    assert lines[0] == ["1", "Chronicle keeps the history of your SQLAlchemy models.",
                        "1", "Chronicle keeps the history of your SQLAlchemy models."]
    assert lines[1] == ["2", "Every change is copied into a version table.",
                        "2", "Every change is copied into its own version table."]
    assert ["", "", "4", "A diff shows <what> changed & where."] in lines
    # Inside a changed line, the words that changed are marked.
    assert "<mark>a</mark>" in page.html and "<mark>its own</mark>" in page.html
    assert "&lt;what&gt; changed &amp; where" in page.html
    # Compare form keeps the chosen versions; both selects list every version.
    assert f'<option value="{t1}" selected>' in page.html
    assert f'<option value="{t4}" selected>' in page.html
    bad = get(f"/history/entity/article?key=1&from={t3}")
    assert bad.status == 400 and f"no version in transaction {t3}" in bad.page.text


def test_deleted_entity_diff(get, history):
    t1, _t2, t3, _t4 = history.txs
    page = get(f"/history/entity/article?key=2&to={t3}").page
    assert [r[3] for r in page.rows("history")[1:]] == ["delete", "insert"]
    diff = {r[0]: r[1:] for r in page.rows("sidebyside")[1:]}
    assert diff["title changed"] == [SCRIPT, "deleted"]
    assert page.rows("history")[1][4] == "(row deleted)"
    assert page.rows("sidebyside")[0][1:] == [f"Transaction #{t1}", f"Transaction #{t3} deleted"]


def test_hostile_values_are_escaped_everywhere(get, history):
    t1, t2, t3, _t4 = history.txs
    urls = [
        "/history/", f"/history/tx/{t1}", f"/history/tx/{t2}", f"/history/tx/{t3}",
        "/history/entity/article?key=2", f"/history/entity/article?key=2&from={t1}&to={t1}",
        f"/history/?user={BOB}",
        "/history/?table=%3Cscript%3Ealert(1)%3C/script%3E",
        "/history/?user=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        "/history/?since=%3Cscript%3E",
        "/history/entity/%3Cscript%3E?key=1",
        "/history/entity/article?key=%3Cb%3E",
    ]
    for url in urls:
        reply = get(url)
        html = reply.body.decode()
        # No markup from the data reaches the page: no script tag, no injected attribute.
        assert "<script" not in html, url
        assert "<img" not in html and "<b>" not in html, url
        assert "onerror=alert(1)>" not in html or "onerror=alert(1)&gt;" in html, url
        assert reply.headers["content-security-policy"].startswith("default-src 'none'")
        assert reply.headers["x-content-type-options"] == "nosniff"
    timeline = get("/history/").page
    assert BOB in timeline.text and ATTRIBUTE[:40] in timeline.text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in get(
        f"/history/tx/{t1}").body.decode()
    echoed = get("/history/?user=%22%3E%3Cscript%3Ealert(1)%3C/script%3E").page
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in echoed.html


def test_only_get_and_head_are_served(get, history):
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for url in ("/history/", f"/history/tx/{history.txs[0]}", "/history/nowhere"):
            reply = get(url, method=method)
            assert reply.status == 405, (method, url)
            assert reply.headers["allow"] == "GET, HEAD"
            assert "This history browser is read-only" in reply.page.text
    # Nothing was written: the timeline still shows the same four transactions.
    assert len(get("/history/").page.rows("timeline")) == 1 + 4


def test_head_and_stylesheet(get, history):
    head = get("/history/", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-type"] == "text/html; charset=utf-8"
    css = get("/history/static/style.css")
    assert css.status == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    assert b"table.sidebyside" in css.body
    assert '<link rel="stylesheet" href="/history/static/style.css">' in get(
        "/history/").body.decode()


def test_importing_the_package_does_not_import_jinja2():
    code = (
        "import sys, sqlalchemy_chronicle, sqlalchemy_chronicle.web, "
        "sqlalchemy_chronicle.integrations.cli; "
        "print('jinja2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_flask_blueprint_behind_the_apps_own_login(db, history):
    from sqlalchemy_chronicle.web.blueprint import history_blueprint

    app = Flask(__name__)
    blueprint = history_blueprint(db.engine, title="Audit")

    @blueprint.before_request
    def staff_only() -> Any:
        if flask_request.headers.get("X-Staff") != "yes":
            return "login required", 401
        return None

    app.register_blueprint(blueprint, url_prefix="/admin/history")
    client = app.test_client()
    assert client.get("/admin/history/").status_code == 401
    reply = client.get("/admin/history/", headers={"X-Staff": "yes"})
    assert reply.status_code == 200
    page = Page(reply.get_data(as_text=True))
    t1 = history.txs[0]
    assert page.link(f"#{t1}") == f"/admin/history/tx/{t1}"
    assert "<title>Timeline · Audit</title>" in page.html
    tx = client.get(f"/admin/history/tx/{t1}", headers={"X-Staff": "yes"})
    assert tx.status_code == 200 and f"Transaction #{t1}" in tx.get_data(as_text=True)
    entity = Page(client.get("/admin/history/entity/article?key=1",
                             headers={"X-Staff": "yes"}).get_data(as_text=True))
    assert entity.link("Timeline") == "/admin/history/"
    post = client.post("/admin/history/", headers={"X-Staff": "yes"})
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"


def test_public_names_import_and_are_documented():
    import inspect

    import sqlalchemy_chronicle.web as web
    from sqlalchemy_chronicle.web import blueprint

    assert (web.__doc__ or "").strip()
    for module in (web, blueprint):
        for name in module.__all__:
            obj = getattr(module, name)
            assert (inspect.getdoc(obj) or "").strip(), f"{name} has no docstring"


def test_without_jinja2_the_app_says_what_to_install():
    code = (
        "import sys; sys.modules['jinja2'] = None\n"  # as if it were not installed
        "import sqlalchemy as sa\n"
        "from sqlalchemy_chronicle.web import history_app\n"
        "try:\n"
        "    history_app(sa.create_engine('sqlite://'))\n"
        "except Exception as error:\n"
        "    print(type(error).__name__, error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == (
        "ConfigurationError The web history browser renders its pages with Jinja2, which "
        "is not installed: pip install 'sqlalchemy-chronicle[web]'."
    )


def test_a_huge_transaction_page_lists_the_first_changes(make_client, history, db,
                                                         monkeypatch):
    from sqlalchemy_chronicle.web import _pages

    monkeypatch.setattr(_pages, "MAX_CHANGES_SHOWN", 2)
    page = make_client()(f"/history/tx/{history.txs[0]}").page
    assert [line for line in page.text.splitlines() if line.startswith("insert")] == [
        "insert article 1", "insert article 2",
    ]
    assert "… and 1 more change, not shown." in page.text
