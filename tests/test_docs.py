"""The runnable examples of docs/*.md run as printed (same rules as README.md's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_readme import _BLOCK, MARKER, _matches, expected_output

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: The pages this module runs; the plugin and context pages have tests of their own.
PAGES = ("history.md",)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for path in (DOCS / page for page in PAGES):
        text = path.read_text(encoding="utf-8")
        matches = list(_BLOCK.finditer(text))
        assert len(matches) == text.count(MARKER), f"{path.name}: a marker has no code block"
        for match in matches:
            line = text.count("\n", 0, match.start(1)) + 1
            found.append((f"{path.name}:{line}", match.group(1)))
    return found


BLOCKS = _blocks()


def test_history_doc_has_runnable_examples() -> None:
    assert any(name.startswith("history.md") for name, _ in BLOCKS)


@pytest.mark.parametrize("code", [c for _, c in BLOCKS], ids=[n for n, _ in BLOCKS])
def test_doc_example_runs_as_printed(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    expected = expected_output(code)
    assert expected, "a runnable example should show what it prints"
    assert len(printed) == len(expected), (printed, expected)
    for line, want in zip(printed, expected, strict=True):
        assert _matches(line, want), (line, want)
