"""``chronicle serve``: its errors, and the real server answering over HTTP."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .history import write_history
from .html import Page
from .test_browser import ROOT, _chronicle


def serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_chronicle(), "serve", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_says_it_binds_to_localhost():
    out = serve("--help").stdout
    assert "--host HOST" in out and "default: 127.0.0.1" in out
    assert "--models MODULE:BASE" in out


def test_unreachable_database_is_a_clear_error():
    result = serve("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == 1
    assert result.stderr.startswith("chronicle serve: ")
    assert "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr


def test_unusable_url_and_models(tmp_path: Path):
    bad_url = serve("nonsense://x")
    assert bad_url.returncode == 2
    assert "cannot use the database URL 'nonsense://x'" in bad_url.stderr
    bad_models = serve(f"sqlite:///{tmp_path}/x.db", "--models", "no_such_module:Base")
    assert bad_models.returncode == 1
    assert "--models: cannot import 'no_such_module'" in bad_models.stderr


@pytest.mark.dbs("sqlite")
@pytest.mark.versioning(user_cls="User")
def test_serves_read_only_pages_over_http(base: Any, db: Any):
    history = write_history(base, db)
    proc = subprocess.Popen(
        [_chronicle(), "serve", str(db.engine.url), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in first, proc.stderr.read()  # type: ignore[union-attr]
        url = first.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + f"tx/{history.txs[0]}") as reply:
            assert reply.status == 200
            assert f"Transaction #{history.txs[0]}" in reply.read().decode()
        head = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(head) as reply:
            assert reply.status == 200 and reply.read() == b""
        for method in ("POST", "DELETE"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(urllib.request.Request(url, data=b"x", method=method))
            with error.value:
                assert error.value.code == 405
                assert error.value.headers["Allow"] == "GET, HEAD"
        # A request addressed to another name (a DNS-rebinding page) is refused.
        port = url.rstrip("/").rsplit(":", 1)[1]
        rebound = urllib.request.Request(url, headers={"Host": f"evil.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(rebound)
        with error.value:
            assert error.value.code == 421
            assert b"not to 'evil.example:" in error.value.read()
        local = urllib.request.Request(url, headers={"Host": f"localhost:{port}"})
        with urllib.request.urlopen(local) as reply:
            assert reply.status == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_the_readme_commands_show_the_demo_diff(tmp_path: Path):
    """The two commands of the README's browser section, run as printed (with a free
    port), serve the entity diff its screenshot shows."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## See the history in a browser", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].split() for line in block.splitlines() if line.strip()]
    assert commands == [
        ["chronicle", "demo", "--db", "sqlite:///demo.db"],
        ["chronicle", "serve", "sqlite:///demo.db"],
    ]
    image = section.split("](", 1)[1].split(")", 1)[0]
    assert image == "docs/web-diff.png" and (ROOT / image).stat().st_size < 150_000

    demo = subprocess.run([_chronicle(), *commands[0][1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    proc = subprocess.Popen([_chronicle(), *commands[1][1:], "--port", "0"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in first, proc.stderr.read()  # type: ignore[union-attr]
        url = first.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "entity/article?key=1&from=1&to=3") as reply:
            page = Page(reply.read().decode())
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    diff = {row[0]: row[1:] for row in page.rows("sidebyside")[1:]}
    assert diff == {
        "id": ["1", "1"],
        "title changed": ["Hello", "Hello, world"],
        "body changed": ["First draft.", "Second draft."],
        "status changed": ["draft", "published"],
    }


MODELS = '''
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy_chronicle import make_versioned

make_versioned(user_cls=None)


class Base(orm.DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "article"
    __versioned__ = {}
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    headline: orm.Mapped[str] = orm.mapped_column("title", sa.String(200))
    body: orm.Mapped[str] = orm.mapped_column(sa.Text)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20))
'''


def test_serve_through_the_applications_models(tmp_path: Path):
    """``--models module:Base`` reads through the models: their attribute names show."""
    (tmp_path / "blog_models.py").write_text(MODELS, encoding="utf-8")
    demo = subprocess.run([_chronicle(), "demo", "--db", "sqlite:///demo.db"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    proc = subprocess.Popen(
        [_chronicle(), "serve", "sqlite:///demo.db", "--port", "0",
         "--models", "blog_models:Base"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert "http://127.0.0.1:" in first, proc.stderr.read()  # type: ignore[union-attr]
        url = first.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "entity/article?key=1&from=1&to=2") as reply:
            page = Page(reply.read().decode())
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    diff = {row[0]: row[1:] for row in page.rows("sidebyside")[1:]}
    assert diff["headline changed"] == ["Hello", "Hello, world"]
    assert "title changed" not in diff
