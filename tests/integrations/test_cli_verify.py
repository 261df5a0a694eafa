"""``chronicle verify``: the installed command, run as a user runs it, on each database."""

from __future__ import annotations

import importlib
import json
import os
import pty
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import orm

pytestmark = pytest.mark.once

CHRONICLE = str(Path(sys.executable).parent / "chronicle")

MODELS = '''
import sqlalchemy as sa
from sqlalchemy import orm

from sqlalchemy_chronicle import VersioningManager
from sqlalchemy_chronicle.plugins import TamperEvidencePlugin

Session = orm.sessionmaker()
manager = VersioningManager(user_cls=None, plugins=[TamperEvidencePlugin()] if {ledger} else [])
manager.install(session=Session)


class Base(orm.DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    __versioned__ = {{}}
    id: orm.Mapped[int] = orm.mapped_column(primary_key=True, autoincrement=False)
    text: orm.Mapped[str] = orm.mapped_column(sa.Unicode(100))
'''


@pytest.fixture
def app(tmp_path: Path, engine: sa.Engine, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The application's models as a module on disk (``--models`` imports it), with a
    small history written through it."""
    ledger = bool(getattr(request, "param", False))
    name = f"verify_app_{os.getpid()}_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text(MODELS.format(ledger=ledger))
    sys.path.insert(0, str(tmp_path))
    module = importlib.import_module(name)
    orm.configure_mappers()
    module.Base.metadata.drop_all(engine)
    module.Base.metadata.create_all(engine)
    with module.Session(bind=engine) as session:
        session.add_all([module.Note(id=1, text="one"), module.Note(id=2, text="two")])
        session.commit()
        session.get(module.Note, 1).text = "one, edited"
        session.commit()
    module.url = engine.url.render_as_string(hide_password=False)
    module.models = f"{name}:Base"
    module.env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    yield module
    module.Base.metadata.drop_all(engine)
    module.manager.uninstall()
    module.Base.registry.dispose()
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


def run(app: Any, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run(
        [CHRONICLE, "verify", app.url, *args], text=True, env=app.env, timeout=120, **streams
    )


def test_a_sound_history_exits_0(app):
    result = run(app, "--models", app.models)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Checked 1 version tables (3 version rows) in ")
    assert lines[-1] == "OK: no violation found."
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_violations_exit_1_with_their_place_and_fix_repairs_them(app, engine):
    note = app.Base.metadata.tables["note"]
    version = app.Base.metadata.tables["note_version"]
    with engine.begin() as conn:
        conn.execute(note.insert().values(id=3, text="typed in by hand"))
        conn.execute(
            version.update().where(version.c.id == 1, version.c.transaction_id == 1)
            .values(end_transaction_id=None)
        )
    result = run(app, "--table", "note")  # reflected
    assert result.returncode == 1, result.stderr
    assert "2 violations:" in result.stdout
    assert (
        "  multiple_open_versions  table=note_version  key=id=1  transaction=1"
        in result.stdout.splitlines()
    )
    assert "  missing_version  table=note_version  key=id=3  transaction=-" in result.stdout

    data = json.loads(run(app, "--json", "--models", app.models).stdout)
    assert data["ok"] is False
    found = [(v["check"], v["table"], v["key"], v["transaction_id"]) for v in data["violations"]]
    assert found == [
        ("multiple_open_versions", "note_version", {"id": 1}, 1),
        ("missing_version", "note_version", {"id": 3}, None),
    ]

    fixed = run(app, "--fix", "--models", app.models)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "Repaired 2, in one transaction:" in fixed.stdout
    lines = fixed.stdout.splitlines()
    assert "  note_version  key=id=1: closed the version of transaction 1 at transaction 2" in lines
    wrote = "wrote an INSERT version from the live row in transaction 3, closing the previous one"
    assert f"  note_version  key=id=3: {wrote}" in lines
    assert fixed.stdout.splitlines()[-1] == "After the repair: OK, no violation found."
    again = run(app, "--models", app.models)
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == "OK: no violation found."


@pytest.mark.parametrize("app", [True], indirect=True)
def test_an_altered_version_is_named_by_the_ledger(app, engine):
    version = app.Base.metadata.tables["note_version"]
    with engine.begin() as conn:
        conn.execute(
            version.update().where(version.c.id == 2, version.c.transaction_id == 1)
            .values(text="two, forged")
        )
    result = run(app)  # reflected: finds the ledger table itself
    assert result.returncode == 1, result.stderr
    assert "Ledger: 2 entries, head " in result.stdout
    assert "  ledger_digest  table=transaction_ledger  key=-  transaction=1" in result.stdout
    assert "First altered transaction: 1" in result.stdout
    # The forged value is the last version of note 2 and differs from the live row.
    assert "  stale_version  table=note_version  key=id=2  transaction=1" in result.stdout


def test_bad_arguments_exit_2_with_a_message(app):
    result = run(app, "--models", "no_such_module:Base")
    assert result.returncode == 2
    assert "chronicle verify: --models: cannot import 'no_such_module'" in result.stderr
    result = run(app, "--table", "nothing_here")
    assert result.returncode == 2
    assert "no versioned table named nothing_here" in result.stderr


@pytest.mark.dbs("sqlite")
def test_a_progress_bar_on_a_terminal(app):
    leader, follower = pty.openpty()
    try:
        result = run(app, "--chunk-rows", "1", stderr=follower)
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert result.returncode == 0
    text = shown.decode()
    assert "note_version" in text and "[" + "#" * 30 + "] 2/2" in text
