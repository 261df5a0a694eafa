"""The pages of a database that the real SQLAlchemy-Continuum 2.0 wrote (SQLite).

``tests/continuum_app.py`` runs in a subprocess with Continuum, which creates the tables
and writes four transactions (with its plugins: ``*_mod`` columns, activity, meta, an
association table). The browser reads them by reflection; an association row has a
composite key, given as two ``key`` parameters.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import sqlalchemy as sa
from werkzeug.test import Client

from app_process import run_continuum_app
from sqlalchemy_chronicle.web import history_wsgi_app

from .html import Page


def test_pages_of_a_database_continuum_wrote(tmp_path: Path):
    if importlib.util.find_spec("sqlalchemy_continuum") is None:
        pytest.skip("SQLAlchemy-Continuum 2.0.0 is not installed (it needs Python 3.11+)")
    url = f"sqlite:///{tmp_path}/continuum.db"
    run_continuum_app("write", url)
    engine = sa.create_engine(url)
    client = Client(history_wsgi_app(engine))
    try:
        timeline = Page(client.get("/").get_data(as_text=True))
        rows = timeline.rows("timeline")[1:]
        assert [(r[2], r[4]) for r in rows] == [
            ("—", "article article_tag category tag"),
            ("—", "article"),
            ("alice", "article article_tag"),
            ("alice", "article article_tag category tag"),
        ]
        t2 = rows[2][0].lstrip("#")
        tx = Page(client.get(f"/tx/{t2}").get_data(as_text=True))
        headings = [line for line in tx.text.splitlines()
                    if line.split(" ")[0] in ("insert", "update", "delete")]
        assert headings[0] == "update article 1"
        association = next(h for h in headings if h.startswith("delete article_tag"))
        assert association == "delete article_tag article_id=1, tag_id=2"
        href = tx.link(association.removeprefix("delete "))
        assert href.startswith("/entity/article_tag?key=") and href.count("key=") == 2
        entity = client.get(href)
        assert entity.status_code == 200
        page = Page(entity.get_data(as_text=True))
        assert "article_tag article_id=1, tag_id=2" in page.text.splitlines()
        assert [r[3] for r in page.rows("history")[1:]] == ["delete", "insert"]
    finally:
        engine.dispose()
