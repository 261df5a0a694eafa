"""``chronicle log``, ``show`` and ``diff``: the installed command, run as a user runs it.

Histories (each written in a subprocess, then read by ``.venv/bin/chronicle`` in
another):

* ``orm``: ``history_app.py`` (see its docstring) with chronicle's ORM capture;
* ``native``: the same with PostgreSQL triggers (``native_versioning=True``);
* ``continuum``: ``tests/continuum_app.py`` with the real SQLAlchemy-Continuum 2.0.

Each is written once per database and reused by the tests that need it (a marker table
says which one the database holds). ``--json`` output is parsed back; text output is
checked line by line.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import pty
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app_process import run_app, run_continuum_app, wipe
from conftest import SERVER_URLS

pytestmark = pytest.mark.once

HERE = Path(__file__).resolve().parent
APP = HERE / "history_app.py"
CHRONICLE = Path(sys.executable).with_name("chronicle")
MARKER = "cli_history_kind"
#: POSIX TZ string for UTC-10 (no zoneinfo needed): times print as HST.
HST = "HST10"


# -- running the command ----------------------------------------------------------------


def chronicle(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(CHRONICLE), *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})},
    )
    if ok:
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
    return result


def lines_of(*args: str, **kw: Any) -> list[str]:
    return chronicle(*args, **kw).stdout.splitlines()


def json_of(*args: str, **kw: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in chronicle(*args, "--json", **kw).stdout.splitlines()]


# -- the histories ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(db_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of this module's database (a SQLite file, or the server's test database)."""
    if db_name == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('cli')}/history.db"
        return
    url = SERVER_URLS[db_name]
    yield url
    wipe(url)


def holding(url: str, kind: str) -> str:
    """The database at ``url`` holding history ``kind``: written unless it already is."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            if (
                sa.inspect(conn).has_table(MARKER)
                and conn.execute(sa.text(f"SELECT kind FROM {MARKER}")).scalar() == kind
            ):
                return url
    finally:
        engine.dispose()
    wipe(url)
    _IDS.pop(url, None)
    if kind == "continuum":
        run_continuum_app("write", url)
    else:
        run_app(APP, "write", url, env={"HISTORY_APP_NATIVE": "1" if kind == "native" else "0"})
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {MARKER} (kind VARCHAR(20))"))
        conn.execute(sa.text(f"INSERT INTO {MARKER} VALUES (:kind)"), {"kind": kind})
    engine.dispose()
    return url


@pytest.fixture
def orm_history(database: str) -> str:
    return holding(database, "orm")


#: The transaction ids of the history each database holds, by URL (see tx_ids).
_IDS: dict[str, list[int]] = {}


def tx_ids(url: str) -> list[int]:
    """The transaction ids, oldest first, as ``chronicle log --json`` lists them."""
    if url not in _IDS:
        _IDS[url] = [t["id"] for t in reversed(json_of("log", url))]
    return _IDS[url]


# -- log --------------------------------------------------------------------------------


def test_log_json(orm_history: str) -> None:
    log = json_of("log", orm_history)
    assert [(t["user"], t["user_id"], t["remote_addr"], t["tables"], t["change_count"])
            for t in log] == [
        (None, None, None, ["article", "tag"], 2),
        ("alice", 1, None, ["article"], 1),
        ("bob", 2, None, ["article"], 1),
        ("alice", 1, "10.0.0.1", ["article", "article_tag", "tag"], 4),
    ]
    ids = [t["id"] for t in log]
    assert ids == sorted(ids, reverse=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    for t in log:
        issued = datetime.datetime.fromisoformat(t["issued_at"])
        assert issued.utcoffset() == datetime.timedelta(0)
        assert abs(now - issued) < datetime.timedelta(minutes=30)


def test_log_text_in_local_time(orm_history: str) -> None:
    log = json_of("log", orm_history)
    lines = lines_of("log", orm_history, env={"TZ": HST})
    assert re.split(r"\s{2,}", lines[0]) == ["TX", "TIME", "USER", "FROM", "CHANGES", "TABLES"]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [
        (str(log[0]["id"]), "-", "-", "2", "article, tag"),
        (str(log[1]["id"]), "alice", "-", "1", "article"),
        (str(log[2]["id"]), "bob", "-", "1", "article"),
        (str(log[3]["id"]), "alice", "10.0.0.1", "4", "article, article_tag, tag"),
    ]
    # Local time (UTC-10 here), with the zone, to the second.
    for row, t in zip(rows, log, strict=True):
        utc = datetime.datetime.fromisoformat(t["issued_at"])
        local = (utc - datetime.timedelta(hours=10)).strftime("%Y-%m-%d %H:%M:%S")
        assert row[1] == f"{local} HST"
    # Aligned: TIME, USER, FROM and TABLES start at the same offset on every line
    # (TX and CHANGES are numbers, aligned right).
    starts = [m.start() for m in re.finditer(r"(?<=  )\S", lines[0])]
    assert len(starts) == 5
    for line in lines[1:]:
        for start in [*starts[:3], starts[4]]:
            assert line[start - 1] == " " and line[start] != " ", (line, start)
    assert "\x1b[" not in "".join(lines)  # no colour when not on a terminal
    assert lines_of("log", orm_history, "--utc")[1].split("  ")[1].endswith(" UTC")


def test_log_pages_by_transaction_id(orm_history: str) -> None:
    t1, t2, t3, t4 = tx_ids(orm_history)
    first = lines_of("log", orm_history, "--limit", "3")
    assert len(first) == 1 + 3 + 2
    assert first[-1] == f"Older transactions: add --before {t2}"
    assert [t["id"] for t in json_of("log", orm_history, "--limit", "3")] == [t4, t3, t2]
    last = json_of("log", orm_history, "--limit", "3", "--before", str(t2))
    assert [t["id"] for t in last] == [t1]
    assert not any("Older" in line
                   for line in lines_of("log", orm_history, "--before", str(t2)))
    assert lines_of("log", orm_history, "--before", str(t1)) == ["No transactions."]


def test_log_filters(orm_history: str) -> None:
    t1, t2, t3, t4 = tx_ids(orm_history)

    def ids(*args: str) -> list[int]:
        return [t["id"] for t in json_of("log", orm_history, *args)]

    assert ids("--table", "tag") == [t4, t1]
    assert ids("--table", "article", "--id", "2") == [t3, t1]
    assert ids("--table", "article_tag", "--id", "1,1") == [t1]
    assert ids("--user", "alice") == [t3, t1]
    assert ids("--user", "2") == [t2]
    assert ids("--user", "bob", "--table", "tag") == []
    assert ids("--since", "1h") == [t4, t3, t2, t1]
    assert ids("--until", "1h") == []
    tomorrow = (datetime.date.today() + datetime.timedelta(days=1)).isoformat()
    assert ids("--since", tomorrow) == []
    assert ids("--until", datetime.date.today().isoformat()) == [t4, t3, t2, t1]
    log = json_of("log", orm_history)
    stamp = next(t["issued_at"] for t in log if t["id"] == t2)
    # (MariaDB stores whole seconds: t1 may share t2's second.)
    assert ids("--since", stamp) == [t["id"] for t in log if t["issued_at"] >= stamp]
    assert ids("--until", stamp) == [t["id"] for t in log if t["issued_at"] < stamp]


# -- show -------------------------------------------------------------------------------


def test_show_json(orm_history: str) -> None:
    t1, t2, _t3, _t4 = tx_ids(orm_history)
    [first] = json_of("show", orm_history, str(t1))
    assert (first["id"], first["user"], first["remote_addr"]) == (t1, "alice", "10.0.0.1")
    assert [(c["table"], c["key"], c["operation"], c["changed"])
            for c in first["changes"]] == [
        ("article", {"id": 1}, "insert", ["title", "body_text"]),
        ("article", {"id": 2}, "insert", ["title", "body_text"]),
        ("article_tag", {"article_id": 1, "tag_id": 1}, "insert", []),
        ("tag", {"id": 1}, "insert", ["name"]),
    ]
    assert first["changes"][1]["values"]["body_text"].startswith("Line one of a long body.\n")
    [second] = json_of("show", orm_history, str(t2))
    [change] = second["changes"]
    assert change["previous"] == {"id": 1, "title": "Hello", "body_text": "First draft."}
    assert change["values"] == {"id": 1, "title": "Hello, world", "body_text": "First draft."}
    assert change["changed"] == ["title"]


def test_show_text(orm_history: str) -> None:
    t1, t2, t3, _t4 = tx_ids(orm_history)
    lines = lines_of("show", orm_history, str(t2), "--utc")
    assert lines[0] == f"Transaction {t2}"
    assert re.fullmatch(r"  Date:    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines[1])
    assert lines[2:] == [
        "  User:    bob",
        "  From:    -",
        "  Changes: 1 (article)",
        "",
        "article id=1  UPDATE",
        "  FIELD  BEFORE   AFTER",
        "  title  'Hello'  'Hello, world'",
    ]
    first = lines_of("show", orm_history, str(t1))
    cut = next(line for line in first if line.startswith("  body_text") and "Line one" in line)
    # Long values are cut (newlines shown as \n) ...
    assert cut.endswith("…") and "\\n" in cut and len(cut.split("  ")[-1]) == 60
    assert "article_tag article_id=1 tag_id=1  INSERT" in first
    # ... unless --full.
    full = lines_of("show", orm_history, str(t1), "--full")
    assert any(line.endswith("word '") for line in full)
    deleted = lines_of("show", orm_history, str(t3))
    assert deleted[-2:] == ["article id=2  DELETE", "  (row deleted)"]


# -- diff -------------------------------------------------------------------------------


def test_diff(orm_history: str) -> None:
    t1, t2, t3, t4 = tx_ids(orm_history)
    assert lines_of("diff", orm_history, "article", "1") == [
        f"article id=1: transaction {t2} -> transaction {t4}",
        "  FIELD      BEFORE          AFTER",
        "  body_text  'First draft.'  'Second draft.'",
    ]
    assert lines_of("diff", orm_history, "article", "1", "--from", str(t1), "--all") == [
        f"article id=1: transaction {t1} -> transaction {t4}",
        "     FIELD      BEFORE          AFTER",
        "     id         1               1",
        "  *  title      'Hello'         'Hello, world'",
        "  *  body_text  'First draft.'  'Second draft.'",
    ]
    [gone] = json_of("diff", orm_history, "article", "2")
    assert (gone["from_tx"], gone["to_tx"]) == (t1, t3)
    assert (gone["from_operation"], gone["to_operation"]) == ("insert", "delete")
    assert [(f["name"], f["old"], f["new"], f["changed"]) for f in gone["fields"]][:2] == [
        ("id", 2, None, True), ("title", "Scratch", None, True),
    ]
    text = lines_of("diff", orm_history, "article", "2")
    assert text[0] == f"article id=2: transaction {t1} -> transaction {t3} (deleted)"
    assert text[2].split() == ["id", "2", "-"]
    same = lines_of("diff", orm_history, "tag", "1", "--from", str(t2), "--to", str(t3))
    assert same[-1] == "  No differences."


# -- the application's models -----------------------------------------------------------


def test_models_give_attribute_keys(orm_history: str) -> None:
    _t1, _t2, _t3, t4 = tx_ids(orm_history)
    models = ("--models", "history_app:Base")
    [show] = json_of("show", orm_history, str(t4), *models, cwd=HERE)
    assert [(c["table"], c["changed"]) for c in show["changes"]] == [
        ("article", ["body"]), ("tag", ["name"]),
    ]
    assert show["user"] is None
    assert [t["user"] for t in json_of("log", orm_history, *models, cwd=HERE)] == [
        None, "alice", "bob", "alice",
    ]
    assert lines_of("diff", orm_history, "article", "1", *models, cwd=HERE)[-1] == (
        "  body   'First draft.'  'Second draft.'"
    )
    bad = chronicle("log", orm_history, "--models", "no_such_module:Base", ok=False)
    assert bad.returncode == 1
    assert "--models: cannot import 'no_such_module'" in bad.stderr


# -- errors -----------------------------------------------------------------------------


def test_errors(orm_history: str) -> None:
    safe_url = sa.make_url(orm_history).render_as_string(hide_password=True)
    for args, message in [
        (("log", orm_history, "--table", "users"),
         f"chronicle log: error: The table 'users' is not versioned in {safe_url}"),
        (("diff", orm_history, "nope", "1"), "The table 'nope' is not versioned"),
        (("show", orm_history, "987654"),
         f"chronicle show: error: There is no transaction 987654 in {safe_url}."),
        (("diff", orm_history, "article", "42"), "article id=42 has no version"),
        (("diff", orm_history, "article", "x"), "'x' is not a valid value for article.id"),
        (("log", orm_history, "--id", "1"), "--id needs --table"),
    ]:
        result = chronicle(*args, ok=False)
        assert result.returncode == 1, args
        assert result.stdout == ""
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert "Versioned tables: article, article_tag, tag." in chronicle(
        "log", orm_history, "--table", "users", ok=False).stderr


@pytest.mark.dbs("sqlite")
def test_unreachable_database_and_bad_arguments(tmp_path: Path) -> None:
    for url, message in [
        (f"sqlite:///{tmp_path}/no/such/dir.db", "Cannot connect to the database sqlite:///"),
        ("postgresql+psycopg://me:secret@127.0.0.1:1/db",
         "Cannot connect to the database postgresql+psycopg://me:***@127.0.0.1:1/db"),
        ("nonsense", "'nonsense' is not a usable database URL"),
    ]:
        result = chronicle("log", url, ok=False)
        assert (result.returncode, result.stdout) == (1, "")
        assert message in result.stderr
        assert "secret" not in result.stderr and "Traceback" not in result.stderr
    empty = f"sqlite:///{tmp_path}/empty.db"
    sa.create_engine(empty).connect().close()
    result = chronicle("log", empty, ok=False)
    assert "has no transaction table 'transaction'" in result.stderr
    result = chronicle("log", empty, "--since", "yesterday", ok=False)
    assert result.returncode == 2 and "'yesterday' is not a time" in result.stderr
    result = chronicle("log", empty, "--limit", "0", ok=False)
    assert result.returncode == 2 and "must be at least 1" in result.stderr


# -- a terminal: colours and the pager --------------------------------------------------


def run_on_terminal(*args: str, env: dict[str, str]) -> str:
    """Run chronicle with its stdout on a pseudo-terminal of 10 lines; what it showed."""
    leader, follower = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 10, 120, 0, 0))
    proc = subprocess.Popen(
        [str(CHRONICLE), *args], stdout=follower, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "error", "TERM": "xterm", **env},
    )
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    assert proc.stderr is not None
    assert proc.stderr.read() == b""
    proc.stderr.close()
    return b"".join(chunks).decode().replace("\r\n", "\n")


@pytest.mark.dbs("sqlite")
def test_terminal_colours_and_pager(orm_history: str) -> None:
    t1, *_ = tx_ids(orm_history)
    env = {"PAGER": "sed s/^/PAGED:/", "NO_COLOR": ""}
    short = run_on_terminal("log", orm_history, env=env)
    assert "\x1b[1mTX\x1b[0m" in short  # a bold header: colour on a terminal
    assert "PAGED:" not in short  # fits the screen: no pager
    long = run_on_terminal("show", orm_history, str(t1), env=env)
    assert long.startswith("PAGED:\x1b[1mTransaction")  # longer than 10 lines: paged
    assert "\x1b[32mINSERT\x1b[0m" in long
    plain = run_on_terminal("show", orm_history, str(t1), "--no-pager", "--color", "never",
                            env=env)
    assert "PAGED:" not in plain and "\x1b[" not in plain
    assert plain.startswith(f"Transaction {t1}\n")
    no_color = run_on_terminal("log", orm_history, env={"NO_COLOR": "1"})
    assert "\x1b[" not in no_color


# -- other writers: PostgreSQL triggers, SQLAlchemy-Continuum ---------------------------


def normalized_show(url: str) -> list[dict[str, Any]]:
    """``show --json`` of every transaction, without ids and times."""
    shown = []
    for tx in tx_ids(url):
        [detail] = json_of("show", url, str(tx))
        del detail["id"], detail["issued_at"]
        for change in detail["changes"]:
            del change["transaction_id"]
        shown.append(detail)
    return shown


@pytest.mark.dbs("postgresql")
def test_native_triggers_show_the_same_history(database: str) -> None:
    orm_shown = normalized_show(holding(database, "orm"))
    orm_diff = json_of("diff", database, "article", "1")
    native = holding(database, "native")
    engine = sa.create_engine(native, poolclass=sa.NullPool)
    with engine.connect() as conn:  # the triggers are there, and wrote the rows
        triggers = conn.exec_driver_sql(
            "SELECT count(*) FROM information_schema.triggers "
            "WHERE event_object_table = 'article'"
        ).scalar()
    engine.dispose()
    assert triggers
    assert normalized_show(native) == orm_shown
    [native_diff] = json_of("diff", native, "article", "1")
    native_diff.pop("from_tx"), native_diff.pop("to_tx")
    orm_diff[0].pop("from_tx"), orm_diff[0].pop("to_tx")
    assert native_diff == orm_diff[0]
    assert [t["user"] for t in json_of("log", native, "--table", "article")] == [
        None, "alice", "bob", "alice",
    ]


@pytest.fixture
def continuum_history(database: str) -> str:
    if importlib.util.find_spec("sqlalchemy_continuum") is None:
        pytest.skip("SQLAlchemy-Continuum 2.0.0 is not installed (it needs Python 3.11+)")
    return holding(database, "continuum")


def test_continuum_history(continuum_history: str) -> None:
    url = continuum_history
    log = json_of("log", url)
    assert [(t["user"], t["tables"]) for t in log] == [
        (None, ["article", "article_tag", "category", "tag"]),
        (None, ["article"]),
        ("alice", ["article", "article_tag"]),
        ("alice", ["article", "article_tag", "category", "tag"]),
    ]
    t1, t2, t3, t4 = (t["id"] for t in reversed(log))
    [second] = json_of("show", url, str(t2))
    assert [(c["table"], c["operation"], c["changed"]) for c in second["changes"]] == [
        ("article", "update", ["name"]),
        ("article", "update", ["content"]),
        ("article_tag", "delete", []),
    ]
    lines = lines_of("diff", url, "article", "1", "--from", str(t1))
    assert lines[0] == f"article id=1: transaction {t1} -> transaction {t4}"
    assert "  name         'First'  'First, edited'" in lines
    assert [t["id"] for t in json_of("log", url, "--table", "article", "--id", "2")] == [
        t3, t2, t1,
    ]
