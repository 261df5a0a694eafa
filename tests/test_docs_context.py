"""The examples of docs/context.md run as printed.

The page is one script told in steps: each ```python block marked ``<!-- test: run -->``
continues the blocks before it. Each block is tested in a fresh interpreter running
the page up to and including that block, with warnings as errors; the ``# -> ...``
comments of those blocks are the expected output lines, in order (the conventions of
``tests/test_readme.py``, whose helpers this reuses).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_readme import MARKER, _matches, expected_output

PAGE = Path(__file__).resolve().parent.parent / "docs" / "context.md"

_BLOCK = re.compile(
    rf"^{re.escape(MARKER)}[ \t]*\n(?:[ \t]*\n)*```python[ \t]*\n(.*?)^```[ \t]*$",
    re.M | re.S,
)


def runnable_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of each marked block of the page."""
    text = PAGE.read_text(encoding="utf-8")
    blocks = [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]
    assert len(blocks) == text.count(MARKER), "a '<!-- test: run -->' is not followed by ```python"
    return blocks


BLOCKS = runnable_blocks()


def test_page_shows_every_way_to_set_the_context() -> None:
    code = "\n".join(c for _, c in BLOCKS)
    for needle in (
        'make_versioned(user_cls="User"',
        "with versioning_context(user_id=1, remote_addr=",  # the context manager
        "@versioning_context(user_id=2",  # decorator on a function
        "async def publish",  # ... and on a coroutine function
        "asyncio.gather(",  # concurrent tasks
        "Middleware(VersioningMiddleware",  # ASGI / Starlette
        "VersioningWSGIMiddleware(",  # WSGI
        "FlaskPlugin()",  # Flask-Login
    ):
        assert needle in code, needle
    for _, block in BLOCKS:
        assert expected_output(block), "each example should show what it prints"


@pytest.mark.parametrize("upto", range(len(BLOCKS)),
                         ids=[f"context.md:{line}" for line, _ in BLOCKS])
def test_page_runs_as_printed_up_to_each_block(upto: int, tmp_path: Path) -> None:
    blocks = [code for _, code in BLOCKS[: upto + 1]]
    script = tmp_path / "example.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = result.stdout.splitlines()
    expected = [line for block in blocks for line in expected_output(block)]
    assert len(printed) == len(expected), (printed, expected)
    for line, want in zip(printed, expected, strict=True):
        assert _matches(line, want), (line, want)
