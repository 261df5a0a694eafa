"""docs/cli.md and README.md run as printed: each ``$ chronicle ...`` line of their
``console`` blocks runs (the installed command, in a shell, ``TZ=UTC``, stderr with
stdout) on the demo database the first line makes, and prints the lines that follow
it, times aside."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli.md"
BIN = Path(sys.executable).parent
_CONSOLE = re.compile(r"^```console[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_TIMES = [
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"), "<TIME UTC>"),
    (re.compile(r'"issued_at": "[^"]+"'), '"issued_at": "<TIME>"'),
]


def sessions(page: Path = PAGE) -> list[tuple[str, list[str]]]:
    """``(command, expected output lines)`` of each ``$`` line of ``page``, in order."""
    found: list[tuple[str, list[str]]] = []
    for block in _CONSOLE.findall(page.read_text(encoding="utf-8")):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


def normalized(lines: list[str]) -> list[str]:
    result = []
    for line in lines:
        for pattern, placeholder in _TIMES:
            line = pattern.sub(placeholder, line)
        result.append(line)
    return result


def test_page_covers_every_command() -> None:
    commands = [c for c, _ in sessions()]
    assert commands[0] == "chronicle demo --db sqlite:///demo.db > /dev/null"
    for needle in ("chronicle log ", "--id ", "--before ", "chronicle show ",
                   "chronicle diff ", "--all", "--json"):
        assert any(needle in c for c in commands), needle


@pytest.mark.once
@pytest.mark.parametrize("page", [PAGE, ROOT / "README.md"], ids=["cli.md", "README.md"])
def test_console_examples_run_as_printed(page: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TZ": "UTC", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONWARNINGS": "error", "NO_COLOR": "1"}
    found = sessions(page)
    assert found and found[0][0] == "chronicle demo --db sqlite:///demo.db > /dev/null"
    for command, expected in found:
        assert command.startswith("chronicle "), command
        result = subprocess.run(
            ["bash", "-c", command + " 2>&1"], capture_output=True, text=True,
            cwd=tmp_path, env=env, timeout=120,
        )
        printed = result.stdout.splitlines()
        assert normalized(printed) == normalized(expected), command
        assert result.returncode == (1 if "error:" in result.stdout else 0), command
