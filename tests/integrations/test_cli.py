"""The ``chronicle`` command line: the demo's output, the module entry point, --help."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from sqlalchemy_chronicle import versioning_manager
from sqlalchemy_chronicle.integrations.cli import main

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"

# The rows of the history table, times replaced by TIME, trailing blanks stripped.
HISTORY = [
    "TX  TIME                 ENTITY     OPERATION  CHANGES",
    "1   TIME  Article#1  INSERT     title: None -> 'Hello'",
    "                                               body: None -> 'First draft.'",
    "                                               status: None -> 'draft'",
    "1   TIME  Article#2  INSERT     title: None -> 'Scratch'",
    "                                               body: None -> 'Notes to self.'",
    "                                               status: None -> 'draft'",
    "2   TIME  Article#1  UPDATE     title: 'Hello' -> 'Hello, world'",
    "                                               status: 'draft' -> 'published'",
    "3   TIME  Article#1  UPDATE     body: 'First draft.' -> 'Second draft.'",
    "4   TIME  Article#2  DELETE     (row deleted)",
]

AFTER_REVERT = [
    "TX  TIME                 ENTITY     OPERATION  CHANGES",
    "1   TIME  Article#2  INSERT     title: None -> 'Scratch'",
    "                                               body: None -> 'Notes to self.'",
    "                                               status: None -> 'draft'",
    "4   TIME  Article#2  DELETE     (row deleted)",
    "5   TIME  Article#2  INSERT     (re-inserted with its earlier values)",
]


def _section(lines: list[str], title: str) -> list[str]:
    """The table printed under ``title``: header, rule and rows up to a blank line."""
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    table = lines[start:end]
    assert set(table[1]) <= {"-", " "}, table[1]  # the rule under the header
    return [re.sub(TIME, "TIME", row) for i, row in enumerate(table) if i != 1]


def _check_output(out: str) -> None:
    lines = out.splitlines()
    assert all(line == line.rstrip() for line in lines)
    assert lines[lines.index("Changes, one transaction each:") + 1:][:4] == [
        "  1. create two articles",
        "  2. retitle and publish article 1",
        "  3. edit the body of article 1",
        "  4. delete article 2",
    ]
    assert _section(lines, "History of all articles:") == HISTORY
    assert (
        "Reverting Article#2 to its version of transaction 1 "
        "(before the DELETE in transaction 4):"
    ) in lines
    assert (
        "  restored Article#2: title='Scratch' body='Notes to self.' status='draft'"
    ) in lines
    assert _section(lines, "History of Article#2 after the revert:") == AFTER_REVERT
    # Times are real timestamps, aligned in their column.
    assert len(re.findall(rf"^\d+   {TIME}  Article#", out, re.M)) == 5 + 3


def test_demo_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["demo", "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Database: {url}\n")
    _check_output(out)

    # The database is left behind with the history in it.
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT transaction_id, id, operation_type FROM article_version "
                "ORDER BY transaction_id, id"
            )).all()
            assert [tuple(r) for r in rows] == [
                (1, 1, 0), (1, 2, 0), (2, 1, 1), (3, 1, 1), (4, 2, 2), (5, 2, 0),
            ]
            titles = conn.execute(sa.text("SELECT title FROM article ORDER BY id")).scalars()
            assert titles.all() == ["Hello, world", "Scratch"]
    finally:
        engine.dispose()


def test_demo_refuses_existing_tables_unless_reset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["demo", "--db", url]) == 0
    capsys.readouterr()
    assert main(["demo", "--db", url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "already has the table(s) article, article_version, transaction" in captured.err
    assert "--reset" in captured.err
    assert main(["demo", "--db", url, "--reset"]) == 0
    _check_output(capsys.readouterr().out)


def test_demo_leaves_the_default_manager_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--db", f"sqlite:///{tmp_path}/demo.db"]) == 0
    capsys.readouterr()
    assert versioning_manager.version_class_map == {}
    assert versioning_manager.pending_classes == []


def test_demo_as_a_module() -> None:
    """``python -m sqlalchemy_chronicle demo`` on its default temporary database."""
    result = subprocess.run(
        [sys.executable, "-m", "sqlalchemy_chronicle", "demo"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Database: a temporary SQLite file (deleted on exit)\n")
    _check_output(result.stdout)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: chronicle")
    assert "demo" in out

    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--db URL" in out
    assert "--reset" in out


def test_no_command_prints_help() -> None:
    assert main([]) == 2


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_demo_stops_quietly_when_the_reader_goes_away() -> None:
    """``chronicle demo | head -1``: no traceback about a broken pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sqlalchemy_chronicle", "demo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert stderr == ""
