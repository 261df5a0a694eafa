"""Running the examples of README.md and docs/*.md as printed.

A ```python block directly preceded by the line ``<!-- test: run -->`` is runnable.
It runs in a fresh interpreter (so the module-level ``versioning_manager`` it
configures does not leak into other tests), with warnings as errors. Each comment
``# -> text`` is one expected line of output, in order; an expectation ending in
``...`` only has to match the start of its line.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- test: run -->"
EXPECT = "# -> "

_BLOCK = re.compile(
    rf"^{re.escape(MARKER)}[ \t]*\n(?:[ \t]*\n)*```python[ \t]*\n(.*?)^```[ \t]*$",
    re.M | re.S,
)


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of each marked block of ``text``."""
    blocks = [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]
    # Every marker must introduce a block; a typo would silently skip an example.
    assert len(blocks) == text.count(MARKER), "a '<!-- test: run -->' is not followed by ```python"
    return blocks


def page_blocks(name: str) -> list[tuple[int, str]]:
    """The runnable blocks of ``README.md`` or ``docs/<name>``."""
    path = ROOT / name if name == "README.md" else ROOT / "docs" / name
    return runnable_blocks(path.read_text(encoding="utf-8"))


def expected_output(code: str) -> list[str]:
    """The ``# -> ...`` comments of ``code``, in order."""
    return [
        tok.string[len(EXPECT):].rstrip()
        for tok in tokenize.generate_tokens(io.StringIO(code).readline)
        if tok.type == tokenize.COMMENT and tok.string.startswith(EXPECT)
    ]


def matches(line: str, expected: str) -> bool:
    """Whether printed ``line`` is what ``expected`` (a ``# ->`` comment) asks for."""
    if expected.endswith("..."):
        return line.startswith(expected[:-3].rstrip())
    return line == expected


def run_as_printed(code: str, tmp_path: Path) -> None:
    """Run ``code`` in a fresh interpreter and check it prints its ``# ->`` lines."""
    expected = expected_output(code)
    assert expected, "a runnable example should show what it prints"
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = result.stdout.splitlines()
    assert len(printed) == len(expected), (printed, expected)
    for line, want in zip(printed, expected, strict=True):
        assert matches(line, want), (line, want)
