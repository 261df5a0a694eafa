"""The runnable examples of README.md run as printed.

A ```python block directly preceded by the line ``<!-- test: run -->`` is executed in
a fresh interpreter (so the module-level ``versioning_manager`` it configures does
not leak into other tests), with warnings as errors. Each comment ``# -> text`` in the
block is one expected line of output, in order; an expectation ending in ``...``
only has to match the start of its line.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- test: run -->"
EXPECT = "# -> "

_BLOCK = re.compile(
    rf"^{re.escape(MARKER)}[ \t]*\n(?:[ \t]*\n)*```python[ \t]*\n(.*?)^```[ \t]*$",
    re.M | re.S,
)


def runnable_blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of each marked block of the README."""
    text = README.read_text(encoding="utf-8")
    blocks = [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in _BLOCK.finditer(text)]
    # Every marker must introduce a block; a typo would silently skip an example.
    assert len(blocks) == text.count(MARKER), "a '<!-- test: run -->' is not followed by ```python"
    return blocks


def expected_output(code: str) -> list[str]:
    """The ``# -> ...`` comments of ``code``, in order."""
    return [
        tok.string[len(EXPECT):].rstrip()
        for tok in tokenize.generate_tokens(io.StringIO(code).readline)
        if tok.type == tokenize.COMMENT and tok.string.startswith(EXPECT)
    ]


def _matches(line: str, expected: str) -> bool:
    if expected.endswith("..."):
        return line.startswith(expected[:-3].rstrip())
    return line == expected


BLOCKS = runnable_blocks()


def test_readme_has_the_runnable_examples() -> None:
    assert len(BLOCKS) >= 2
    classic = BLOCKS[0][1]
    for needle in (
        "make_versioned(user_cls=None)",
        '__versioned__ = {}',
        "sa.orm.configure_mappers()",
        'sa.create_engine("sqlite://")',
        "article.versions[0].name",
        "article.versions[0].revert()",
    ):
        assert needle in classic
    for _, code in BLOCKS:
        assert expected_output(code), "a runnable example should show what it prints"


@pytest.mark.parametrize("code", [code for _, code in BLOCKS],
                         ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs_as_printed(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    printed = result.stdout.splitlines()
    expected = expected_output(code)
    assert len(printed) == len(expected), (printed, expected)
    for line, want in zip(printed, expected, strict=True):
        assert _matches(line, want), (line, want)


@pytest.mark.parametrize(("line", "expected", "ok"), [
    ("Some article", "Some article", True),
    ("Some article!", "Some article", False),
    ("Unknown option 'x' in Draft. Known: a, b", "Unknown option 'x' in Draft. ...", True),
    ("Unknown option 'y' in Draft.", "Unknown option 'x' in Draft. ...", False),
])
def test_expectation_matching(line: str, expected: str, ok: bool) -> None:
    assert _matches(line, expected) is ok


def test_expected_output_reads_comments_only() -> None:
    code = 'print("# -> not this")  # -> # -> not this\n# -> second\nx = 1  # a comment\n'
    assert expected_output(code) == ["# -> not this", "second"]
